"""Out-of-time split by vintage month, or a stratified random split when there is no date."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from loanrisk.constants import LABEL, LOAN_ID, VINTAGE
from loanrisk.errors import LoanriskError


@dataclass(frozen=True)
class Split:
    """Train, validation and test rows plus how they were chosen."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    kind: str  # "out_of_time" or "random"
    warning: str | None = None

    def describe(self) -> dict[str, object]:
        def window(frame: pd.DataFrame) -> str | None:
            months = frame[VINTAGE].dropna()
            if months.empty:
                return None
            return f"{months.min():%Y-%m}..{months.max():%Y-%m}"

        return {
            "split": self.kind,
            "train_rows": len(self.train),
            "valid_rows": len(self.valid),
            "test_rows": len(self.test),
            "train_window": window(self.train),
            "valid_window": window(self.valid),
            "test_window": window(self.test),
        }


HOLDOUT_SHARE = 0.2  # the test part of a random split, and promotion's window without dates


def id_fraction(ids: pd.Series) -> np.ndarray:
    """A number in [0, 1) per loan id, fixed by the id alone (a keyed 64-bit hash)."""
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_data(
    gold: pd.DataFrame,
    *,
    test_months: int = 3,
    valid_months: int = 3,
    test_share: float = HOLDOUT_SHARE,
    valid_share: float = 0.2,
    seed: int = 42,
) -> Split:
    """Latest ``test_months`` = test, the ``valid_months`` before = validation, rest = train.

    Without enough dated months, a random split with a warning, drawn from each loan id's
    hash (``id_fraction``): the same loan is always in the same part, whatever the row
    order, the warehouse or later data; so promotion can score every version on the
    held-out part that none of them trained, tuned or calibrated on.
    """
    labelled = gold[gold[LABEL].notna()]
    if labelled[LABEL].nunique() < 2:
        raise LoanriskError(
            f"training needs both good and bad loans; gold has {len(labelled)} labelled rows "
            f"with labels {sorted(labelled[LABEL].unique().tolist())}"
        )
    months = pd.to_datetime(labelled[VINTAGE]).dt.to_period("M")
    distinct = np.sort(months.dropna().unique())
    if months.notna().mean() >= 0.99 and len(distinct) > test_months + valid_months:
        test_start = distinct[-test_months]
        valid_start = distinct[-(test_months + valid_months)]
        parts = (
            labelled[months < valid_start],
            labelled[(months >= valid_start) & (months < test_start)],
            labelled[months >= test_start],
        )
        if all(part[LABEL].nunique() == 2 for part in parts):
            return Split(*parts, kind="out_of_time")
        reason = "a window has only one class"
    elif months.notna().mean() < 0.99:
        reason = "the data has no vintage (issue date) column"
    else:
        reason = (
            f"only {len(distinct)} vintage months, fewer than the "
            f"{test_months + valid_months + 1} an out-of-time split needs"
        )
    if LOAN_ID in labelled.columns:
        place = id_fraction(labelled[LOAN_ID])
        test = labelled[place < test_share]
        valid = labelled[(place >= test_share) & (place < test_share + valid_share)]
        train = labelled[place >= test_share + valid_share]
        if all(part[LABEL].nunique() == 2 for part in (train, valid, test)):
            warning = f"random split by loan id, not out-of-time: {reason}"
            return Split(train, valid, test, kind="random", warning=warning)
    rest, test = train_test_split(
        labelled, test_size=test_share, stratify=labelled[LABEL], random_state=seed
    )
    train, valid = train_test_split(
        rest, test_size=valid_share / (1 - test_share), stratify=rest[LABEL], random_state=seed
    )
    warning = f"stratified random split, not out-of-time: {reason}"
    return Split(train, valid, test, kind="random", warning=warning)
