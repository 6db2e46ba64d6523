"""HTTP routes: prediction, MLflow's /invocations protocol, health, model, log and outcomes.

(No ``from __future__ import annotations`` here: FastAPI must see the profile-built
application model in the endpoint signature at definition time.)
"""

import asyncio
import csv
import io
import json
import math
import random
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from loanrisk import __version__
from loanrisk.profiles.model import Profile
from loanrisk.serving import bodies
from loanrisk.serving.metrics import CONTENT_TYPE
from loanrisk.serving.model import LoadedModel
from loanrisk.serving.predlog import LogUnavailable, UnstorableRow
from loanrisk.serving.schemas import (
    EXAMPLE,
    OutcomeIn,
    OutcomeOut,
    PredictResponse,
    plainly_valid,
)
from loanrisk.serving.security import Outcomes, Predict, Read, check
from loanrisk.warehouse.schema import outcomes, predictions

_ERROR = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}
        }
    }
}
KEYED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **_ERROR},
    403: {"description": "The key lacks the scope", **_ERROR},
    408: {"description": "The body did not arrive in time", **_ERROR},
    413: {"description": "Body too large", **_ERROR},
    422: {"description": "Invalid input, each problem named by its location", **_ERROR},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "No model loaded, or the prediction log cannot record", **_ERROR}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found", **_ERROR}}


class ScoringError(Exception):
    """Applications the model refused, with the problems per application index."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("invalid applications")
        self.problems = problems


def _new_id(state: Any) -> str:
    """A random 128-bit id in hex (unique, not a secret; no system call per id)."""
    ids: random.Random = state.ids
    return f"{ids.getrandbits(128):032x}"


def current_model(request: Request) -> LoadedModel:
    model: LoadedModel | None = request.app.state.models.current
    if model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            request.app.state.models.problem or "no model loaded",
        )
    return model


async def score(
    request: Request, records: list[dict[str, Any]], *, source: str = "api"
) -> tuple[str, list[dict[str, Any]]]:
    """Score records with the current model, make every answer durable in the prediction
    log, then return (request id, answers): nothing is answered that is not recorded."""
    given_id = bodies.request_id(request)
    model = current_model(request)
    return await score_records(request.app.state, model, records, given_id, source=source)


async def score_records(
    state: Any,
    model: LoadedModel,
    records: list[dict[str, Any]],
    given_id: str | None,
    *,
    source: str = "api",
) -> tuple[str, list[dict[str, Any]]]:
    """``score`` for callers that hold the app state (the route and the fast lane)."""
    prediction_log = state.prediction_log
    prediction_log.expect()  # a group commit starting now waits for these rows
    try:
        rows, answers, request_id = _score(state, model, records, given_id, source)
    except BaseException:
        prediction_log.unexpect()
        raise
    try:
        await prediction_log.record(rows, expected=True)
    except UnstorableRow as exc:
        raise bodies.refuse(["body"], f"cannot be stored: {exc}") from exc
    except LogUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    for answer in answers:
        state.metrics.predictions.labels(answer["decision"], answer["grade"]).inc()
    return request_id, answers


def _score(
    state: Any,
    model: LoadedModel,
    records: list[dict[str, Any]],
    given_id: str | None,
    source: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The log rows, the answers and the request id for ``records`` (nothing stored)."""
    started = time.perf_counter()
    results = model.scorer.score(records)
    bad = [{"index": i, "problems": r["problems"]} for i, r in enumerate(results) if r["error"]]
    if bad:
        raise ScoringError(bad)
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(records), 1)
    request_id = given_id or _new_id(state)
    now = datetime.now(UTC)
    answers, rows = [], []
    for record, result in zip(records, results, strict=True):
        prediction_id = _new_id(state)
        client_id = record.get("client_id")
        answers.append(
            {
                "prediction_id": prediction_id,
                "loan_id": result["loan_id"],
                "client_id": client_id,
                "pd": result["pd"],
                "default_class": result["default_class"],
                "decision": result["decision"],
                "grade": result["grade"],
                "reasons": result["reasons"],
                "model": {"name": model.name, "version": model.version, "alias": model.alias},
            }
        )
        rows.append(
            {
                "prediction_id": prediction_id,
                "request_id": request_id,
                "client_id": None if client_id is None else str(client_id),
                "loan_id": result["loan_id"],
                "model_name": model.name,
                "model_version": model.version,
                "run_id": model.run_id,
                "alias": model.alias,
                "input": json.dumps(record, default=str),
                "features": json.dumps(
                    {
                        k: (None if isinstance(v, float) and math.isnan(v) else v)
                        for k, v in result["features"].items()
                    }
                ),
                "pd": result["pd"],
                "default_class": result["default_class"],
                "decision": result["decision"],
                "grade": result["grade"],
                "reasons": json.dumps(result["reasons"]),
                "latency_ms": elapsed_ms,
                "source": source,
                "scoring_run_id": None,
                "created_at": now,
            }
        )
    return rows, answers, request_id


