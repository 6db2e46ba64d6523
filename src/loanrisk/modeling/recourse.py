"""Recourse for a decline: the smallest change to the requested terms (the profile's
actionable inputs: loan amount, term) that would turn it into an approval, found with the
same scorer that decided."""

from __future__ import annotations

from typing import Any

import numpy as np

STEPS = 10  # amounts tried between the request and the profile's floor


def recourse(scorer: Any, record: dict[str, Any]) -> str:
    """One sentence: the first approval found, smallest change first (a lower amount
    alone, then another term alone, then both), or that no change in the terms would."""
    return find_recourse(scorer, record)[1]


def find_recourse(scorer: Any, record: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the change that would be approved, or None; the sentence saying so)."""
    profile = scorer.profile
    options: list[tuple[float, dict[str, Any], str]] = []
    for column, spec in getattr(profile, "recourse", {}).items():
        current = _number(record.get(column))
        if current is None:
            continue
        label = profile.columns[column].description or column
        if spec.down_to is not None:
            for share in np.linspace(1 - (1 - spec.down_to) / STEPS, spec.down_to, STEPS):
                value = round(current * share / 25) * 25
                words = f"{label} of {value:,.0f} instead of {current:,.0f}"
                options.append((1 - share, {column: value}, words))
        for value in spec.values:
            if value != current:
                words = f"{label} of {value:g} instead of {current:g}"
                options.append((0.5, {column: value}, words))
    singles = sorted(options, key=lambda option: option[0])
    pairs = [
        (a[0] + b[0], a[1] | b[1], f"{a[2]} and {b[2]}")
        for i, a in enumerate(singles)
        for b in singles[i + 1 :]
        if set(a[1]).isdisjoint(b[1])
    ]
    candidates = singles + sorted(pairs, key=lambda option: option[0])
    if candidates:
        answers = scorer.score([record | changed for _, changed, _ in candidates])
        for (_, changed, said), answer in zip(candidates, answers, strict=True):
            if answer["decision"] == "approve":
                return changed, f"Would be approved with {said}."
    return None, "No change in the requested terms would lead to an approval."


def _number(value: Any) -> float | None:
    try:
        number = float(str(value).split()[0]) if value is not None else None
    except (ValueError, IndexError):
        return None
    return number
