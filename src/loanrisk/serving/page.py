"""A small server-rendered page for loan officers: score an application, see recent ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import ValidationError

from loanrisk.modeling.recourse import recourse
from loanrisk.monitoring import charts
from loanrisk.monitoring.store import history, report_path
from loanrisk.serving.bodies import ID_PATTERN, text_problem
from loanrisk.serving.deps import service_of
from loanrisk.serving.routes import ScoringError, score
from loanrisk.serving.routes.records import logged_prediction
from loanrisk.serving.schemas import EXAMPLE, application_fields
from loanrisk.serving.security import UI_COOKIE, check
from loanrisk.warehouse.queries import recent_predictions

router = APIRouter(include_in_schema=False)


def _form_fields(request: Request) -> list[dict[str, Any]]:
    fields = []
    for name, spec in application_fields(service_of(request).profile).items():
        if spec.role.value == "id":
            continue
        fields.append(
            {
                "name": name,
                "label": spec.description or name,
                "required": spec.required,
                "choices": spec.categories or [],
                "example": EXAMPLE.get(name, ""),
            }
        )
    return fields


def _render(
    request: Request, template: str, context: dict[str, Any], code: int = 200
) -> HTMLResponse:
    service = service_of(request)
    model = service.models.current
    base = {
        "model": model.describe() if model else None,
        "problem": service.models.problem,
        "auth": service.settings.serving.auth_enabled,
    }
    return service.templates.TemplateResponse(request, template, base | context, status_code=code)


@router.get("/", response_class=HTMLResponse)
def form(request: Request) -> HTMLResponse:
    return _render(
        request,
        "index.html",
        {"fields": _form_fields(request), "values": EXAMPLE, "result": None, "errors": {}},
    )


@router.post("/", response_class=HTMLResponse)
async def submit(request: Request) -> Response:
    form_data = await request.form()
    key = str(form_data.get("api_key", "")).strip()
    values = {k: str(v).strip() for k, v in form_data.items() if k != "api_key" and str(v).strip()}
    try:
        check(request, service_of(request).settings, "predict", allow_cookie=True, key=key or None)
    except HTTPException as exc:
        return _render(
            request,
            "index.html",
            {
                "fields": _form_fields(request),
                "values": values,
                "result": None,
                "errors": {"api_key": exc.detail},
            },
            code=exc.status_code,
        )
    errors: dict[str, str] = {}
    try:
        application = service_of(request).application_model.model_validate(values)
    except ValidationError as exc:
        errors = {
            str(e["loc"][0]) if e["loc"] else "form": e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        }
    result = None
    if not errors:
        try:
            record = application.model_dump(exclude_none=True)
            _, answers = await score(request, [record])
            result = answers[0]
            if result["decision"] == "decline":
                scorer = service_of(request).current_model().scorer
                result["recourse"] = recourse(scorer, record)
        except ScoringError as exc:
            errors = exc.problems[0]["problems"]
        except RequestValidationError as exc:  # a value the log could not store
            errors = {"form": str(exc.errors()[0]["msg"])}
    response = _render(
        request,
        "index.html",
        {"fields": _form_fields(request), "values": values, "result": result, "errors": errors},
    )  # field errors are shown on the page itself (200), as HTML forms do
    if key:
        response.set_cookie(
            UI_COOKIE, key, httponly=True, samesite="strict", secure=_needs_secure(request)
        )
    return response


def _needs_secure(request: Request) -> bool:
    """Secure cookies everywhere but plain HTTP on this machine (a browser would not send
    a Secure cookie back over http://localhost in every version)."""
    local = request.url.hostname in {"localhost", "127.0.0.1", "::1"}
    return not (request.url.scheme == "http" and local)


def _unread(request: Request) -> Response | None:
    """Back to the form when the request carries no key with the read scope."""
    try:
        check(request, service_of(request).settings, "read", allow_cookie=True)
    except HTTPException:
        return RedirectResponse("/", status_code=303)
    return None


PAGE_ROWS = 50
FILTERS = ("decision", "grade", "source", "model_version", "search")
_ID = re.compile(ID_PATTERN)  # prediction and monitoring run ids


def _query_text(value: str, name: str) -> str:
    """A filter as the database can compare it: PostgreSQL text cannot hold a NUL (a 500)."""
    if (problem := text_problem(value, len(value))) is not None:
        raise HTTPException(400, f"{name}: {problem}")
    return value


@router.get("/predictions", response_class=HTMLResponse)
def recent(request: Request) -> Response:
    """The prediction log, newest first, 50 rows a page; filtered by decision, grade,
    source, model version, or a client or loan id."""
    if (refused := _unread(request)) is not None:
        return refused
    query = request.query_params
    filters = {k: _query_text(query[k][:200], k) for k in FILTERS if query.get(k, "").strip()}
    before = query.get("before") or None
    if before is not None and not _ID.fullmatch(before):
        raise HTTPException(400, "before: not a prediction id")
    rows = recent_predictions(
        service_of(request).engine, limit=PAGE_ROWS + 1, before=before, filters=filters
    )
    items = [dict(r) | {"reasons": json.loads(r["reasons"])} for r in rows[:PAGE_ROWS]]
    more = len(rows) > PAGE_ROWS
    following = urlencode(filters | {"before": items[-1]["prediction_id"]}) if more else None
    return _render(
        request,
        "predictions.html",
        {"rows": items, "filters": filters, "next": following, "paged": before is not None},
    )


@router.get("/predictions/{prediction_id}", response_class=HTMLResponse)
def one_prediction(request: Request, prediction_id: str) -> Response:
    """One logged prediction: what was sent, the model inputs, the answer and its reasons."""
    if (refused := _unread(request)) is not None:
        return refused
    item = (
        logged_prediction(service_of(request), prediction_id)
        if _ID.fullmatch(prediction_id)
        else None
    )
    if item is None:
        raise HTTPException(404, f"no prediction {prediction_id[:64]}")
    return _render(request, "prediction.html", {"row": item})


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_history(request: Request) -> Response:
    """Each monitoring run's score PSI, drifted share and realised AUC over time."""
    if (refused := _unread(request)) is not None:
        return refused
    runs = history(service_of(request).engine)
    labels = [f"{r['window_end']:%Y-%m-%d %H:%M}" for r in runs]
    figures = [
        charts.lines(labels, {"score PSI": [r["score_psi"] for r in runs]}, title="Score PSI"),
        charts.lines(
            labels,
            {"drifted share": [r["drifted_share"] for r in runs]},
            title="Share of inputs drifted",
        ),
        charts.lines(
            labels, {"realised AUC": [r["realised_auc"] for r in runs]}, title="Realised AUC"
        ),
    ]
    return _render(
        request,
        "monitoring.html",
        {"runs": runs[::-1], "charts": [Markup(f) for f in figures] if runs else []},
    )


@router.get("/monitoring/{run_id}/report", response_class=HTMLResponse)
def monitoring_report(request: Request, run_id: str) -> Response:
    """One run's HTML report, when this process can read where it was written."""
    if (refused := _unread(request)) is not None:
        return refused
    path = report_path(service_of(request).engine, run_id) if _ID.fullmatch(run_id) else None
    if path is None or not Path(path).is_file():
        raise HTTPException(404, "no report of that monitoring run is readable here")
    return HTMLResponse(Path(path).read_text(encoding="utf-8"))
