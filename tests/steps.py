"""The pipeline's steps as tests call them. Each call is an entry point of its own, as a
command is: it opens the warehouse and the registry, runs one step and closes them."""

from __future__ import annotations

import gc
from typing import Any

from loanrisk import pipeline
from loanrisk.config import Settings
from loanrisk.registry import Registry
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.ingest import WarehouseStatus, warehouse_status


def ingest(settings: Settings, sources: list[str], **options: Any) -> Any:
    with Warehouse.open(settings) as warehouse:
        return pipeline.run_ingest(settings, warehouse, sources, **options)


def status(settings: Settings) -> WarehouseStatus:
    with Warehouse.open(settings) as warehouse:
        return warehouse_status(warehouse.engine)


def train(settings: Settings, **options: Any) -> Any:
    with Warehouse.open(settings) as warehouse:
        return pipeline.run_train(settings, warehouse, Registry(settings), **options)


def promote(settings: Settings, **options: Any) -> Any:
    with Warehouse.open(settings) as warehouse:
        return pipeline.run_promote(settings, warehouse, Registry(settings), **options)


def rollback(settings: Settings, **options: Any) -> tuple[str, str]:
    from loanrisk.promotion import rollback as roll_back

    return roll_back(Registry(settings), **options)


def score(settings: Settings, source: str, **options: Any) -> Any:
    from loanrisk.batch import ProductionModel, score_file

    model = ProductionModel(Registry(settings))
    with Warehouse.open(settings) as warehouse:
        try:
            return score_file(settings, warehouse, model, source, **options)
        finally:  # the heap it set aside from the garbage collector is given back
            assert gc.get_freeze_count() == 0


def monitor(settings: Settings, **options: Any) -> Any:
    from loanrisk.monitoring.monitor import monitor as run_monitor

    with Warehouse.open(settings) as warehouse:
        return run_monitor(settings, warehouse, Registry(settings), **options)


def outcomes(settings: Settings, source: str) -> Any:
    from loanrisk.outcomes import load_outcomes

    with Warehouse.open(settings) as warehouse:
        return load_outcomes(settings, warehouse, source)
