"""Set-up shared by the benchmarks (not a benchmark itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
# The server the benchmarks use for PostgreSQL (each makes and drops its own database).
POSTGRES_URL = os.environ.get(
    "LOANRISK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# The fields of one application as the benchmarks send it to the service.
APPLICATION_FIELDS = [
    "loan_amnt",
    "term",
    "int_rate",
    "installment",
    "grade",
    "sub_grade",
    "emp_length",
    "home_ownership",
    "annual_inc",
    "verification_status",
    "issue_d",
    "purpose",
    "zip_code",
    "addr_state",
    "dti",
    "delinq_2yrs",
    "earliest_cr_line",
    "fico_range_low",
    "fico_range_high",
    "inq_last_6mths",
    "open_acc",
    "pub_rec",
    "revol_bal",
    "revol_util",
    "total_acc",
    "mort_acc",
    "pub_rec_bankruptcies",
    "application_type",
]


def train_and_promote(env: dict[str, str], loans: Path) -> None:
    """A LightGBM model on 60,000 matured generated loans, registered and @production."""
    steps = [
        [
            "generate",
            "--rows",
            "60000",
            "--start",
            "2014-01",
            "--months",
            "18",
            "--as-of",
            "2020-01",
            "--seed",
            "9",
            "--out",
            str(loans),
        ],
        ["ingest", str(loans)],
        ["train", "--trials", "0", "--candidates", "lightgbm"],
        ["promote"],
    ]
    for step in steps:
        subprocess.run([LOANRISK, *step, "--json"], env=env, check=True, capture_output=True)
