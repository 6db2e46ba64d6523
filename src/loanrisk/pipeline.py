"""Steps that the command line and Airflow run: ``step(settings, warehouse, registry, ...)``.

The entry point (a command, ``run_pipeline``) opens the warehouse and the registry once and
passes them to every step. ``run_pipeline`` chains the steps (ingest -> train -> promote ->
score -> monitor); every step says why when it has nothing new to do and skips.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from loanrisk.config import Settings
from loanrisk.constants import Alias
from loanrisk.data.generate import TRUTH_SUFFIX
from loanrisk.data.readers import SUFFIXES, parse_delimiter
from loanrisk.errors import LoanriskError, NothingToDo, UnreachableError
from loanrisk.monitoring.store import pending
from loanrisk.profiles.loader import profile_fingerprint
from loanrisk.profiles.model import Profile
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.ingest import (
    BatchResult,
    IngestOptions,
    Progress,
    WarehouseStatus,
    ingest,
    warehouse_status,
)
from loanrisk.warehouse.queries import (
    gold_state,
    labels_by_vintage,
    latest_vintage,
    protected_attributes,
    raw_rows,
    read_gold,
    read_silver,
)

if TYPE_CHECKING:  # the modeling stack and MLflow are imported only by the steps that run them
    from loanrisk.batch import ScoringRun
    from loanrisk.modeling.fitting import Studies
    from loanrisk.modeling.train import TrainResult
    from loanrisk.monitoring.monitor import MonitorResult
    from loanrisk.promotion import PromotionResult
    from loanrisk.registry import Registry


def run_ingest(
    settings: Settings,
    warehouse: Warehouse,
    sources: list[str],
    *,
    delimiter: str = ",",
    progress: Progress | None = None,
) -> tuple[list[BatchResult], WarehouseStatus]:
    """Ingest files into the warehouse; return per-file results and the warehouse status."""
    options = IngestOptions(
        chunk_size=settings.ingest.chunk_size,
        encoding=settings.ingest.encoding,
        delimiter=parse_delimiter(delimiter),
        timeout=settings.ingest.source_timeout_seconds,
        max_reject_share=settings.ingest.max_reject_share,
    )
    results = ingest(
        warehouse.engine, warehouse.profile, sources, options=options, progress=progress
    )
    return results, warehouse_status(warehouse.engine)


def run_train(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    *,
    progress: Callable[[str], None] | None = None,
    if_new_data: bool = False,
) -> TrainResult:
    """Train on the warehouse's labelled gold rows; register the winner at @staging.

    With ``if_new_data``, raise NothingToDo when gold holds exactly the rows the newest
    registered version was trained on.
    """
    state = gold_state(warehouse.engine)
    if state is None:
        raise LoanriskError(
            "gold has no labelled rows: ingest loan files first ('loanrisk ingest FILE')"
        )
    if if_new_data:
        _require_new_data(warehouse, models, state)
    from loanrisk.modeling.train import data_fingerprint, train

    gold = read_gold(warehouse.engine)
    fingerprint = data_fingerprint(gold) | {"gold_state": state}
    return train(
        settings,
        models,
        gold,
        warehouse.profile,
        raw_example=lambda ids: raw_rows(warehouse.engine, ids),
        progress=progress,
        fingerprint=fingerprint,
        labels_by_vintage=labels_by_vintage(warehouse.engine),
        protected=protected_attributes(warehouse.engine, warehouse.profile.protected_columns),
        studies=shared_studies(settings, warehouse.profile, state),
    )


def run_tune(
    settings: Settings, warehouse: Warehouse, *, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """``train --tune-only``: add trials to the shared studies of gold's current rows
    (``training.study_storage``); register nothing. The ``loanrisk train`` that runs with
    the same settings joins the same studies and fits their best parameters."""
    state = gold_state(warehouse.engine)
    if state is None:
        raise LoanriskError(
            "gold has no labelled rows: ingest loan files first ('loanrisk ingest FILE')"
        )
    studies = shared_studies(settings, warehouse.profile, state)
    if studies is None:
        raise LoanriskError(
            "--tune-only needs a shared study: set LOANRISK_TRAINING__STUDY_STORAGE to "
            "'warehouse' or an SQLAlchemy URL"
        )
    if settings.training.trials <= 1:
        raise LoanriskError("--tune-only needs training.trials > 1 (the study's size)")
    from loanrisk.modeling.fitting import tune_all

    say = progress or (lambda _message: None)
    return tune_all(read_gold(warehouse.engine), warehouse.profile, settings.training, say, studies)


def shared_studies(settings: Settings, profile: Profile, state: str) -> Studies | None:
    """The shared tuning studies of this gold state and these settings, or None when
    tuning stays in this process. Every process with the same data and settings derives
    the same names, so they join one search."""
    from loanrisk.modeling.fitting import Studies

    storage = settings.training.study_storage.strip()
    if not storage or settings.training.trials <= 1:
        return None
    url = storage
    if storage == "warehouse":  # beside the warehouse's tables, never among them
        url = settings.warehouse_url
        if url.startswith("sqlite"):
            url = f"sqlite:///{(settings.home / 'studies.db').resolve()}"
    options = settings.training
    shape = [
        state,
        profile_fingerprint(profile),
        options.trials,
        options.seed,
        options.test_months,
        options.valid_months,
        options.use_proxies,
        options.monotone_constraints,
    ]
    digest = hashlib.sha256(json.dumps(shape, default=str).encode()).hexdigest()[:12]
    return Studies(url, f"loanrisk-{settings.mlflow.model_name}-{digest}")


def _require_new_data(warehouse: Warehouse, models: Registry, state: str) -> None:
    found = [v for v in models.versions() if v.complete]
    if not found:
        return
    newest = max(found, key=lambda v: int(v.version))
    if "gold_state" in newest.tags:
        unchanged = newest.tags["gold_state"] == state
    else:  # registered before versions carried the gold state: hash gold itself (slower)
        from loanrisk.modeling.train import data_fingerprint

        hashed = data_fingerprint(read_gold(warehouse.engine))["content_hash"]
        unchanged = newest.tags.get("data_hash") == hashed
    if unchanged:
        raise NothingToDo(
            f"gold is unchanged since version {newest.version} was trained "
            f"({newest.tags.get('data_rows', '?')} labelled rows, "
            f"data hash {newest.tags.get('data_hash', '?')})"
        )


def run_promote(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    *,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    if_new: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PromotionResult:
    """Score challenger and champion on the recent labelled window and apply the gates.

    With ``if_new``, raise NothingToDo when there is no @staging version, when it is already
    @production, or when the gates refused it before.
    """
    if if_new and version is None:
        _require_new_challenger(models)
    from loanrisk.promotion import promote

    since = None
    latest = latest_vintage(warehouse.engine)
    if latest is not None:
        since = latest - pd.DateOffset(months=settings.promotion.window_months - 1)
        # Never a month the challenger was trained, tuned or calibrated on: the window
        # starts at its test window at the earliest.
        challenger = models.get(version) if version else models.by_alias(Alias.STAGING)
        test_from = challenger.tags.get("window_test_from") if challenger else None
        if test_from:
            since = max(since, pd.Timestamp(test_from))
    silver = read_silver(warehouse.engine, since=since)
    return promote(
        settings, models, silver, version=version, force=force, reason=reason, progress=progress
    )


def _require_new_challenger(models: Registry) -> None:
    staging = models.by_alias(Alias.STAGING)
    if staging is None:
        raise NothingToDo(f"no @{Alias.STAGING} version to promote")
    production = models.by_alias(Alias.PRODUCTION)
    if production is not None and production.version == staging.version:
        raise NothingToDo(f"version {staging.version} is already @{Alias.PRODUCTION}")
    refused = staging.tags.get("promotion_refused_reason")
    if refused:
        raise NothingToDo(
            f"version {staging.version} was refused on "
            f"{staging.tags.get('promotion_refused_at', '?')} ({refused}); "
            "'loanrisk promote --force --reason ...' overrides the gates"
        )


def data_files(folder: Path) -> list[Path]:
    """Loan or application files in ``folder`` (sorted), without generator truth sidecars."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(SUFFIXES)
        and not p.name.endswith(TRUTH_SUFFIX)
        and not p.name.endswith(".part")
    )


