"""Entry point for uvicorn workers: settings come from the environment (set by the CLI)."""

from __future__ import annotations

from loanrisk.config import get_settings
from loanrisk.logs import configure_logging
from loanrisk.serving.app import create_app
from loanrisk.serving.fastlane import FastLane


def app_factory() -> FastLane:
    """The service: the FastAPI app behind the fast lane for plainly valid predictions."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return FastLane(create_app(settings))
