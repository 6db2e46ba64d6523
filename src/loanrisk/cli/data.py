"""Data commands: generate, ingest, status, outcomes, profiles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loanrisk.cli.app import app, profiles_app
from loanrisk.cli.common import (
    EXIT_ERROR,
    FileBar,
    JsonOption,
    emit_json,
    err,
    handles_errors,
    out,
    progress_bar,
    resources,
    setting_help,
)
from loanrisk.cli.render import print_labels, print_status
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.pipeline import landing_files, run_ingest
from loanrisk.profiles import builtin_profiles, load_profile
from loanrisk.warehouse.ingest import warehouse_status
from loanrisk.warehouse.queries import labels_by_vintage


@app.command()
@handles_errors
def generate(
    out_file: Annotated[
        Path, typer.Option("--out", help="Output file: .csv, .csv.gz or .parquet.")
    ],
    rows: Annotated[int, typer.Option(help="Number of loans.")] = 100_000,
    start: Annotated[str, typer.Option(help="First issue month, YYYY-MM.")] = "2015-01",
    months: Annotated[int, typer.Option(help="Number of issue months.")] = 36,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same bytes.")
    ] = 42,
    drift: Annotated[
        float,
        typer.Option(
            help="Drift strength (0 = none, 1 = strong): later months get riskier "
            "applicants and higher default rates, ramping up to this value."
        ),
    ] = 0.0,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Extract month, YYYY-MM: loan statuses are as of this month "
            "(default: the month after the last issue month). A later --as-of "
            "with the same seed gives the same loans, matured."
        ),
    ] = None,
    missing_share: Annotated[
        float, typer.Option(help="Share of blanks in optional columns.")
    ] = 0.02,
    dirty_share: Annotated[
        float,
        typer.Option(help="Share of dirty rows (bad numbers, impossible values, duplicated ids)."),
    ] = 0.005,
    protected: Annotated[
        bool,
        typer.Option(
            "--protected",
            help="Add applicant_group (A/B), a protected attribute that is not in the true "
            "PD but correlates with income (B is poorer): declare it with role 'protected' "
            "in a profile to see the fairness report and gate at work.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write synthetic loans in LendingClub's raw format, plus a sidecar with each loan's true PD.

    The sidecar (<name>.truth.parquet) holds the true probability of default and drawn
    outcome per loan, so a model's AUC can be compared with the best achievable.
    """
    config = GeneratorConfig(
        rows=rows,
        start=start,
        months=months,
        seed=seed,
        drift=drift,
        as_of=as_of,
        missing_share=missing_share,
        dirty_share=dirty_share,
        protected=protected,
    )
    started = time.perf_counter()
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("generating", total=rows)
        result = write_generated(config, out_file, progress=lambda n: bar.advance(task, n))
    seconds = time.perf_counter() - started
    summary = {
        "loans": str(result.loans),
        "truth": str(result.truth),
        "rows": result.rows,
        "true_default_rate": round(result.default_rate, 4),
        "best_achievable_auc": None if result.best_auc is None else round(result.best_auc, 4),
        "seconds": round(seconds, 2),
    }
    if as_json:
        emit_json(summary)
        return
    out.print(f"wrote {result.rows:,} loans to {result.loans} in {seconds:.1f}s")
    out.print(
        f"true PDs in {result.truth}: default rate {result.default_rate:.1%}, "
        f"best achievable AUC {summary['best_achievable_auc']}"
    )


