"""Daily batch scoring: every new file in the applications folder, with ``@production``.

Each file is scored once per model version (the scoring run id is the input's content
hash plus the version), so a re-run adds nothing. Rows go to the ``predictions`` table
(source ``batch``) and a Parquet file per run; monitoring reads them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from loanrisk_cli import DAG_DEFAULTS, loanrisk


@dag(
    dag_id="loanrisk_batch_scoring",
    schedule="@daily",
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def loanrisk_batch_scoring() -> None:
    @task
    def score() -> Any:
        """loanrisk score (the applications folder)."""
        return loanrisk("score")

    score()


loanrisk_batch_scoring()
