"""How results are printed for people (``--json`` prints them for machines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from loanrisk.cli.common import err, out

if TYPE_CHECKING:  # the results' modules import the modeling stack
    from loanrisk.batch import ScoringRun
    from loanrisk.modeling.train import TrainResult
    from loanrisk.monitoring.monitor import MonitorResult
    from loanrisk.pipeline import StepResult
    from loanrisk.warehouse.ingest import WarehouseStatus


def print_status(result: WarehouseStatus) -> None:
    table = Table("table", "rows", title="warehouse")
    for name, count in result.tables.items():
        table.add_row(name, f"{count:,}")
    out.print(table)
    if result.reconciled:
        out.print(
            "[green]counts reconcile[/]: bronze = silver new + silver updated + rejected; "
            "gold = silver"
        )
    else:
        for problem in result.problems:
            err.print(f"[red]does not reconcile:[/] {problem}")


def print_labels(labels: list[dict[str, Any]], horizon: int | None) -> None:
    """Bad, good and censored loans per vintage (censored: not yet observed long enough)."""
    if not labels:
        return
    title = (
        f"labels per vintage ({horizon}-month performance window)"
        if horizon
        else "labels per vintage (final status)"
    )
    table = Table(
        "vintage", "bad", "good", "censored", "bad rate", title=title, box=box.SIMPLE_HEAD
    )
    for row in labels:
        known = row["bad"] + row["good"]
        rate = f"{row['bad'] / known:.1%}" if known else ""
        table.add_row(
            row["vintage"], f"{row['bad']:,}", f"{row['good']:,}", f"{row['censored']:,}", rate
        )
    out.print(table)


def print_candidates(result: TrainResult) -> None:
    """One column per candidate (the winner starred), one row per metric: fits 80 columns
    and any log, where a row per candidate would cut the figures."""
    table = Table(
        "test window",
        *[("* " if r.name == result.winner else "") + r.name for r in result.candidates],
        title=f"training run {result.run_id}",
        box=box.SIMPLE_HEAD,
    )
    for column in table.columns[1:]:
        column.justify, column.no_wrap = "right", True
    candidates = result.candidates
    figures = [("valid AUC", [r.valid_auc for r in candidates])]
    figures += [
        (label, [r.test[key] for r in candidates])
        for label, key in (
            ("AUC", "auc"),
            ("Gini", "gini"),
            ("KS", "ks"),
            ("PR-AUC", "pr_auc"),
            ("Brier", "brier"),
            ("ECE", "ece"),
            ("F1", "f1"),
        )
    ]
    figures.append(("cut-off PD", [r.threshold for r in candidates]))
    for label, values in figures:
        table.add_row(label, *[f"{v:.4f}" for v in values])
    table.add_row("seconds", *[f"{r.seconds:.0f}" for r in candidates])
    out.print(table)
    split = result.split
    out.print(
        f"split {split['split']}: train {split['train_rows']:,} ({split['train_window']}), "
        f"validation {split['valid_rows']:,} ({split['valid_window']}), "
        f"test {split['test_rows']:,} ({split['test_window']})"
    )
    out.print(f"registered {result.winner} as version {result.version} -> {result.model_uri}")


def print_scoring(run: ScoringRun) -> None:
    if run.skipped:
        out.print(f"skipped: {run.note}; 0 rows added ({run.output})")
        return
    out.print(
        f"scored {run.rows_scored:,} of {run.rows_in:,} rows of {Path(run.input).name} "
        f"with version {run.model_version} in {run.seconds:.1f}s "
        f"({run.rows_per_second:,.0f} rows/s); {run.rows_invalid:,} invalid; "
        f"output {run.output}"
    )


def print_monitoring(result: MonitorResult) -> None:
    perf = result.performance or {}
    auc = perf.get("auc")
    out.print(
        f"model v{result.model_version}: {result.rows_current:,} predictions vs "
        f"{result.rows_reference:,} training rows"
    )
    drifted = result.drifted_features
    named = result.drift_alert and drifted  # the drift alert below names them
    out.print(
        f"drifted inputs: {len(drifted)} ({result.drifted_share:.0%})"
        + ("" if named else f" {', '.join(drifted)}")
    )
    out.print(f"PD score PSI {result.score_psi:.3f} ({result.score_psi_band})")
    out.print(
        "realised: "
        + (f"AUC {auc:.3f} on {perf['outcomes']:,} outcomes" if auc else "no outcomes yet")
    )
    verdict = "[red]retrain recommended[/]" if result.retrain_recommended else "[green]ok[/]"
    out.print(f"verdict: {verdict}; " + ("; ".join(result.alerts) or "no alert"))
    out.print(f"report {result.report_html}")


def print_step(step: StepResult) -> None:
    mark = {"ran": "[green]ran[/]", "skipped": "[yellow]skipped[/]", "failed": "[red]failed[/]"}
    out.print(f"[bold]{step.step}[/] {mark[step.status]} ({step.seconds:.1f}s) {step.note}")
    if step.status != "ran":
        return
    outcome = step.outcome
    if step.step == "ingest":
        for batch in outcome["batches"]:
            if not batch.skipped:
                out.print(
                    f"  {Path(batch.source).name}: {batch.rows_bronze:,} rows -> "
                    f"{batch.rows_silver_new:,} new silver, {batch.rows_rejected:,} "
                    f"rejected, {batch.rows_gold:,} gold"
                )
                for warning in batch.warnings:
                    err.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    elif step.step == "train":
        print_candidates(outcome)
    elif step.step == "promote":
        verdict = "promoted to @production" if outcome.promoted else "refused"
        out.print(f"  version {outcome.challenger} {verdict}: {outcome.reason}")
    elif step.step == "score":
        for run in outcome:
            print_scoring(run)
    elif step.step == "monitor":
        print_monitoring(outcome)
