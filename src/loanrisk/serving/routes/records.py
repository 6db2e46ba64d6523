"""The decision record: one logged prediction, and outcomes reported later."""

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import ValidationError

from loanrisk.errors import NotFoundError, RefusedInput
from loanrisk.serving import bodies
from loanrisk.serving.deps import Service, ServiceDep
from loanrisk.serving.routes.common import KEYED, NOT_FOUND, refused
from loanrisk.serving.schemas import OutcomeIn, OutcomeOut
from loanrisk.serving.security import Outcomes, Read
from loanrisk.warehouse.queries import find_prediction, store_outcome

router = APIRouter(tags=["log"])


@router.get(
    "/v1/predictions/{prediction_id}",
    summary="One logged prediction",
    responses=KEYED | NOT_FOUND,
)
def get_prediction(
    service: ServiceDep,
    prediction_id: Annotated[str, Path(pattern=bodies.ID_PATTERN)],
    _key: Read,
) -> dict[str, Any]:
    """The logged row: input, features, PD, decision, grade, reasons, model version."""
    found = logged_prediction(service, prediction_id)
    if found is None:
        raise NotFoundError(f"no prediction {prediction_id}")
    return found


def logged_prediction(service: Service, prediction_id: str) -> dict[str, Any] | None:
    """One prediction as logged (from the log's recent rows, else the database), its
    JSON columns read back."""
    row = service.prediction_log.recent(prediction_id)
    if row is None:
        row = find_prediction(service.engine, prediction_id)
    if row is None:
        return None
    out = dict(row)
    for key in ("input", "features", "reasons"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


@router.post(
    "/v1/outcomes",
    response_model=OutcomeOut,
    status_code=201,
    summary="Report a realised outcome",
    responses=KEYED | NOT_FOUND,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OutcomeIn"}}},
        }
    },
)
async def report_outcome(request: Request, service: ServiceDep, _key: Outcomes) -> OutcomeOut:
    """Record whether a loan defaulted, by prediction id, client id or loan id."""
    payload = bodies.parse_json(await request.body())
    try:
        outcome = OutcomeIn.model_validate(payload)
    except ValidationError as exc:
        raise refused(exc, ["body"]) from exc
    return await asyncio.to_thread(_store, service, outcome)


def _store(service: Service, outcome: OutcomeIn) -> OutcomeOut:
    keys = {
        k: v
        for k, v in (
            ("prediction_id", outcome.prediction_id),
            ("client_id", outcome.client_id),
            ("loan_id", outcome.loan_id),
        )
        if v
    }
    if not keys:
        raise RefusedInput("give prediction_id, client_id or loan_id")
    pending = bool(outcome.prediction_id and service.prediction_log.recent(outcome.prediction_id))
    matched, new_id = store_outcome(
        service.engine,
        keys,
        defaulted=outcome.defaulted,
        observed_at=outcome.observed_at,
        pending=pending,
    )
    if new_id is None:
        raise NotFoundError(f"no prediction {outcome.prediction_id}")
    return OutcomeOut(outcome_id=new_id, matched_predictions=matched)
