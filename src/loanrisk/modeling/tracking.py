"""Tracking: what a training run leaves in MLflow (parent run, one child run per candidate
with its metrics and plots, the packaged pyfunc model). The only writer of MLflow runs."""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types.schema import (
    AnyType,
    Array,
    ColSpec,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
)

import loanrisk
from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.modeling.evaluate import save_plots
from loanrisk.modeling.fitting import FittedCandidate
from loanrisk.modeling.package import LoanDefaultModel, ScoringBundle
from loanrisk.modeling.split import Split
from loanrisk.profiles.model import NOT_INPUTS, Profile

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


def log_candidate(fitted: FittedCandidate, y_test: np.ndarray, *, experiment: str) -> str:
    """A child run of the active run: the candidate's parameters, validation and test
    metrics (also per vintage), plots and feature importance. Returns its run id."""
    with mlflow.start_run(experiment_id=experiment, run_name=fitted.name, nested=True) as run:
        mlflow.set_tag("loanrisk.candidate", fitted.name)
        mlflow.log_params({f"param_{k}": v for k, v in fitted.params.items()})
        mlflow.log_params({"trials": fitted.trials, "threshold": round(fitted.threshold, 6)})
        mlflow.log_metric("valid_auc", fitted.valid_auc)
        mlflow.log_metrics({f"test_{k}": v for k, v in fitted.test.items()})
        for month, auc in fitted.test_auc_by_vintage.items():
            mlflow.log_metric(f"test_auc_{month.replace('-', '_')}", auc)
        log_plots(fitted, y_test, artifact_path="plots")
        importance = fitted.model.importance()
        mlflow.log_dict(importance, "feature_importance.json")
        return str(run.info.run_id)


class WarehouseSource(DatasetSource):
    """Where a logged dataset's rows came from: the warehouse's gold table at one state
    (the same state the registered version's ``gold_state`` tag names)."""

    def __init__(self, url: str, table: str, gold_state: str | None) -> None:
        self.url, self.table, self.gold_state = url, table, gold_state

    @staticmethod
    def _get_source_type() -> str:
        return "loanrisk_warehouse"

    def load(self, **_kwargs: Any) -> Any:
        raise NotImplementedError("read gold through loanrisk (loanrisk.warehouse.queries)")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> WarehouseSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "table": self.table, "gold_state": self.gold_state}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> WarehouseSource:
        return cls(source_dict["url"], source_dict["table"], source_dict.get("gold_state"))


def log_datasets(split: Split, features: list[str], source: WarehouseSource) -> None:
    """The training, validation and test rows (ids, vintage, model inputs, label) as MLflow
    datasets on the active run: name, digest, schema and row count, with their source."""
    contexts = {"train": "training", "valid": "validation", "test": "test"}
    for part, context in contexts.items():
        rows = getattr(split, part)
        frame = rows[[c for c in (LOAN_ID, VINTAGE, *features, LABEL) if c in rows.columns]]
        with warnings.catch_warnings():
            # MLflow infers the dataset's schema to describe it, and hints (three times a
            # train, on stderr) that integer columns cannot hold missing values at
            # inference. Nothing is enforced with that schema: the model's signature
            # takes every input as optional and of any type.
            warnings.filterwarnings(
                "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
            )
            dataset = from_pandas(
                frame.reset_index(drop=True), source=source, targets=LABEL, name=f"gold_{part}"
            )
            mlflow.log_input(dataset, context=context)  # where the schema is inferred


