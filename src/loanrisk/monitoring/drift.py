"""Drift of the model inputs and the PD score: Evidently's per-column tests and PSI
(pure: frames in, figures out; Evidently's snapshot is returned for the HTML report)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from loanrisk.modeling.features import FeatureSpec
from loanrisk.monitoring.psi import band, psi

SCORE = "pd"


@dataclass
class Drift:
    """Per-column drift tests and PSI, the drifted inputs and the score's PSI."""

    tests: dict[str, dict[str, Any]]  # column -> method, value, threshold, drifted
    stability: dict[str, dict[str, Any]]  # column -> PSI value and band
    drifted: list[str]
    drifted_share: float
    score_psi: float
    snapshot: Any  # Evidently's report, for the HTML file


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    scores: Any,
    spec: FeatureSpec,
    *,
    drift_share: float,
) -> Drift:
    """``reference``: the training sample kept with the model (inputs and ``pd``);
    ``current``: the window's model inputs, with ``scores`` their PDs.

    One definition of "drifted", the same in the HTML report, the JSON summary and the
    command line: a model input whose Evidently test says so; the inputs as a whole when
    at least ``drift_share`` of them drifted. The PD score is judged by its PSI."""
    columns = [*spec.numeric, *spec.categorical, SCORE]
    reference = reference.copy()
    current = current.reindex(columns=columns)
    current[SCORE] = scores
    for name in spec.categorical:
        reference[name] = _labels(reference[name])
        current[name] = _labels(current[name])
    for name in [*spec.numeric, SCORE]:
        current[name] = pd.to_numeric(current[name], errors="coerce")
    inputs = [*spec.numeric, *spec.categorical]
    tests, snapshot = _evidently(
        reference[inputs], current[inputs], spec.numeric, spec.categorical, drift_share
    )
    stability: dict[str, dict[str, Any]] = {}
    for column in columns:
        value = round(psi(reference[column], current[column]), 6)
        stability[column] = {"value": value, "band": band(value)}
    drifted = [c for c in inputs if tests.get(c, {}).get("drifted")]
    return Drift(
        tests=tests,
        stability=stability,
        drifted=drifted,
        drifted_share=round(len(drifted) / max(len(inputs), 1), 4),
        score_psi=stability[SCORE]["value"],
        snapshot=snapshot,
    )


def _labels(values: pd.Series) -> pd.Series:
    """Category levels as plain strings, missing as None (the same on both sides)."""
    return pd.Series(
        [None if pd.isna(v) else str(v) for v in values], index=values.index, dtype=object
    )


def _evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    drift_share: float,
) -> tuple[dict[str, dict[str, Any]], Any]:
    # Evidently takes ~2 s to import: only monitoring runs pay for it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(columns=[*numeric, *categorical], drift_share=drift_share)
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    tests: dict[str, dict[str, Any]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = (
            config.get("method", ""),
            config.get("threshold"),
            metric["value"],
        )
        is_p_value = "p_value" in method.lower()
        drifted = value < threshold if is_p_value else value >= threshold
        tests[config["column"]] = {
            "method": method,
            "value": round(float(value), 6),
            "threshold": threshold,
            "drifted": bool(drifted),
        }
    return tests, snapshot
