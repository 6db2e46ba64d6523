"""A small server-rendered page for loan officers: score an application, see recent ones."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from loanrisk.modeling.recourse import recourse
from loanrisk.serving.deps import service_of
from loanrisk.serving.routes import ScoringError, score
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


@router.get("/predictions", response_class=HTMLResponse)
def recent(request: Request) -> Response:
    try:
        check(request, service_of(request).settings, "read", allow_cookie=True)
    except HTTPException:
        return RedirectResponse("/", status_code=303)
    rows = recent_predictions(service_of(request).engine, limit=50)
    items = [dict(r) | {"reasons": json.loads(r["reasons"])} for r in rows]
    return _render(request, "predictions.html", {"rows": items})
