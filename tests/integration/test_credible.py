"""Credible credit decisions: labels over a performance window, a PD that means what it
says, a lending policy a lender can defend, and promotion gates that refuse the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loanrisk.config import get_settings
from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.data.generate import GeneratorConfig, truth_path, write_generated
from loanrisk.data.refine import refine
from loanrisk.profiles import load_profile
from loanrisk.registry import Registry
from tests import steps

pytestmark = pytest.mark.integration
PROFILE = load_profile("lendingclub")


def labelled(path: Path) -> pd.DataFrame:
    """The file's loans refined by the profile (horizon labels), with their true PDs."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    silver = refine(raw, PROFILE).silver
    truth = pd.read_parquet(truth_path(path))[["id", "true_pd"]].rename(columns={"id": LOAN_ID})
    truth[LOAN_ID] = truth[LOAN_ID].astype(str)
    return silver.merge(truth, on=LOAN_ID, how="left")


def test_an_early_and_a_late_extract_give_the_same_default_rates(tmp_path):
    """The same loans extracted 18 months after the last issue month (vintages still
    young) and 5 years later: the matured vintages carry the same labels, and the young
    ones are censored rather than labelled by their early defaults."""
    rates = {}
    for as_of in ("2018-06", "2022-01"):
        path = tmp_path / f"loans-{as_of}.csv"
        write_generated(
            GeneratorConfig(rows=30_000, start="2015-01", months=24, seed=5, as_of=as_of), path
        )
        silver = refine(pd.read_csv(path, dtype=str, keep_default_na=False), PROFILE).silver
        known = silver.dropna(subset=[LABEL])
        quarter = known[VINTAGE].dt.to_period("Q")
        rates[as_of] = known.groupby(quarter)[LABEL].mean()
    early, late = rates["2018-06"], rates["2022-01"]
    # What the early extract labels (its latest matured quarter is its test window):
    assert early.index.max() < late.index.max()  # young vintages censored, not labelled
    for quarter in early.index:
        assert abs(early[quarter] - late[quarter]) < 0.03, (quarter, early, late)
    # Under final-status labels the same early test window would be mostly early defaults.
    assert late.max() < 0.25


def test_the_demo_population_gets_a_credible_model(tmp_path):
    """Trained as the demo trains (36 months of 2015-2017 extracted in 2020), then judged on
    a fresh, fully matured sample of the test months: approval rate 50-95 %, mean PD within
    0.02 of the default rate observed over the PD's horizon, AUC within 0.015 of the AUC
    of the true PDs on the same rows."""
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression", "lightgbm"]
    history = tmp_path / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=90_000, start="2015-01", months=36, seed=42, as_of="2020-01"), history
    )
    steps.ingest(settings, [str(history)])
    trained = steps.train(settings)
    assert trained.pd_horizon_months == 24
    assert steps.promote(settings).promoted

    fresh = tmp_path / "fresh.csv"
    write_generated(
        GeneratorConfig(rows=30_000, start="2017-10", months=3, seed=7, as_of="2022-01"), fresh
    )
    sample = labelled(fresh).dropna(subset=[LABEL])
    assert len(sample) > 25_000  # fully matured: every vintage labelled
    raw = pd.read_csv(fresh, dtype=str, keep_default_na=False)
    raw = raw[raw["id"].isin(sample[LOAN_ID])]
    production = Registry(settings).by_alias("production")
    assert production is not None
    scored = Registry(settings).load(production.version).predict(raw)
    scored[LOAN_ID] = scored["loan_id"].astype(str)
    joined = sample.merge(scored[[LOAN_ID, "pd", "decision"]], on=LOAN_ID).dropna(subset=["pd"])
    y = joined[LABEL].to_numpy(int)
    approval = float((joined["decision"] == "approve").mean())
    mean_pd, observed = float(joined["pd"].mean()), float(y.mean())
    auc, best = roc_auc_score(y, joined["pd"]), roc_auc_score(y, joined["true_pd"])
    figures = f"approval {approval:.3f} mean PD {mean_pd:.4f} observed {observed:.4f} "
    figures += f"AUC {auc:.4f} true-PD AUC {best:.4f}"
    assert 0.5 <= approval <= 0.95, figures
    assert abs(mean_pd - observed) <= 0.02, figures
    assert abs(auc - best) <= 0.015, figures


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    loans = tmp_path_factory.mktemp("gates") / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=25_000, start="2015-01", months=18, seed=11, as_of="2020-01"), loans
    )
    return loans


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"training": {"policy": "approval_rate", "target_approval_rate": 0.99}}, "approval rate"),
        ({"training": {"policy": "max_pd", "max_pd": 0.02}}, "approval rate"),
        ({"promotion": {"max_calibration_gap": 0.0001}}, "|mean PD"),
    ],
)
def test_promotion_refuses_a_policy_or_calibration_out_of_band_and_names_the_gate(
    tmp_path, small, change, gate
):
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    for section, values in change.items():
        for key, value in values.items():
            setattr(getattr(settings, section), key, value)
    steps.ingest(settings, [str(small)])
    steps.train(settings)
    refused = steps.promote(settings)
    assert not refused.promoted
    failed = [c for c in refused.checks if not c["passed"]]
    assert [c["check"] for c in failed if c["check"].startswith(gate)], refused.checks
    assert refused.reason.startswith("refused: ") and gate in refused.reason
    assert "(challenger " in refused.reason  # with its number
    staging = Registry(settings).by_alias("staging")
    assert staging is not None and gate in staging.tags["promotion_refused_reason"]


def test_the_served_model_states_the_pd_horizon_and_policy(tmp_path, small):
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(settings, [str(small)])
    result = steps.train(settings)
    tags = Registry(settings).get(result.version).tags
    assert tags["pd_horizon_months"] == "24" and tags["policy"] == "expected_cost"
    assert 0.0 < float(tags["test_approval_rate"]) < 1.0
    assert result.policy["by_grade"] and result.policy["cutoff"] == pytest.approx(result.threshold)
    approved = np.array([g["approval_rate"] for g in result.policy["by_grade"].values()])
    assert approved[0] >= approved[-1]  # grade A is approved at least as often as the worst


def test_the_gate_window_never_reaches_into_the_challengers_training_months(tmp_path, small):
    """A promotion window longer than the test window is cut at the test window's start:
    the gate scores no loan of a month the challenger trained, tuned or calibrated on."""
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    settings.promotion.window_months = 8  # the test window is the latest 3 months
    steps.ingest(settings, [str(small)])
    trained = steps.train(settings)
    test_window = trained.split["test_window"]
    promoted = steps.promote(settings)
    assert promoted.window["description"] == f"vintages {test_window}"
    assert promoted.window["rows"] == trained.split["test_rows"]
