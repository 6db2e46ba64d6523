"""Calibration, decision threshold, master scale and credit-risk metrics and plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

GRADES = ("A", "B", "C", "D", "E", "F", "G")
# Share of training applicants per grade of the master scale.
GRADE_SHARES = (0.10, 0.20, 0.25, 0.20, 0.13, 0.08, 0.04)
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """Platt scaling on the log-odds of the raw score, fitted on validation rows."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(logit(raw).reshape(-1, 1), y)
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * logit(raw) + self.intercept)))


def choose_threshold(pd_: np.ndarray, y: np.ndarray, *, cost_fn: float, cost_fp: float) -> float:
    """The PD cut-off with the lowest expected cost on these rows (use validation rows).

    Cost = cost_fn x missed defaults + cost_fp x declined good loans.
    """
    candidates = np.unique(np.quantile(pd_, np.linspace(0.0, 1.0, 401)))
    bad = y == 1
    costs = [
        cost_fn * np.sum(bad & (pd_ < t)) + cost_fp * np.sum(~bad & (pd_ >= t)) for t in candidates
    ]
    return float(candidates[int(np.argmin(costs))])


def policy_cutoff(pd_: np.ndarray, y: np.ndarray, options: Any) -> float:
    """The PD cut-off (decline at or above it) the lending policy in ``options`` (the
    training settings) sets on these rows (use validation rows)."""
    if options.policy == "approval_rate":
        # Approve the lowest PDs, up to the target share.
        return float(np.quantile(pd_, options.target_approval_rate, method="higher"))
    if options.policy == "max_pd":
        return float(options.max_pd)
    return choose_threshold(
        pd_, y, cost_fn=options.cost_missed_default, cost_fp=options.cost_declined_good
    )


def policy_report(
    pd_: np.ndarray, y: np.ndarray, cutoff: float, grade_edges: list[float]
) -> dict[str, Any]:
    """What a cut-off implies on these rows: approval rate, the bad rate expected (mean
    PD) and observed among approved loans, overall and by grade."""
    approved = pd_ < cutoff
    grades = assign_grades(pd_, grade_edges)

    def figures(mask: np.ndarray) -> dict[str, float | int | None]:
        taken = mask & approved
        return {
            "rows": int(mask.sum()),
            "approval_rate": float(taken.sum() / mask.sum()) if mask.any() else None,
            "mean_pd": float(pd_[mask].mean()) if mask.any() else None,
            "default_rate": float(y[mask].mean()) if mask.any() else None,
            "expected_bad_rate_approved": float(pd_[taken].mean()) if taken.any() else None,
            "observed_bad_rate_approved": float(y[taken].mean()) if taken.any() else None,
        }

    return {
        "cutoff": float(cutoff),
        **figures(np.ones(len(pd_), dtype=bool)),
        "by_grade": {g: figures(grades == g) for g in GRADES if (grades == g).any()},
    }


def calibration_by_vintage(
    pd_: np.ndarray, y: np.ndarray, vintage: pd.Series
) -> dict[str, dict[str, float]]:
    """Calibration in the large per vintage month: mean PD against the observed default
    rate (and their gap) on these rows."""
    months = pd.to_datetime(vintage).dt.strftime("%Y-%m").to_numpy()
    out = {}
    for month in sorted(set(months[pd.notna(vintage).to_numpy()])):
        mask = months == month
        mean_pd, observed = float(pd_[mask].mean()), float(y[mask].mean())
        out[month] = {
            "rows": int(mask.sum()),
            "mean_pd": mean_pd,
            "default_rate": observed,
            "gap": mean_pd - observed,
        }
    return out


def fit_master_scale(pd_train: np.ndarray) -> list[float]:
    """Upper PD bounds of grades A..F (G is open-ended), from training PDs."""
    return np.quantile(pd_train, np.cumsum(GRADE_SHARES)[:-1]).tolist()


def assign_grades(pd_: np.ndarray, edges: list[float]) -> np.ndarray:
    return np.asarray(GRADES)[np.searchsorted(np.asarray(edges), pd_, side="right")]


