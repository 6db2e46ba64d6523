"""The packaged model's fast path: one application as a dict -> feature vector -> the
candidate's own `score_matrix` -> the bundle's one `decide`.

No pandas per request. It is compiled from a fitted ``ScoringBundle`` and gives the same
PDs as the frame path (``ScoringBundle.predict``): a test checks thousands of generated
and real rows to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loanrisk.data.scalar import application_key, derive, refine_record


class FastScorer:
    """Scores application dicts with the bundle's estimator, calibrator, threshold and scale."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.profile = bundle.profile
        self.spec = bundle.spec
        self.lookup = self.profile.header_lookup(applications=True)
        self.level_codes = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in self.spec.levels.items()
        }
        self.model = bundle.candidate
        self.key_columns = self.profile.key_columns
        self.fields = self._fields()

    def _fields(self) -> frozenset[str]:
        """The profile columns an answer depends on: the model's inputs (derived ones by
        what they are computed from), the required columns (a missing one is an error),
        and the id, or the columns its derived key is made of. Other fields of a record
        are parsed and checked, but change nothing in the answer when they are valid."""
        profile = self.profile
        names = set(self.spec.numeric) | set(self.spec.categorical) | set(profile.required)
        for name in [*names]:
            if name in profile.derived:
                names |= set(profile.derived[name].inputs)
        numbers, texts = self.key_columns
        names |= {profile.id.column} if profile.id.column else {*numbers, *texts}
        return frozenset(names & set(profile.columns))

    # ------------------------------------------------------------------ features
    def features(self, typed: Mapping[str, Any]) -> list[Any]:
        """Model inputs in ``spec.columns`` order: floats, or level strings for categoricals."""
        values: list[Any] = []
        derived = self.profile.derived
        for name in self.spec.numeric:
            if name in derived:
                values.append(derive(typed, derived[name]))
            else:
                value = typed.get(name)
                values.append(math.nan if value is None else float(value))
        for name in self.spec.categorical:
            value = typed.get(name)
            values.append(None if value is None else str(value))
        return values

    def _matrix(self, rows: Sequence[list[Any]]) -> np.ndarray:
        n_numeric = len(self.spec.numeric)
        matrix = np.empty((len(rows), len(self.spec.columns)), dtype=np.float64)
        for i, row in enumerate(rows):
            matrix[i, :n_numeric] = row[:n_numeric]
            for j, name in enumerate(self.spec.categorical):
                level = row[n_numeric + j]
                matrix[i, n_numeric + j] = (
                    self.level_codes[name].get(level, math.nan) if level is not None else math.nan
                )
        return matrix

    # ------------------------------------------------------------------ public
    def score(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One result per record: loan_id, pd, default_class, decision, grade, reasons, error."""
        results: list[dict[str, Any]] = [{} for _ in records]
        valid_rows: list[list[Any]] = []
        valid_index: list[int] = []
        id_column = self.profile.id.column
        for i, record in enumerate(records):
            typed, problems = refine_record(record, self.profile, self.lookup)
            loan_id = typed.get(id_column) if id_column else None
            results[i] = {
                "loan_id": application_key(typed, self.key_columns)
                if loan_id is None
                else str(loan_id),
                "pd": None,
                "default_class": None,
                "decision": None,
                "grade": None,
                "reasons": None,
                "error": None,
                "problems": problems,
                "features": None,
            }
            if problems:
                results[i]["error"] = "; ".join(f"{k}: {v}" for k, v in problems.items())
                continue
            row = self.features(typed)
            results[i]["features"] = dict(zip(self.spec.columns, row, strict=True))
            valid_rows.append(row)
            valid_index.append(i)
        if valid_rows:
            matrix = self._matrix(valid_rows)
            raw, contributions = self.model.score_matrix(matrix)
            pd_ = self.bundle.calibrator(raw)
            decided = self.bundle.decide(pd_, contributions, np.isnan(matrix))
            for k, i in enumerate(valid_index):
                results[i].update(
                    pd=float(pd_[k]),
                    default_class=int(decided.default_class[k]),
                    decision=str(decided.decision[k]),
                    grade=str(decided.grade[k]),
                    reasons=decided.reasons[k],
                )
        return results