def run_score_folder(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    folder: Path,
    *,
    progress: Progress | None = None,
) -> list[ScoringRun]:
    """Score every application file in ``folder`` with @production (each at most once;
    the model is loaded once, and only when a file is new to it)."""
    from loanrisk.batch import ProductionModel, score_file

    files = data_files(folder)
    if not files:
        raise NothingToDo(f"no application files in {folder}")
    if models.by_alias(Alias.PRODUCTION) is None:
        raise NothingToDo(f"no model is @{Alias.PRODUCTION} yet")
    model = ProductionModel(models)
    runs = [score_file(settings, warehouse, model, str(f), progress=progress) for f in files]
    if all(r.skipped for r in runs):
        raise NothingToDo(
            f"every file in {folder} is already scored by version {runs[0].model_version}"
        )
    return runs


def run_monitor(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    *,
    if_new: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Monitor the recent predictions; with ``if_new``, NothingToDo when nothing arrived
    since the last run (checked before the drift libraries are imported)."""
    if if_new:
        why_not = pending(settings, warehouse.engine, models)
        if why_not:
            raise NothingToDo(why_not)
    from loanrisk.monitoring.monitor import monitor

    return monitor(settings, warehouse, models, progress=progress)


@dataclass
class StepResult:
    """One step of ``loanrisk pipeline``: ran, skipped (with why) or failed."""

    step: str
    status: str
    note: str = ""
    seconds: float = 0.0
    result: Any = None  # the outcome as JSON-ready data (for --json and Airflow)
    retryable: bool = False  # failed because a server did not answer
    outcome: Any = field(default=None, repr=False)  # the typed outcome (for printing)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "outcome"}


@dataclass
class PipelineResult:
    """Every step's outcome, in order (printed by ``loanrisk pipeline --json``)."""

    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.step == name), None)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        steps = [s.as_dict() for s in self.steps]
        monitored = self.step("monitor")
        retrain = bool(
            monitored
            and isinstance(monitored.result, dict)
            and monitored.result.get("retrain_recommended")
        )
        return {
            "steps": steps,
            "seconds": self.seconds,
            "failed": self.failed,
            "retrain_recommended": retrain,
        }


