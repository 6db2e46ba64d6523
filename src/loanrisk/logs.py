"""Logging set-up, done once by an entry point (never at import)."""

from __future__ import annotations

import logging


def configure_logging(level: str = "WARNING") -> None:
    """Plain, timestamped log lines on stderr for loanrisk's loggers (MLflow's quieter)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("loanrisk")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Expected and harmless here: extra raw columns are dropped; the pyfunc wrapper is pickled.
    logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
