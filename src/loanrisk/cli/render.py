"""How results are printed for people (``--json`` prints them for machines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from loanrisk.cli.common import err, out

if TYPE_CHECKING:
    from loanrisk.pipeline import StepResult


def print_status(result: Any) -> None:
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


def print_candidates(result: Any) -> None:
    table = Table(
        "candidate",
        "valid AUC",
        "test AUC",
        "Gini",
        "KS",
        "PR-AUC",
        "Brier",
        "ECE",
        "F1",
        "threshold",
        "seconds",
        title=f"training run {result['run_id']}",
    )
    for r in result["candidates"]:
        t = r["test"]
        table.add_row(
            ("* " if r["name"] == result["winner"] else "  ") + r["name"],
            f"{r['valid_auc']:.4f}",
            f"{t['auc']:.4f}",
            f"{t['gini']:.4f}",
            f"{t['ks']:.4f}",
            f"{t['pr_auc']:.4f}",
            f"{t['brier']:.4f}",
            f"{t['ece']:.4f}",
            f"{t['f1']:.4f}",
            f"{r['threshold']:.4f}",
            f"{r['seconds']:.0f}",
        )
    out.print(table)
    split = result["split"]
    out.print(
        f"split {split['split']}: train {split['train_rows']:,} ({split['train_window']}), "
        f"validation {split['valid_rows']:,} ({split['valid_window']}), "
        f"test {split['test_rows']:,} ({split['test_window']})"
    )
    out.print(
        f"registered {result['winner']} as version {result['version']} -> {result['model_uri']}"
    )


def print_scoring(run: dict[str, Any]) -> None:
    if run["skipped"]:
        out.print(f"skipped: {run['note']}; 0 rows added ({run['output']})")
        return
    out.print(
        f"scored {run['rows_scored']:,} of {run['rows_in']:,} rows of {Path(run['input']).name} "
        f"with version {run['model_version']} in {run['seconds']:.1f}s "
        f"({run['rows_per_second']:,.0f} rows/s); {run['rows_invalid']:,} invalid; "
        f"output {run['output']}"
    )


def print_monitoring(result: dict[str, Any]) -> None:
    perf = result["performance"] or {}
    auc = perf.get("auc")
    out.print(
        f"model v{result['model_version']}: {result['rows_current']:,} predictions vs "
        f"{result['rows_reference']:,} training rows"
    )
    drifted = result["drifted_features"]
    out.print(
        f"drifted inputs: {len(drifted)} ({result['drifted_share']:.0%}) {', '.join(drifted)}"
    )
    out.print(f"PD score PSI {result['score_psi']:.3f} ({result['score_psi_band']})")
    out.print(
        "realised: "
        + (f"AUC {auc:.3f} on {perf['outcomes']:,} outcomes" if auc else "no outcomes yet")
    )
    verdict = "[red]retrain recommended[/]" if result["retrain_recommended"] else "[green]ok[/]"
    out.print(f"verdict: {verdict}; " + ("; ".join(result["alerts"]) or "no alert"))
    out.print(f"report {result['report_html']}")


def print_step(step: StepResult) -> None:
    mark = {"ran": "[green]ran[/]", "skipped": "[yellow]skipped[/]", "failed": "[red]failed[/]"}
    out.print(f"[bold]{step.step}[/] {mark[step.status]} ({step.seconds:.1f}s) {step.note}")
    if step.status != "ran":
        return
    result = step.result
    if step.step == "ingest":
        for batch in result["batches"]:
            if not batch["skipped"]:
                out.print(
                    f"  {Path(batch['source']).name}: {batch['rows_bronze']:,} rows -> "
                    f"{batch['rows_silver_new']:,} new silver, {batch['rows_rejected']:,} "
                    f"rejected, {batch['rows_gold']:,} gold"
                )
    elif step.step == "train":
        print_candidates(result)
    elif step.step == "promote":
        verdict = "promoted to @production" if result["promoted"] else "refused"
        out.print(f"  version {result['challenger']} {verdict}: {result['reason']}")
    elif step.step == "score":
        for run in result:
            print_scoring(run)
    elif step.step == "monitor":
        print_monitoring(result)
