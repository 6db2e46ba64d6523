"""The one definition of what a PD means for an applicant: class, decision, grade, reasons.

Both speeds of the packaged model call ``decide``: the frame path (batch scoring, MLflow's
``predict``) and the fast path (one application per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from loanrisk.modeling.evaluate import assign_grades
from loanrisk.profiles.model import ReasonPolicy, Role

# One adverse-action reason: its code, the applicant-facing statement, its contribution.
REASON = pa.struct([("code", pa.string()), ("reason", pa.string()), ("contribution", pa.float64())])


@dataclass
class Decisions:
    """Per scored row: 1 if declined, approve/decline, master-scale grade, top reasons
    (as dicts for the answers of the frame and fast paths, as an Arrow list for tables)."""

    default_class: np.ndarray
    decision: np.ndarray
    grade: np.ndarray
    order: np.ndarray  # per row: reason groups, largest contribution first (``top`` of them)
    summed: np.ndarray  # per row and group: the contribution (-inf: nothing given)
    codes: ReasonCodes

    def _listed(self) -> tuple[np.ndarray, np.ndarray, list[float]]:
        """Per row, how many reasons it has (those that raise its PD), and all rows'
        reasons end to end: group index and rounded contribution."""
        values = np.take_along_axis(self.summed, self.order, axis=1)
        given = values > 0  # a prefix of each row: ``order`` is by contribution
        return given.sum(axis=1), self.order[given], rounded(values[given]).tolist()

    @cached_property
    def reasons(self) -> list[list[dict[str, Any]]]:
        counts, groups, contributions = self._listed()
        codes, statements = self.codes.codes, self.codes.statements
        flat = [
            {"code": codes[g], "reason": statements[g], "contribution": c}
            for g, c in zip(groups.tolist(), contributions, strict=True)
        ]
        ends = np.cumsum(counts).tolist()
        return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]

    def reason_array(self) -> pa.ListArray:
        """``reasons`` as Arrow ``list<REASON>``, built without a dict per reason."""
        counts, groups, contributions = self._listed()
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        index = pa.array(groups, pa.int64())
        items = pa.StructArray.from_arrays(
            [
                pa.array(self.codes.codes, pa.string()).take(index),
                pa.array(self.codes.statements, pa.string()).take(index),
                pa.array(contributions, pa.float64()),
            ],
            fields=list(REASON),
        )
        return pa.ListArray.from_arrays(pa.array(offsets), items)


def rounded(values: np.ndarray, digits: int = 6) -> np.ndarray:
    """Python's ``round(v, digits)`` of every value, vectorised: ``rint(v·10^k)/10^k`` is
    the same double wherever ``v·10^k`` is not within rounding error of a half; those few
    are rounded by Python (decimal-exact)."""
    scale = 10.0**digits
    scaled = values * scale
    out = np.rint(scaled) / scale
    near = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    out[near] = [round(v, digits) for v in values[near].tolist()]
    return out


@dataclass(frozen=True)
class ReasonCodes:
    """Which reason each model input feeds: its group's index, or -1 when the input is
    never given as a reason (the profile's ``reasons.never``, proxies)."""

    group_of: np.ndarray  # one entry per model input, in spec order
    codes: list[str]
    statements: list[str]
    top: int

    @classmethod
    def of(cls, profile: Any, columns: list[str]) -> ReasonCodes:
        """The profile's reason policy over these model inputs: its groups (one reason
        for several inputs, e.g. the FICO low, high and mid as "credit score"), then each
        other input as a reason of its own, in the profile's plain words."""
        policy: ReasonPolicy = getattr(profile, "reasons", None) or ReasonPolicy()
        never = set(policy.never) | {
            n for n, c in profile.columns.items() if c.role in (Role.PROXY, Role.PROTECTED)
        }
        codes: list[str] = []
        statements: list[str] = []
        index: dict[str, int] = {}
        for code, group in policy.groups.items():
            index.update(dict.fromkeys(group.columns, len(codes)))
            codes.append(code)
            statements.append(group.statement)
        group_of = []
        for column in columns:
            if column in never:
                group_of.append(-1)
            elif column in index:
                group_of.append(index[column])
            else:
                index[column] = len(codes)
                group_of.append(len(codes))
                codes.append(column)
                statements.append(profile.describe(column))
        return cls(np.asarray(group_of, dtype=np.int64), codes, statements, policy.max)


def decide(
    pd_: np.ndarray,
    contributions: np.ndarray,
    missing: np.ndarray,
    *,
    threshold: float,
    grade_edges: list[float],
    reasons: ReasonCodes,
) -> Decisions:
    """Declined when PD >= threshold; the grade from the master scale; as reasons, the (at
    most ``reasons.top``) reason groups that raise this applicant's PD most, largest first,
    each with its contribution (log-odds). A group's contribution is the sum over its
    inputs the applicant gave: a missing or imputed input is never a reason."""
    declined = pd_ >= threshold
    groups = len(reasons.codes)
    member = np.zeros((len(reasons.group_of), groups))
    used = reasons.group_of >= 0
    member[np.flatnonzero(used), reasons.group_of[used]] = 1.0
    present = ~missing
    summed = np.where(present, contributions, 0.0) @ member
    summed[(present.astype(float) @ member) == 0] = -np.inf  # nothing given in the group
    order = np.argsort(-summed, axis=1)[:, : reasons.top]
    return Decisions(
        default_class=declined.astype(int),
        decision=np.where(declined, "decline", "approve"),
        grade=assign_grades(pd_, grade_edges),
        order=order,
        summed=summed,
        codes=reasons,
    )
