"""The service's routes, one module per concern: ``scoring`` (/v1/predict, /invocations),
``records`` (logged predictions, outcomes), ``operations`` (health, readiness, versions,
model, metrics). Handlers take what they need as dependencies (``serving.deps``); SQL
lives in ``warehouse.queries``; a ``LoanriskError`` becomes its status code in ``app``."""

from fastapi import APIRouter
from pydantic import BaseModel

from loanrisk.profiles.model import Profile
from loanrisk.serving.routes import operations, records, scoring
from loanrisk.serving.routes.operations import refresh_gauges
from loanrisk.serving.routes.scoring import ScoringError, score, score_records

__all__ = ["ScoringError", "build_router", "refresh_gauges", "score", "score_records"]


def build_router(application: type[BaseModel], profile: Profile, *, text_limit: int) -> APIRouter:
    """Every API route; the scoring ones take the profile's application model."""
    router = APIRouter()
    router.include_router(scoring.build_router(application, profile, text_limit=text_limit))
    router.include_router(operations.router)
    router.include_router(records.router)
    return router
