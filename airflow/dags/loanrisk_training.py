"""Weekly training: ingest new loan files from the landing folder, then train.

Training is skipped (and says why) when gold holds exactly the rows the newest registered
version was trained on, unless the run's conf says ``{"force": true}``, as the monitoring
DAG does when it recommends retraining. The winner is registered at ``@staging``;
promotion is the separate, manually triggered ``loanrisk_promotion`` DAG.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from loanrisk_cli import DAG_DEFAULTS, loanrisk


@dag(
    dag_id="loanrisk_training",
    schedule="@weekly",
    params={
        "force": Param(False, type="boolean", description="Train even if gold is unchanged."),
        "reason": Param("", type="string", description="Why this run was started."),
    },
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def loanrisk_training() -> None:
    @task
    def ingest() -> dict[str, Any]:
        """loanrisk ingest (the landing folder): new files only, by content hash."""
        result: dict[str, Any] = loanrisk("ingest")
        return result

    @task
    def train(ingested: dict[str, Any]) -> dict[str, Any]:
        """loanrisk train: LR, XGBoost, LightGBM out of time; the winner goes to @staging."""
        params = get_current_context()["params"]
        args = ["train"] if params["force"] else ["train", "--if-new-data"]
        result: dict[str, Any] = loanrisk(*args)
        return result

    train(ingest())


loanrisk_training()
