"""The FastAPI application factory. Nothing is loaded at import; the lifespan does it."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from loanrisk import __version__
from loanrisk.config import Settings
from loanrisk.serving import page, routes
from loanrisk.serving.metrics import ServiceMetrics
from loanrisk.serving.model import ModelHolder
from loanrisk.serving.predlog import PredictionLog
from loanrisk.serving.schemas import application_model
from loanrisk.warehouse.engine import open_warehouse

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(settings: Settings) -> FastAPI:
    """The service for ``settings``: model holder, prediction log and routes."""
    warehouse = open_warehouse(settings)
    profile = warehouse.profile
    application = application_model(profile)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.prediction_log.start()
        app.state.models.start()
        # Everything loaded so far (libraries, the model) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stall requests.
        gc.collect()
        gc.freeze()
        refresher = (
            asyncio.create_task(_refresh_gauges(app)) if app.state.metrics.multiprocess else None
        )
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            app.state.models.stop()
            app.state.prediction_log.stop()
            warehouse.engine.dispose()

    app = FastAPI(
        title="loanrisk scoring service",
        version=__version__,
        description=(
            "Probability of default, decision, risk grade and reasons for loan applications, "
            "from the model the registry marks "
            f"`@{settings.serving.alias}`. Send API keys as `Authorization: Bearer <key>` or "
            "`X-API-Key: <key>`. Fields not in the application schema are refused (422)."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.profile = profile
    app.state.engine = warehouse.engine
    app.state.application_model = application
    app.state.models = ModelHolder(settings)
    app.state.metrics = ServiceMetrics()
    app.state.ids = random.Random(random.SystemRandom().getrandbits(128))  # per process
    app.state.prediction_log = PredictionLog(
        warehouse.engine,
        settings.spool_dir,
        batch_rows=settings.serving.log_batch_rows,
        flush_seconds=settings.serving.log_flush_seconds,
        retry_seconds=settings.serving.log_retry_seconds,
    )
    app.state.templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    app.include_router(routes.build_router(application, profile))
    app.include_router(page.router)
    _document_application(app, application)
    app.add_middleware(_Observe)
    app.add_middleware(_BodyLimit, limit=settings.serving.max_body_bytes)
    return app


async def _refresh_gauges(app: FastAPI) -> None:
    """With several workers, keep this worker's gauges fresh for whichever one is scraped."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(routes.refresh_gauges, app.state)
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
            schema.setdefault("components", {}).setdefault("schemas", {})["Application"] = (
                application.model_json_schema(ref_template="#/components/schemas/{model}")
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

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics: ServiceMetrics = scope["app"].state.metrics
            metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            metrics.latency.labels(path).observe(time.perf_counter() - started)


class _BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length is sent."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = {"bytes": 0}

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, receiving, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body over the {limit:,}-byte limit"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
