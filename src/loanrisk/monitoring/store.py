"""What monitoring reads from and writes to the warehouse (light: no model, no drift
library, so the pipeline and the service can ask it questions cheaply)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.constants import Alias
from loanrisk.warehouse.schema import monitoring_runs, outcomes, predictions

if TYPE_CHECKING:  # MLflow is imported by the commands that open the registry
    from loanrisk.registry import Registry


def pending(
    settings: Settings, engine: sa.Engine, models: Registry, *, days: float | None = None
) -> str | None:
    """Why a monitoring run now would add nothing (None when it would).

    Nothing to add: no production model, no prediction in the window, or no prediction and
    no outcome arrived since the last run for the same production version.
    """
    end = datetime.now(UTC)
    start = end - timedelta(days=days if days is not None else settings.monitoring.window_days)
    version = models.by_alias(Alias.PRODUCTION)
    if version is None:
        return f"no model is @{Alias.PRODUCTION} yet"
    with engine.connect() as conn:
        newest = conn.execute(
            sa.select(sa.func.max(predictions.c.created_at)).where(
                predictions.c.created_at >= start
            )
        ).scalar()
        if newest is None:
            return f"no predictions since {start:%Y-%m-%d %H:%M} UTC: score applications first"
        last_run = conn.execute(
            sa.select(sa.func.max(monitoring_runs.c.created_at)).where(
                monitoring_runs.c.model_version == version.version
            )
        ).scalar()
        if last_run is None:
            return None
        newest_outcome = conn.execute(sa.select(sa.func.max(outcomes.c.recorded_at))).scalar()
    changed = [utc(newest)] + ([utc(newest_outcome)] if newest_outcome else [])
    if max(changed) <= utc(last_run):
        return (
            f"no new prediction or outcome since the last monitoring run of version "
            f"{version.version} ({utc(last_run):%Y-%m-%d %H:%M} UTC)"
        )
    return None


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the warehouse stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window_predictions(
    engine: sa.Engine, start: datetime, end: datetime, max_rows: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The model inputs and PDs of the (newest ``max_rows``) predictions in the window."""
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


def outcome_pairs(engine: sa.Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """One row per prediction in the window with a known outcome (pd, grade, defaulted),
    matched by prediction id, loan id or client id; the latest outcome wins."""
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
    return pd.DataFrame(list(pairs.values()), columns=["pd", "grade", "defaulted"])


def save_run(engine: sa.Engine, row: dict[str, Any]) -> None:
    """Append one ``monitoring_runs`` row."""
    with engine.begin() as conn:
        conn.execute(sa.insert(monitoring_runs).values(**row))


def latest(engine: sa.Engine) -> dict[str, Any] | None:
    """The newest monitoring run's headline figures (for /metrics), times in UTC."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(
                    monitoring_runs.c.drifted_share,
                    monitoring_runs.c.score_psi,
                    monitoring_runs.c.realised_auc,
                    monitoring_runs.c.created_at,
                )
                .order_by(monitoring_runs.c.created_at.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    figures = dict(row)
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


def history(engine: sa.Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The last ``limit`` monitoring runs, oldest first: their headline figures over time."""
    r = monitoring_runs.c
    query = (
        sa.select(
            r.monitoring_run_id,
            r.model_name,
            r.model_version,
            r.window_start,
            r.window_end,
            r.rows_current,
            r.drifted_share,
            r.score_psi,
            r.realised_auc,
            r.outcomes,
            r.retrain_recommended,
            r.created_at,
        )
        .order_by(r.created_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings().all()]
    return rows[::-1]


def report_path(engine: sa.Engine, run_id: str) -> str | None:
    """Where the HTML report of one monitoring run was written, if the run exists."""
    with engine.connect() as conn:
        found: str | None = conn.execute(
            sa.select(monitoring_runs.c.report).where(monitoring_runs.c.monitoring_run_id == run_id)
        ).scalar_one_or_none()
    return found
