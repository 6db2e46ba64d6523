"""The FastAPI application factory. Nothing is loaded at import; the lifespan does it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from loanrisk import __version__
from loanrisk.config import Settings
from loanrisk.errors import LoanriskError, NotFoundError, RefusedInput, UnreachableError
from loanrisk.registry import Registry
from loanrisk.serving import page, routes
from loanrisk.serving.deps import Service
from loanrisk.serving.metrics import ServiceMetrics
from loanrisk.serving.model import ModelHolder, pd_meaning
from loanrisk.serving.predlog import LogUnavailable, PredictionLog, log_folder
from loanrisk.serving.schemas import OutcomeIn, application_model
from loanrisk.warehouse.engine import Warehouse

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(
    settings: Settings, *, on_ready: Callable[[Service, float], None] | None = None
) -> FastAPI:
    """The service for ``settings``: model holder, prediction log and routes (the warehouse
    and the registry are opened once here, for the life of the process). ``on_ready`` is
    told, once at start-up, the service and how long the model took to load."""
    warehouse = Warehouse.open(settings)
    profile = warehouse.profile
    serving = settings.serving
    application = application_model(profile, serving.max_text_chars)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service: Service = app.state.service
        service.prediction_log.start()
        started = time.perf_counter()
        service.models.start()
        if on_ready is not None:
            on_ready(service, time.perf_counter() - started)
        # Everything loaded so far (libraries, the model) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stall requests.
        gc.collect()
        gc.freeze()
        refresher = (
            asyncio.create_task(_refresh_gauges(service)) if service.metrics.multiprocess else None
        )
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            service.models.stop()
            service.prediction_log.stop()
            warehouse.close()

    app = FastAPI(
        title="loanrisk scoring service",
        version=__version__,
        description=(
            "Probability of default, decision, risk grade and reasons for loan applications, "
            f"from the model the registry marks `@{settings.serving.alias}`. The PD is the "
            f"{pd_meaning(profile)}. Send API keys as `Authorization: Bearer <key>` or "
            "`X-API-Key: <key>`. Fields not in the application schema are refused (422). "
            "Every answered prediction is on disk (fsynced) before the answer is sent."
        ),
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    metrics = ServiceMetrics()
    app.state.service = Service(
        settings=settings,
        profile=profile,
        engine=warehouse.engine,
        application_model=application,
        models=ModelHolder(settings, Registry(settings)),
        metrics=metrics,
        prediction_log=PredictionLog(
            warehouse.engine,
            log_folder(settings.spool_dir, settings.warehouse_url),
            batch_rows=serving.log_batch_rows,
            flush_seconds=serving.log_flush_seconds,
            retry_seconds=serving.log_retry_seconds,
            recent_bytes=serving.recent_cache_bytes,
            commit_delay=serving.log_commit_delay_seconds,
            on_fsync=metrics.fsync_duration.observe,
        ),
        templates=Jinja2Templates(directory=str(Path(__file__).parent / "templates")),
    )
    app.include_router(routes.build_router(application, profile, text_limit=serving.max_text_chars))
    app.include_router(page.router)
    _add_docs(app)
    _add_error_handlers(app)
    _document_application(app, application)
    app.add_middleware(
        _BodyLimit, limit=serving.max_body_bytes, timeout=serving.body_timeout_seconds
    )
    app.add_middleware(_Observe)  # outermost: it counts and heads every answer
    return app


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: a lone surrogate echoed in an error cannot break it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _add_error_handlers(app: FastAPI) -> None:
    """FastAPI's handlers, answering with ``AsciiJSONResponse``."""

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{**e, "input": None} if "input" in e else e for e in exc.errors()]
        return AsciiJSONResponse({"detail": errors}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return AsciiJSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LoanriskError)
        return AsciiJSONResponse({"detail": str(exc)}, status_code=error_status(exc))

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(LoanriskError, refused)


# How a LoanriskError that reaches a route is answered (the first class that matches).
ERROR_STATUS: tuple[tuple[type[LoanriskError], int], ...] = (
    (NotFoundError, 404),
    (RefusedInput, 422),
    (UnreachableError, 503),  # the database or the MLflow server did not answer
    (LogUnavailable, 503),  # the prediction log cannot record: answer nothing
)


def error_status(exc: LoanriskError) -> int:
    """The HTTP status for ``exc`` (400 for a refusal with no more specific class)."""
    return next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 400)


DOCS_ASSETS = "/docs-assets"


def _add_docs(app: FastAPI) -> None:
    """/docs and /redoc from assets served here (no CDN: they work offline and behind a
    bank's proxy)."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


async def _refresh_gauges(service: Service) -> None:
    """With several workers, keep this worker's gauges fresh for whichever one is scraped."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(routes.refresh_gauges, service)
        except Exception:  # a failed refresh must not stop the worker; the next one retries
            log.exception("refreshing metrics failed")


def _document_application(app: FastAPI, application: type[Any]) -> None:
    """Put the profile-built Application schema into the OpenAPI components.

    /v1/predict parses its body itself (hot path), so FastAPI would not list it.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (application, OutcomeIn):
                components[model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _Observe:
    """Request counts and latency by route template, as pure ASGI (cheap)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        path = scope["path"]
        headers = (
            _DOCS_HEADERS
            if path in _DOCS_PATHS
            else _REPORT_HEADERS
            if path.startswith("/monitoring/") and path.endswith("/report")
            else SECURITY_HEADERS
        )
        if scope.get("scheme") == "https":
            headers = [*headers, _HSTS]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            status["code"] = CLIENT_CLOSED  # the client left; nothing is wrong here
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics: ServiceMetrics = scope["app"].state.service.metrics
            metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            metrics.latency.labels(path).observe(time.perf_counter() - started)


CLIENT_CLOSED = 499  # nginx's code for "client closed the request"
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
SECURITY_HEADERS = [
    *_COMMON,
    (b"content-security-policy", _CSP.encode()),
    (b"cache-control", b"no-store"),
]
_DOCS_HEADERS = [*_COMMON, (b"content-security-policy", _DOCS_CSP.encode())]
# A monitoring report embeds Evidently's page, which runs its own inline scripts (written
# by 'loanrisk monitor', not by a client); it still loads nothing from anywhere.
_REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_REPORT_HEADERS = [
    *_COMMON,
    (b"content-security-policy", _REPORT_CSP.encode()),
    (b"cache-control", b"no-store"),
]
_DOCS_PATHS = frozenset({"/docs", "/redoc"})
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class _BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length is sent; 408 when the
    rest of a body does not arrive within ``timeout`` seconds."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refuse(send, 413, f"request body over the {self.limit:,}-byte limit")
            return
        seen = {"bytes": 0}

        async def receiving() -> Message:
            try:
                async with asyncio.timeout(self.timeout):  # no task per receive
                    message = await receive()
            except TimeoutError:
                raise _SlowBody from None
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, receiving, send)
        except _TooLarge:
            await _refuse(send, 413, f"request body over the {self.limit:,}-byte limit")
        except _SlowBody:
            await _refuse(send, 408, f"request body not received within {self.timeout:g} s")


class _TooLarge(Exception):
    pass


class _SlowBody(Exception):
    pass


async def _refuse(send: Send, code: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
