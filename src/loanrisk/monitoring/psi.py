"""Population stability index, with the usual bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

STABLE, WATCH = 0.10, 0.25  # < 0.10 stable, 0.10-0.25 watch, > 0.25 act
_FLOOR = 1e-4


def band(value: float) -> str:
    return "stable" if value < STABLE else ("watch" if value <= WATCH else "act")


def psi(reference: pd.Series, current: pd.Series, *, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference``: deciles of the reference for numbers,
    categories (and missing) for everything else; empty bins are floored."""
    if pd.api.types.is_numeric_dtype(reference) and not isinstance(
        reference.dtype, pd.CategoricalDtype
    ):
        ref = reference.astype("float64")
        cur = current.astype("float64")
        edges = np.unique(np.nanquantile(ref.dropna(), np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:
            ref_counts = np.array([ref.notna().sum(), ref.isna().sum()], dtype=float)
            cur_counts = np.array([cur.notna().sum(), cur.isna().sum()], dtype=float)
        else:
            edges[0], edges[-1] = -np.inf, np.inf
            ref_counts = np.append(np.histogram(ref.dropna(), edges)[0], ref.isna().sum())
            cur_counts = np.append(np.histogram(cur.dropna(), edges)[0], cur.isna().sum())
    else:
        ref_labels = reference.astype(object).where(reference.notna(), "(missing)")
        cur_labels = current.astype(object).where(current.notna(), "(missing)")
        levels = sorted(set(ref_labels) | set(cur_labels), key=str)
        ref_counts = ref_labels.value_counts().reindex(levels, fill_value=0).to_numpy(float)
        cur_counts = cur_labels.value_counts().reindex(levels, fill_value=0).to_numpy(float)
    p = np.maximum(ref_counts / max(ref_counts.sum(), 1), _FLOOR)
    q = np.maximum(cur_counts / max(cur_counts.sum(), 1), _FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))
