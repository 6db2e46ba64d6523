"""Logging set-up, done once by an entry point (never at import)."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str = "WARNING") -> None:
    """Plain, timestamped log lines on stderr for loanrisk's loggers (MLflow's quieter)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("loanrisk")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # The CLI imports MLflow only when a command needs it, after this has run; MLflow
    # then configured its own loggers at INFO, which undid the levels below (and printed
    # "Creating initial MLflow database tables..." on a new home's first train).
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    for noisy in ("mlflow", "alembic"):
        logger = logging.getLogger(noisy)
        logger.setLevel(max(logging.WARNING, logging.getLevelName(level)))
        logger.handlers[:] = [handler]
        logger.propagate = False
    # Expected and harmless here: extra raw columns are dropped; the pyfunc wrapper is pickled.
    logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
