"""Train: gold -> split -> candidates -> calibrate -> evaluate -> one packaged model -> registry.

One MLflow parent run per training, one child run per candidate. Tuning, early stopping,
calibration and the threshold use training and validation rows only; every reported
metric comes from the untouched test window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

import loanrisk
from loanrisk.config import Settings
from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.errors import LoanriskError
from loanrisk.modeling.estimators import fit_candidate
from loanrisk.modeling.evaluate import (
    GRADES,
    Calibrator,
    auc_by_vintage,
    choose_threshold,
    fit_master_scale,
    metrics,
    save_plots,
)
from loanrisk.modeling.features import fit_feature_spec, model_frame
from loanrisk.modeling.package import LoanDefaultModel, ScoringBundle
from loanrisk.modeling.split import Split, split_data
from loanrisk.profiles.model import Profile, Role
from loanrisk.registry import Registry

log = logging.getLogger(__name__)

# Packages the pyfunc model needs where it is served (versions as installed here).
_MODEL_REQUIREMENTS = (
    "mlflow",
    "pandas",
    "numpy",
    "pyarrow",
    "scikit-learn",
    "xgboost-cpu",
    "lightgbm",
    "scipy",
    "pydantic",
    "pyyaml",
    "joblib",
    "sqlalchemy",
)


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
    warnings: list[str] = field(default_factory=list)
    test_predictions: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str], None]


def train(
    settings: Settings,
    models: Registry,
    gold: pd.DataFrame,
    profile: Profile,
    *,
    raw_example: Callable[[list[str]], pd.DataFrame],
    progress: Progress | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> TrainResult:
    """Train every candidate on ``gold``, log to MLflow, register the winner at @staging.

    ``raw_example`` returns the raw source rows of given loan ids (for the input example).
    """
    say = progress or (lambda _message: None)
    options = settings.training
    warnings: list[str] = []
    split = split_data(
        gold, test_months=options.test_months, valid_months=options.valid_months, seed=options.seed
    )
    if split.warning:
        warnings.append(split.warning)
        log.warning("%s", split.warning)
    spec = fit_feature_spec(split.train, profile)
    if not spec.columns:
        raise LoanriskError("no usable feature: every feature column is empty in training data")
    frames = {
        part: (model_frame(getattr(split, part), spec), getattr(split, part)[LABEL].to_numpy())
        for part in ("train", "valid", "test")
    }
    fingerprint = fingerprint or data_fingerprint(gold)

    experiment = models.experiment_id(settings.mlflow.experiment, settings.artifact_location)
    reports: list[CandidateReport] = []
    fitted: dict[str, tuple[Any, Calibrator, float]] = {}
    with mlflow.start_run(experiment_id=experiment, run_name="training") as parent:
        mlflow.set_tags(
            {
                "loanrisk.profile": profile.name,
                "loanrisk.git_commit": _git_commit(),
                "loanrisk.version": loanrisk.__version__,
                "loanrisk.split": split.kind,
                **({"loanrisk.warning": "; ".join(warnings)} if warnings else {}),
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
                "features": len(spec.columns),
            }
        )
        mlflow.log_params({f"data_{k}": v for k, v in fingerprint.items()})
        mlflow.log_params({k: v for k, v in split.describe().items() if v is not None})

        for name in options.candidates:
            say(f"training {name}")
            report, model, calibrator = _train_candidate(
                name, spec, frames, split, settings, experiment=experiment
            )
            reports.append(report)
            fitted[name] = (model, calibrator, report.threshold)
            say(f"{name}: validation AUC {report.valid_auc:.4f}, test AUC {report.test['auc']:.4f}")

        winner = max(reports, key=lambda r: r.valid_auc)
        model, calibrator, threshold = fitted[winner.name]
        if hasattr(model, "set_reference"):
            model.set_reference(frames["train"][0])
        pd_train = calibrator(model.predict_raw(frames["train"][0]))
        reference = _reference_sample(frames["train"][0], pd_train, seed=options.seed)
        bundle = ScoringBundle(
            reference=reference,
            profile=profile,
            spec=spec,
            candidate=model,
            calibrator=calibrator,
            threshold=threshold,
            grade_edges=fit_master_scale(pd_train),
        )
        mlflow.set_tag("loanrisk.winner", winner.name)
        mlflow.log_metrics({f"test_{k}": v for k, v in winner.test.items()})
        mlflow.log_metric("valid_auc", winner.valid_auc)

        say(f"packaging {winner.name}")
        signature = input_signature(profile)
        example = raw_example(split.test[LOAN_ID].head(3).tolist())
        example = example[[c for c in example.columns if c in signature.inputs.input_names()]]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            test_predictions = folder / "test_predictions.parquet"
            pd.DataFrame(
                {
                    LOAN_ID: split.test[LOAN_ID].to_numpy(),
                    VINTAGE: split.test[VINTAGE].to_numpy(),
                    LABEL: frames["test"][1],
                    "pd": bundle.score_features(split.test),
                }
            ).to_parquet(test_predictions, index=False)
            mlflow.log_artifact(str(test_predictions))
            card = folder / "model_card.md"
            card_text = model_card(winner, reports, split, fingerprint, bundle, settings, warnings)
            card.write_text(card_text)
            mlflow.log_artifact(str(card))
            bundle_path = folder / "bundle.joblib"
            joblib.dump(bundle, bundle_path)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=LoanDefaultModel(),
                artifacts={"bundle": str(bundle_path), "model_card": str(card)},
                signature=signature,
                input_example=example if len(example) else None,
                code_paths=[str(Path(loanrisk.__file__).parent)],
                pip_requirements=_requirements(),
            )
        tags = {
            "winner": winner.name,
            "run_id": parent.info.run_id,
            "profile": profile.name,
            "git_commit": _git_commit(),
            "split": split.kind,
            "threshold": f"{threshold:.6f}",
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
            run_id=parent.info.run_id,
            model_id=info.model_id,
            tags=tags,
            description=_description(card_text, parent.info.run_id),
        )
        mlflow.set_tag("loanrisk.registered_version", version)

    return TrainResult(
        run_id=parent.info.run_id,
        experiment=settings.mlflow.experiment,
        winner=winner.name,
        version=version,
        model_uri=f"models:/{settings.mlflow.model_name}@staging",
        threshold=threshold,
        split=split.describe(),
        data=fingerprint,
        candidates=reports,
        warnings=warnings,
        test_predictions=f"runs:/{parent.info.run_id}/test_predictions.parquet",
    )


def _train_candidate(
    name: str,
    spec: Any,
    frames: dict[str, tuple[pd.DataFrame, np.ndarray]],
    split: Split,
    settings: Settings,
    *,
    experiment: str,
) -> tuple[CandidateReport, Any, Calibrator]:
    options = settings.training
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment, run_name=name, nested=True) as run:
        fit = fit_candidate(
            name, spec, frames["train"], frames["valid"], trials=options.trials, seed=options.seed
        )
        model = fit.candidate
        x_valid, y_valid = frames["valid"]
        x_test, y_test = frames["test"]
        calibrator = Calibrator.fit(model.predict_raw(x_valid), y_valid)
        pd_valid = calibrator(model.predict_raw(x_valid))
        threshold = choose_threshold(
            pd_valid,
            y_valid,
            cost_fn=options.cost_missed_default,
            cost_fp=options.cost_declined_good,
        )
        pd_test = calibrator(model.predict_raw(x_test))
        test = metrics(pd_test, y_test, threshold)
        by_vintage = auc_by_vintage(pd_test, y_test, split.test[VINTAGE])
        mlflow.set_tag("loanrisk.candidate", name)
        mlflow.log_params({f"param_{k}": v for k, v in fit.params.items()})
        mlflow.log_params({"trials": fit.trials, "threshold": round(threshold, 6)})
        mlflow.log_metric("valid_auc", fit.valid_auc)
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items()})
        for month, auc in by_vintage.items():
            mlflow.log_metric(f"test_auc_{month.replace('-', '_')}", auc)
        with tempfile.TemporaryDirectory() as tmp:
            for path in save_plots(
                Path(tmp),
                pd_test,
                y_test,
                threshold,
                model.importance(),
                title=f"{name} - test window",
            ):
                mlflow.log_artifact(str(path), artifact_path="plots")
            importance = Path(tmp) / "feature_importance.json"
            importance.write_text(json.dumps(model.importance(), indent=2))
            mlflow.log_artifact(str(importance))
        report = CandidateReport(
            name=name,
            run_id=run.info.run_id,
            params=fit.params,
            trials=fit.trials,
            valid_auc=fit.valid_auc,
            threshold=threshold,
            test=test,
            test_auc_by_vintage=by_vintage,
            seconds=round(time.perf_counter() - started, 1),
        )
    return report, model, calibrator


def _reference_sample(
    x_train: pd.DataFrame, pd_train: np.ndarray, *, seed: int, rows: int = 20_000
) -> pd.DataFrame:
    """Up to ``rows`` training applicants (model inputs and PD), kept with the model."""
    sample = x_train.assign(pd=pd_train)
    if len(sample) > rows:
        sample = sample.sample(rows, random_state=seed)
    return sample.reset_index(drop=True)


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


def input_signature(profile: Profile) -> ModelSignature:
    """Raw application fields, all optional and of any type (text or converted values).

    Post-origination fields and the target are not inputs; MLflow drops extra columns.
    """
    names = [n for n, c in profile.columns.items() if c.role not in (Role.LEAKAGE, Role.TARGET)]
    return ModelSignature(inputs=Schema([ColSpec(AnyType(), n, required=False) for n in names]))


def model_card(
    winner: CandidateReport,
    reports: list[CandidateReport],
    split: Split,
    fingerprint: dict[str, Any],
    bundle: ScoringBundle,
    settings: Settings,
    warnings: list[str],
) -> str:
    """A Markdown model card: data window, metrics, threshold and costs, limitations."""
    window = split.describe()
    rows = "\n".join(
        f"| {r.name} | {r.valid_auc:.4f} | {r.test['auc']:.4f} | {r.test['gini']:.4f} | "
        f"{r.test['ks']:.4f} | {r.test['brier']:.4f} | {r.test['ece']:.4f} |"
        for r in reports
    )
    edges = [0.0, *bundle.grade_edges, 1.0]
    scale = "\n".join(
        f"| {g} | {edges[i]:.4f} | {edges[i + 1]:.4f} |" for i, g in enumerate(GRADES)
    )
    t = winner.test
    notes = "\n".join(f"- {w}" for w in warnings) or "- none"
    return f"""# Model card: {settings.mlflow.model_name} ({winner.name})

