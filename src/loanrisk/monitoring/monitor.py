"""Monitoring run: reference (training sample kept with the production model) vs current
(predictions in a window, API and batch): Evidently drift, PSI, realised performance.

Writes an HTML report and a JSON summary under <home>/reports, a monitoring_runs row,
and sends alerts (log line, optional Slack-compatible webhook).
"""

from __future__ import annotations

import io
import json
import logging
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.metrics import roc_auc_score

from loanrisk.batch import ProductionModel
from loanrisk.config import Settings
from loanrisk.errors import LoanriskError, NothingToDo
from loanrisk.modeling.evaluate import GRADES, ks_statistic
from loanrisk.monitoring.psi import band, psi
from loanrisk.monitoring.schedule import pending, utc
from loanrisk.registry import Registry
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.schema import monitoring_runs, outcomes, predictions

log = logging.getLogger(__name__)
SCORE = "pd"


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
) -> MonitorResult:
    """Compare the last ``days`` of predictions with the production model's reference.

    With ``if_new``, raise NothingToDo when no model is in production or nothing arrived
    since the last run (see ``pending``).
    """
    if if_new:
        why_not = pending(settings, warehouse.engine, models, days=days)
        if why_not:
            raise NothingToDo(why_not)
    return _monitor(settings, warehouse.engine, models, days=days, until=until)


def _monitor(
    settings: Settings,
    engine: sa.Engine,
    models: Registry,
    *,
    days: float | None,
    until: datetime | None,
) -> MonitorResult:
    options = settings.monitoring
    end = until or datetime.now(UTC)
    start = end - timedelta(days=days if days is not None else options.window_days)
    model = ProductionModel(models)
    version, bundle = model.version, model.bundle
    if bundle.reference is None:
        raise LoanriskError(f"model version {version} has no reference sample; retrain it")
    current, scored = _current(engine, start, end, options.max_rows)
    performance = _performance(engine, start, end, options.min_outcomes)
    if current.empty:
        raise LoanriskError(
            f"no predictions between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M}: score applications first"
        )
    spec = bundle.spec
    reference = bundle.reference.copy()
    columns = [*spec.numeric, *spec.categorical, SCORE]
    current = current.reindex(columns=columns)
    current[SCORE] = scored
    for name in spec.categorical:
        reference[name] = _labels(reference[name])
        current[name] = _labels(current[name])
    for name in [*spec.numeric, SCORE]:
        current[name] = pd.to_numeric(current[name], errors="coerce")

    drift, snapshot = _evidently(
        reference[columns], current[columns], [*spec.numeric, SCORE], spec.categorical
    )
    stability: dict[str, dict[str, Any]] = {
        c: {"value": round(psi(reference[c], current[c]), 6)} for c in columns
    }
    for values in stability.values():
        values["band"] = band(values["value"])
    inputs = [*spec.numeric, *spec.categorical]
    drifted = [c for c in inputs if drift.get(c, {}).get("drifted")]
    share = len(drifted) / max(len(inputs), 1)
    score_psi = stability[SCORE]["value"]

    run_id = uuid.uuid4().hex
    folder = settings.home / "reports" / f"{end:%Y%m%dT%H%M%S}-{run_id[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / "drift_report.html"
    snapshot.save_html(str(html))
    result = MonitorResult(
        monitoring_run_id=run_id,
        model_version=version,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        rows_current=len(current),
        rows_reference=len(reference),
        drifted_features=drifted,
        drifted_share=round(share, 4),
        score_psi=score_psi,
        score_psi_band=band(score_psi),
        drift=drift,
        psi=stability,
        performance=performance,
        report_html=str(html.resolve()),
        summary_json=str((folder / "summary.json").resolve()),
    )
    _judge(result, settings)
    Path(result.summary_json).write_text(json.dumps(result.as_dict(), indent=2, default=str))
    with engine.begin() as conn:
        conn.execute(
            sa.insert(monitoring_runs).values(
                monitoring_run_id=run_id,
                model_name=settings.mlflow.model_name,
                model_version=version,
                window_start=start,
                window_end=end,
                rows_current=result.rows_current,
                rows_reference=result.rows_reference,
                drifted_share=result.drifted_share,
                score_psi=score_psi,
                realised_auc=(performance or {}).get("auc"),
                outcomes=(performance or {}).get("outcomes", 0),
                retrain_recommended=result.retrain_recommended,
                summary=json.dumps(result.as_dict(), default=str),
                report=result.report_html,
                created_at=datetime.now(UTC),
            )
        )
    _alert(result, settings)
    return result


def _labels(values: pd.Series) -> pd.Series:
    """Category levels as plain strings, missing as None (the same on both sides)."""
    return pd.Series(
        [None if pd.isna(v) else str(v) for v in values], index=values.index, dtype=object
    )


