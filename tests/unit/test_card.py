"""The model card template renders every figure it is given, and refuses a missing one."""

from __future__ import annotations

import re

import jinja2
import pytest

from loanrisk.modeling.card import model_card
from loanrisk.modeling.train import CandidateReport
from loanrisk.profiles import load_profile

TEST = {
    "auc": 0.7123,
    "gini": 0.4246,
    "ks": 0.31,
    "pr_auc": 0.4,
    "precision": 0.5,
    "recall": 0.6,
    "f1": 0.55,
    "brier": 0.15,
    "ece": 0.021,
    "log_loss": 0.45,
}
FIGURES = {
    "rows": 1000,
    "approval_rate": 0.7,
    "mean_pd": 0.12,
    "default_rate": 0.12,
    "expected_bad_rate_approved": 0.08,
    "observed_bad_rate_approved": 0.075,
}
POLICY = {"policy": "expected_cost", "cutoff": 0.1875, **FIGURES, "by_grade": {"A": FIGURES}}
WINDOW = {
    "split": "out-of-time",
    "train_rows": 12_000,
    "train_window": "2015-01..2016-06",
    "valid_rows": 2_000,
    "valid_window": "2016-07..2016-09",
    "test_rows": 2_100,
    "test_window": "2016-10..2016-12",
}


def card(**changes):
    winner = CandidateReport("lightgbm", "r1", {}, 0, 0.7012, 0.2, TEST, {}, {}, 1.0)
    other = CandidateReport("logistic_regression", "r2", {}, 0, 0.69, 0.21, TEST, {}, {}, 1.0)
    arguments = {
        "model_name": "loan-default",
        "profile": "lendingclub",
        "winner": winner,
        "candidates": [winner, other],
        "window": WINDOW,
        "data": {"rows": 16_100, "default_rate": 0.2, "content_hash": "abc123"},
        "features": ["fico_mid", "dti"],
        "target": load_profile("lendingclub").target,
        "labels_by_vintage": [{"vintage": "2016-10", "bad": 120, "good": 880, "censored": 0}],
        "policy": POLICY,
        "calibration": {
            "2016-10": {"rows": 1000, "mean_pd": 0.12, "default_rate": 0.11, "gap": 0.01}
        },
        "threshold": 0.1875,
        "grade_edges": [0.05, 0.1, 0.15, 0.2, 0.3, 0.4],
        "cost_missed_default": 5.0,
        "cost_declined_good": 1.0,
        "warnings": [],
    }
    return model_card(**(arguments | changes))


def test_the_card_shows_the_data_the_candidates_the_rule_and_the_scale():
    text = card()
    assert text.startswith("# Model card: loan-default (lightgbm)")
    assert "gold rows used: 16,100 labelled" in text and "default rate 20.00%" in text
    assert "| lightgbm | 0.7012 | 0.7123 | 0.4246 |" in text
    assert "| logistic_regression | 0.6900 |" in text
    assert "Decline when PD >= 0.1875" in text and "costing 5 and a" in text
    assert "probability of default within 24 months of issue" in text
    assert "| 2016-10 | 120 | 880 | 0 |" in text  # labels per vintage
    assert "| 2016-10 | 1,000 | 0.1200 | 0.1100 | +0.0100 |" in text  # calibration in the large
    assert "approves 70.0% of 1,000 applicants" in text and "| A | 1,000 | 70.0% |" in text
    assert "| A | 0.0000 | 0.0500 |" in text and "| G | 0.4000 | 1.0000 |" in text
    assert "(native tree contributions)" in text
    assert text.endswith("## Warnings\n- none\n")


def test_warnings_are_listed_and_a_missing_figure_is_an_error():
    assert "- the data has no vintage" in card(warnings=["the data has no vintage"])
    with pytest.raises(jinja2.UndefinedError):
        card(data={"rows": 1, "default_rate": 0.1})  # no content hash


@pytest.mark.unit
def test_the_candidates_table_keeps_every_figure_at_80_columns(monkeypatch):
    """Three candidates in a plain 80-column log: no figure is cut."""
    import io

    from rich.console import Console

    from loanrisk.cli import render
    from loanrisk.modeling.train import TrainResult

    names = ["logistic_regression", "xgboost", "lightgbm"]
    test = {k: 0.123456 for k in ("auc", "gini", "ks", "pr_auc", "brier", "ece", "f1")}
    result = TrainResult(
        run_id="0123456789abcdef0123456789abcdef",
        experiment="loanrisk",
        winner="lightgbm",
        version="12",
        model_uri="models:/m-0123456789abcdef0123456789abcdef",
        candidates=[
            CandidateReport(
                name=n,
                run_id="r",
                params={},
                trials=1,
                valid_auc=0.7,
                threshold=0.21,
                test=test,
                test_auc_by_vintage={},
                test_calibration_by_vintage={},
                seconds=3.0,
            )
            for n in names
        ],
        threshold=0.21,
        data={},
        split={
            "split": "out_of_time",
            **{f"{p}_rows": 1000 for p in ("train", "valid", "test")},
            **{f"{p}_window": "2015-01..2016-06" for p in ("train", "valid", "test")},
        },
    )
    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=80, force_terminal=False))
    render.print_candidates(result)
    text = buffer.getvalue()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for label in ("valid AUC", "Gini", "PR-AUC", "Brier", "ECE", "F1", "cut-off PD"):
        (line,) = [x for x in text.splitlines() if x.strip().startswith(label + " ")]
        assert len(re.findall(r"\d\.\d{4}", line)) == 3, line
