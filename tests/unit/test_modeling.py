import numpy as np
import pandas as pd
import pytest

from loanrisk.errors import LoanriskError
from loanrisk.modeling.decision import rounded
from loanrisk.modeling.evaluate import (
    Calibrator,
    assign_grades,
    choose_threshold,
    expected_calibration_error,
    fit_master_scale,
    metrics,
)
from loanrisk.modeling.features import fit_feature_spec, model_frame
from loanrisk.modeling.split import split_data

pytestmark = pytest.mark.unit


def frame(months: int, rows_per_month: int = 50, dated: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = months * rows_per_month
    vintage = np.repeat(pd.date_range("2015-01-01", periods=months, freq="MS"), rows_per_month)
    return pd.DataFrame(
        {
            "loan_id": [str(i) for i in range(n)],
            "vintage": vintage if dated else pd.NaT,
            "label": rng.integers(0, 2, n),
            "x": rng.normal(size=n),
        }
    )


def test_out_of_time_split_uses_the_latest_months_for_test():
    split = split_data(frame(12), test_months=3, valid_months=2)
    assert split.kind == "out_of_time" and split.warning is None
    assert split.test["vintage"].min() == pd.Timestamp("2015-10-01")
    assert split.valid["vintage"].min() == pd.Timestamp("2015-08-01")
    assert split.train["vintage"].max() == pd.Timestamp("2015-07-01")
    assert len(split.train) + len(split.valid) + len(split.test) == 600


def test_undated_data_falls_back_to_a_stratified_random_split_with_a_warning():
    split = split_data(frame(10, dated=False))
    assert split.kind == "random"
    assert "no vintage" in split.warning
    assert abs(split.test["label"].mean() - split.train["label"].mean()) < 0.05
    few = split_data(frame(4), test_months=3, valid_months=3)
    assert few.kind == "random" and "only 4 vintage months" in few.warning


def test_one_class_is_refused():
    data = frame(8).assign(label=0)
    with pytest.raises(LoanriskError, match="both good and bad"):
        split_data(data)


def test_calibration_threshold_and_master_scale():
    rng = np.random.default_rng(1)
    true_pd = rng.uniform(0.02, 0.5, 20_000)
    y = (rng.random(20_000) < true_pd).astype(int)
    raw = 1 / (1 + np.exp(-(3 * np.log(true_pd / (1 - true_pd)) + 2)))  # badly scaled score
    calibrated = Calibrator.fit(raw, y)(raw)
    assert expected_calibration_error(raw, y) > 0.1
    assert expected_calibration_error(calibrated, y) < 0.02
    threshold = choose_threshold(calibrated, y, cost_fn=5, cost_fp=1)
    assert 0.1 < threshold < 0.25  # the Bayes threshold is 1 / (1 + 5) = 0.167
    edges = fit_master_scale(calibrated)
    grades = assign_grades(calibrated, edges)
    assert list(np.unique(grades)) == list("ABCDEFG")
    by_grade = pd.Series(calibrated).groupby(grades).mean()
    assert by_grade.is_monotonic_increasing
    result = metrics(calibrated, y, threshold)
    assert result["gini"] == pytest.approx(2 * result["auc"] - 1)
    assert 0 < result["ks"] < 1 and 0 < result["f1"] < 1


def test_feature_spec_skips_empty_columns_and_rare_levels(profile):
    train = pd.DataFrame(
        {
            "loan_amnt": [1000.0, 2000.0, 3000.0] * 20,
            "int_rate": [np.nan] * 60,
            "grade": ["A"] * 30 + ["B"] * 29 + ["Z"],
        }
    )
    spec = fit_feature_spec(train, profile)
    assert spec.numeric == ["loan_amnt"]
    assert spec.categorical == ["grade"] and spec.levels["grade"] == ["A", "B"]
    out = model_frame(pd.DataFrame({"grade": ["B", "Z", None]}), spec)
    assert list(out["grade"].astype(object).fillna("-")) == ["B", "-", "-"]
    assert out["loan_amnt"].isna().all()


def test_a_random_split_does_not_depend_on_row_order():
    """SQLite and PostgreSQL return gold rows in different orders; the split must not care."""
    data = frame(10, dated=False)
    shuffled = data.sample(frac=1.0, random_state=5)
    first, second = split_data(data), split_data(shuffled)
    for part in ("train", "valid", "test"):
        assert sorted(getattr(first, part)["loan_id"]) == sorted(getattr(second, part)["loan_id"])


def test_without_dates_the_promotion_window_is_the_held_out_part():
    """On undated data the gate window must hold no row any version trained, tuned or
    calibrated on: it is exactly the split's test part, and stays so as data grows."""
    from loanrisk.promotion import evaluation_window

    data = frame(40, dated=False)
    split = split_data(data)
    window, described = evaluation_window(data, 3)
    seen = set(split.train["loan_id"]) | set(split.valid["loan_id"])
    assert "held out" in described
    assert not seen & set(window["loan_id"])
    assert set(window["loan_id"]) == set(split.test["loan_id"])
    grown = pd.concat([data, frame(40, dated=False).assign(loan_id=lambda f: "n" + f["loan_id"])])
    later = split_data(grown)
    assert set(split.test["loan_id"]) <= set(later.test["loan_id"])  # nobody moved
    assert set(split.train["loan_id"]) <= set(later.train["loan_id"])


def test_reason_contributions_are_rounded_as_python_rounds() -> None:
    """The vectorised rounding of reason contributions gives Python's round(v, 6) bits,
    including values within rounding error of a half (where rint(v * 1e6) would not)."""
    rng = np.random.default_rng(5)
    halves = (rng.integers(0, 10**7, 20_000) + 0.5) / 1e6  # nearest doubles to x.5e-6
    values = np.concatenate(
        [
            rng.exponential(0.3, 100_000),
            halves,
            np.nextafter(halves, 0),
            np.nextafter(halves, 1),
            [1e-7, 5e-7, 2.5e-6, 0.0000015, 1.2345675, 3.0],
        ]
    )
    expected = [round(v, 6) for v in values.tolist()]
    assert rounded(values).tolist() == expected