def build_router(application: type[BaseModel], profile: Profile, *, text_limit: int) -> APIRouter:
    """Routes whose request schema is the profile's application model."""
    router = APIRouter()

    one = TypeAdapter(application)
    plain = plainly_valid(profile, text_limit)
    body_schema = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/Application"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Application"}},
                    ]
                },
                "example": EXAMPLE,
            }
        },
    }

    @router.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Score one application or a list of them",
        responses=KEYED | UNAVAILABLE,
        openapi_extra={"requestBody": body_schema},
        tags=["scoring"],
    )
    async def predict(request: Request) -> Response:
        """PD, decision, grade and reasons per application; each answer is logged with the
        model version that produced it. Send one application object or a list.

        The body is parsed here rather than by FastAPI's body machinery: it is the hot
        path, and errors name each field as `["body", index, field]`."""
        # The key is checked here, not through a FastAPI dependency: cheaper on the hot path.
        check(request, request.app.state.settings, "predict")
        payload = bodies.parse_json(await request.body())
        items = payload if isinstance(payload, list) else [payload]
        limit = request.app.state.settings.serving.max_applications
        if not items or len(items) > limit:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"send between 1 and {limit} applications, got {len(items)}",
            )
        listed = isinstance(payload, list)
        # Plain applications go straight to the scorer, whose parsers are the validation;
        # anything unusual goes through the pydantic model first.
        if all(plain(item) for item in items):
            records = [{k: v for k, v in item.items() if v is not None} for item in items]
        else:
            records = validate(items, listed)
        try:
            request_id, answers = await score(request, records)
        except ScoringError as exc:
            validate(items, listed)  # names each refused value as the model does
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, exc.problems) from exc
        return JSONResponse({"request_id": request_id, "predictions": answers})

    def validate(items: list[Any], listed: bool) -> list[dict[str, Any]]:
        """Applications through the pydantic model; 422 naming every bad field of every one."""
        records: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                records.append(one.validate_python(item).model_dump(exclude_none=True))
            except ValidationError as exc:
                prefix = ["body", index] if listed else ["body"]
                errors.extend(
                    {**e, "loc": [*prefix, *e["loc"]], "input": _short(e.get("input"))}
                    for e in exc.errors(include_url=False, include_context=False)
                )
        if errors:
            raise RequestValidationError(errors)
        return records

    @router.post(
        "/invocations",
        summary="MLflow scoring protocol",
        tags=["scoring"],
        responses=KEYED
        | UNAVAILABLE
        | {
            400: {
                "description": "Not one of MLflow's input formats, or a refused row",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"error_code": {"type": "string"}, "message": {}},
                        }
                    }
                },
            }
        },
        openapi_extra={"requestBody": _invocations_body()},
    )
    async def invocations(request: Request, _key: Predict) -> Response:
        """Drop-in for `mlflow models serve`: JSON with dataframe_split, dataframe_records,
        instances or inputs, or CSV; answers `{"predictions": [...]}`."""
        raw = await request.body()
        try:
            records = _mlflow_records(request.headers.get("content-type", ""), raw)
            for index, record in enumerate(records):
                bad = [
                    f"{k}: {problem}"
                    for k, v in record.items()
                    if isinstance(v, str) and (problem := bodies.text_problem(v, text_limit))
                ]
                if bad:
                    raise InvocationError(f"row {index}: {'; '.join(bad)}")
        except InvocationError as exc:
            return JSONResponse(
                {"error_code": "BAD_REQUEST", "message": str(exc)},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        limit = request.app.state.settings.serving.max_applications
        if len(records) > limit:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"at most {limit} rows per request, got {len(records)}",
            )
        try:
            _, answers = await score(request, records)
        except ScoringError as exc:
            return JSONResponse(
                {"error_code": "BAD_REQUEST", "message": exc.problems},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        return JSONResponse(
            {
                "predictions": [
                    {k: v for k, v in a.items() if k != "model"}
                    | {"model_version": a["model"]["version"]}
                    for a in answers
                ]
            }
        )

    @router.get("/health", summary="Liveness", tags=["operations"])
    async def health() -> dict[str, str]:
        """The process is up (no model or database needed)."""
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Readiness",
        tags=["operations"],
        responses={
            503: {
                "description": "Not ready, with the reasons",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    def ready(request: Request) -> Response:
        """200 when a model is loaded, the database answers and the prediction log is
        healthy; 503 with the reasons."""
        reasons = []
        if request.app.state.models.current is None:
            reasons.append(request.app.state.models.problem or "no model loaded")
        reasons.extend(request.app.state.prediction_log.problems())
        try:
            with request.app.state.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.SQLAlchemyError as exc:
            reasons.append(f"database unreachable: {type(exc).__name__}")
        body = {"ready": not reasons, "reasons": reasons}
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @router.get("/version", summary="Service and model version", tags=["operations"])
    async def version(request: Request) -> dict[str, Any]:
        model: LoadedModel | None = request.app.state.models.current
        return {
            "loanrisk": __version__,
            "model_name": request.app.state.settings.mlflow.model_name,
            "model_version": model.version if model else None,
        }

    @router.get(
        "/v1/model",
        summary="The served model",
        tags=["operations"],
        responses=KEYED | UNAVAILABLE,
    )
    async def model_info(request: Request, _key: Read) -> dict[str, Any]:
        """Version, alias, run, test metrics, threshold, grade scale and when it was loaded."""
        return current_model(request).describe()

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        refresh_gauges(request.app.state)
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)

    @router.get(
        "/v1/predictions/{prediction_id}",
        summary="One logged prediction",
        tags=["log"],
        responses=KEYED | NOT_FOUND,
    )
    def get_prediction(
        request: Request,
        prediction_id: Annotated[str, Path(pattern=bodies.ID_PATTERN)],
        _key: Read,
    ) -> dict[str, Any]:
        """The logged row: input, features, PD, decision, grade, reasons, model version."""
        row = request.app.state.prediction_log.recent(prediction_id)
        if row is None:
            with request.app.state.engine.connect() as conn:
                found = (
                    conn.execute(
                        sa.select(predictions).where(predictions.c.prediction_id == prediction_id)
                    )
                    .mappings()
                    .first()
                )
            row = dict(found) if found else None
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction {prediction_id}")
        out = dict(row)
        for key in ("input", "features", "reasons"):
            if isinstance(out.get(key), str):
                out[key] = json.loads(out[key])
        return out

    outcome_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OutcomeIn"}}},
    }

    @router.post(
        "/v1/outcomes",
        response_model=OutcomeOut,
        status_code=201,
        summary="Report a realised outcome",
        tags=["log"],
        responses=KEYED | NOT_FOUND,
        openapi_extra={"requestBody": outcome_body},
    )
    async def report_outcome(request: Request, _key: Outcomes) -> OutcomeOut:
        """Record whether a loan defaulted, by prediction id, client id or loan id."""
        payload = bodies.parse_json(await request.body())
        try:
            outcome = OutcomeIn.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {**e, "loc": ["body", *e["loc"]], "input": _short(e.get("input"))}
                    for e in exc.errors(include_url=False, include_context=False)
                ]
            ) from exc
        return await asyncio.to_thread(_store_outcome, request, outcome)

    def _store_outcome(request: Request, outcome: OutcomeIn) -> OutcomeOut:
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
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, "give prediction_id, client_id or loan_id"
            )
        log = request.app.state.prediction_log
        with request.app.state.engine.begin() as conn:
            condition = sa.or_(*(predictions.c[k] == v for k, v in keys.items()))
            matched = conn.execute(
                sa.select(sa.func.count()).select_from(predictions).where(condition)
            ).scalar_one()
            pending = bool(outcome.prediction_id and log.recent(outcome.prediction_id))
            if outcome.prediction_id and not matched and not pending:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"no prediction {outcome.prediction_id}"
                )
            new_id = conn.execute(
                sa.insert(outcomes)
                .values(
                    prediction_id=outcome.prediction_id,
                    client_id=outcome.client_id,
                    loan_id=outcome.loan_id,
                    defaulted=int(outcome.defaulted),
                    observed_at=outcome.observed_at,
                    source="api",
                )
                .returning(outcomes.c.outcome_id)
            ).scalar_one()
        return OutcomeOut(outcome_id=new_id, matched_predictions=max(int(matched), int(pending)))

    return router


