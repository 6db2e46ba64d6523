"""Realised performance of answered predictions whose outcomes are known (pure)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score

from loanrisk.modeling.evaluate import GRADES, ks_statistic


def realised(pairs: pd.DataFrame, minimum: int) -> dict[str, Any] | None:
    """AUC, Gini, KS, predicted against observed default rate, and both by grade, of
    ``pairs`` (one row per prediction with an outcome: pd, grade, defaulted). None without
    outcomes; no AUC with fewer than ``minimum`` or with outcomes of one class only."""
    if pairs.empty:
        return None
    if len(pairs) < minimum:
        return {"outcomes": len(pairs), "auc": None, "note": f"fewer than {minimum} outcomes"}
    y, scores = pairs["defaulted"].to_numpy(int), pairs["pd"].to_numpy(float)
    if len(set(y)) < 2:
        return {"outcomes": len(pairs), "auc": None, "note": "outcomes of one class only"}
    auc = float(roc_auc_score(y, scores))
    by_grade = pairs.groupby("grade").agg(
        rows=("pd", "size"), predicted=("pd", "mean"), observed=("defaulted", "mean")
    )
    return {
        "outcomes": len(pairs),
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(scores, y),
        "predicted_default_rate": float(scores.mean()),
        "observed_default_rate": float(y.mean()),
        "by_grade": {
            g: {k: float(v) for k, v in by_grade.loc[g].items()}
            for g in GRADES
            if g in by_grade.index
        },
    }
