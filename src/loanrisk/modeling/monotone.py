"""Does the packaged model move the PD the way the profile's directions of risk say?
Checked on real applicants: each constrained input varied over a grid, scored through
both paths (frame and fast)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loanrisk.constants import LOAN_ID

POINTS = 8
TOLERANCE = 1e-9


def violations(bundle: Any, sample: pd.DataFrame) -> list[str]:
    """One line per constrained input and path where some applicant's PD moves against
    the declared direction as that input alone grows (empty: monotone everywhere)."""
    profile = bundle.profile
    scorer = bundle.fast()
    # The fast path parses every field it is given; the sample's other columns (valid
    # silver values) cannot change a PD, and would cost most of the check's time.
    # The sample's loan ids stand in for the id column (else each record's key is derived).
    fields = scorer.fields
    id_column = profile.id.column

    def ids(row: dict[Any, Any]) -> dict[str, Any]:
        return {id_column: row[LOAN_ID]} if id_column and LOAN_ID in row else {}

    found = []
    for column, spec in profile.columns.items():
        direction = profile.monotone(column)
        if not direction or column not in sample.columns:
            continue
        values = pd.to_numeric(sample[column], errors="coerce").dropna()
        if values.nunique() < 2:
            continue
        grid: np.ndarray = np.unique(np.quantile(values, np.linspace(0.02, 0.98, POINTS)))
        rows = sample.loc[sample.index.repeat(len(grid))].reset_index(drop=True)
        rows[column] = np.tile(grid, len(sample))
        frame = bundle.predict(rows)["pd"].to_numpy(dtype=float)
        records = [
            {k: v for k, v in r.items() if k in fields and not _blank(v)} | ids(r)
            for r in rows.to_dict("records")
        ]
        fast = np.array([np.nan if r["pd"] is None else r["pd"] for r in scorer.score(records)])
        for path, pds in (("frame", frame), ("fast", fast)):
            steps = np.diff(pds.reshape(len(sample), len(grid)), axis=1) * direction
            against = int((np.nan_to_num(steps, nan=0.0) < -TOLERANCE).any(axis=1).sum())
            if against:
                word = "falls" if direction > 0 else "rises"
                found.append(
                    f"{column}: the PD {word} as it grows for {against} of {len(sample)} "
                    f"applicants ({path} path; declared {spec.monotone})"
                )
    return found


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
