"""The monitoring report a risk manager reads: one HTML file per run with the run's header,
the verdict, PSI per input with bands, the PD distribution, realised performance and PD
by grade, then Evidently's detail (embedded, so the file stands alone)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from loanrisk.modeling.evaluate import GRADES, assign_grades
from loanrisk.monitoring import charts
from loanrisk.monitoring.drift import SCORE, Drift
from loanrisk.monitoring.psi import STABLE, WATCH

_ENVIRONMENT = Environment(
    loader=PackageLoader("loanrisk.monitoring", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
)


def write_report(
    path: Path,
    summary: dict[str, Any],
    drift: Drift,
    *,
    model_name: str,
    reference_pd: np.ndarray,
    current_pd: np.ndarray,
    grade_edges: list[float],
    evidently_html: str,
) -> None:
    """Render the report of one monitoring run (``summary``: the run's JSON summary)."""
    html = _ENVIRONMENT.get_template("report.html.j2").render(
        model_name=model_name,
        run=summary,
        inputs=_psi_rows(drift),
        score={"psi": drift.stability[SCORE]["value"], "band": drift.stability[SCORE]["band"]},
        bands={"stable": STABLE, "watch": WATCH},
        grades=_grade_rows(reference_pd, current_pd, grade_edges, summary.get("performance")),
        distribution=Markup(_distribution(reference_pd, current_pd, grade_edges)),
        performance=summary.get("performance"),
        evidently=Markup(f'srcdoc="{escape(evidently_html, quote=True)}"'),
    )
    path.write_text(html, encoding="utf-8")


def _psi_rows(drift: Drift) -> list[dict[str, Any]]:
    """Every model input: PSI and its band, Evidently's test, whether it drifted; the
    largest PSI first."""
    rows = []
    for column, stability in drift.stability.items():
        if column == SCORE:
            continue
        test = drift.tests.get(column, {})
        rows.append(
            {
                "column": column,
                "psi": stability["value"],
                "band": stability["band"],
                "method": test.get("method", ""),
                "statistic": test.get("value"),
                "threshold": test.get("threshold"),
                "drifted": bool(test.get("drifted")),
            }
        )
    return sorted(rows, key=lambda r: -r["psi"])


def _grade_rows(
    reference: np.ndarray,
    current: np.ndarray,
    edges: list[float],
    performance: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    ref_grades, cur_grades = assign_grades(reference, edges), assign_grades(current, edges)
    realised = (performance or {}).get("by_grade", {})
    bounds = [0.0, *edges, 1.0]
    rows = []
    for i, grade in enumerate(GRADES[: len(edges) + 1]):
        mine = current[cur_grades == grade]
        rows.append(
            {
                "grade": grade,
                "range": f"{bounds[i]:.2%}-{bounds[i + 1]:.2%}",
                "reference_share": float(np.mean(ref_grades == grade)) if len(reference) else 0.0,
                "current_share": float(np.mean(cur_grades == grade)) if len(current) else 0.0,
                "current_mean_pd": float(mine.mean()) if len(mine) else None,
                "outcomes": int(realised.get(grade, {}).get("rows", 0)),
                "predicted": realised.get(grade, {}).get("predicted"),
                "observed": realised.get(grade, {}).get("observed"),
            }
        )
    return rows


def _distribution(reference: np.ndarray, current: np.ndarray, edges: list[float]) -> str:
    """The PD's distribution: shares by grade, and a histogram on shared bins."""
    labels = list(GRADES[: len(edges) + 1])
    ref_grades, cur_grades = assign_grades(reference, edges), assign_grades(current, edges)
    by_grade = charts.bars(
        labels,
        {
            "training": [float(np.mean(ref_grades == g)) for g in labels],
            "this window": [float(np.mean(cur_grades == g)) for g in labels],
        },
        title="Share of applications by grade",
    )
    top = float(np.quantile(np.concatenate([reference, current]), 0.99)) or 1.0
    bins = np.linspace(0.0, top, 11)
    ref_hist = np.histogram(np.clip(reference, 0, top), bins)[0] / max(len(reference), 1)
    cur_hist = np.histogram(np.clip(current, 0, top), bins)[0] / max(len(current), 1)
    histogram = charts.bars(
        [f"{b:.0%}" for b in bins[:-1]],
        {"training": ref_hist.tolist(), "this window": cur_hist.tolist()},
        title="PD distribution (share of applications per PD bin, from the bin's lower edge)",
    )
    return by_grade + histogram