def log_policy(policy: dict[str, Any], calibration: dict[str, dict[str, float]]) -> None:
    """What the lending policy implies on the test window (approval rate, expected and
    observed bad rate among approved, by grade) and calibration in the large per vintage,
    as metrics and tables on the active run."""
    mlflow.log_metrics(
        {
            f"test_policy_{key}": value
            for key, value in policy.items()
            if isinstance(value, float) and key != "cutoff"
        }
    )
    mlflow.log_dict(policy, "policy.json")
    rows = [{"grade": grade, **figures} for grade, figures in policy["by_grade"].items()]
    mlflow.log_table(pd.DataFrame(rows), "policy_by_grade.json")
    for month, figures in calibration.items():
        mlflow.log_metric(f"test_mean_pd_{month.replace('-', '_')}", figures["mean_pd"])
        mlflow.log_metric(f"test_default_rate_{month.replace('-', '_')}", figures["default_rate"])
    mlflow.log_dict(calibration, "calibration_by_vintage.json")


def log_fairness(fairness: dict[str, Any]) -> None:
    """The fairness report (per protected attribute and group) as JSON, a table and the
    lowest adverse impact ratio per attribute, on the active run."""
    if not fairness:
        return
    mlflow.log_dict(fairness, "fairness.json")
    rows = [
        {"attribute": column, "group": group, **figures}
        for column, table in fairness.items()
        for group, figures in table["groups"].items()
    ]
    mlflow.log_table(pd.DataFrame(rows), "fairness_by_group.json")
    for column, table in fairness.items():
        if table["min_adverse_impact_ratio"] is not None:
            mlflow.log_metric(f"test_min_air_{column}", table["min_adverse_impact_ratio"])


def log_plots(fitted: FittedCandidate, y_test: np.ndarray, *, artifact_path: str) -> None:
    """The candidate's test-window plots (ROC, calibration, PD distribution, importance)."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in save_plots(
            Path(tmp),
            fitted.pd_test,
            y_test,
            fitted.threshold,
            fitted.model.importance(),
            title=f"{fitted.name} - test window",
        ):
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_model(
    bundle: ScoringBundle,
    *,
    card: str,
    test_predictions: pd.DataFrame,
    example: pd.DataFrame,
) -> ModelInfo:
    """The packaged pyfunc model (bundle, card, signature, input example, the loanrisk
    code, pinned requirements) and the test predictions, on the active run."""
    signature = input_signature(bundle.profile)
    example = example[[c for c in example.columns if c in signature.inputs.input_names()]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        predictions = folder / "test_predictions.parquet"
        test_predictions.to_parquet(predictions, index=False)
        mlflow.log_artifact(str(predictions))
        card_file = folder / "model_card.md"
        card_file.write_text(card)
        mlflow.log_artifact(str(card_file))
        bundle_path = folder / "bundle.joblib"
        joblib.dump(bundle, bundle_path)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=LoanDefaultModel(),
            artifacts={"bundle": str(bundle_path), "model_card": str(card_file)},
            signature=signature,
            input_example=example if len(example) else None,
            code_paths=[str(Path(loanrisk.__file__).parent)],
            pip_requirements=requirements(),
        )


def input_signature(profile: Profile) -> ModelSignature:
    """Raw application fields in, all optional and of any type (text or converted values);
    the answer per application out; one parameter, ``output``.

    Post-origination fields and the target are not inputs; MLflow drops extra columns.
    ``output="table"`` (the Spark engine's) answers in batch scoring's table form
    (``loanrisk.modeling.answers``): reasons as JSON text, with the prediction log's
    ``input`` and ``features``.
    """
    names = [n for n, c in profile.columns.items() if c.role not in NOT_INPUTS]
    reason = Object(
        [
            Property("code", "string"),
            Property("reason", "string"),
            Property("contribution", "double"),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "loan_id", required=False),
            ColSpec("double", "pd", required=False),
            ColSpec("long", "default_class", required=False),
            ColSpec("string", "decision", required=False),
            ColSpec("string", "grade", required=False),
            ColSpec(Array(reason), "reasons", required=False),
            ColSpec("string", "error", required=False),
        ]
    )
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), n, required=False) for n in names]),
        outputs=outputs,
        params=ParamSchema([ParamSpec("output", "string", "frame")]),
    )


def git_commit() -> str:
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


def requirements() -> list[str]:
    found = []
    for name in _MODEL_REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found
