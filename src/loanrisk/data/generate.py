"""Synthetic loans in LendingClub's public raw format, with a known true PD per loan.

Every loan gets a true probability of default computed from its application fields
(fico, dti, income, utilisation, term, purpose, ...); the outcome is drawn from it.
The true PD goes to a sidecar file, never into the loan file, so a model's AUC can be
compared with the best achievable (the AUC of the true PD itself).

Loan status depends on the extract date (``as_of``): the same seed with a later
``as_of`` gives the same loans with matured statuses, like a later LendingClub extract.
Rows are produced in fixed-size blocks, each from its own seeded generator, so memory
stays bounded and the same seed gives the same bytes.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loanrisk.data import formats
from loanrisk.errors import LoanriskError

BLOCK_ROWS = 100_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GRADES = "ABCDEFG"
# Share of loans per grade at drift 0 (LendingClub 2014-2016 roughly).
_GRADE_MIX = (0.17, 0.29, 0.28, 0.15, 0.07, 0.03, 0.01)

_PURPOSES = {
    # purpose: (share, log-odds effect, title)
    "debt_consolidation": (0.58, 0.05, "Debt consolidation"),
    "credit_card": (0.22, -0.15, "Credit card refinancing"),
    "home_improvement": (0.065, -0.05, "Home improvement"),
    "other": (0.055, 0.15, "Other"),
    "major_purchase": (0.02, 0.0, "Major purchase"),
    "small_business": (0.012, 0.55, "Business"),
    "car": (0.01, -0.1, "Car financing"),
    "medical": (0.01, 0.15, "Medical expenses"),
    "moving": (0.007, 0.2, "Moving and relocation"),
    "vacation": (0.006, 0.05, "Vacation"),
    "house": (0.005, 0.1, "Home buying"),
    "wedding": (0.003, -0.05, "Wedding"),
    "renewable_energy": (0.001, 0.1, "Green loan"),
    "educational": (0.001, 0.2, "Education"),
}
_STATES = {
    # state: (share, lowest zip3, highest zip3)
    "CA": (0.145, 900, 961),
    "NY": (0.083, 100, 149),
    "TX": (0.082, 750, 799),
    "FL": (0.070, 320, 349),
    "IL": (0.040, 600, 629),
    "NJ": (0.036, 70, 89),
    "PA": (0.034, 150, 196),
    "OH": (0.033, 430, 458),
    "GA": (0.032, 300, 319),
    "VA": (0.029, 220, 246),
    "NC": (0.028, 270, 289),
    "MI": (0.026, 480, 499),
    "AZ": (0.024, 850, 865),
    "MD": (0.024, 206, 219),
    "MA": (0.023, 10, 27),
    "WA": (0.022, 980, 994),
    "CO": (0.021, 800, 816),
    "MN": (0.018, 550, 567),
    "MO": (0.016, 630, 658),
    "NV": (0.015, 889, 898),
    "CT": (0.015, 60, 69),
    "IN": (0.015, 460, 479),
    "TN": (0.015, 370, 385),
    "WI": (0.013, 530, 549),
    "OR": (0.012, 970, 979),
    "SC": (0.012, 290, 299),
    "AL": (0.012, 350, 369),
    "LA": (0.011, 700, 714),
    "KY": (0.009, 400, 427),
    "OK": (0.009, 730, 749),
    "UT": (0.007, 840, 847),
    "KS": (0.008, 660, 679),
    "AR": (0.007, 716, 729),
    "NM": (0.005, 870, 884),
    "HI": (0.005, 967, 968),
    "NH": (0.005, 30, 38),
    "RI": (0.004, 28, 29),
    "WV": (0.004, 247, 268),
    "MS": (0.004, 386, 397),
    "DE": (0.003, 197, 199),
    "MT": (0.003, 590, 599),
    "DC": (0.003, 200, 205),
    "AK": (0.002, 995, 999),
    "WY": (0.002, 820, 831),
    "SD": (0.002, 570, 577),
    "VT": (0.002, 50, 59),
    "NE": (0.003, 680, 693),
    "ME": (0.002, 39, 49),
    "ID": (0.002, 832, 838),
    "ND": (0.001, 580, 588),
}
_EMP_TITLES = (
    "Teacher",
    "Manager",
    "Registered Nurse",
    "Owner",
    "Supervisor",
    "Sales",
    "Project Manager",
    "Driver",
    "Office Manager",
    "General Manager",
    "Director",
    "Engineer",
    "Truck Driver",
    "Operations Manager",
    "Police Officer",
    "Accountant",
    "Store Manager",
    "Administrative Assistant",
    "Software Engineer",
    "Account Manager",
    "Sales Manager",
    "Mechanic",
    "Electrician",
    "Nurse",
    "Analyst",
    "Customer Service",
    "Attorney",
    "Technician",
    "Vice President",
    "Consultant",
    "Server",
    "Paralegal",
    "Pharmacist",
    "Cashier",
    "Controller",
    "Branch Manager",
    "Foreman",
)
# emp_length values 0..10 ('< 1 year' .. '10+ years') and their shares.
_EMP_SHARE = (0.08, 0.07, 0.09, 0.08, 0.06, 0.06, 0.05, 0.05, 0.05, 0.04, 0.37)
_HOME = ("MORTGAGE", "RENT", "OWN", "OTHER", "NONE", "ANY")

# Columns that may be blanked at random (never the required ones).
_OPTIONAL_BLANKS = (
    "emp_title",
    "emp_length",
    "dti",
    "revol_util",
    "mort_acc",
    "pub_rec_bankruptcies",
    "inq_last_6mths",
    "title",
    "collections_12_mths_ex_med",
    "acc_now_delinq",
    "installment",
)

LOAN_COLUMNS = (
    "id",
    "loan_amnt",
    "funded_amnt",
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
    "loan_status",
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
    "mths_since_last_record",
    "open_acc",
    "pub_rec",
    "revol_bal",
    "revol_util",
    "total_acc",
    "initial_list_status",
    "out_prncp",
    "total_pymnt",
    "total_rec_prncp",
    "total_rec_int",
    "total_rec_late_fee",
    "recoveries",
    "collection_recovery_fee",
    "last_pymnt_d",
    "last_pymnt_amnt",
    "next_pymnt_d",
    "last_credit_pull_d",
    "last_fico_range_high",
    "last_fico_range_low",
    "collections_12_mths_ex_med",
    "application_type",
    "acc_now_delinq",
    "mort_acc",
    "pub_rec_bankruptcies",
)


PROTECTED_COLUMN = "applicant_group"
PROTECTED_STREAM = 7919  # the protected attribute's own random stream


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``start``/``as_of`` are 'YYYY-MM'; ``drift`` is 0 (none) to ~2."""

    rows: int
    start: str = "2015-01"
    months: int = 36
    seed: int = 42
    drift: float = 0.0
    as_of: str | None = None  # default: the month after the last issue month
    missing_share: float = 0.02
    dirty_share: float = 0.005
    # Add ``applicant_group`` (A/B): a protected attribute that is not in the true PD but
    # correlates with income (group B is poorer, so more often declined), drawn from its
    # own random stream so the other columns are the same bytes with or without it.
    protected: bool = False
    start_month: int = field(init=False)
    as_of_month: int = field(init=False)

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise LoanriskError(f"--rows must be at least 1, got {self.rows}")
        if self.months < 1:
            raise LoanriskError(f"--months must be at least 1, got {self.months}")
        if not 0.0 <= self.drift <= 5.0:
            raise LoanriskError(f"--drift must be between 0 and 5, got {self.drift}")
        for name in ("missing_share", "dirty_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                raise LoanriskError(f"--{name.replace('_', '-')} must be in [0, 0.5], got {value}")
        if self.seed < 0:
            raise LoanriskError(f"--seed must be 0 or more, got {self.seed}")
        start = _month_number(self.start, "--start")
        last = start + self.months - 1  # issue months stay where the parsers read dates
        if last >= (formats.LAST_YEAR + 1) * 12:
            raise LoanriskError(
                f"--months {self.months} from --start {self.start} runs past "
                f"{formats.LAST_YEAR}-12, the last month a loan file may hold"
            )
        object.__setattr__(self, "start_month", start)
        as_of = start + self.months if self.as_of is None else _month_number(self.as_of, "--as-of")
        if as_of < start:
            raise LoanriskError(f"--as-of {self.as_of} is before --start {self.start}")
        object.__setattr__(self, "as_of_month", as_of)


@dataclass(frozen=True)
class GeneratedFiles:
    """Where the loans and their true PDs went."""

    loans: Path
    truth: Path
    rows: int
    default_rate: float
    best_auc: float | None


TRUTH_SUFFIX = ".truth.parquet"


def truth_path(out: Path) -> Path:
    """The sidecar path for a loan file: ``loans.csv.gz`` -> ``loans.truth.parquet``."""
    name = out.name
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + TRUTH_SUFFIX)


