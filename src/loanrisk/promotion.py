"""Promotion (staging -> production) behind gates, and rollback. Every step is tagged."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from loanrisk.config import Settings
from loanrisk.constants import LABEL, LOAN_ID, VINTAGE, Alias
from loanrisk.errors import LoanriskError
from loanrisk.modeling.evaluate import expected_calibration_error
from loanrisk.modeling.fairness import fairness_table, groups_of
from loanrisk.modeling.monotone import violations as monotone_violations
from loanrisk.modeling.split import HOLDOUT_SHARE, id_fraction
from loanrisk.profiles.model import NUMERIC_PARSERS
from loanrisk.registry import Registry, RegistryError


@dataclass
class PromotionResult:
    """The comparison and what was decided."""

    challenger: str
    champion: str | None
    promoted: bool
    forced: bool
    reason: str
    window: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluation_window(silver: pd.DataFrame, months: int) -> tuple[pd.DataFrame, str]:
    """The latest ``months`` labelled vintage months; without dates, the loans every
    version held out of training (``split.id_fraction`` below ``HOLDOUT_SHARE``)."""
    dated = silver[VINTAGE].notna()
    if dated.mean() >= 0.99:
        periods = silver[VINTAGE].dt.to_period("M")
        recent = np.sort(periods.unique())[-months:]
        window = silver[periods.isin(recent)]
        return window, f"vintages {recent[0]}..{recent[-1]}"
    window = silver[id_fraction(silver[LOAN_ID]) < HOLDOUT_SHARE]
    return window, (
        f"the {HOLDOUT_SHARE:.0%} of loans held out by loan id (the data has no vintage; "
        "no version trained, tuned or calibrated on them)"
    )


def score_versions(
    predicted: dict[str, pd.DataFrame], window: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """AUC, ECE, mean PD, observed default rate and approval rate of each version's
    answers (``predicted``) on the same window rows."""
    from sklearn.metrics import roc_auc_score

    y = window[LABEL].to_numpy().astype(int)
    out = {}
    for version, answers in predicted.items():
        pd_ = answers["pd"].to_numpy(dtype=float)
        ok = ~np.isnan(pd_)
        approved = answers["decision"].to_numpy()[ok] == "approve"
        out[version] = {
            "approval_rate": float(approved.mean()),
            "auc": float(roc_auc_score(y[ok], pd_[ok])),
            "ece": expected_calibration_error(pd_[ok], y[ok]),
            "mean_pd": float(pd_[ok].mean()),
            "default_rate": float(y[ok].mean()),
            "rows": int(ok.sum()),
        }
    return out


def promote(
    settings: Settings,
    models: Registry,
    silver: pd.DataFrame,
    *,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PromotionResult:
    """Move ``production`` to the challenger (default: @staging) if it passes the gates."""
    say = progress or (lambda _message: None)
    if force and not reason:
        raise LoanriskError("--force needs --reason: say why the gates are overridden")
    challenger = models.get(version) if version else models.by_alias(Alias.STAGING)
    if challenger is None:
        raise RegistryError(
            f"no @{Alias.STAGING} version of {models.name}; run 'loanrisk train' first"
        )
    champion = models.by_alias(Alias.PRODUCTION)
    if champion is not None and champion.version == challenger.version:
        raise LoanriskError(f"version {challenger.version} is already @production")
    gates = settings.promotion
    window, described = evaluation_window(silver, gates.window_months)
    if window[LABEL].nunique() < 2:
        raise LoanriskError(f"the evaluation window ({described}) needs good and bad loans")
    compared = [challenger.version] + ([champion.version] if champion else [])
    # Each version is loaded and scores the window once; the gates reuse the answers.
    say(f"loading version(s) {', '.join(compared)}")
    bundles = {v: models.load_bundle(v) for v in compared}
    say(f"scoring the evaluation window ({described}, {len(window):,} loans) with each")
    predicted = {v: bundles[v].predict(window) for v in compared}
    say("applying the gates")
    scores = score_versions(predicted, window)
    new = scores[challenger.version]
    gap = abs(new["mean_pd"] - new["default_rate"])
    checks = [
        _check(f"AUC >= {gates.min_auc}", new["auc"] >= gates.min_auc, new["auc"]),
        _check(f"ECE <= {gates.max_ece}", new["ece"] <= gates.max_ece, new["ece"]),
        _check(
            f"approval rate within {gates.min_approval_rate:.0%}..{gates.max_approval_rate:.0%}",
            gates.min_approval_rate <= new["approval_rate"] <= gates.max_approval_rate,
            new["approval_rate"],
        ),
        _check(
            f"|mean PD {new['mean_pd']:.4f} - observed default rate "
            f"{new['default_rate']:.4f}| <= {gates.max_calibration_gap}",
            gap <= gates.max_calibration_gap,
            gap,
        ),
    ]
    checks += governance_checks(
        settings, bundles[challenger.version], window, predicted[challenger.version]["decision"]
    )
    if champion is not None:
        old = scores[champion.version]
        checks.append(
            _check(
                f"AUC >= champion v{champion.version} AUC {old['auc']:.4f} - {gates.auc_tolerance}",
                new["auc"] >= old["auc"] - gates.auc_tolerance,
                new["auc"],
            )
        )
    passed = all(c["passed"] for c in checks)
    promoted = passed or force
    why = reason or (
        "passed every gate"
        if passed
        else "refused: "
        + "; ".join(
            f"{c['check']} (challenger {c['value']:.4f})" for c in checks if not c["passed"]
        )
    )
    stamp = _stamp()
    if promoted:
        models.set_alias(Alias.PRODUCTION, challenger.version)
        models.tag(
            challenger.version,
            {
                "promoted_at": stamp["at"],
                "promoted_by": stamp["by"],
                "promotion_reason": why,
                "promotion_forced": str(force and not passed).lower(),
                "previous_production_version": champion.version if champion else "none",
                "promotion_window": described,
                "promotion_comparison": json.dumps(scores),
            },
        )
    else:
        models.tag(
            challenger.version,
            {
                "promotion_refused_at": stamp["at"],
                "promotion_refused_by": stamp["by"],
                "promotion_refused_reason": why,
                "promotion_comparison": json.dumps(scores),
            },
        )
    return PromotionResult(
        challenger=challenger.version,
        champion=champion.version if champion else None,
        promoted=promoted,
        forced=force and not passed,
        reason=why,
        window={"description": described, "rows": len(window)},
        metrics=scores,
        checks=checks,
    )


def governance_checks(
    settings: Settings, bundle: Any, window: pd.DataFrame, decisions: pd.Series
) -> list[dict[str, Any]]:
    """The fairness gate (each protected attribute's adverse impact ratio, groups of at
    least ``min_group_rows``) and the monotonicity gate (every declared direction of risk,
    on a sample of the window's applicants, through the frame and fast paths)."""
    gates = settings.promotion
    checks = []
    profile = bundle.profile
    for column in profile.protected_columns:
        if column not in window.columns or window[column].isna().all():
            continue
        numeric = profile.columns[column].parser in NUMERIC_PARSERS
        table = fairness_table(
            groups_of(window[column], numeric=numeric),
            decisions.to_numpy() == "approve",
            window[LABEL].to_numpy(),
            min_rows=gates.min_group_rows,
        )
        ratio = table["min_adverse_impact_ratio"]
        if ratio is None:
            continue
        checks.append(
            _check(
                f"adverse impact ratio of {column}={table['lowest_group']} against "
                f"{column}={table['reference_group']} >= {gates.min_adverse_impact_ratio}",
                ratio >= gates.min_adverse_impact_ratio,
                ratio,
            )
        )
    if gates.monotonicity_sample:
        sample = window.sample(min(gates.monotonicity_sample, len(window)), random_state=0)
        against = monotone_violations(bundle, sample)
        checks.append(
            _check(
                "monotone in the profile's directions of risk"
                + (f": {'; '.join(against[:3])}" if against else ""),
                not against,
                len(against),
            )
        )
    return checks


def rollback(models: Registry, *, reason: str | None = None) -> tuple[str, str]:
    """Point ``production`` back at the version it replaced; returns (from, to)."""
    current = models.by_alias(Alias.PRODUCTION)
    if current is None:
        raise RegistryError("nothing to roll back: no version is @production")
    previous = current.tags.get("previous_production_version", "none")
    if previous == "none":
        raise RegistryError(
            f"version {current.version} has no previous production version to roll back to"
        )
    models.get(previous)
    models.set_alias(Alias.PRODUCTION, previous)
    stamp = _stamp()
    models.tag(
        current.version,
        {
            "rolled_back_at": stamp["at"],
            "rolled_back_by": stamp["by"],
            "rolled_back_reason": reason or "rollback",
            "rolled_back_to": previous,
        },
    )
    models.tag(
        previous,
        {"restored_at": stamp["at"], "restored_by": stamp["by"], "restored_from": current.version},
    )
    return current.version, previous


def _check(text: str, passed: bool, value: float) -> dict[str, Any]:
    return {"check": text, "passed": bool(passed), "value": round(float(value), 6)}


def _stamp() -> dict[str, str]:
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": getpass.getuser()}
