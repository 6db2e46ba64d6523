"""The ``loanrisk`` command line: one subcommand per stage, ``--json`` for schedulers.

``app`` holds the global options; the commands live in ``data`` (generate, ingest, status,
outcomes, profiles), ``models`` (train, models, promote, rollback), ``runs`` (score,
monitor, pipeline, demo) and ``service`` (serve, apikey, config, version).
"""

from loanrisk.cli import data, models, runs, service
from loanrisk.cli.app import app, run

__all__ = ["app", "data", "models", "run", "runs", "service"]
