"""A monitoring run: the production model's reference sample (kept with the model) against
the predictions of a window (API and batch): drift, PSI, realised performance, alerts.

The figures come from pure functions (``drift``, ``performance``, ``alerts``); this module
does the run's I/O: it reads the window (``store``), writes an HTML report and a JSON
summary under <home>/reports and a ``monitoring_runs`` row, and sends the alerts (a log
line, an optional Slack-compatible webhook).
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from loanrisk.batch import ProductionModel
from loanrisk.config import Settings
from loanrisk.errors import LoanriskError, NothingToDo
from loanrisk.monitoring import store
from loanrisk.monitoring.alerts import Kind, judge
from loanrisk.monitoring.drift import compare
from loanrisk.monitoring.performance import realised
from loanrisk.monitoring.psi import band
from loanrisk.monitoring.report import write_report
from loanrisk.registry import Registry
from loanrisk.warehouse.engine import Warehouse

log = logging.getLogger(__name__)


@dataclass
class MonitorResult:
    """The figures of one monitoring run (printed by --json)."""

    monitoring_run_id: str
    model_version: str
    window_start: str
    window_end: str
    rows_current: int
    rows_reference: int
    drifted_features: list[str]
    drifted_share: float
    score_psi: float
    score_psi_band: str
    drift: dict[str, dict[str, Any]]
    psi: dict[str, dict[str, Any]]
    performance: dict[str, Any] | None
    alerts: list[str] = field(default_factory=list)
    drift_alert: bool = False
    performance_alert: bool = False
    retrain_recommended: bool = False
    report_html: str = ""
    summary_json: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitor(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    *,
    days: float | None = None,
    until: datetime | None = None,
    if_new: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Compare the last ``days`` of predictions with the production model's reference.

    With ``if_new``, raise NothingToDo when no model is in production or nothing arrived
    since the last run (see ``store.pending``).
    """
    if if_new:
        why_not = store.pending(settings, warehouse.engine, models, days=days)
        if why_not:
            raise NothingToDo(why_not)
    return _monitor(
        settings, warehouse.engine, models, days=days, until=until, say=progress or _quiet
    )


def _monitor(
    settings: Settings,
    engine: sa.Engine,
    models: Registry,
    *,
    days: float | None,
    until: datetime | None,
    say: Callable[[str], None],
) -> MonitorResult:
    options = settings.monitoring
    end = until or datetime.now(UTC)
    start = end - timedelta(days=days if days is not None else options.window_days)
    model = ProductionModel(models)
    version, bundle = model.version, model.bundle
    if bundle.reference is None:
        raise LoanriskError(f"model version {version} has no reference sample; retrain it")
    say(f"reading the predictions of {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}")
    current, scores = store.window_predictions(engine, start, end, options.max_rows)
    if current.empty:
        raise LoanriskError(
            f"no predictions between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M}: score applications first"
        )
    performance = realised(store.outcome_pairs(engine, start, end), options.min_outcomes)
    say(f"comparing {len(current):,} applications with the training reference (Evidently, PSI)")
    drift = compare(
        bundle.reference, current, scores, bundle.spec, drift_share=options.drift_share_alert
    )
    alerts = judge(
        drifted=drift.drifted,
        drifted_share=drift.drifted_share,
        inputs=len(bundle.spec.columns),
        score_psi=drift.score_psi,
        score_psi_band=band(drift.score_psi),
        performance=performance,
        options=options,
    )
    run_id = uuid.uuid4().hex
    folder = settings.home / "reports" / f"{end:%Y%m%dT%H%M%S}-{run_id[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    say("writing the report")
    evidently = drift.snapshot.get_html_str(as_iframe=False)
    (folder / "evidently.html").write_text(evidently, encoding="utf-8")
    html = folder / "report.html"
    drift_alert = any(a.kind is Kind.DRIFT for a in alerts)
    performance_alert = any(a.kind is Kind.PERFORMANCE for a in alerts)
    result = MonitorResult(
        monitoring_run_id=run_id,
        model_version=version,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        rows_current=len(current),
        rows_reference=len(bundle.reference),
        drifted_features=drift.drifted,
        drifted_share=drift.drifted_share,
        score_psi=drift.score_psi,
        score_psi_band=band(drift.score_psi),
        drift=drift.tests,
        psi=drift.stability,
        performance=performance,
        alerts=[str(a) for a in alerts],
        drift_alert=drift_alert,
        performance_alert=performance_alert,
        retrain_recommended=drift_alert or performance_alert,
        report_html=str(html.resolve()),
        summary_json=str((folder / "summary.json").resolve()),
    )
    Path(result.summary_json).write_text(json.dumps(result.as_dict(), indent=2, default=str))
    write_report(
        html,
        result.as_dict(),
        drift,
        model_name=settings.mlflow.model_name,
        reference_pd=bundle.reference["pd"].to_numpy(dtype=float),
        current_pd=np.asarray(scores, dtype=float),
        grade_edges=bundle.grade_edges,
        evidently_html=evidently,
    )
    store.save_run(
        engine,
        {
            "monitoring_run_id": run_id,
            "model_name": settings.mlflow.model_name,
            "model_version": version,
            "window_start": start,
            "window_end": end,
            "rows_current": result.rows_current,
            "rows_reference": result.rows_reference,
            "drifted_share": result.drifted_share,
            "score_psi": result.score_psi,
            "realised_auc": (performance or {}).get("auc"),
            "outcomes": (performance or {}).get("outcomes", 0),
            "retrain_recommended": result.retrain_recommended,
            "summary": json.dumps(result.as_dict(), default=str),
            "report": result.report_html,
            "created_at": datetime.now(UTC),
        },
    )
    _alert(result, settings)
    return result


def _quiet(_message: str) -> None:
    return None


def _alert(result: MonitorResult, settings: Settings) -> None:
    if not result.alerts:
        return
    text = (
        f"loanrisk monitoring: model v{result.model_version}: "
        + "; ".join(result.alerts)
        + f". Report: {result.report_html}"
    )
    log.warning("%s", text)
    url = settings.monitoring.webhook_url
    if url is None or not url.get_secret_value():
        return
    body = json.dumps(
        {
            "text": text,
            "retrain_recommended": result.retrain_recommended,
            "summary": {"drifted_features": result.drifted_features, "score_psi": result.score_psi},
        }
    ).encode()
    request = urllib.request.Request(
        url.get_secret_value(), data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as exc:
        log.error("monitoring webhook failed: %s", exc)
