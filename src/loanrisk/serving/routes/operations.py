"""Operations: health, readiness, versions, the served model and Prometheus metrics."""

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from loanrisk import __version__
from loanrisk.monitoring.store import history
from loanrisk.serving.deps import CurrentModel, Service, ServiceDep
from loanrisk.serving.metrics import CONTENT_TYPE
from loanrisk.serving.routes.common import KEYED, UNAVAILABLE
from loanrisk.serving.security import Read
from loanrisk.warehouse.queries import database_answers

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    """The process is up (no model or database needed)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness",
    responses={
        503: {
            "description": "Not ready, with the reasons",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def ready(service: ServiceDep) -> Response:
    """200 when a model is loaded, the database answers and the prediction log is
    healthy; 503 with the reasons."""
    reasons = []
    if service.models.current is None:
        reasons.append(service.models.problem or "no model loaded")
    reasons.extend(service.prediction_log.problems())
    failure = database_answers(service.engine)
    if failure is not None:
        reasons.append(f"database unreachable: {failure}")
    body = {"ready": not reasons, "reasons": reasons}
    return JSONResponse(body, status_code=200 if not reasons else 503)


@router.get("/version", summary="Service and model version")
async def version(service: ServiceDep) -> dict[str, Any]:
    model = service.models.current
    return {
        "loanrisk": __version__,
        "model_name": service.settings.mlflow.model_name,
        "model_version": model.version if model else None,
    }


@router.get("/v1/model", summary="The served model", responses=KEYED | UNAVAILABLE)
async def model_info(model: CurrentModel, _key: Read) -> dict[str, Any]:
    """Version, alias, run, test metrics, threshold, grade scale and when it was loaded."""
    return model.describe()


class MonitoringRun(BaseModel):
    """One monitoring run's headline figures."""

    monitoring_run_id: str
    model_name: str
    model_version: str
    window_start: datetime
    window_end: datetime
    rows_current: int
    drifted_share: float
    score_psi: float
    realised_auc: float | None
    outcomes: int
    retrain_recommended: bool
    created_at: datetime


@router.get(
    "/v1/monitoring/runs",
    summary="Monitoring over time",
    response_model=list[MonitoringRun],
    responses=KEYED,
)
def monitoring_runs(service: ServiceDep, _key: Read) -> list[dict[str, Any]]:
    """The last 200 monitoring runs, oldest first: score PSI, drifted share of inputs and
    realised AUC per run (the page /monitoring draws them)."""
    return history(service.engine)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(service: ServiceDep) -> Response:
    refresh_gauges(service)
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)


def refresh_gauges(service: Service) -> None:
    """Set this process's gauges from the model, the prediction log and monitoring.

    Called on every scrape and, with several workers, every second by each worker, so
    the figures /metrics reports for all workers are fresh whichever worker answers.
    """
    gauges = service.metrics
    model = service.models.current
    labels = (
        (model.name, model.version, model.alias, model.run_id or "") if model is not None else None
    )
    shown = service.model_labels
    if shown is not None and shown != labels:
        gauges.model_info.labels(*shown).set(0)  # the version this worker no longer serves
    if labels is not None and model is not None:
        gauges.model_info.labels(*labels).set(1)
        gauges.model_created.set(model.created_at)
    service.model_labels = labels
    prediction_log = service.prediction_log
    counters = prediction_log.metrics
    gauges.queue_depth.set(prediction_log.queue_depth)
    gauges.spooled.set(counters.spooled)
    gauges.failed_writes.set(counters.failed_writes)
    gauges.written.set(counters.written)
    gauges.dead_lettered.set(counters.dead_lettered)
    gauges.fsyncs.set(counters.fsyncs)
    gauges.fsync_seconds.set(counters.fsync_seconds)
    gauges.writer_up.set(0 if prediction_log.problems() else 1)
    gauges.database_up.set(1 if prediction_log.database_ok else 0)
    latest = _latest_monitoring(service)
    if latest is not None:
        gauges.drifted_share.set(latest["drifted_share"])
        gauges.score_psi.set(latest["score_psi"])
        gauges.monitoring_last_run.set(latest["created_at"].timestamp())
        if latest["realised_auc"] is not None:
            gauges.realised_auc.set(latest["realised_auc"])


def _latest_monitoring(service: Service) -> dict[str, Any] | None:
    """The latest monitoring figures, read at most every 30 s."""
    import sqlalchemy as sa

    from loanrisk.monitoring.store import latest

    cached = service.monitoring_cache
    if cached is not None and time.monotonic() - cached[0] < 30:
        return cached[1]
    try:
        figures = latest(service.engine)
    except sa.exc.SQLAlchemyError:
        figures = None
    service.monitoring_cache = (time.monotonic(), figures)
    return figures
