"""Logging set-up, done once by an entry point (never at import)."""

from __future__ import annotations

import logging


def configure_logging(level: str = "WARNING") -> None:
    """Plain, timestamped log lines on stderr for loanrisk's loggers."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("loanrisk")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