@app.command("ingest")
@handles_errors
def ingest_command(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files, globs or folders (CSV, CSV.gz, Parquet); local paths or "
            "fsspec URLs such as s3://bucket/loans/*.csv.gz. Default: the landing folder "
            "\\[env: LOANRISK_DATA__LANDING_DIR; default <home>/landing]."
        ),
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(help=setting_help("ingest.chunk_size"))] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help=setting_help("ingest.encoding", "Text encoding of CSV files, e.g. latin-1")
        ),
    ] = None,
    delimiter: Annotated[
        str, typer.Option(help="CSV field delimiter: ',', ';', '|', 'tab' or '\\t'.")
    ] = ",",
    max_reject_share: Annotated[
        float | None, typer.Option(help=setting_help("ingest.max_reject_share"))
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load raw loan files into bronze, refine them into silver and build gold features.

    Each file is one batch keyed by the hash of its bytes: ingesting it again adds nothing.
    A file that fails part-way leaves nothing behind. Rows that fail validation go to
    silver_rejects with the column and the reason.
    """
    run = resources(ctx)
    settings = run.settings
    if chunk_size is not None:
        settings.ingest.chunk_size = chunk_size
    if encoding is not None:
        settings.ingest.encoding = encoding
    if max_reject_share is not None:
        settings.ingest.max_reject_share = max_reject_share
    files = sources or landing_files(settings)
    with progress_bar(disable=as_json, bytes_=True) as bar:
        results, status = run_ingest(
            settings, run.warehouse, files, delimiter=delimiter, progress=FileBar(bar)
        )
    if as_json:
        emit_json({"batches": [r.as_dict() for r in results], "warehouse": status.as_dict()})
        return
    table = Table(
        "file",
        "batch",
        "bronze",
        "silver new",
        "silver updated",
        "rejected",
        "gold",
        "seconds",
        title="ingestion",
    )
    table.columns[0].overflow = "fold"  # a long path is wrapped, never cut to "…"
    for r in results:
        if r.skipped:
            table.add_row(r.source, str(r.batch_id), "[dim]skipped[/]", "", "", "", "", "")
            err.print(f"[yellow]skipped[/] {r.source}: {r.note}; 0 rows added", highlight=False)
        else:
            table.add_row(
                r.source,
                str(r.batch_id),
                f"{r.rows_bronze:,}",
                f"{r.rows_silver_new:,}",
                f"{r.rows_silver_updated:,}",
                f"{r.rows_rejected:,}",
                f"{r.rows_gold:,}",
                f"{r.seconds:.1f}",
            )
        if r.columns_ignored:
            err.print(
                f"[dim]{r.source}: {len(r.columns_ignored)} column(s) not in the profile "
                f"kept in bronze only: {', '.join(r.columns_ignored[:8])}"
                f"{' ...' if len(r.columns_ignored) > 8 else ''}[/]",
                highlight=False,
            )
        for warning in r.warnings:
            err.print(f"[yellow]warning:[/] {r.source}: {warning}", highlight=False)
    out.print(table)
    print_status(status)


@app.command()
@handles_errors
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Row counts of bronze, silver, rejects and gold, whether they reconcile, and the
    bad, good and censored loans of each vintage."""
    warehouse = resources(ctx).warehouse
    result = warehouse_status(warehouse.engine)
    labels = labels_by_vintage(warehouse.engine)
    if as_json:
        emit_json(result.as_dict() | {"labels_by_vintage": labels})
        return
    print_status(result)
    print_labels(labels, warehouse.profile.target.horizon_months)
    if not result.reconciled:
        raise typer.Exit(code=EXIT_ERROR)


@app.command("outcomes")
@handles_errors
def outcomes_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(help="A file with the loan id (or client_id) and loan_status or defaulted."),
    ],
    as_json: JsonOption = False,
) -> None:
    """Load realised outcomes and match them to predictions; unmatched rows are counted."""
    from loanrisk.outcomes import load_outcomes

    run = resources(ctx)
    result = load_outcomes(run.settings, run.warehouse, source)
    if as_json:
        emit_json(result.as_dict())
        return
    out.print(
        f"{result.rows:,} rows: {result.matched:,} matched predictions, "
        f"{result.unmatched:,} unmatched, {result.not_final:,} without a final status; "
        f"{result.stored:,} outcomes stored"
    )
    if result.refused:
        out.print(f"{result.refused:,} rows refused: " + "; ".join(result.problems))


@profiles_app.command("list")
def profiles_list() -> None:
    """Built-in profiles (a profile file of your own is passed by path to --profile)."""
    for name in builtin_profiles():
        out.print(f"{name}: {load_profile(name).description}")


@profiles_app.command("show")
@handles_errors
def profiles_show(
    name: Annotated[str, typer.Argument(help="Built-in profile name or path to a YAML file.")],
    as_json: JsonOption = False,
) -> None:
    """Show a profile's columns, roles and parsers (and check a profile file for mistakes)."""
    profile = load_profile(name)
    if as_json:
        emit_json(profile.model_dump(mode="json"))
        return
    table = Table(
        "column",
        "parser",
        "role",
        "required",
        "values",
        "description",
        title=f"profile {profile.name}",
    )
    for column, spec in profile.columns.items():
        bounds = ""
        if spec.min is not None or spec.max is not None:
            low, high = (f"{b:g}" if b is not None else "" for b in (spec.min, spec.max))
            bounds = f"{low}..{high}"
        if spec.categories:
            bounds = ", ".join(spec.categories)
        if spec.out_of_range != "reject" and bounds:
            bounds += f" (outside: {spec.out_of_range})"
        if spec.missing:
            bounds += f"; missing: {', '.join(spec.missing)}"
        parser = spec.parser.value + (" (in %)" if spec.unit == "percent" else "")
        table.add_row(
            column,
            parser,
            spec.role.value,
            "yes" if spec.required else "",
            bounds.strip("; "),
            spec.description,
        )
    for column, derived in profile.derived.items():
        table.add_row(
            column,
            f"{derived.op}({', '.join(derived.inputs)})",
            "derived",
            "",
            "",
            derived.description,
        )
    out.print(table)
    out.print(
        f"id: {profile.id.column or '(derived from the application fields)'}; vintage: "
        f"{profile.vintage}; target: {profile.target.column} "
        f"(bad: {', '.join(profile.target.bad)})"
    )