def _latest_monitoring(state: Any) -> dict[str, Any] | None:
    """The latest monitoring figures, read at most every 30 s."""
    from loanrisk.monitoring.monitor import latest

    cached = getattr(state, "monitoring_cache", None)
    if cached is not None and time.monotonic() - cached[0] < 30:
        return cached[1]
    try:
        figures = latest(state.engine)
    except sa.exc.SQLAlchemyError:
        figures = None
    state.monitoring_cache = (time.monotonic(), figures)
    return figures


class InvocationError(Exception):
    """A body /invocations cannot read: answered 400 in MLflow's error shape."""


def _mlflow_records(content_type: str, raw: bytes) -> list[dict[str, Any]]:
    """Rows from any of MLflow's scoring formats, as dicts; ``InvocationError`` otherwise."""
    if content_type.startswith("text/csv"):
        try:
            frame = pd.read_csv(io.StringIO(raw.decode("utf-8")), dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, ValueError, csv.Error, pd.errors.ParserError) as exc:
            raise InvocationError(f"not a CSV body: {str(exc)[:200]}") from exc
        rows = [{str(k): v for k, v in r.items() if v != ""} for r in frame.to_dict("records")]
        if not rows:
            raise InvocationError("the CSV body has no rows")
        return _checked_rows(rows, "CSV")
    try:
        payload = bodies.parse_json(raw)
    except RequestValidationError as exc:
        raise InvocationError(f"not a JSON body: {exc.errors()[0]['msg']}") from exc
    if not isinstance(payload, dict):
        raise InvocationError(
            "expected a JSON object with dataframe_split, dataframe_records, instances or inputs"
        )
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or "columns" not in split or "data" not in split:
            raise InvocationError("dataframe_split needs 'columns' and 'data'")
        columns, data = split["columns"], split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvocationError("dataframe_split.columns must be a list of names")
        if not isinstance(data, list) or not all(
            isinstance(row, list) and len(row) == len(columns) for row in data
        ):
            raise InvocationError(
                f"dataframe_split.data must be a list of rows of {len(columns)} values"
            )
        rows = [dict(zip(columns, row, strict=True)) for row in data]
        return _checked_rows(rows, "dataframe_split")
    for key in ("dataframe_records", "instances", "inputs"):
        if key not in payload:
            continue
        value = payload[key]
        if isinstance(value, dict):  # columnar: {"col": [v1, v2], ...}
            lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
            if -1 in lengths or len(lengths) > 1:
                raise InvocationError(f"{key} as an object needs lists of one length")
            length = lengths.pop() if lengths else 0
            rows = [{c: value[c][i] for c in value} for i in range(length)]
            return _checked_rows(rows, key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return _checked_rows(value, key)
        raise InvocationError(f"{key} must be a list of objects or an object of lists")
    raise InvocationError("expected one of dataframe_split, dataframe_records, instances, inputs")


def _checked_rows(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Rows whose values are scalars (JSON null, booleans, numbers or text)."""
    for index, row in enumerate(rows):
        for name, value in row.items():
            if isinstance(value, list | dict):
                raise InvocationError(f"{where} row {index}, column {name!r}: not a scalar value")
    return rows


def _invocations_body() -> dict[str, Any]:
    row = {"type": "object", "additionalProperties": True}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One of MLflow's input formats.",
                    "minProperties": 1,
                    "anyOf": [
                        {"required": [key]}
                        for key in ("dataframe_split", "dataframe_records", "instances", "inputs")
                    ],
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                            },
                        },
                        "dataframe_records": {"type": "array", "items": row},
                        "instances": {"type": "array", "items": row},
                        "inputs": {"anyOf": [{"type": "array", "items": row}, row]},
                    },
                },
                "example": {"dataframe_records": [EXAMPLE]},
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }


def _short(value: Any) -> Any:
    """An input echoed in an error, cut short (a 1 MB field is not sent back)."""
    if isinstance(value, str) and len(value) > 100:
        return value[:100] + "…"
    if isinstance(value, dict | list):
        return None
    return value


def refresh_gauges(state: Any) -> None:
    """Set this process's gauges from the model, the prediction log and monitoring.

    Called on every scrape and, with several workers, every second by each worker, so
    the figures /metrics reports for all workers are fresh whichever worker answers.
    """
    service = state.metrics
    model: LoadedModel | None = state.models.current
    labels = (
        (model.name, model.version, model.alias, model.run_id or "") if model is not None else None
    )
    shown = getattr(state, "model_labels", None)
    if shown is not None and shown != labels:
        service.model_info.labels(*shown).set(0)  # the version this worker no longer serves
    if labels is not None and model is not None:
        service.model_info.labels(*labels).set(1)
        service.model_created.set(model.created_at)
    state.model_labels = labels
    prediction_log = state.prediction_log
    counters = prediction_log.metrics
    service.queue_depth.set(prediction_log.queue_depth)
    service.spooled.set(counters.spooled)
    service.failed_writes.set(counters.failed_writes)
    service.written.set(counters.written)
    service.dead_lettered.set(counters.dead_lettered)
    service.fsyncs.set(counters.fsyncs)
    service.fsync_seconds.set(counters.fsync_seconds)
    service.writer_up.set(0 if prediction_log.problems() else 1)
    service.database_up.set(1 if prediction_log.database_ok else 0)
    latest = _latest_monitoring(state)
    if latest is not None:
        service.drifted_share.set(latest["drifted_share"])
        service.score_psi.set(latest["score_psi"])
        service.monitoring_last_run.set(latest["created_at"].timestamp())
        if latest["realised_auc"] is not None:
            service.realised_auc.set(latest["realised_auc"])
