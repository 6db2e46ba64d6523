"""Entry point for uvicorn workers: settings come from the environment (set by the CLI)."""

from __future__ import annotations

from fastapi import FastAPI

from loanrisk.config import get_settings
from loanrisk.logs import configure_logging
from loanrisk.serving.app import create_app


def app_factory() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
