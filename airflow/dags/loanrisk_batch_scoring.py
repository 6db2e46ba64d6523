"""Daily batch scoring: every new file in the applications folder, with ``@production``.

Each file is scored once per model version (the scoring run id is the input's content
hash plus the version), so a re-run adds nothing. Rows go to the ``predictions`` table
(source ``batch``) and a Parquet file per run; monitoring reads them.

The engine and the Spark master come from the environment of the worker
(``LOANRISK_SCORE_ENGINE=spark``, ``LOANRISK_SPARK__MASTER``), or from the DAG's
``engine`` and ``master`` params when triggered.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from loanrisk_cli import DAG_DEFAULTS, loanrisk


@dag(
    dag_id="loanrisk_batch_scoring",
    schedule="@daily",
    doc_md=__doc__,
    params={
        "engine": Param("", type="string", enum=["", "pandas", "spark"]),
        "master": Param("", type="string"),
    },
    **DAG_DEFAULTS,
)
def loanrisk_batch_scoring() -> None:
    @task
    def score() -> Any:
        """loanrisk score (the applications folder), on the engine asked for."""
        params = get_current_context()["params"]
        options = [f"--{name}={params[name]}" for name in ("engine", "master") if params[name]]
        return loanrisk("score", *options)

    score()


loanrisk_batch_scoring()
