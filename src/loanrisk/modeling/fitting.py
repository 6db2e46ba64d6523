"""Fitting, without tracking: gold -> split -> every candidate fitted, calibrated, given a
threshold and evaluated once on the test window -> the winner as one ``ScoringBundle``.

Tuning, early stopping, calibration and the threshold use training and validation rows
only; the winner is chosen on validation AUC; the test window is scored once per candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loanrisk.config import TrainingSettings
from loanrisk.constants import LABEL, VINTAGE
from loanrisk.errors import LoanriskError
from loanrisk.modeling.estimators import Candidate, SharedStudy, fit_candidate, tune_candidate
from loanrisk.modeling.evaluate import (
    Calibrator,
    auc_by_vintage,
    calibration_by_vintage,
    fit_master_scale,
    metrics,
    policy_cutoff,
    policy_report,
)
from loanrisk.modeling.features import FeatureSpec, fit_feature_spec, model_frame
from loanrisk.modeling.package import ScoringBundle
from loanrisk.modeling.split import Split, split_data
from loanrisk.profiles.model import Profile

log = logging.getLogger(__name__)
Frames = dict[str, tuple[pd.DataFrame, np.ndarray]]


@dataclass
class FittedCandidate:
    """One model family, fitted, calibrated and evaluated on the test window."""

    name: str
    model: Candidate
    calibrator: Calibrator
    threshold: float
    params: dict[str, Any]
    trials: int
    valid_auc: float
    test: dict[str, float]
    test_auc_by_vintage: dict[str, float]
    test_calibration_by_vintage: dict[str, dict[str, float]]
    pd_test: np.ndarray
    seconds: float


@dataclass
class Fitted:
    """Every candidate, the winner and its packaged bundle."""

    split: Split
    spec: FeatureSpec
    frames: Frames
    candidates: list[FittedCandidate]
    winner: FittedCandidate
    bundle: ScoringBundle
    policy: dict[str, Any]  # what the winner's cut-off implies on the test window
    warnings: list[str]


def fit_all(
    gold: pd.DataFrame,
    profile: Profile,
    options: TrainingSettings,
    say: Callable[[str], None],
    studies: Studies | None = None,
) -> Fitted:
    """Fit every candidate in ``options.candidates`` on ``gold``; package the best.
    With ``studies``, each family's tuning is shared with other processes."""
    warnings: list[str] = []
    split, spec, frames = _prepare(gold, profile, options, warnings)
    candidates = []
    for name in options.candidates:
        say(f"training {name}")
        study = studies.of(name) if studies else None
        fitted = fit_one(name, spec, frames, split, options, study, say)
        candidates.append(fitted)
        say(f"{name}: validation AUC {fitted.valid_auc:.4f}, test AUC {fitted.test['auc']:.4f}")
    return _package(profile, options, split, spec, frames, candidates, warnings)


@dataclass(frozen=True)
class Studies:
    """Where the shared tuning studies of one training data set live: a database and a
    name prefix derived from the data and the settings that shape the search."""

    storage: str
    prefix: str

    def of(self, family: str) -> SharedStudy:
        return SharedStudy(self.storage, f"{self.prefix}-{family}")


def tune_all(
    gold: pd.DataFrame,
    profile: Profile,
    options: TrainingSettings,
    say: Callable[[str], None],
    studies: Studies,
) -> list[dict[str, Any]]:
    """Search only: run trials in every family's shared study (``train --tune-only``)."""
    _, spec, frames = _prepare(gold, profile, options, [])
    found = []
    for name in options.candidates:
        say(f"tuning {name} in study {studies.of(name).name}")
        found.append(
            {"candidate": name}
            | tune_candidate(
                name,
                spec,
                frames["train"],
                frames["valid"],
                trials=options.trials,
                seed=options.seed,
                study=studies.of(name),
                progress=say,
            )
        )
    return found


