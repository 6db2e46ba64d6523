"""Holds the served model and swaps it atomically when the registry alias moves."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loanrisk.config import Settings
from loanrisk.errors import LoanriskError
from loanrisk.modeling.fastpath import FastScorer
from loanrisk.modeling.package import ScoringBundle
from loanrisk.profiles.model import Profile
from loanrisk.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One fully loaded version; requests take a reference and use it to the end."""

    name: str
    version: str
    alias: str
    run_id: str | None
    bundle: ScoringBundle
    scorer: FastScorer
    tags: dict[str, str] = field(default_factory=dict)
    loaded_at: str = ""
    created_at: float = 0.0  # registration time of the version, Unix seconds

    def describe(self) -> dict[str, Any]:
        metrics = {
            k.removeprefix("test_"): float(v)
            for k, v in self.tags.items()
            if k.startswith("test_") and _is_number(v)
        }
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "model": self.tags.get("winner"),
            "pd_horizon_months": horizon_of(self.bundle.profile),
            "pd_meaning": pd_meaning(self.bundle.profile),
            "policy": self.tags.get("policy"),
            "threshold": self.bundle.threshold,
            "grade_edges": self.bundle.grade_edges,
            "test_metrics": metrics,
            "data_vintages": self.tags.get("data_vintages"),
            "loaded_at": self.loaded_at,
        }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def horizon_of(profile: Profile) -> int | None:
    """The PD's performance window in months (None: final status; also for models
    packaged before profiles had one)."""
    return getattr(profile.target, "horizon_months", None)


def pd_meaning(profile: Profile) -> str:
    """What the PD is a probability of, in words (for /v1/model and the API docs)."""
    horizon = horizon_of(profile)
    if horizon is None:
        return (
            "probability that the loan ends in a bad status (" + ", ".join(profile.target.bad) + ")"
        )
    return f"probability of default within {horizon} months of issue"


def load_version(models: Registry, version: str, alias: str) -> LoadedModel:
    """Load, prepare for single-row scoring, and warm up one registered version."""
    info = models.get(version)
    bundle: ScoringBundle = models.load_bundle(version)
    bundle.candidate.for_serving()
    scorer = bundle.fast()
    scorer.score([{}])  # compiles lazily-built pieces before the first request
    return LoadedModel(
        name=models.name,
        version=version,
        alias=alias,
        run_id=info.run_id,
        bundle=bundle,
        scorer=scorer,
        tags=info.tags,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        created_at=info.created_at / 1000,
    )


class ModelHolder:
    """The current model, reloaded in the background when the alias points elsewhere."""

    def __init__(self, settings: Settings, models: Registry) -> None:
        self.settings = settings
        self.models = models
        self.alias = settings.serving.alias
        self.current: LoadedModel | None = None
        self.problem: str | None = "no model loaded yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the aliased version if it differs from the current one; True if swapped."""
        with self._lock:
            try:
                target = self.models.by_alias(self.alias)
            except LoanriskError as exc:
                self.problem = f"registry unreachable: {exc}"
                return False
            if target is None:
                if self.current is None:
                    self.problem = (
                        f"no version of {self.settings.mlflow.model_name} has alias "
                        f"@{self.alias} yet"
                    )
                return False
            if self.current is not None and self.current.version == target.version:
                return False
            try:
                loaded = load_version(self.models, target.version, self.alias)
            except (LoanriskError, OSError, AttributeError) as exc:
                self.problem = f"cannot load version {target.version}: {exc}"
                log.error("%s", self.problem)
                return False
            previous = self.current.version if self.current else None
            self.current = loaded  # one reference assignment: requests see old or new
            self.problem = None
            log.info("serving %s version %s (was %s)", loaded.name, loaded.version, previous)
            return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.serving.poll_seconds):
            self.refresh()
