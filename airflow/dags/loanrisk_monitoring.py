"""Daily monitoring: drift, PSI and realised performance; retraining when recommended.

``loanrisk monitor --if-new`` compares the last 30 days of predictions (API and batch) with
the production model's training sample. When it recommends retraining (drift or
performance thresholds crossed), the ``loanrisk_training`` DAG is triggered with
``{"force": true}`` and the reason.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task
from loanrisk_cli import DAG_DEFAULTS, loanrisk


@dag(
    dag_id="loanrisk_monitoring",
    schedule="@daily",
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def loanrisk_monitoring() -> None:
    @task
    def monitor() -> dict[str, Any]:
        """loanrisk monitor: HTML + JSON report, monitoring_runs row, alerts."""
        result: dict[str, Any] = loanrisk("monitor", "--if-new")
        return result

    @task.short_circuit
    def retrain_recommended(result: dict[str, Any]) -> bool:
        """Go on to trigger training only when monitoring recommends it."""
        return bool(result.get("retrain_recommended"))

    trigger = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id="loanrisk_training",
        conf={"force": True, "reason": "loanrisk_monitoring recommended retraining"},
    )
    retrain_recommended(monitor()) >> trigger


loanrisk_monitoring()