def generate_blocks(config: GeneratorConfig) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(loans, truth) tables block by block, loans as LendingClub raw strings."""
    month_of_row = _month_allocation(config.rows, config.months)
    for block, first in enumerate(range(0, config.rows, BLOCK_ROWS)):
        months = month_of_row[first : first + BLOCK_ROWS]
        rng = np.random.default_rng([config.seed, block])
        yield _block(config, rng, first, months)


def write_generated(
    config: GeneratorConfig, out: Path, *, progress: Callable[[int], None] | None = None
) -> GeneratedFiles:
    """Write the loan file (.csv, .csv.gz or .parquet) and its truth sidecar atomically."""
    kind = _output_kind(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = truth_path(out)
    tmp_out, tmp_truth = (
        out.with_name(out.name + ".part"),
        sidecar.with_name(sidecar.name + ".part"),
    )
    defaults, rows = 0, 0
    pd_parts: list[np.ndarray] = []
    outcome_parts: list[np.ndarray] = []
    try:
        with _LoanWriter(tmp_out, kind) as loans, _TruthWriter(tmp_truth) as truth:
            for loan_block, truth_block in generate_blocks(config):
                loans.write(loan_block)
                truth.write(truth_block)
                rows += loan_block.num_rows
                outcome = truth_block.column("will_default").to_numpy()
                defaults += int(outcome.sum())
                pd_parts.append(truth_block.column("true_pd").to_numpy())
                outcome_parts.append(outcome)
                if progress is not None:
                    progress(loan_block.num_rows)
        tmp_out.replace(out)
        tmp_truth.replace(sidecar)
    finally:
        tmp_out.unlink(missing_ok=True)
        tmp_truth.unlink(missing_ok=True)
    best = _auc(np.concatenate(pd_parts), np.concatenate(outcome_parts))
    return GeneratedFiles(out, sidecar, rows, defaults / rows, best)


# --------------------------------------------------------------------------- internals


def _month_number(text: str, option: str) -> int:
    try:
        year, month = (int(part) for part in text.split("-"))
        if not 1 <= month <= 12 or not 1900 <= year <= 2100:
            raise ValueError
    except ValueError:
        raise LoanriskError(
            f"{option} must look like YYYY-MM (e.g. 2015-01), got {text!r}"
        ) from None
    return year * 12 + month - 1


def _month_allocation(rows: int, months: int) -> np.ndarray:
    """Month index (0-based) of each row: volumes grow ~3% a month, rows sorted by month."""
    weights = np.exp(0.03 * np.arange(months))
    counts = np.floor(weights / weights.sum() * rows).astype(np.int64)
    counts[-1] += rows - counts.sum()
    return np.repeat(np.arange(months), counts)


def _output_kind(out: Path) -> str:
    name = out.name.lower()
    for suffix, kind in ((".csv.gz", "csv.gz"), (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    raise LoanriskError(f"--out must end in .csv, .csv.gz or .parquet, got {out.name!r}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class _Applicants:
    fico: np.ndarray
    income: np.ndarray
    dti: np.ndarray
    util: np.ndarray
    term: np.ndarray
    amount: np.ndarray
    inq: np.ndarray
    delinq: np.ndarray
    pub_rec: np.ndarray
    emp_length: np.ndarray
    home: np.ndarray
    purpose: np.ndarray
    history: np.ndarray

    def logit(self, drift: np.ndarray) -> np.ndarray:
        """True log-odds of default: only fields that are in the loan file."""
        purpose_effect = np.array([p[1] for p in _PURPOSES.values()])[self.purpose]
        home_effect = np.array([0.0, 0.18, 0.05, 0.3, 0.3, 0.3])[self.home]
        return (
            -2.05
            - 0.0125 * (self.fico - 700.0)
            + 0.028 * (self.dti - 18.0)
            + 0.55 * (self.util - 0.5)
            - 0.30 * np.log(self.income / 65_000.0)
            + 0.55 * (self.term == 60)
            + 0.09 * self.inq
            + 0.12 * np.minimum(self.delinq, 3)
            + 0.10 * np.minimum(self.pub_rec, 2)
            + 0.9 * np.minimum(self.amount / self.income, 0.6)
            - 0.015 * self.emp_length
            - 0.0008 * (self.history - 180.0)
            + purpose_effect
            + home_effect
            + 0.45 * drift
        )


def _applicants(rng: np.random.Generator, drift: np.ndarray) -> _Applicants:
    n = len(drift)
    quality = rng.normal(-0.55 * drift, 1.0)
    fico = np.clip(
        np.round((695 + 32 * (0.8 * quality + 0.6 * rng.normal(size=n))) / 5) * 5, 660, 845
    )
    income = np.clip(
        np.round(np.exp(rng.normal(np.log(66_000) + 0.22 * quality - 0.2 * drift, 0.55)), -2),
        4_000,
        9_000_000,
    )
    dti = np.clip(rng.normal(18.5 - 2.5 * quality + 3.5 * drift, 8.0), 0.0, 45.0)
    util = np.clip(rng.normal(0.52 - 0.13 * quality + 0.08 * drift, 0.24), 0.0, 1.3)
    emp_length = rng.choice(11, size=n, p=_EMP_SHARE)
    home_p = np.array([0.49, 0.40, 0.107, 0.001, 0.001, 0.001])
    home = rng.choice(6, size=n, p=home_p / home_p.sum())
    amount = np.clip(
        np.round(np.exp(rng.normal(np.log(12_500) + 0.35 * np.log(income / 66_000), 0.6)) / 25)
        * 25,
        1_000,
        40_000,
    )
    term = np.where(
        rng.random(n) < np.clip(0.18 + 0.25 * (amount > 20_000) + 0.12 * drift, 0, 0.9), 60, 36
    )
    inq = np.minimum(rng.poisson(np.clip(0.7 - 0.25 * quality + 0.5 * drift, 0.05, None)), 8)
    delinq = rng.poisson(0.25 + 0.25 * (quality < -1.0))
    pub_rec = rng.poisson(0.18, n)
    history = np.clip(rng.normal(190 + 45 * quality, 85), 36, 600).astype(np.int64)
    purpose_p = np.array([p[0] for p in _PURPOSES.values()])
    purpose = rng.choice(len(purpose_p), size=n, p=purpose_p / purpose_p.sum())
    return _Applicants(
        fico,
        income,
        dti,
        util,
        term,
        amount,
        inq,
        delinq,
        pub_rec,
        emp_length,
        home,
        purpose,
        history,
    )


@lru_cache(maxsize=1)
def _sub_grade_cuts() -> np.ndarray:
    """Fixed score cut-points for A1..G5, from a reference population without drift.

    Fixed (not re-fitted per file) so a drifted population gets worse grades.
    """
    rng = np.random.default_rng(20_240_101)
    drift = np.zeros(200_000)
    scores = _applicants(rng, drift).logit(drift) + rng.normal(0, 0.35, len(drift))
    grade_edges = np.concatenate([[0.0], np.cumsum(_GRADE_MIX)])
    quantiles = [
        grade_edges[g] + (grade_edges[g + 1] - grade_edges[g]) * s / 5
        for g in range(7)
        for s in range(1, 6)
    ][:-1]
    return np.quantile(scores, quantiles)


def _block(
    config: GeneratorConfig, rng: np.random.Generator, first: int, months: np.ndarray
) -> tuple[pa.Table, pa.Table]:
    n = len(months)
    drift = config.drift * (months + 1) / config.months
    app = _applicants(rng, drift)
    logit = app.logit(drift)
    true_pd = _sigmoid(logit)

    # LendingClub's own grade: the true risk seen through its (imperfect) score.
    sub_grade_idx = np.searchsorted(_sub_grade_cuts(), logit + rng.normal(0, 0.35, n))
    grade_idx = sub_grade_idx // 5
    rate = np.clip(
        0.055 + 0.0088 * sub_grade_idx + 0.004 * (app.term == 60) + rng.normal(0, 0.0025, n),
        0.05,
        0.31,
    )
    rate = np.round(rate, 4)
    monthly = rate / 12
    installment = np.round(app.amount * monthly / (1 - (1 + monthly) ** (-app.term)), 2)

    # Outcome, independent of the extract date.
    will_default = rng.random(n) < true_pd
    last_paid = np.floor(rng.beta(1.4, 2.6, n) * app.term * 0.9).astype(np.int64)
    charge_off = last_paid + 5
    prepays = rng.random(n) < 0.45
    prepay_month = np.where(prepays, rng.integers(3, app.term, n), app.term)
    issue = config.start_month + months
    age = config.as_of_month - issue

    status = _status(rng, will_default, age, last_paid, charge_off, prepay_month, months)

    # Payments up to the extract date (post-origination fields: they leak the outcome).
    paid_months = np.where(will_default, np.minimum(age, last_paid), np.minimum(age, prepay_month))
    paid_months = np.maximum(paid_months, 0)
    balance = _balance(app.amount, monthly, app.term, paid_months)
    fully = (~will_default) & (age >= prepay_month)
    charged = will_default & (age >= charge_off)
    out_prncp = np.where(fully | charged, 0.0, balance)
    total_rec_prncp = np.where(fully, app.amount, app.amount - balance)
    total_rec_int = np.maximum(installment * paid_months - (app.amount - balance), 0.0)
    recoveries = np.where(charged, np.round(balance * rng.uniform(0, 0.15, n), 2), 0.0)
    total_pymnt = total_rec_prncp + total_rec_int + recoveries
    last_pymnt = issue + np.maximum(paid_months, 1)
    last_fico = np.clip(
        app.fico
        + np.where(will_default & (age > last_paid), -120, 10)
        + rng.normal(0, 25, n).round(),
        300,
        850,
    )
    last_fico = np.round(last_fico / 5) * 5

    state_names = list(_STATES)
    state_p = np.array([s[0] for s in _STATES.values()])
    state = rng.choice(len(state_names), size=n, p=state_p / state_p.sum())
    zip_low = np.array([s[1] for s in _STATES.values()])[state]
    zip_high = np.array([s[2] for s in _STATES.values()])[state]
    zip3 = zip_low + np.floor(rng.random(n) * (zip_high - zip_low + 1)).astype(np.int64)

    open_acc = np.maximum(rng.poisson(11, n), 1)
    delinq_since = np.where((app.delinq > 0) | (rng.random(n) < 0.35), rng.integers(1, 120, n), -1)
    record_since = np.where(app.pub_rec > 0, rng.integers(1, 120, n), -1)
    verified = rng.random(n)
    verification = np.where(
        verified < 0.3 + 0.25 * (app.amount > 15_000),
        0,
        np.where(verified < 0.65, 1, 2),
    )
    mortgages = np.where(app.home == 0, rng.poisson(2.2, n), rng.poisson(0.3, n))
    bankruptcies = np.minimum(app.pub_rec, rng.poisson(0.8, n))
    revol_bal = np.round(app.util * np.clip(rng.normal(0.25, 0.08, n), 0.02, 1) * app.income)

    ids = (
        (config.start_month // 12 * 100 + config.start_month % 12 + 1) * 10**11
        + (config.seed % 1000) * 10**8
        + first
        + np.arange(n)
    )

    cols: dict[str, pa.Array] = {
        "id": pa.array(ids).cast(pa.string()),
        "loan_amnt": _num(app.amount, 0),
        "funded_amnt": _num(app.amount, 0),
        "term": _pick(np.array([" 36 months", " 60 months"]), (app.term == 60).astype(int)),
        "int_rate": _pct(rate * 100, 2),
        "installment": _num(installment, 2),
        "grade": _pick(np.array(list(_GRADES)), grade_idx),
        "sub_grade": _pick(
            np.array([f"{g}{s}" for g in _GRADES for s in range(1, 6)]), sub_grade_idx
        ),
        "emp_title": _pick(np.array(_EMP_TITLES), rng.integers(0, len(_EMP_TITLES), n)),
        "emp_length": _pick(
            np.array(["< 1 year", "1 year"] + [f"{y} years" for y in range(2, 10)] + ["10+ years"]),
            app.emp_length,
        ),
        "home_ownership": _pick(np.array(_HOME), app.home),
        "annual_inc": _num(app.income, 0),
        "verification_status": _pick(
            np.array(["Verified", "Source Verified", "Not Verified"]), verification
        ),
        "issue_d": _month_text(issue),
        "loan_status": status,
        "purpose": _pick(np.array(list(_PURPOSES)), app.purpose),
        "title": _pick(np.array([p[2] for p in _PURPOSES.values()]), app.purpose),
        "zip_code": _pick(np.array([f"{z:03d}xx" for z in range(1000)]), zip3),
        "addr_state": _pick(np.array(state_names), state),
        "dti": _num(app.dti, 2),
        "delinq_2yrs": _num(app.delinq, 0),
        "earliest_cr_line": _month_text(issue - app.history),
        "fico_range_low": _num(app.fico, 0),
        "fico_range_high": _num(app.fico + 4, 0),
        "inq_last_6mths": _num(app.inq, 0),
        "mths_since_last_delinq": _blank(_num(delinq_since, 0), delinq_since < 0),
        "mths_since_last_record": _blank(_num(record_since, 0), record_since < 0),
        "open_acc": _num(open_acc, 0),
        "pub_rec": _num(app.pub_rec, 0),
        "revol_bal": _num(revol_bal, 0),
        "revol_util": _pct(app.util * 100, 1),
        "total_acc": _num(open_acc + rng.poisson(13, n), 0),
        "initial_list_status": _pick(np.array(["w", "f"]), (rng.random(n) < 0.4).astype(int)),
        "out_prncp": _num(out_prncp, 2),
        "total_pymnt": _num(total_pymnt, 2),
        "total_rec_prncp": _num(total_rec_prncp, 2),
        "total_rec_int": _num(total_rec_int, 2),
        "total_rec_late_fee": _num(np.where(will_default & (age > last_paid), 15.0, 0.0), 2),
        "recoveries": _num(recoveries, 2),
        "collection_recovery_fee": _num(np.round(recoveries * 0.18, 2), 2),
        "last_pymnt_d": _blank(_month_text(last_pymnt), paid_months < 1),
        "last_pymnt_amnt": _num(np.where(paid_months > 0, installment, 0.0), 2),
        "next_pymnt_d": _blank(
            _month_text(np.full(n, config.as_of_month)), fully | charged | (age < 1)
        ),
        "last_credit_pull_d": _month_text(np.full(n, config.as_of_month - 1)),
        "last_fico_range_high": _num(last_fico + 4, 0),
        "last_fico_range_low": _num(last_fico, 0),
        "collections_12_mths_ex_med": _num((rng.random(n) < 0.015).astype(int), 0),
        "application_type": _pick(
            np.array(["Individual", "Joint App"]), (rng.random(n) < 0.05).astype(int)
        ),
        "acc_now_delinq": _num((rng.random(n) < 0.004).astype(int), 0),
        "mort_acc": _num(mortgages, 0),
        "pub_rec_bankruptcies": _num(bankruptcies, 0),
    }
    # LendingClub writes 'n/a' for an unknown employment length.
    cols["emp_length"] = pc.if_else(pa.array(rng.random(n) < 0.05), "n/a", cols["emp_length"])
    for name in _OPTIONAL_BLANKS:
        cols[name] = _blank(cols[name], rng.random(n) < config.missing_share)

    truth = {
        "id": cols["id"],
        "issue_d": pa.array((issue - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")),
        "true_pd": pa.array(true_pd),
        "will_default": pa.array(will_default),
        "default_month": pa.array(np.where(will_default, charge_off, -1)).cast(pa.int32()),
        "prepay_month": pa.array(np.where(will_default, -1, prepay_month)).cast(pa.int32()),
    }
    for name in ("default_month", "prepay_month"):
        truth[name] = pc.if_else(
            pc.equal(truth[name], -1), pa.scalar(None, pa.int32()), truth[name]
        )

    columns = list(LOAN_COLUMNS)
    if config.protected:
        group_rng = np.random.default_rng([config.seed, first, PROTECTED_STREAM])
        poorer = _sigmoid(-0.3 - 1.8 * np.log(app.income / 66_000))
        cols[PROTECTED_COLUMN] = pa.array(np.where(group_rng.random(n) < poorer, "B", "A"))
        columns.append(PROTECTED_COLUMN)
    loans = pa.table({c: cols[c] for c in columns})
    loans, truth_table = _make_dirty(rng, config, loans, pa.table(truth))
    return loans, truth_table


def _status(
    rng: np.random.Generator,
    will_default: np.ndarray,
    age: np.ndarray,
    last_paid: np.ndarray,
    charge_off: np.ndarray,
    prepay_month: np.ndarray,
    months: np.ndarray,
) -> pa.Array:
    n = len(age)
    choices = np.array(
        [
            "Current",
            "Fully Paid",
            "Charged Off",
            "Default",
            "Late (31-120 days)",
            "In Grace Period",
            "Late (16-30 days)",
            "Issued",
            "Does not meet the credit policy. Status:Fully Paid",
            "Does not meet the credit policy. Status:Charged Off",
        ]
    )
    code = np.zeros(n, dtype=np.int64)  # Current
    late = age - last_paid
    code = np.where(~will_default & (age >= prepay_month), 1, code)
    code = np.where(will_default & (late >= 1), 5, code)
    code = np.where(will_default & (late >= 2), 6, code)
    code = np.where(will_default & (late >= 3), 4, code)
    code = np.where(will_default & (age >= charge_off - 1), 3, code)
    code = np.where(will_default & (age >= charge_off), 2, code)
    code = np.where(age < 1, 7, code)
    # A few early loans were made outside the credit policy (as in LendingClub 2007-2010).
    off_policy = (months < 12) & (rng.random(n) < 0.02) & ((code == 1) | (code == 2))
    code = np.where(off_policy, np.where(code == 1, 8, 9), code)
    return _pick(choices, code)


def _balance(
    amount: np.ndarray, monthly: np.ndarray, term: np.ndarray, paid: np.ndarray
) -> np.ndarray:
    growth = (1 + monthly) ** term
    return np.round(amount * (growth - (1 + monthly) ** paid) / (growth - 1), 2)


def _make_dirty(
    rng: np.random.Generator, config: GeneratorConfig, loans: pa.Table, truth: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """Spoil a share of rows the way real extracts are spoiled."""
    n = loans.num_rows
    dirty = np.flatnonzero(rng.random(n) < config.dirty_share)
    if not len(dirty):
        return loans, truth
    kind = rng.integers(0, 4, len(dirty))
    columns = {name: loans.column(name).combine_chunks() for name in loans.column_names}
    spoil: list[tuple[str, np.ndarray, list[str]]] = [
        ("annual_inc", dirty[kind == 0], ["n.a.", "#VALUE!", "12,5k", "unknown"]),
        ("dti", dirty[kind == 1], ["999", "-7.5"]),
        ("fico_range_low", dirty[kind == 1], ["1000"]),
        ("revol_util", dirty[kind == 2], ["450%", "abc%"]),
        ("earliest_cr_line", dirty[kind == 2], ["Foo-2001", "31/02/1999"]),
    ]
    for name, rows, values in spoil:
        if len(rows):
            replacement = np.array(values)[rng.integers(0, len(values), len(rows))]
            array = columns[name].to_numpy(zero_copy_only=False).astype(object)
            array[rows] = replacement
            columns[name] = pa.array(array, pa.string())
    # Duplicated ids: a row repeated later in the file (a resent record).
    dup_rows = dirty[(kind == 3) & (dirty > 0)]
    take = np.arange(n)
    take[dup_rows] = rng.integers(0, dup_rows, len(dup_rows)) if len(dup_rows) else take[dup_rows]
    loans = pa.table(columns).take(pa.array(take))
    truth = truth.take(pa.array(take))
    return loans, truth


def _num(values: np.ndarray, decimals: int) -> pa.Array:
    if decimals == 0:
        return pa.array(np.round(values).astype(np.int64)).cast(pa.string())
    return pa.array(np.round(values.astype(np.float64), decimals)).cast(pa.string())


def _pct(values: np.ndarray, decimals: int) -> pa.Array:
    return pc.binary_join_element_wise(_num(values, decimals), "%", "")


def _pick(choices: np.ndarray, index: np.ndarray) -> pa.Array:
    return pa.array(choices.tolist(), pa.string()).take(pa.array(index))


def _month_text(month_numbers: np.ndarray) -> pa.Array:
    low, high = int(month_numbers.min()), int(month_numbers.max())
    labels = np.array([f"{_MONTHS[m % 12]}-{m // 12}" for m in range(low, high + 1)])
    return _pick(labels, month_numbers - low)


def _blank(array: pa.Array, mask: np.ndarray) -> pa.Array:
    if not mask.any():
        return array
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), array)


def _auc(scores: np.ndarray, outcome: np.ndarray) -> float | None:
    positives = int(outcome.sum())
    negatives = len(outcome) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    return float((ranks[outcome].sum() - positives * (positives + 1) / 2) / (positives * negatives))


class _LoanWriter:
    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._file: object | None = None
        self._writer: pacsv.CSVWriter | pq.ParquetWriter | None = None

    def __enter__(self) -> _LoanWriter:
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            if self.kind == "parquet":
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            else:
                raw = open(self.path, "wb")  # noqa: SIM115 - closed in __exit__
                sink = (
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=5)
                    if self.kind == "csv.gz"
                    else raw
                )
                self._file = (raw, sink)
                self._writer = pacsv.CSVWriter(
                    sink,
                    table.schema,
                    write_options=pacsv.WriteOptions(quoting_style="needed"),
                )
        self._writer.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
        if isinstance(self._file, tuple):
            raw, sink = self._file
            if sink is not raw:
                sink.close()
            raw.close()


class _TruthWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> _TruthWriter:
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
