"""Scoring: ``POST /v1/predict`` and MLflow's ``POST /invocations``.

(No ``from __future__ import annotations`` here: FastAPI must see the annotations of the
endpoints at definition time.)
"""

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from loanrisk.modeling.package import OUTPUT_COLUMNS
from loanrisk.modeling.recourse import recourse
from loanrisk.predictions import log_row
from loanrisk.profiles.model import Profile
from loanrisk.serving import bodies
from loanrisk.serving.deps import Service, service_of
from loanrisk.serving.model import LoadedModel
from loanrisk.serving.predlog import UnstorableRow
from loanrisk.serving.routes.common import KEYED, UNAVAILABLE, refused
from loanrisk.serving.routes.mlflow_input import InvocationError, invocations_body, mlflow_records
from loanrisk.serving.schemas import EXAMPLE, PredictResponse, plainly_valid
from loanrisk.serving.security import Predict, check


class ScoringError(Exception):
    """Applications the model refused, with the problems per application index."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("invalid applications")
        self.problems = problems


async def score(
    request: Request,
    records: list[dict[str, Any]],
    *,
    source: str = "api",
    per_row: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """Score records with the current model, make every answer durable in the prediction
    log, then return (request id, answers): nothing is answered that is not recorded.

    An invalid record raises ScoringError, or with ``per_row`` is answered with its
    ``error`` (no PD, no prediction id, nothing logged) beside the others, as MLflow's
    scoring server answers."""
    given_id = bodies.request_id(request)
    service = service_of(request)
    return await score_records(
        service, service.current_model(), records, given_id, source=source, per_row=per_row
    )


async def score_records(
    service: Service,
    model: LoadedModel,
    records: list[dict[str, Any]],
    given_id: str | None,
    *,
    source: str = "api",
    per_row: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """``score`` for callers that hold the service (the route and the fast lane)."""
    prediction_log = service.prediction_log
    rows, answers, request_id = _score(service, model, records, given_id, source, per_row)
    try:
        await prediction_log.record(rows)
    except UnstorableRow as exc:
        raise bodies.refuse(["body"], f"cannot be stored: {exc}") from exc
    for answer in answers:
        if answer.get("error") is None:
            service.metrics.predictions.labels(answer["decision"], answer["grade"]).inc()
    return request_id, answers


def _score(
    service: Service,
    model: LoadedModel,
    records: list[dict[str, Any]],
    given_id: str | None,
    source: str,
    per_row: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The log rows, the answers and the request id for ``records`` (nothing stored)."""
    started = time.perf_counter()
    results = model.scorer.score(records)
    bad = [{"index": i, "problems": r["problems"]} for i, r in enumerate(results) if r["error"]]
    if bad and not per_row:
        raise ScoringError(bad)
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(records), 1)
    request_id = given_id or service.new_id()
    now = datetime.now(UTC)
    answers, rows = [], []
    for record, result in zip(records, results, strict=True):
        prediction_id = service.new_id()
        client_id = record.get("client_id")
        answers.append(
            {
                "prediction_id": prediction_id if result["error"] is None else None,
                "loan_id": result["loan_id"],
                "client_id": client_id,
                "pd": result["pd"],
                "default_class": result["default_class"],
                "decision": result["decision"],
                "grade": result["grade"],
                "reasons": result["reasons"],
                "model": {"name": model.name, "version": model.version, "alias": model.alias},
            }
            | ({"error": result["error"]} if per_row else {})
        )
        if result["error"] is not None:
            continue
        rows.append(
            log_row(
                prediction_id=prediction_id,
                request_id=request_id,
                client_id=client_id,
                model=model,
                record=record,
                result=result,
                latency_ms=elapsed_ms,
                source=source,
                created_at=now,
            )
        )
    return rows, answers, request_id


# The packaged model's answer per row (what `mlflow models serve` returns), then the
# service's own: the prediction id in the log, the caller's id, the model version.
INVOCATION_KEYS = [*OUTPUT_COLUMNS, "prediction_id", "client_id", "model_version"]


def build_router(application: type[BaseModel], profile: Profile, *, text_limit: int) -> APIRouter:
    """The scoring routes, whose request schema is the profile's application model."""
    router = APIRouter(tags=["scoring"])
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
    )
    async def predict(request: Request) -> Response:
        """PD, decision, grade and reasons per application; each answer is logged with the
        model version that produced it. Send one application object or a list. With
        `?explain=true`, each decline also says the smallest change to the requested
        terms (amount, term) that would be approved, or that none would.

        The body is parsed here rather than by FastAPI's body machinery: it is the hot
        path, and errors name each field as `["body", index, field]`."""
        settings = service_of(request).settings
        # The key is checked here, not through a FastAPI dependency: cheaper on the hot path.
        check(request, settings, "predict")
        payload = bodies.parse_json(await request.body())
        items = payload if isinstance(payload, list) else [payload]
        limit = settings.serving.max_applications
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
        if request.query_params.get("explain") == "true":
            scorer = service_of(request).current_model().scorer
            for record, answer in zip(records, answers, strict=True):
                if answer["decision"] == "decline":
                    answer["recourse"] = recourse(scorer, record)
        return JSONResponse({"request_id": request_id, "predictions": answers})

    def validate(items: list[Any], listed: bool) -> list[dict[str, Any]]:
        """Applications through the pydantic model; 422 naming every bad field of every one."""
        records: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                records.append(one.validate_python(item).model_dump(exclude_none=True))
            except ValidationError as exc:
                errors.extend(refused(exc, ["body", index] if listed else ["body"]).errors())
        if errors:
            raise RequestValidationError(errors)
        return records

    @router.post(
        "/invocations",
        summary="MLflow scoring protocol",
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
        openapi_extra={"requestBody": invocations_body()},
    )
    async def invocations(request: Request, _key: Predict) -> Response:
        """Drop-in for `mlflow models serve`: JSON with dataframe_split, dataframe_records,
        instances or inputs, or CSV; answers `{"predictions": [...]}`."""
        raw = await request.body()
        try:
            records = mlflow_records(request.headers.get("content-type", ""), raw)
        except InvocationError as exc:
            return JSONResponse(
                {"error_code": "BAD_REQUEST", "message": str(exc)},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        limit = service_of(request).settings.serving.max_applications
        if len(records) > limit:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"at most {limit} rows per request, got {len(records)}",
            )
        # A row is refused on its own, as MLflow's server answers a row the model refuses:
        # values that cannot be stored here, and what the profile's parsers refuse.
        unstorable = {
            index: "; ".join(bad)
            for index, record in enumerate(records)
            if (
                bad := [
                    f"{k}: {problem}"
                    for k, v in record.items()
                    if isinstance(v, str) and (problem := bodies.text_problem(v, text_limit))
                ]
            )
        }
        storable = [r for i, r in enumerate(records) if i not in unstorable]
        _, scored = await score(request, storable, per_row=True) if storable else ("", [])
        answers = iter(scored)
        predictions = []
        for index in range(len(records)):
            if index in unstorable:
                predictions.append(dict.fromkeys(INVOCATION_KEYS) | {"error": unstorable[index]})
                continue
            answer = next(answers)
            predictions.append(
                {k: answer[k] for k in INVOCATION_KEYS if k in answer}
                | {"model_version": answer["model"]["version"]}
            )
        return JSONResponse({"predictions": predictions})

    return router
