import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from loanrisk.data.generate import GeneratorConfig, generate_blocks, truth_path, write_generated
from loanrisk.errors import LoanriskError

APPLICATION_COLUMNS = [
    "id",
    "loan_amnt",
    "term",
    "int_rate",
    "installment",
    "grade",
    "sub_grade",
    "emp_title",
    "emp_length",
    "home_ownership",
    "annual_inc",
    "verification_status",
    "issue_d",
    "purpose",
    "title",
    "zip_code",
    "addr_state",
    "dti",
    "delinq_2yrs",
    "earliest_cr_line",
    "fico_range_low",
    "fico_range_high",
    "inq_last_6mths",
    "mths_since_last_delinq",
    "open_acc",
    "pub_rec",
    "revol_bal",
    "revol_util",
    "total_acc",
    "mort_acc",
    "pub_rec_bankruptcies",
    "application_type",
]
LEAKING = ["total_pymnt", "total_rec_prncp", "recoveries", "last_pymnt_d"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame(config: GeneratorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    loans, truth = zip(*generate_blocks(config), strict=True)
    return (
        pd.concat([t.to_pandas() for t in loans], ignore_index=True),
        pd.concat([t.to_pandas() for t in truth], ignore_index=True),
    )


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame(GeneratorConfig(rows=60_000, start="2014-01", months=36, seed=3))


@pytest.mark.unit
def test_columns_and_raw_formats(history):
    loans, _ = history
    assert len(loans) == 60_000
    for column in APPLICATION_COLUMNS + LEAKING + ["loan_status"]:
        assert column in loans.columns
    assert len(APPLICATION_COLUMNS) >= 30
    assert set(loans["term"]) == {" 36 months", " 60 months"}
    assert loans["int_rate"].str.fullmatch(r"\d+\.?\d*%").all()
    assert loans["issue_d"].str.fullmatch(r"[A-Z][a-z]{2}-\d{4}").all()
    assert loans["zip_code"].str.fullmatch(r"\d{3}xx").all()
    assert {"10+ years", "< 1 year", "1 year", "n/a"} <= set(loans["emp_length"].dropna())
    assert "true_pd" not in loans.columns


@pytest.mark.unit
def test_statuses_cover_lendingclub_values(history):
    statuses = set(history[0]["loan_status"])
    assert {
        "Fully Paid",
        "Charged Off",
        "Default",
        "Current",
        "Late (31-120 days)",
        "In Grace Period",
        "Does not meet the credit policy. Status:Fully Paid",
    } <= statuses


@pytest.mark.unit
def test_risk_drivers_and_recent_loans_current(history):
    loans, truth = history
    pd_by_grade = truth["true_pd"].groupby(loans["grade"]).mean()
    assert pd_by_grade.is_monotonic_increasing
    rate = loans["int_rate"].str.rstrip("%").astype(float)
    assert rate.groupby(loans["grade"]).mean().is_monotonic_increasing
    fico = loans["fico_range_low"].astype(float)
    assert np.corrcoef(fico[fico < 900], truth["true_pd"][fico < 900])[0, 1] < -0.2
    assert (
        truth["true_pd"].groupby(loans["term"]).mean()[" 60 months"]
        > truth["true_pd"].groupby(loans["term"]).mean()[" 36 months"]
    )
    month = pd.to_datetime(loans["issue_d"], format="%b-%Y")
    recent = loans["loan_status"][month >= month.max() - pd.DateOffset(months=5)]
    early = loans["loan_status"][month <= month.min() + pd.DateOffset(months=5)]
    assert (recent == "Current").mean() > 0.6
    assert (early == "Current").mean() < (recent == "Current").mean() - 0.3


@pytest.mark.unit
def test_dirty_rows_and_missing_values(history):
    loans, truth = history
    assert loans["id"].duplicated().sum() > 10
    assert not truth.drop_duplicates()["id"].duplicated().any()
    income = pd.to_numeric(loans["annual_inc"], errors="coerce")
    assert income.isna().sum() > 10
    assert (loans["dti"] == "999").any()
    assert loans["dti"].isna().mean() == pytest.approx(0.02, abs=0.01)


@pytest.mark.unit
def test_drift_shifts_mix_and_default_rates():
    base_loans, base_truth = frame(GeneratorConfig(rows=20_000, months=1, seed=5))
    drift_loans, drift_truth = frame(GeneratorConfig(rows=20_000, months=1, seed=5, drift=1.0))
    assert drift_truth["will_default"].mean() > base_truth["will_default"].mean() + 0.05
    fico = pd.to_numeric(base_loans["fico_range_low"], errors="coerce")
    drift_fico = pd.to_numeric(drift_loans["fico_range_low"], errors="coerce")
    assert drift_fico.mean() < fico.mean() - 5


@pytest.mark.unit
def test_later_extract_matures_the_same_loans():
    early, _ = frame(GeneratorConfig(rows=5_000, start="2015-01", months=12, seed=9))
    later, _ = frame(
        GeneratorConfig(rows=5_000, start="2015-01", months=12, seed=9, as_of="2021-01")
    )
    assert (early["id"] == later["id"]).all()
    assert (early["loan_amnt"] == later["loan_amnt"]).all()
    assert (early["loan_status"] == "Current").mean() > 0.3
    assert not (later["loan_status"] == "Current").any()


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_same_seed_same_bytes(tmp_path: Path, suffix: str):
    config = GeneratorConfig(rows=3_000, months=6, seed=11)
    first = write_generated(config, tmp_path / f"a{suffix}")
    second = write_generated(config, tmp_path / f"b{suffix}")
    other = write_generated(GeneratorConfig(rows=3_000, months=6, seed=12), tmp_path / f"c{suffix}")
    assert digest(first.loans) == digest(second.loans) != digest(other.loans)
    assert digest(first.truth) == digest(second.truth)
    assert first.truth == truth_path(first.loans)
    truth = pq.read_table(first.truth).to_pandas()
    assert {"id", "true_pd", "will_default"} <= set(truth.columns)
    assert 0.55 < first.best_auc < 0.85
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "--rows"),
        ({"rows": 10, "start": "2015/01"}, "--start must look like YYYY-MM"),
        ({"rows": 10, "drift": -1}, "--drift"),
        ({"rows": 10, "start": "2015-01", "as_of": "2014-01"}, "--as-of 2014-01 is before"),
        ({"rows": 10, "dirty_share": 0.9}, "--dirty-share"),
        # were a numpy ValueError traceback each
        ({"rows": 10, "months": 100_000}, "--months 100000 from --start 2015-01 runs past 2100-12"),
        ({"rows": 10, "seed": -1}, "--seed must be 0 or more"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(LoanriskError, match=message):
        GeneratorConfig(**kwargs)


@pytest.mark.unit
def test_unknown_output_format(tmp_path: Path):
    with pytest.raises(LoanriskError, match=r"\.csv, \.csv\.gz or \.parquet"):
        write_generated(GeneratorConfig(rows=10), tmp_path / "loans.xlsx")