def _current(
    engine: sa.Engine, start: datetime, end: datetime, max_rows: int
) -> tuple[pd.DataFrame, np.ndarray]:
    query = (
        sa.select(predictions.c.features, predictions.c.pd)
        .where(predictions.c.created_at >= start, predictions.c.created_at <= end)
        .order_by(predictions.c.created_at.desc())
        .limit(max_rows)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return pd.DataFrame(), np.array([])
    features = pd.read_json(
        io.StringIO("\n".join(r.features or "{}" for r in rows)), lines=True, dtype=False
    )
    return features, np.array([r.pd for r in rows], dtype=float)


def _evidently(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> tuple[dict[str, dict[str, Any]], Any]:
    # Evidently takes ~2 s to import: only monitoring runs pay for it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    drift: dict[str, dict[str, Any]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = (
            config.get("method", ""),
            config.get("threshold"),
            metric["value"],
        )
        is_p_value = "p_value" in method.lower()
        drifted = value < threshold if is_p_value else value >= threshold
        drift[config["column"]] = {
            "method": method,
            "value": round(float(value), 6),
            "threshold": threshold,
            "drifted": bool(drifted),
        }
    return drift, snapshot


def _performance(
    engine: sa.Engine, start: datetime, end: datetime, minimum: int
) -> dict[str, Any] | None:
    """Realised AUC, Gini, KS and default rate by grade, when enough outcomes are known."""
    p, o = predictions, outcomes
    in_window = sa.and_(p.c.created_at >= start, p.c.created_at <= end)
    joins = [
        p.c.prediction_id == o.c.prediction_id,
        sa.and_(o.c.loan_id.is_not(None), p.c.loan_id == o.c.loan_id),
        sa.and_(o.c.client_id.is_not(None), p.c.client_id == o.c.client_id),
    ]
    pairs: dict[str, tuple[float, str, int]] = {}
    with engine.connect() as conn:
        for condition in joins:
            query = (
                sa.select(p.c.prediction_id, p.c.pd, p.c.grade, o.c.defaulted)
                .join(o, condition)
                .where(in_window)
                .order_by(o.c.outcome_id)
            )
            for row in conn.execute(query):
                pairs[row.prediction_id] = (row.pd, row.grade, row.defaulted)
    if len(pairs) < minimum:
        return (
            None
            if not pairs
            else {"outcomes": len(pairs), "auc": None, "note": f"fewer than {minimum} outcomes"}
        )
    frame = pd.DataFrame(pairs.values(), columns=["pd", "grade", "defaulted"])
    y, scores = frame["defaulted"].to_numpy(int), frame["pd"].to_numpy(float)
    if len(set(y)) < 2:
        return {"outcomes": len(frame), "auc": None, "note": "outcomes of one class only"}
    auc = float(roc_auc_score(y, scores))
    by_grade = frame.groupby("grade").agg(
        rows=("pd", "size"), predicted=("pd", "mean"), observed=("defaulted", "mean")
    )
    return {
        "outcomes": len(frame),
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(scores, y),
        "predicted_default_rate": float(scores.mean()),
        "observed_default_rate": float(y.mean()),
        "by_grade": {
            g: {k: float(v) for k, v in by_grade.loc[g].items()}
            for g in GRADES
            if g in by_grade.index
        },
    }


def _judge(result: MonitorResult, settings: Settings) -> None:
    options = settings.monitoring
    if result.drifted_share >= options.drift_share_alert:
        result.alerts.append(
            f"drift: {len(result.drifted_features)} of {len(result.psi) - 1} model inputs "
            f"drifted ({', '.join(result.drifted_features)})"
        )
    if result.score_psi > options.score_psi_alert:
        result.alerts.append(
            f"drift: PD score PSI {result.score_psi:.3f} ({result.score_psi_band})"
        )
    performance = result.performance or {}
    if performance.get("auc") is not None:
        if performance["auc"] < options.min_auc:
            result.alerts.append(
                f"performance: realised AUC {performance['auc']:.3f} below {options.min_auc}"
            )
        gap = abs(performance["observed_default_rate"] - performance["predicted_default_rate"])
        if gap > options.max_default_rate_gap:
            result.alerts.append(
                f"performance: observed default rate "
                f"{performance['observed_default_rate']:.3f} vs predicted "
                f"{performance['predicted_default_rate']:.3f}"
            )
    result.drift_alert = any(a.startswith("drift") for a in result.alerts)
    result.performance_alert = any(a.startswith("performance") for a in result.alerts)
    result.retrain_recommended = result.drift_alert or result.performance_alert


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


def latest(engine: sa.Engine) -> dict[str, Any] | None:
    """The newest monitoring run's headline figures (for /metrics), times in UTC."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                monitoring_runs.c.drifted_share,
                monitoring_runs.c.score_psi,
                monitoring_runs.c.realised_auc,
                monitoring_runs.c.created_at,
            )
            .order_by(monitoring_runs.c.created_at.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    figures = dict(row._mapping)
    figures["created_at"] = utc(figures["created_at"])
    return figures


def latest_summary(engine: sa.Engine) -> dict[str, Any] | None:
    """The newest monitoring run's full JSON summary (what ``monitor --json`` printed)."""
    with engine.connect() as conn:
        summary = conn.execute(
            sa.select(monitoring_runs.c.summary)
            .order_by(monitoring_runs.c.created_at.desc())
            .limit(1)
        ).scalar()
    return None if summary is None else dict(json.loads(summary))
