"""Outcomes across groups of a protected attribute (pure): approval rate with a 95 %
Wilson interval, adverse impact ratio against the most-approved group (the four-fifths
rule), default rate, and the decline rates among defaulters (true positive rate) and
among good loans (false positive rate)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

BANDS = 5  # a numeric attribute (age, ...) is judged in this many quantile bands


def groups_of(values: pd.Series, *, numeric: bool) -> pd.Series:
    """The group of each row: the value, or for a numeric attribute its quantile band."""
    if not numeric:
        return values.astype("string")
    numbers = pd.to_numeric(values, errors="coerce")
    bands = pd.qcut(numbers, BANDS, duplicates="drop")
    return bands.astype("string")


def wilson(successes: int, rows: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (sound for small groups)."""
    if rows == 0:
        return 0.0, 1.0
    share = successes / rows
    centre = (share + z * z / (2 * rows)) / (1 + z * z / rows)
    half = (
        z * math.sqrt(share * (1 - share) / rows + z * z / (4 * rows * rows)) / (1 + z * z / rows)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def fairness_table(
    groups: pd.Series, approved: np.ndarray, y: np.ndarray | None, *, min_rows: int
) -> dict[str, Any]:
    """Figures per group (rows without a group are left out); the adverse impact ratio
    and the minimum are taken over groups of at least ``min_rows`` rows."""
    known = groups.notna().to_numpy()
    labels = groups.to_numpy()[known]
    approved = np.asarray(approved, dtype=bool)[known]
    outcome = None if y is None else np.asarray(y, dtype=float)[known]
    table: dict[str, dict[str, Any]] = {}
    for group in sorted(set(labels)):
        mask = labels == group
        rows, taken = int(mask.sum()), int(approved[mask].sum())
        low, high = wilson(taken, rows)
        figures: dict[str, Any] = {
            "rows": rows,
            "approval_rate": taken / rows,
            "approval_ci": [low, high],
        }
        if outcome is not None:
            bad, good = mask & (outcome == 1), mask & (outcome == 0)
            figures["default_rate"] = float(outcome[mask].mean())
            figures["tpr"] = float((~approved[bad]).mean()) if bad.any() else None
            figures["fpr"] = float((~approved[good]).mean()) if good.any() else None
        table[str(group)] = figures
    judged = {g: f for g, f in table.items() if f["rows"] >= min_rows}
    reference = max(judged, key=lambda g: judged[g]["approval_rate"]) if judged else None
    top = judged[reference]["approval_rate"] if reference else 0.0
    for group, figures in table.items():
        figures["adverse_impact_ratio"] = (
            figures["approval_rate"] / top if group in judged and top > 0 else None
        )
    ratios = {g: f["adverse_impact_ratio"] for g, f in judged.items()}
    lowest = min(ratios, key=lambda g: ratios[g]) if ratios else None
    return {
        "reference_group": reference,
        "lowest_group": lowest,
        "min_adverse_impact_ratio": ratios[lowest] if lowest else None,
        "groups": table,
    }
