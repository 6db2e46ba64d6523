"""Train: fit every candidate (``fitting``), track the run in MLflow (``tracking``), write
the model card (``card``), register the winner at @staging (``registry``).

One MLflow parent run per training (the winner's metrics and plots, the packaged model),
one child run per candidate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
import pandas as pd

import loanrisk
from loanrisk.config import Settings, mask_url
from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.modeling import tracking
from loanrisk.modeling.card import model_card
from loanrisk.modeling.fairness import fairness_table, groups_of
from loanrisk.modeling.fitting import Fitted, Studies, fit_all
from loanrisk.profiles.model import NUMERIC_PARSERS, Profile
from loanrisk.registry import Registry

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class CandidateReport:
    name: str
    run_id: str
    params: dict[str, Any]
    trials: int
    valid_auc: float
    threshold: float
    test: dict[str, float]
    test_auc_by_vintage: dict[str, float]
    test_calibration_by_vintage: dict[str, dict[str, float]]
    seconds: float


@dataclass
class TrainResult:
    """What a training run produced (printed by ``loanrisk train --json``)."""

    run_id: str
    experiment: str
    winner: str
    version: str
    model_uri: str
    threshold: float
    split: dict[str, Any]
    data: dict[str, Any]
    candidates: list[CandidateReport]
    policy: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    pd_horizon_months: int | None = None
    warnings: list[str] = field(default_factory=list)
    test_predictions: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    settings: Settings,
    models: Registry,
    gold: pd.DataFrame,
    profile: Profile,
    *,
    raw_example: Callable[[list[str]], pd.DataFrame],
    progress: Progress | None = None,
    fingerprint: dict[str, Any] | None = None,
    labels_by_vintage: list[dict[str, Any]] | None = None,
    protected: pd.DataFrame | None = None,
    studies: Studies | None = None,
) -> TrainResult:
    """Train every candidate on ``gold``, log to MLflow, register the winner at @staging.

    ``raw_example`` returns the raw source rows of given loan ids (for the input example).
    """
    say = progress or (lambda _message: None)
    options = settings.training
    fitted = fit_all(gold, profile, options, say, studies)
    split, bundle, winner = fitted.split, fitted.bundle, fitted.winner
    fingerprint = fingerprint or data_fingerprint(gold)
    y_test = fitted.frames["test"][1]
    experiment = models.experiment_id(settings.mlflow.experiment, settings.artifact_location)
    with mlflow.start_run(experiment_id=experiment, run_name="training") as parent:
        run_id = parent.info.run_id
        mlflow.set_tags(
            {
                "loanrisk.profile": profile.name,
                "loanrisk.git_commit": tracking.git_commit(),
                "loanrisk.version": loanrisk.__version__,
                "loanrisk.split": split.kind,
                "loanrisk.winner": winner.name,
                **({"loanrisk.warning": "; ".join(fitted.warnings)} if fitted.warnings else {}),
            }
        )
        mlflow.log_params(
            {
                "candidates": ",".join(options.candidates),
                "trials": options.trials,
                "test_months": options.test_months,
                "valid_months": options.valid_months,
                "cost_missed_default": options.cost_missed_default,
                "cost_declined_good": options.cost_declined_good,
                "seed": options.seed,
                "features": len(fitted.spec.columns),
            }
        )
        mlflow.log_params({f"data_{k}": v for k, v in fingerprint.items()})
        mlflow.log_params({k: v for k, v in split.describe().items() if v is not None})
        reports = [
            _report(c, tracking.log_candidate(c, y_test, experiment=experiment))
            for c in fitted.candidates
        ]
        report = next(r for r in reports if r.name == winner.name)
        mlflow.log_metrics({f"test_{k}": v for k, v in winner.test.items()})
        mlflow.log_metric("valid_auc", winner.valid_auc)
        tracking.log_policy(fitted.policy, winner.test_calibration_by_vintage)
        fairness = fairness_report(fitted, profile, protected, settings.promotion.min_group_rows)
        tracking.log_fairness(fairness)
        tracking.log_plots(winner, y_test, artifact_path="plots")  # where the registry links
        tracking.log_datasets(
            split,
            fitted.spec.columns,
            tracking.WarehouseSource(
                mask_url(settings.warehouse_url),
                "gold_loan_features",
                fingerprint.get("gold_state"),
            ),
        )

        say(f"packaging {winner.name}")
        card = model_card(
            model_name=settings.mlflow.model_name,
            profile=profile.name,
            winner=report,
            candidates=reports,
            window=split.describe(),
            data=fingerprint,
            features=fitted.spec.columns,
            target=profile.target,
            labels_by_vintage=labels_by_vintage or [],
            policy=fitted.policy,
            calibration=winner.test_calibration_by_vintage,
            fairness=fairness,
            threshold=bundle.threshold,
            grade_edges=bundle.grade_edges,
            cost_missed_default=options.cost_missed_default,
            cost_declined_good=options.cost_declined_good,
            warnings=fitted.warnings,
        )
        info = tracking.log_model(
            bundle,
            card=card,
            test_predictions=pd.DataFrame(
                {
                    LOAN_ID: split.test[LOAN_ID].to_numpy(),
                    VINTAGE: split.test[VINTAGE].to_numpy(),
                    LABEL: y_test,
                    "pd": bundle.score_features(split.test),
                }
            ),
            example=raw_example(split.test[LOAN_ID].head(3).tolist()),
        )
        window = str(split.describe()["test_window"] or "")
        tags = {
            "winner": winner.name,
            "run_id": run_id,
            "profile": profile.name,
            "git_commit": tracking.git_commit(),
            "split": split.kind,
            **({"window_test_from": window[:7]} if split.kind == "out_of_time" and window else {}),
            "threshold": f"{winner.threshold:.6f}",
            "policy": options.policy,
            "pd_horizon_months": str(profile.target.horizon_months or "final status"),
            "test_approval_rate": f"{fitted.policy['approval_rate']:.6f}",
            "test_mean_pd": f"{fitted.policy['mean_pd']:.6f}",
            "test_default_rate": f"{fitted.policy['default_rate']:.6f}",
            "data_rows": str(fingerprint["rows"]),
            "data_hash": str(fingerprint["content_hash"]),
            "data_vintages": str(fingerprint["vintage_range"]),
            **({"gold_state": fingerprint["gold_state"]} if "gold_state" in fingerprint else {}),
            **{f"test_{k}": f"{v:.6f}" for k, v in winner.test.items()},
            "valid_auc": f"{winner.valid_auc:.6f}",
        }
        say("registering")
        version = models.register(
            model_uri=info.model_uri,
            run_id=run_id,
            model_id=info.model_id,
            tags=tags,
            description=_description(card, run_id),
        )
        mlflow.set_tag("loanrisk.registered_version", version)

    return TrainResult(
        run_id=run_id,
        experiment=settings.mlflow.experiment,
        winner=winner.name,
        version=version,
        model_uri=f"models:/{settings.mlflow.model_name}@staging",
        threshold=winner.threshold,
        split=split.describe(),
        data=fingerprint,
        candidates=reports,
        policy=fitted.policy,
        fairness=fairness,
        pd_horizon_months=profile.target.horizon_months,
        warnings=fitted.warnings,
        test_predictions=f"runs:/{run_id}/test_predictions.parquet",
    )


def fairness_report(
    fitted: Fitted, profile: Profile, protected: pd.DataFrame | None, min_rows: int
) -> dict[str, Any]:
    """Per protected attribute, the winner's outcomes by group on the test window."""
    if protected is None or protected.empty:
        return {}
    test = fitted.split.test[[LOAN_ID]].merge(protected, on=LOAN_ID, how="left")
    approved = fitted.winner.pd_test < fitted.winner.threshold
    y = fitted.frames["test"][1]
    report = {}
    for column in profile.protected_columns:
        if column in test.columns and test[column].notna().any():
            numeric = profile.columns[column].parser in NUMERIC_PARSERS
            groups = groups_of(test[column], numeric=numeric)
            report[column] = fairness_table(groups, approved, y, min_rows=min_rows)
    return report


