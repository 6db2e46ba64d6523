"""Promotion, triggered by hand: move ``@production`` to a challenger through the gates.

Trigger with conf, e.g. ``{"version": "7"}`` (default: the ``@staging`` version) or
``{"force": true, "reason": "approved by the model risk committee"}`` to override
the gates. A refusal fails the run with the gates' reason; it is not retried.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from loanrisk_cli import DAG_DEFAULTS, loanrisk

REFUSED = 3


@dag(
    dag_id="loanrisk_promotion",
    schedule=None,
    params={
        "version": Param("", type="string", description="Challenger version (default @staging)."),
        "force": Param(False, type="boolean", description="Promote even if a gate fails."),
        "reason": Param("", type="string", description="Why; recorded on the version."),
    },
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def loanrisk_promotion() -> None:
    @task
    def promote() -> dict[str, Any]:
        """loanrisk promote: challenger vs champion on the same recent window."""
        params = get_current_context()["params"]
        args = ["promote"]
        if params["version"]:
            args += ["--version", params["version"]]
        if params["force"]:
            args.append("--force")
        if params["reason"]:
            args += ["--reason", params["reason"]]
        result: dict[str, Any] = loanrisk(*args, accept=(0, REFUSED))
        if not result.get("promoted"):
            raise AirflowFailException(
                f"version {result.get('challenger')} not promoted: {result.get('reason')}"
            )
        return result

    promote()


loanrisk_promotion()
