"""The one definition of what a PD means for an applicant: class, decision, grade, reasons.

Both speeds of the packaged model call ``decide``: the frame path (batch scoring, MLflow's
``predict``) and the fast path (one application per request).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loanrisk.modeling.evaluate import assign_grades


@dataclass
class Decisions:
    """Per scored row: 1 if declined, approve/decline, master-scale grade, top reasons."""

    default_class: np.ndarray
    decision: np.ndarray
    grade: np.ndarray
    reasons: list[list[str]]


def decide(
    pd_: np.ndarray,
    contributions: np.ndarray,
    *,
    threshold: float,
    grade_edges: list[float],
    names: list[str],
    top: int,
) -> Decisions:
    """Declined when PD >= threshold; the grade from the master scale; as reasons, the
    (at most ``top``) features that raise this applicant's PD most, largest first."""
    declined = pd_ >= threshold
    order = np.argsort(-contributions, axis=1)[:, :top]
    reasons = [[names[j] for j in row if contributions[i, j] > 0] for i, row in enumerate(order)]
    return Decisions(
        default_class=declined.astype(int),
        decision=np.where(declined, "decline", "approve"),
        grade=assign_grades(pd_, grade_edges),
        reasons=reasons,
    )