def expected_calibration_error(pd_: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| default rate over equal-count PD bins, weighted by size."""
    order = np.argsort(pd_)
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(float(y[chunk].mean()) - float(pd_[chunk].mean()))
    return total / len(pd_)


def ks_statistic(pd_: np.ndarray, y: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, pd_)
    return float(np.max(tpr - fpr))


def metrics(pd_: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, Gini, KS, PR-AUC, precision/recall/F1 at the threshold, Brier, ECE, log loss."""
    predicted = pd_ >= threshold
    tp = float(np.sum(predicted & (y == 1)))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float((y == 1).sum()), 1.0)
    auc = float(roc_auc_score(y, pd_))
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(pd_, y),
        "pr_auc": float(average_precision_score(y, pd_)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, _EPS),
        "brier": float(brier_score_loss(y, pd_)),
        "ece": expected_calibration_error(pd_, y),
        "log_loss": float(log_loss(y, np.clip(pd_, _EPS, 1 - _EPS))),
        "default_rate": float(y.mean()),
        "mean_pd": float(pd_.mean()),
        "decline_rate": float(predicted.mean()),
    }


def auc_by_vintage(pd_: np.ndarray, y: np.ndarray, vintage: pd.Series) -> dict[str, float]:
    months = pd.to_datetime(vintage).dt.strftime("%Y-%m").to_numpy()
    out = {}
    for month in sorted(set(months[pd.notna(vintage).to_numpy()])):
        mask = months == month
        if len(set(y[mask])) == 2:
            out[month] = float(roc_auc_score(y[mask], pd_[mask]))
    return out


def save_plots(
    folder: Path,
    pd_: np.ndarray,
    y: np.ndarray,
    threshold: float,
    importance: dict[str, float],
    title: str,
) -> list[Path]:
    """ROC, PR, confusion matrix, calibration, KS, score distributions, importance (PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(name: str, figure: plt.Figure) -> None:
        path = folder / name
        figure.suptitle(title, fontsize=9)
        figure.tight_layout()
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)

    fpr, tpr, _ = roc_curve(y, pd_)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, pd_):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    save("roc.png", fig)

    precision, recall, _ = precision_recall_curve(y, pd_)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision)
    ax.axhline(y.mean(), ls="--", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    save("precision_recall.png", fig)

    matrix = confusion_matrix(y, (pd_ >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}", ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["approve", "decline"],
        yticklabels=["good", "bad"],
        xlabel="decision",
        ylabel="outcome",
        title=f"Confusion matrix at PD >= {threshold:.3f}",
    )
    save("confusion_matrix.png", fig)

    order = np.argsort(pd_)
    bins = [chunk for chunk in np.array_split(order, 10) if len(chunk)]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([pd_[b].mean() for b in bins], [y[b].mean() for b in bins], "o-")
    top = max(float(pd_.max()), float(y.mean()) * 2)
    ax.plot([0, top], [0, top], "--", color="grey")
    ax.set(xlabel="mean predicted PD", ylabel="observed default rate", title="Calibration")
    save("calibration.png", fig)

    sorted_pd = np.sort(pd_)
    bad_cdf = _cdf(pd_[y == 1], sorted_pd)
    good_cdf = _cdf(pd_[y == 0], sorted_pd)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(sorted_pd, bad_cdf, label="bad")
    ax.plot(sorted_pd, good_cdf, label="good")
    ax.set(xlabel="PD", ylabel="cumulative share", title=f"KS {np.max(good_cdf - bad_cdf):.3f}")
    ax.legend()
    save("ks.png", fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(pd_[y == 0], bins=50, alpha=0.6, density=True, label="good")
    ax.hist(pd_[y == 1], bins=50, alpha=0.6, density=True, label="bad")
    ax.axvline(threshold, color="black", ls="--")
    ax.set(xlabel="PD", ylabel="density", title="Score distribution by outcome")
    ax.legend()
    save("score_distribution.png", fig)

    top_features = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([k for k, _ in reversed(top_features)], [v for _, v in reversed(top_features)])
    ax.set(title="Feature importance", xlabel="importance")
    save("feature_importance.png", fig)
    return paths


def _cdf(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(values), at, side="right") / max(len(values), 1)
