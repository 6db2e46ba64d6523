"""Build: silver rows -> model-ready gold features (application-time fields only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.data.parsers import moments
from loanrisk.errors import LoanriskError
from loanrisk.profiles.model import DerivedSpec, Profile


def build_features(silver: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """Gold rows: id, vintage and label when present, then the profile's features.

    Works on one application as well as on millions; never returns a leakage column.
    """
    keep = [c for c in (LOAN_ID, VINTAGE, LABEL) if c in silver.columns]
    gold = silver[keep].copy()
    for name in profile.feature_columns:
        gold[name] = silver[name] if name in silver.columns else np.nan
    for name, spec in profile.derived.items():
        gold[name] = _derive(silver, spec)
    assert_no_leakage(gold, profile)
    return gold


def assert_no_leakage(frame: pd.DataFrame, profile: Profile) -> None:
    """Raise if ``frame`` holds a column the profile marks as post-origination."""
    leaked = set(frame.columns) & set(profile.leakage_columns)
    if leaked:
        raise LoanriskError(f"leakage guard: post-origination column(s) {sorted(leaked)} in gold")


def _derive(silver: pd.DataFrame, spec: DerivedSpec) -> pd.Series:
    first, second = spec.inputs
    if first not in silver.columns or second not in silver.columns:
        return pd.Series(np.nan, index=silver.index, dtype="float64")
    if spec.op == "months_between":
        start, end = moments(silver[first]), moments(silver[second])
        months = (end.dt.year - start.dt.year) * 12 + (end.dt.month - start.dt.month)
        return months.astype("float64") * spec.scale
    a = silver[first].astype("float64")
    b = silver[second].astype("float64")
    if spec.op == "mean":
        return (a + b) / 2.0 * spec.scale
    return (a / b.where(b > 0)) * spec.scale