## Data
- Profile: `{bundle.profile.name}`; gold rows used: {fingerprint["rows"]:,} labelled
  (default rate {fingerprint["default_rate"]:.2%}); content hash `{fingerprint["content_hash"]}`.
- Split: {window["split"]}; train {window["train_rows"]:,} rows ({window["train_window"]}),
  validation {window["valid_rows"]:,} ({window["valid_window"]}), test {window["test_rows"]:,}
  ({window["test_window"]}).
- Features ({len(bundle.spec.columns)}): {", ".join(bundle.spec.columns)}.

## Candidates (selected on validation AUC; test window untouched until evaluation)
| candidate | valid AUC | test AUC | Gini | KS | Brier | ECE |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

## Selected model on the test window
AUC {t["auc"]:.4f}, Gini {t["gini"]:.4f}, KS {t["ks"]:.4f}, PR-AUC {t["pr_auc"]:.4f},
precision {t["precision"]:.4f}, recall {t["recall"]:.4f}, F1 {t["f1"]:.4f} at the threshold,
Brier {t["brier"]:.4f}, ECE {t["ece"]:.4f}, log loss {t["log_loss"]:.4f}.

## Decision
Decline when PD >= {bundle.threshold:.4f}. The threshold minimises expected cost on the
validation window with a missed default costing {settings.training.cost_missed_default:g} and a
declined good loan {settings.training.cost_declined_good:g}. PDs are Platt-calibrated on the
validation window.

## Master scale (fitted on training PDs)
| grade | PD from | PD to |
| --- | --- | --- |
{scale}

## Limitations
- Labels exist only for loans that reached a final status (Fully Paid, Charged Off, ...).
  Recent vintages are labelled mostly where they resolved early, which over-represents
  early defaults there; prefer extracts in which the test window has matured.
- Calibration holds for populations like the validation window; monitor drift.
- Reason codes are the features that raise the PD most for that applicant
  ({
        "native tree contributions"
        if winner.name != "logistic_regression"
        else "coefficient x deviation from the average training applicant"
    }).

## Warnings
{notes}
"""


# MLflow's SQL registry stores at most 5,000 characters of a version's description.
_DESCRIPTION_LIMIT = 5000


def _description(card: str, run_id: str) -> str:
    """The model card as the registered version's description (cut at the store's limit,
    saying where the whole card is)."""
    if len(card) <= _DESCRIPTION_LIMIT:
        return card
    tail = f"\n\n... (the whole card: runs:/{run_id}/model_card.md)"
    return card[: _DESCRIPTION_LIMIT - len(tail)] + tail


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(loanrisk.__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _requirements() -> list[str]:
    found = []
    for name in _MODEL_REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found