@dataclass
class PipelineHooks:
    """How the pipeline reports as it goes (the CLI draws progress bars; Airflow logs)."""

    on_step: Callable[[StepResult], None] | None = None
    on_message: Callable[[str], None] | None = None
    file_progress: Progress | None = None


PIPELINE_STEPS = ("ingest", "train", "promote", "score", "monitor")


def run_pipeline(
    settings: Settings,
    warehouse: Warehouse,
    models: Registry,
    hooks: PipelineHooks | None = None,
) -> PipelineResult:
    """ingest -> train -> promote -> score -> monitor; stops at the first failed step."""
    hooks = hooks or PipelineHooks()
    steps: dict[str, Callable[[], Any]] = {
        "ingest": lambda: _ingest_landing(settings, warehouse, hooks.file_progress),
        "train": lambda: run_train(
            settings, warehouse, models, progress=hooks.on_message, if_new_data=True
        ),
        "promote": lambda: run_promote(
            settings, warehouse, models, if_new=True, progress=hooks.on_message
        ),
        "score": lambda: run_score_folder(
            settings, warehouse, models, settings.applications_dir, progress=hooks.file_progress
        ),
        "monitor": lambda: run_monitor(
            settings, warehouse, models, if_new=True, progress=hooks.on_message
        ),
    }
    result = PipelineResult()
    started = time.perf_counter()
    for name in PIPELINE_STEPS:
        step_started = time.perf_counter()
        try:
            outcome = steps[name]()
            step = StepResult(name, "ran", result=_plain(outcome), outcome=outcome)
        except NothingToDo as exc:
            step = StepResult(name, "skipped", note=str(exc))
        except LoanriskError as exc:
            step = StepResult(
                name, "failed", note=str(exc), retryable=isinstance(exc, UnreachableError)
            )
        step.seconds = round(time.perf_counter() - step_started, 2)
        result.steps.append(step)
        if hooks.on_step is not None:
            hooks.on_step(step)
        if step.status == "failed":
            break
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def landing_files(settings: Settings) -> list[str]:
    """The loan files in the landing folder (NothingToDo when there are none)."""
    files = data_files(settings.landing_dir)
    if not files:
        raise NothingToDo(f"no loan files in {settings.landing_dir}")
    return [str(f) for f in files]


def _ingest_landing(
    settings: Settings, warehouse: Warehouse, progress: Progress | None
) -> dict[str, Any]:
    files = landing_files(settings)
    batches, status = run_ingest(settings, warehouse, files, progress=progress)
    if all(b.skipped for b in batches):
        raise NothingToDo(f"all {len(files)} files in {settings.landing_dir} are already ingested")
    return {"batches": batches, "status": status}


def _plain(value: Any) -> Any:
    """Results as JSON-ready data (dataclasses with as_dict, lists and dicts of them)."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
