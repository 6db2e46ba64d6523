"""Run ``loanrisk`` commands from Airflow tasks; their ``--json`` output becomes the XCom.

Not a DAG (listed in .airflowignore). The DAGs stay thin: every task is one ``loanrisk``
command of the project's own virtual environment (``LOANRISK_BIN``, default ``loanrisk`` on
PATH), configured by the usual ``LOANRISK_*`` variables (home, warehouse URL, MLflow URI).
Nothing here touches the network, a database or a file when the DAG files are parsed.

Exit codes of ``loanrisk``: 0 done or skipped, 1 bad input or state (retrying will not
help: the task fails at once), 3 promotion refused, 75 infrastructure unreachable
(database, MLflow server: the task is retried).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

RETRYABLE = 75
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "loanrisk",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=2),
}
# What every loanrisk DAG shares: no backfill, one run at a time.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "tags": ["loanrisk"],
}


class InfrastructureError(RuntimeError):
    """The database or MLflow server was unreachable: Airflow retries the task."""


def loanrisk(*args: str, accept: tuple[int, ...] = (0,)) -> Any:
    """Run ``loanrisk ARGS --json`` and return its parsed JSON output."""
    binary = os.environ.get("LOANRISK_BIN", "loanrisk")
    command = [binary, *args, "--json"]
    log.info("running %s", " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise AirflowFailException(
            f"{binary} not found: set LOANRISK_BIN to the loanrisk command of the project venv"
        ) from exc
    for line in done.stderr.splitlines():
        log.info("loanrisk: %s", line)
    if done.returncode == RETRYABLE:
        raise InfrastructureError(f"loanrisk {args[0]}: infrastructure unreachable, will retry")
    if done.returncode not in accept:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise AirflowFailException(f"loanrisk {args[0]} exited {done.returncode}: {tail}")
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    if isinstance(result, dict) and result.get("skipped"):
        log.info("loanrisk %s skipped: %s", args[0], result.get("note", ""))
    return result
