"""The model card: a Markdown document rendered from ``templates/model_card.md.j2``."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from loanrisk.modeling.evaluate import GRADES


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("loanrisk.modeling", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,  # a missing figure is an error, not a blank
    )
    return environment.get_template("model_card.md.j2")


def model_card(
    *,
    model_name: str,
    profile: str,
    winner: Any,
    candidates: list[Any],
    window: dict[str, Any],
    data: dict[str, Any],
    features: list[str],
    target: Any,
    labels_by_vintage: list[dict[str, Any]],
    policy: dict[str, Any],
    calibration: dict[str, dict[str, float]],
    threshold: float,
    fairness: dict[str, Any] | None = None,
    grade_edges: list[float],
    cost_missed_default: float,
    cost_declined_good: float,
    warnings: list[str],
) -> str:
    """The card of a trained model: the target's definition and its labels per vintage,
    the data window, metrics of every candidate and of the winner on the test window,
    calibration in the large per vintage, the lending policy and what it implies, the
    master scale, limitations."""
    edges = [0.0, *grade_edges, 1.0]
    scale = [(grade, edges[i], edges[i + 1]) for i, grade in enumerate(GRADES)]
    return _template().render(
        model_name=model_name,
        profile=profile,
        winner=winner,
        candidates=candidates,
        window=window,
        data=data,
        features=features,
        target=target,
        labels_by_vintage=labels_by_vintage,
        policy=policy,
        calibration=calibration,
        fairness=fairness or {},
        threshold=threshold,
        scale=scale,
        cost_missed_default=cost_missed_default,
        cost_declined_good=cost_declined_good,
        reasons_method=(
            "coefficient x deviation from the average training applicant"
            if winner.name == "logistic_regression"
            else "native tree contributions"
        ),
        warnings=warnings,
    )