def _prepare(
    gold: pd.DataFrame, profile: Profile, options: TrainingSettings, warnings: list[str]
) -> tuple[Split, FeatureSpec, Frames]:
    """The out-of-time split, the feature spec and the model frames of each part."""
    split = split_data(
        gold, test_months=options.test_months, valid_months=options.valid_months, seed=options.seed
    )
    if split.warning:
        warnings.append(split.warning)
        log.warning("%s", split.warning)
    spec = fit_feature_spec(
        split.train,
        profile,
        use_proxies=options.use_proxies,
        monotone=options.monotone_constraints,
    )
    proxies = [c for c in profile.proxy_columns if c in spec.columns]
    if proxies:
        warnings.append(
            f"proxy columns used as features ({', '.join(proxies)}): they stand in for "
            "protected characteristics; review the decisions for disparate impact"
        )
    elif profile.proxy_columns:
        log.info("proxy columns left out of the features: %s", profile.proxy_columns)
    if not spec.columns:
        raise LoanriskError("no usable feature: every feature column is empty in training data")
    frames: Frames = {
        part: (model_frame(getattr(split, part), spec), getattr(split, part)[LABEL].to_numpy())
        for part in ("train", "valid", "test")
    }
    return split, spec, frames


def _package(
    profile: Profile,
    options: TrainingSettings,
    split: Split,
    spec: FeatureSpec,
    frames: Frames,
    candidates: list[FittedCandidate],
    warnings: list[str],
) -> Fitted:
    """The winner on validation AUC, packaged with its master scale and policy."""
    for fitted in candidates:
        neutral = getattr(fitted.model, "neutral", [])
        if neutral:
            warnings.append(
                f"{fitted.name}: {', '.join(neutral)} took a coefficient against the profile's "
                "direction of risk and were neutralised (held at zero)"
            )
    winner = max(candidates, key=lambda c: c.valid_auc)
    model = winner.model
    x_train = frames["train"][0]
    if hasattr(model, "set_reference"):
        model.set_reference(x_train)
    pd_train = winner.calibrator(model.predict_raw(x_train))
    bundle = ScoringBundle(
        reference=_reference_sample(x_train, pd_train, seed=options.seed),
        profile=profile,
        spec=spec,
        candidate=model,
        calibrator=winner.calibrator,
        threshold=winner.threshold,
        grade_edges=fit_master_scale(pd_train),
    )
    policy = policy_report(winner.pd_test, frames["test"][1], winner.threshold, bundle.grade_edges)
    policy["policy"] = options.policy
    return Fitted(split, spec, frames, candidates, winner, bundle, policy, warnings)


def fit_one(
    name: str,
    spec: FeatureSpec,
    frames: Frames,
    split: Split,
    options: TrainingSettings,
    study: SharedStudy | None = None,
    say: Callable[[str], None] | None = None,
) -> FittedCandidate:
    """Tune and fit one family on training rows (early stopping and tuning on validation),
    Platt-calibrate on validation, set the lending policy's cut-off on validation, then
    evaluate once on the test window."""
    started = time.perf_counter()
    fit = fit_candidate(
        name,
        spec,
        frames["train"],
        frames["valid"],
        trials=options.trials,
        seed=options.seed,
        study=study,
        progress=say,
    )
    model = fit.candidate
    x_valid, y_valid = frames["valid"]
    x_test, y_test = frames["test"]
    calibrator = Calibrator.fit(model.predict_raw(x_valid), y_valid)
    threshold = policy_cutoff(calibrator(model.predict_raw(x_valid)), y_valid, options)
    pd_test = calibrator(model.predict_raw(x_test))
    return FittedCandidate(
        name=name,
        model=model,
        calibrator=calibrator,
        threshold=threshold,
        params=fit.params,
        trials=fit.trials,
        valid_auc=fit.valid_auc,
        test=metrics(pd_test, y_test, threshold),
        test_auc_by_vintage=auc_by_vintage(pd_test, y_test, split.test[VINTAGE]),
        test_calibration_by_vintage=calibration_by_vintage(pd_test, y_test, split.test[VINTAGE]),
        pd_test=pd_test,
        seconds=round(time.perf_counter() - started, 1),
    )


def _reference_sample(
    x_train: pd.DataFrame, pd_train: np.ndarray, *, seed: int, rows: int = 20_000
) -> pd.DataFrame:
    """Up to ``rows`` training applicants (model inputs and PD), kept with the model."""
    sample = x_train.assign(pd=pd_train)
    if len(sample) > rows:
        sample = sample.sample(rows, random_state=seed)
    return sample.reset_index(drop=True)
