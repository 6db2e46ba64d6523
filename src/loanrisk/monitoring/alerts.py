"""Which monitoring figures call for attention (pure): each alert is of a kind, drift or
performance, that decides the exit code and the retraining signal."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from loanrisk.config import MonitoringSettings


class Kind(StrEnum):
    DRIFT = "drift"
    PERFORMANCE = "performance"


@dataclass(frozen=True)
class Alert:
    kind: Kind
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


def judge(
    *,
    drifted: list[str],
    drifted_share: float,
    inputs: int,
    score_psi: float,
    score_psi_band: str,
    performance: dict[str, Any] | None,
    options: MonitoringSettings,
) -> list[Alert]:
    """The alerts that ``options`` (the monitoring thresholds) raise for these figures."""
    alerts = []
    if drifted_share >= options.drift_share_alert:
        alerts.append(
            Alert(
                Kind.DRIFT,
                f"{len(drifted)} of {inputs} model inputs drifted ({', '.join(drifted)})",
            )
        )
    if score_psi > options.score_psi_alert:
        alerts.append(Alert(Kind.DRIFT, f"PD score PSI {score_psi:.3f} ({score_psi_band})"))
    performance = performance or {}
    if performance.get("auc") is not None:
        if performance["auc"] < options.min_auc:
            alerts.append(
                Alert(
                    Kind.PERFORMANCE,
                    f"realised AUC {performance['auc']:.3f} below {options.min_auc}",
                )
            )
        observed = performance["observed_default_rate"]
        predicted = performance["predicted_default_rate"]
        if abs(observed - predicted) > options.max_default_rate_gap:
            alerts.append(
                Alert(
                    Kind.PERFORMANCE,
                    f"observed default rate {observed:.3f} vs predicted {predicted:.3f}",
                )
            )
    return alerts
