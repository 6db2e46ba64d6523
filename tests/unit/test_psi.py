"""PSI: discrete numerics by value, continuous by reference deciles, categories by level."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from loanrisk.monitoring.psi import band, psi

pytestmark = pytest.mark.unit


def _direct(p: list[float], q: list[float]) -> float:
    return sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))


def test_a_two_valued_number_whose_mix_moves_is_drift():
    """term 36/60 moving from 72/28 to 30/70: the decile bins of old put both values in
    one bin and reported PSI 0.0."""
    reference = pd.Series([36.0] * 720 + [60.0] * 280)
    current = pd.Series([36.0] * 300 + [60.0] * 700)
    value = psi(reference, current)
    assert value == pytest.approx(_direct([0.72, 0.28], [0.30, 0.70]), rel=1e-9)
    assert value >= 0.25 and band(value) == "act"


def test_the_same_mix_is_stable_and_missing_values_count():
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.choice([0.0, 1.0, 2.0, np.nan], 5000, p=[0.6, 0.25, 0.1, 0.05]))
    same = pd.Series(rng.choice([0.0, 1.0, 2.0, np.nan], 5000, p=[0.6, 0.25, 0.1, 0.05]))
    assert psi(reference, same) < 0.01
    more_missing = pd.Series(rng.choice([0.0, 1.0, 2.0, np.nan], 5000, p=[0.4, 0.2, 0.1, 0.3]))
    assert psi(reference, more_missing) > 0.25
    new_value = pd.Series([0.0] * 4000 + [7.0] * 1000)  # a value the reference never had
    assert psi(reference, new_value) > 0.25


def test_a_continuous_number_uses_reference_deciles():
    rng = np.random.default_rng(2)
    reference = pd.Series(rng.normal(0, 1, 20_000))
    assert psi(reference, pd.Series(rng.normal(0, 1, 20_000))) < 0.01
    shifted = pd.Series(rng.normal(0.5, 1, 20_000))
    assert 0.1 < psi(reference, shifted) < 0.5
    assert psi(reference, pd.Series(rng.normal(2, 1, 20_000))) > 1.0


def test_categories_by_level():
    reference = pd.Series(["RENT"] * 50 + ["OWN"] * 50)
    assert psi(reference, pd.Series(["RENT"] * 50 + ["OWN"] * 50)) == pytest.approx(0.0)
    assert psi(reference, pd.Series(["RENT"] * 90 + ["OWN"] * 10)) == pytest.approx(
        _direct([0.5, 0.5], [0.1, 0.9]), rel=1e-9
    )
