"""A small server-rendered page for loan officers: score an application, see recent ones."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from loanrisk.serving.routes import ScoringError, score
from loanrisk.serving.schemas import EXAMPLE, application_fields
from loanrisk.serving.security import UI_COOKIE, check
from loanrisk.warehouse.schema import predictions

router = APIRouter(include_in_schema=False)


def _form_fields(request: Request) -> list[dict[str, Any]]:
    fields = []
    for name, spec in application_fields(request.app.state.profile).items():
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
    model = request.app.state.models.current
    base = {
        "model": model.describe() if model else None,
        "problem": request.app.state.models.problem,
        "auth": request.app.state.settings.serving.auth_enabled,
    }
    return request.app.state.templates.TemplateResponse(
        request, template, base | context, status_code=code
    )


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
        check(request, request.app.state.settings, "predict", allow_cookie=True, key=key or None)
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
        application = request.app.state.application_model.model_validate(values)
    except ValidationError as exc:
        errors = {
            str(e["loc"][0]) if e["loc"] else "form": e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        }
    result = None
    if not errors:
        try:
            _, answers = await score(request, [application.model_dump(exclude_none=True)])
            result = answers[0]
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


@router.get("/predictions", response_class=HTMLResponse)
def recent(request: Request) -> Response:
    try:
        check(request, request.app.state.settings, "read", allow_cookie=True)
    except HTTPException:
        return RedirectResponse("/", status_code=303)
    with request.app.state.engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(
                    predictions.c.prediction_id,
                    predictions.c.created_at,
                    predictions.c.client_id,
                    predictions.c.pd,
                    predictions.c.decision,
                    predictions.c.grade,
                    predictions.c.reasons,
                    predictions.c.model_version,
                    predictions.c.source,
                )
                .order_by(predictions.c.created_at.desc())
                .limit(50)
            )
            .mappings()
            .all()
        )
    items = [dict(r) | {"reasons": json.loads(r["reasons"])} for r in rows]
    return _render(request, "predictions.html", {"rows": items})
