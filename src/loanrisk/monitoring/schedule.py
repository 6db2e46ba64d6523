"""When a monitoring run has something to add (light: no model, no drift library)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.constants import Alias
from loanrisk.registry import Registry
from loanrisk.warehouse.schema import monitoring_runs, outcomes, predictions


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