def _report(fitted: Any, run_id: str) -> CandidateReport:
    return CandidateReport(
        name=fitted.name,
        run_id=run_id,
        params=fitted.params,
        trials=fitted.trials,
        valid_auc=fitted.valid_auc,
        threshold=fitted.threshold,
        test=fitted.test,
        test_auc_by_vintage=fitted.test_auc_by_vintage,
        test_calibration_by_vintage=fitted.test_calibration_by_vintage,
        seconds=fitted.seconds,
    )


def data_fingerprint(gold: pd.DataFrame) -> dict[str, Any]:
    """Row count, content hash and vintage range of the training data."""
    hashed = pd.util.hash_pandas_object(gold.sort_values(LOAN_ID), index=False).to_numpy()
    vintages = gold[VINTAGE].dropna()
    return {
        "rows": len(gold),
        "content_hash": hashlib.sha256(hashed.tobytes()).hexdigest()[:16],
        "vintage_range": (
            f"{vintages.min():%Y-%m}..{vintages.max():%Y-%m}" if len(vintages) else "none"
        ),
        "default_rate": round(float(gold[LABEL].mean()), 4),
    }


# MLflow's SQL registry stores at most 5,000 characters of a version's description.
_DESCRIPTION_LIMIT = 5000


def _description(card: str, run_id: str) -> str:
    """The model card as the registered version's description (cut at the store's limit,
    saying where the whole card is)."""
    if len(card) <= _DESCRIPTION_LIMIT:
        return card
    tail = f"\n\n... (the whole card: runs:/{run_id}/model_card.md)"
    return card[: _DESCRIPTION_LIMIT - len(tail)] + tail
