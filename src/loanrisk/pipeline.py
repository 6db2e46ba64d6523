"""Steps that the command line (and later Airflow) run: each takes settings, returns data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.errors import LoanriskError
from loanrisk.modeling.train import TrainResult, train
from loanrisk.profiles import load_profile
from loanrisk.profiles.model import Profile
from loanrisk.promotion import PromotionResult, promote
from loanrisk.warehouse.engine import make_engine, migrate
from loanrisk.warehouse.ingest import (
    BatchResult,
    IngestOptions,
    Progress,
    WarehouseStatus,
    ingest,
    warehouse_status,
)
from loanrisk.warehouse.queries import latest_vintage, raw_rows, read_gold, read_silver


@dataclass(frozen=True)
class Warehouse:
    """An open, migrated warehouse and the profile it holds."""

    engine: sa.Engine
    profile: Profile


def open_warehouse(settings: Settings) -> Warehouse:
    """Engine for the configured warehouse, migrated to the latest schema for the profile."""
    profile = load_profile(settings.data.profile)
    if settings.warehouse.url is None:
        settings.ensure_home()
    engine = make_engine(settings.warehouse_url, echo=settings.warehouse.echo_sql)
    migrate(engine, profile)
    return Warehouse(engine=engine, profile=profile)


def run_ingest(
    settings: Settings,
    sources: list[str],
    *,
    delimiter: str = ",",
    progress: Progress | None = None,
) -> tuple[list[BatchResult], WarehouseStatus]:
    """Ingest files into the warehouse; return per-file results and the warehouse status."""
    warehouse = open_warehouse(settings)
    try:
        options = IngestOptions(
            chunk_size=settings.ingest.chunk_size,
            encoding=settings.ingest.encoding,
            delimiter=delimiter,
        )
        results = ingest(
            warehouse.engine, warehouse.profile, sources, options=options, progress=progress
        )
        return results, warehouse_status(warehouse.engine)
    finally:
        warehouse.engine.dispose()


def run_status(settings: Settings) -> WarehouseStatus:
    """Row counts and reconciliation of the configured warehouse."""
    warehouse = open_warehouse(settings)
    try:
        return warehouse_status(warehouse.engine)
    finally:
        warehouse.engine.dispose()


def run_train(settings: Settings, *, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train on the warehouse's labelled gold rows; register the winner at @staging."""
    warehouse = open_warehouse(settings)
    try:
        gold = read_gold(warehouse.engine)
        if gold.empty:
            raise LoanriskError(
                "gold has no labelled rows: ingest loan files first ('loanrisk ingest FILE')"
            )
        return train(
            settings,
            gold,
            warehouse.profile,
            raw_example=lambda ids: raw_rows(warehouse.engine, ids),
            progress=progress,
        )
    finally:
        warehouse.engine.dispose()


def run_promote(
    settings: Settings,
    *,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> PromotionResult:
    """Score challenger and champion on the recent labelled window and apply the gates."""
    warehouse = open_warehouse(settings)
    try:
        since = None
        latest = latest_vintage(warehouse.engine)
        if latest is not None:
            since = latest - pd.DateOffset(months=settings.promotion.window_months - 1)
        silver = read_silver(warehouse.engine, since=since)
    finally:
        warehouse.engine.dispose()
    return promote(settings, silver, version=version, force=force, reason=reason)
