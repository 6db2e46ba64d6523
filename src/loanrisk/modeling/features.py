"""From gold rows to the model's input frame: typed numeric columns and fixed categories."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loanrisk.profiles.model import Parser, Profile

CATEGORICAL_PARSERS = frozenset({Parser.CATEGORY, Parser.ZIP3})
MIN_LEVEL_COUNT = 20  # rarer categories are treated as unknown


@dataclass(frozen=True)
class FeatureSpec:
    """Which gold columns the model uses, and the category levels seen in training."""

    numeric: list[str]
    categorical: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)
    # Direction of risk per numeric input: +1 increasing, -1 decreasing (0 or absent: free).
    monotone: dict[str, int] = field(default_factory=dict)

    def constraints(self) -> list[int]:
        """Monotone constraints in ``columns`` order (categorical inputs are free)."""
        directions = getattr(self, "monotone", None) or {}
        return [directions.get(c, 0) for c in self.columns]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def fit_feature_spec(
    train: pd.DataFrame, profile: Profile, *, use_proxies: bool = False, monotone: bool = True
) -> FeatureSpec:
    """Features with any information in training data, categories with enough rows;
    the profile's proxy columns only when ``use_proxies``."""
    numeric, categorical, levels = [], [], {}
    skipped = set() if use_proxies else set(profile.proxy_columns)
    for name in profile.gold_features:
        if name in skipped or name not in train.columns or train[name].notna().sum() == 0:
            continue
        spec = profile.columns.get(name)
        if spec is not None and spec.parser in CATEGORICAL_PARSERS:
            counts = train[name].dropna().astype("string").value_counts()
            kept = sorted(counts[counts >= MIN_LEVEL_COUNT].index)
            if kept:
                categorical.append(name)
                levels[name] = kept
        elif train[name].astype("float64").nunique(dropna=True) > 1:
            numeric.append(name)
    directions = {n: profile.monotone(n) for n in numeric if monotone and profile.monotone(n)}
    return FeatureSpec(numeric=numeric, categorical=categorical, levels=levels, monotone=directions)


def model_frame(gold: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Numeric columns as float64, categoricals with the training levels (others -> NaN)."""
    data: dict[str, object] = {}
    for name in spec.numeric:
        column = gold[name] if name in gold.columns else pd.Series(np.nan, index=gold.index)
        data[name] = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
    for name in spec.categorical:
        column = gold[name] if name in gold.columns else pd.Series(None, index=gold.index)
        data[name] = pd.Categorical(column.astype("string"), categories=spec.levels[name])
    return pd.DataFrame(data, index=gold.index)


def encoded(x: pd.DataFrame) -> np.ndarray:
    """A model frame as the float matrix LightGBM predicts from: numeric columns as they
    are, each categorical as its level's index (missing or unseen: NaN)."""
    matrix = np.empty((len(x), x.shape[1]), dtype=np.float64)
    for j, name in enumerate(x.columns):
        column = x[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
            matrix[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            matrix[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return matrix
