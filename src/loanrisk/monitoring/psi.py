"""Population stability index, with the usual bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

STABLE, WATCH = 0.10, 0.25  # < 0.10 stable, 0.10-0.25 watch, > 0.25 act
_FLOOR = 1e-4


def band(value: float) -> str:
    return "stable" if value < STABLE else ("watch" if value <= WATCH else "act")


DISCRETE_LEVELS = 20  # a numeric input with at most this many values is binned by value


def psi(reference: pd.Series, current: pd.Series, *, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference``, missing values a bin of their own; empty
    bins are floored at 1e-4 (smoothing, so an empty bin does not make it infinite).

    Numbers with few distinct values in the reference (``term`` 36/60, counts of
    inquiries) get one bin per value: reference deciles would put them all in one bin
    and see no drift however their mix moves. Other numbers get the reference's decile
    bins; categories one bin per level.
    """
    numeric = pd.api.types.is_numeric_dtype(reference) and not isinstance(
        reference.dtype, pd.CategoricalDtype
    )
    if numeric:
        ref = reference.astype("float64")
        cur = current.astype("float64")
        distinct = np.unique(ref.dropna())
        if len(distinct) > DISCRETE_LEVELS:
            edges = np.unique(np.nanquantile(ref.dropna(), np.linspace(0, 1, bins + 1)))
            edges[0], edges[-1] = -np.inf, np.inf
            ref_counts = np.append(np.histogram(ref.dropna(), edges)[0], ref.isna().sum())
            cur_counts = np.append(np.histogram(cur.dropna(), edges)[0], cur.isna().sum())
            return _index(ref_counts, cur_counts)
        reference, current = ref, cur
    ref_labels = reference.astype(object).where(reference.notna(), "(missing)")
    cur_labels = current.astype(object).where(current.notna(), "(missing)")
    levels = sorted(set(ref_labels) | set(cur_labels), key=str)
    ref_counts = ref_labels.value_counts().reindex(levels, fill_value=0).to_numpy(float)
    cur_counts = cur_labels.value_counts().reindex(levels, fill_value=0).to_numpy(float)
    return _index(ref_counts, cur_counts)


def _index(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = np.maximum(ref_counts / max(ref_counts.sum(), 1), _FLOOR)
    q = np.maximum(cur_counts / max(cur_counts.sum(), 1), _FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))
