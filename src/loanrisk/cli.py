"""The ``loanrisk`` command line: one subcommand per stage, ``--json`` for schedulers."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from loanrisk import __version__, registry
from loanrisk.config import Settings, get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import LoanriskError, NothingToDo, UnreachableError
from loanrisk.logs import configure_logging
from loanrisk.pipeline import (
    PipelineHooks,
    PipelineResult,
    StepResult,
    landing_files,
    run_ingest,
    run_pipeline,
    run_promote,
    run_status,
    run_train,
)
from loanrisk.profiles import builtin_profiles, load_profile
from loanrisk.promotion import rollback

app = typer.Typer(
    name="loanrisk",
    help=(
        "Loan default prediction, from raw loan files to a governed PD service.\n\n"
        "Start with:  loanrisk demo  (generates loans and runs everything end to end), or step "
        "by step: generate, ingest, train, promote, score, monitor; 'loanrisk pipeline' runs "
        "the steps that have something new to do.\n\n"
        "Exit codes: 0 done or skipped, 1 bad input or state, 3 promotion refused, 4/5 drift/"
        "performance alert (monitor --fail-on), 75 database or MLflow unreachable (retry).\n\n"
        "Every setting can also come from LOANRISK_* environment variables or a .env file "
        "(see 'loanrisk config')."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
profiles_app = typer.Typer(help="List and show dataset profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")

out = Console()
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")]


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _fail(problem: str | Exception) -> typer.Exit:
    """Print the problem; exit 75 when a server did not answer (retryable), else 1."""
    retry = isinstance(problem, UnreachableError)
    label = "unreachable (retry later)" if retry else "error"
    err.print(f"[bold red]{label}:[/] {problem}", highlight=False)
    return typer.Exit(code=EXIT_RETRYABLE if retry else EXIT_ERROR)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _skipped(exc: NothingToDo, as_json: bool) -> typer.Exit:
    """Nothing new to do is a success: say why (schedulers read ``skipped`` in --json)."""
    if as_json:
        _emit_json({"skipped": True, "note": str(exc)})
    else:
        out.print(f"skipped: {exc}", highlight=False)
    return typer.Exit(code=0)


# Exit codes a scheduler can branch on (documented in the README and used by the DAGs).
EXIT_ERROR = 1  # bad input or state: retrying will not help
EXIT_REFUSED = 3  # promotion refused by the gates
EXIT_DRIFT = 4
EXIT_PERFORMANCE = 5
EXIT_RETRYABLE = 75  # infrastructure unreachable (database, MLflow server): retry later


def run() -> None:
    """Console entry point: the Typer app, with infrastructure failures mapped to exit 75."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    try:
        app()
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, ConnectionError) as exc:
        err.print(f"[bold red]infrastructure error (retryable):[/] {exc}", highlight=False)
        sys.exit(EXIT_RETRYABLE)
    except MlflowException as exc:
        if registry.unreachable(exc):
            err.print(f"[bold red]MLflow unreachable (retryable):[/] {exc}", highlight=False)
            sys.exit(EXIT_RETRYABLE)
        raise


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Home folder for the warehouse, MLflow store and reports "
            "[env: LOANRISK_HOME; default .loanrisk]"
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Dataset profile: a built-in name or a YAML file "
            "[env: LOANRISK_DATA__PROFILE; default lendingclub]"
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR [env: LOANRISK_LOG_LEVEL]")
    ] = None,
) -> None:
    """Global options come before the command, e.g. ``loanrisk --home /data/lr ingest f.csv``."""
    try:
        settings = get_settings(home=home, log_level=log_level)
        if profile is not None:
            settings.data.profile = profile
    except LoanriskError as exc:
        raise _fail(exc) from exc
    configure_logging(settings.log_level)
    # MLflow draws its own progress bars on stderr; ours are enough.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ctx.obj = settings


@app.command()
def version() -> None:
    """Print the loanrisk version."""
    out.print(__version__)


@app.command()
def config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the effective settings (defaults < .env < environment < options), secrets masked."""
    data = _settings(ctx).public_dict()
    if as_json:
        _emit_json(data)
        return
    table = Table("setting", "value", "environment variable", title="loanrisk settings")
    for key, value in _flatten(data):
        table.add_row(key, str(value), "LOANRISK_" + key.upper().replace(".", "__"))
    out.print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


@app.command()
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
    as_json: JsonOption = False,
) -> None:
    """Write synthetic loans in LendingClub's raw format, plus a sidecar with each loan's true PD.

    The sidecar (<name>.truth.parquet) holds the true probability of default and drawn
    outcome per loan, so a model's AUC can be compared with the best achievable.
    """
    try:
        config = GeneratorConfig(
            rows=rows,
            start=start,
            months=months,
            seed=seed,
            drift=drift,
            as_of=as_of,
            missing_share=missing_share,
            dirty_share=dirty_share,
        )
        started = time.perf_counter()
        with _progress(disable=as_json) as bar:
            task = bar.add_task("generating", total=rows)
            result = write_generated(config, out_file, progress=lambda n: bar.advance(task, n))
        seconds = time.perf_counter() - started
    except LoanriskError as exc:
        raise _fail(exc) from exc
    summary = {
        "loans": str(result.loans),
        "truth": str(result.truth),
        "rows": result.rows,
        "true_default_rate": round(result.default_rate, 4),
        "best_achievable_auc": None if result.best_auc is None else round(result.best_auc, 4),
        "seconds": round(seconds, 2),
    }
    if as_json:
        _emit_json(summary)
        return
    out.print(f"wrote {result.rows:,} loans to {result.loans} in {seconds:.1f}s")
    out.print(
        f"true PDs in {result.truth}: default rate {result.default_rate:.1%}, "
        f"best achievable AUC {summary['best_achievable_auc']}"
    )


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files, globs or folders (CSV, CSV.gz, Parquet); local paths or "
            "fsspec URLs such as s3://bucket/loans/*.csv.gz. Default: the landing folder "
            "[env: LOANRISK_DATA__LANDING_DIR; default <home>/landing]."
        ),
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(help="Rows per chunk [env: LOANRISK_INGEST__CHUNK_SIZE]")
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of CSV files, e.g. latin-1 "
            "[env: LOANRISK_INGEST__ENCODING; default utf-8]"
        ),
    ] = None,
    delimiter: Annotated[
        str, typer.Option(help="CSV field delimiter: ',', ';', '|', 'tab' or '\\t'.")
    ] = ",",
    as_json: JsonOption = False,
) -> None:
    """Load raw loan files into bronze, refine them into silver and build gold features.

    Each file is one batch keyed by the hash of its bytes: ingesting it again adds nothing.
    A file that fails part-way leaves nothing behind. Rows that fail validation go to
    silver_rejects with the column and the reason.
    """
    settings = _settings(ctx)
    if chunk_size is not None:
        settings.ingest.chunk_size = chunk_size
    if encoding is not None:
        settings.ingest.encoding = encoding
    try:
        files = sources or landing_files(settings)
        with _progress(disable=as_json, bytes_=True) as bar:
            results, status = run_ingest(
                settings, files, delimiter=delimiter, progress=_IngestBar(bar)
            )
    except NothingToDo as exc:
        raise _skipped(exc, as_json) from None
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json({"batches": [r.as_dict() for r in results], "warehouse": status.as_dict()})
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
    out.print(table)
    _print_status(status)


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Row counts of bronze, silver, rejects and gold, and whether they reconcile."""
    try:
        result = run_status(_settings(ctx))
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(result.as_dict())
        return
    _print_status(result)
    if not result.reconciled:
        raise typer.Exit(code=1)


def _print_status(result: Any) -> None:
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


@app.command("train")
def train_command(
    ctx: typer.Context,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Optuna trials per candidate, scored on validation AUC "
            "(0 = defaults only) [env: LOANRISK_TRAINING__TRIALS; default 4]"
        ),
    ] = None,
    candidates: Annotated[
        str | None,
        typer.Option(help="Comma-separated: logistic_regression,xgboost,lightgbm"),
    ] = None,
    test_months: Annotated[int | None, typer.Option(help="Latest vintage months for test.")] = None,
    valid_months: Annotated[
        int | None, typer.Option(help="Months before test for validation.")
    ] = None,
    if_new_data: Annotated[
        bool,
        typer.Option(
            "--if-new-data", help="Skip (exit 0) when gold is unchanged since the newest version."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Train LR, XGBoost and LightGBM on gold, out of time; register the best at @staging.

    Tuning, early stopping, calibration and the decision threshold use training and
    validation months only; reported metrics come from the untouched latest months. Data
    without issue dates gets a stratified random split, with a warning.
    """
    settings = _settings(ctx)
    options = settings.training
    if trials is not None:
        options.trials = trials
    if candidates is not None:
        options.candidates = [c.strip() for c in candidates.split(",") if c.strip()]
    if test_months is not None:
        options.test_months = test_months
    if valid_months is not None:
        options.valid_months = valid_months
    try:
        result = run_train(
            settings,
            progress=None
            if as_json
            else (lambda message: err.print(f"[dim]{message}[/]", highlight=False)),
            if_new_data=if_new_data,
        )
    except NothingToDo as exc:
        raise _skipped(exc, as_json) from None
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(result.as_dict())
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    _print_candidates(result.as_dict())


def _print_candidates(result: Any) -> None:
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


@app.command()
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List registered versions with their aliases and key metrics."""
    try:
        found = registry.versions(_settings(ctx))
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json([v.as_dict() for v in found])
        return
    if not found:
        out.print("no registered versions yet: run 'loanrisk train'")
        return
    table = Table(
        "version",
        "aliases",
        "model",
        "test AUC",
        "test ECE",
        "data",
        "created",
        title=_settings(ctx).mlflow.model_name,
    )
    for v in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at / 1000))
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            v.tags.get("winner", ""),
            v.tags.get("test_auc", "")[:6],
            v.tags.get("test_ece", "")[:6],
            v.tags.get("data_vintages", ""),
            created,
        )
    out.print(table)


@app.command("promote")
def promote_command(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option(help="Challenger version (default @staging).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even if a gate fails (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on the version.")] = None,
    if_new: Annotated[
        bool,
        typer.Option(
            "--if-new",
            help="Skip (exit 0) when @staging is missing, already @production or was refused.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Promote the challenger to @production if it passes the gates.

    Challenger and champion are scored on the same recent labelled window; the challenger
    needs AUC >= min_auc, ECE <= max_ece and AUC no worse than the champion's minus a
    tolerance (LOANRISK_PROMOTION__*). Exit code 3 when refused.
    """
    try:
        result = run_promote(
            _settings(ctx), version=version, force=force, reason=reason, if_new=if_new
        )
    except NothingToDo as exc:
        raise _skipped(exc, as_json) from None
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(result.as_dict())
    else:
        table = Table(
            "version",
            "role",
            "AUC",
            "ECE",
            "mean PD",
            "default rate",
            "rows",
            title=f"scored on {result.window['description']}",
        )
        for version_, scores in result.metrics.items():
            role = "challenger" if version_ == result.challenger else "champion"
            table.add_row(
                version_,
                role,
                f"{scores['auc']:.4f}",
                f"{scores['ece']:.4f}",
                f"{scores['mean_pd']:.4f}",
                f"{scores['default_rate']:.4f}",
                f"{scores['rows']:,}",
            )
        out.print(table)
        for check in result.checks:
            mark = "[green]pass[/]" if check["passed"] else "[red]fail[/]"
            out.print(f"{mark} {check['check']} (challenger {check['value']:.4f})")
        verdict = "promoted" if result.promoted else "not promoted"
        out.print(f"version {result.challenger} {verdict}: {result.reason}")
    if not result.promoted:
        raise typer.Exit(code=EXIT_REFUSED)


@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on the version.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Point @production back at the version it replaced."""
    try:
        old, new = rollback(_settings(ctx), reason=reason)
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json({"from_version": old, "to_version": new})
        return
    out.print(f"@production moved back from version {old} to version {new}")


@app.command("score")
def score_command(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            help="A file of applications (CSV, CSV.gz, Parquet; local or fsspec URL), a local "
            "folder of such files (each scored once), or 'warehouse:unlabelled'. Default: the "
            "applications folder [env: LOANRISK_DATA__APPLICATIONS_DIR; default "
            "<home>/applications]."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for the Parquet output (default <home>/scores).")
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Rows per chunk [env: LOANRISK_INGEST__SCORING_CHUNK_SIZE; default 20000]"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a file or folder with the @production model: Parquet + predictions rows.

    Streams in chunks (constant memory). The same input with the same model version is
    not scored twice. Leaves <home>/scores/latest.json for monitoring.
    """
    from loanrisk.batch import score_file
    from loanrisk.pipeline import run_score_folder

    settings = _settings(ctx)
    if chunk_size is not None:
        settings.ingest.scoring_chunk_size = chunk_size
    source = source or str(settings.applications_dir)
    try:
        with _progress(disable=as_json, bytes_=True) as bar:
            if Path(source).is_dir():
                runs = run_score_folder(settings, Path(source), progress=_IngestBar(bar))
            else:
                runs = [score_file(settings, source, output_dir=output, progress=_IngestBar(bar))]
    except NothingToDo as exc:
        raise _skipped(exc, as_json) from None
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(runs[0].as_dict() if not Path(source).is_dir() else [r.as_dict() for r in runs])
        return
    for run in runs:
        _print_scoring(run.as_dict())


def _print_scoring(run: dict[str, Any]) -> None:
    if run["skipped"]:
        out.print(f"skipped: {run['note']}; 0 rows added ({run['output']})")
        return
    out.print(
        f"scored {run['rows_scored']:,} of {run['rows_in']:,} rows of {Path(run['input']).name} "
        f"with version {run['model_version']} in {run['seconds']:.1f}s "
        f"({run['rows_per_second']:,.0f} rows/s); {run['rows_invalid']:,} invalid; "
        f"output {run['output']}"
    )


@app.command("outcomes")
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

    try:
        result = load_outcomes(_settings(ctx), source)
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(result.as_dict())
        return
    out.print(
        f"{result.rows:,} rows: {result.matched:,} matched predictions, "
        f"{result.unmatched:,} unmatched, {result.not_final:,} without a final status; "
        f"{result.stored:,} outcomes stored"
    )


@app.command("monitor")
def monitor_command(
    ctx: typer.Context,
    window: Annotated[str, typer.Option(help="How far back: e.g. 30d, 12h.")] = "30d",
    fail_on: Annotated[
        str | None, typer.Option(help="Exit 4 on 'drift', 5 on 'performance' (or 'any').")
    ] = None,
    if_new: Annotated[
        bool,
        typer.Option(
            "--if-new",
            help="Skip (exit 0) when no prediction or outcome arrived since the last run.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Drift (Evidently, PSI) and realised performance of recent predictions vs training.

    Writes an HTML report and a JSON summary under <home>/reports and a monitoring_runs row;
    alerts go to the log and LOANRISK_MONITORING__WEBHOOK_URL.
    """
    from loanrisk.monitoring.monitor import monitor

    try:
        amount, unit = float(window[:-1]), window[-1]
        days = {"d": amount, "h": amount / 24}[unit]
    except (ValueError, KeyError):
        raise _fail(f"--window must look like 30d or 12h, got {window!r}") from None
    if fail_on not in (None, "drift", "performance", "any"):
        raise _fail("--fail-on must be drift, performance or any")
    try:
        result = monitor(_settings(ctx), days=days, if_new=if_new)
    except NothingToDo as exc:
        raise _skipped(exc, as_json) from None
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(result.as_dict())
    else:
        _print_monitoring(result.as_dict())
    if fail_on in ("drift", "any") and result.drift_alert:
        raise typer.Exit(code=EXIT_DRIFT)
    if fail_on in ("performance", "any") and result.performance_alert:
        raise typer.Exit(code=EXIT_PERFORMANCE)


def _print_monitoring(result: dict[str, Any]) -> None:
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


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface [env: LOANRISK_SERVING__HOST; default 127.0.0.1]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [env: LOANRISK_SERVING__PORT; default 8000]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [env: LOANRISK_SERVING__WORKERS]")
    ] = None,
) -> None:
    """Serve PDs over HTTP from the model at @production (hot-reloaded when the alias moves).

    API keys: create one with 'loanrisk apikey', put its hash in LOANRISK_SERVING__API_KEYS,
    send it as 'Authorization: Bearer <key>'. Docs at /docs; the officer page at /.
    """
    import uvicorn

    from loanrisk.serving.metrics import MULTIPROCESS_ENV

    settings = _settings(ctx)
    serving = settings.serving
    if host is not None:
        serving.host = host
    if port is not None:
        serving.port = port
    if workers is not None:
        serving.workers = workers
    # Worker processes build their settings from the environment: pass ours down.
    os.environ["LOANRISK_HOME"] = str(settings.home.resolve())
    os.environ["LOANRISK_DATA__PROFILE"] = settings.data.profile
    os.environ["LOANRISK_LOG_LEVEL"] = settings.log_level
    if serving.auth_enabled and not serving.api_keys:
        err.print(
            "[yellow]warning:[/] no API keys configured: every scoring request will get "
            "401. Create one with 'loanrisk apikey' or set "
            "LOANRISK_SERVING__AUTH_ENABLED=false for local use."
        )
    out.print(f"serving on http://{serving.host}:{serving.port} (docs at /docs)")
    # Several workers: /metrics reports all of them, through files in a fresh folder.
    metrics_dir = None
    if serving.workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="loanrisk-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    try:
        uvicorn.run(
            "loanrisk.serving.main:app_factory",
            factory=True,
            host=serving.host,
            port=serving.port,
            workers=serving.workers,
            # A worker loading its model on a busy machine is slow, not hung: uvicorn's
            # 5 s default killed such workers over and over.
            timeout_worker_healthcheck=serving.worker_start_seconds,
            # info: uvicorn reports a worker that died or was replaced only at this level.
            log_level="info" if serving.workers > 1 else "warning",
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def apikey(
    name: Annotated[str, typer.Option(help="Who will hold the key.")] = "officer",
    scopes: Annotated[str, typer.Option(help="Comma-separated: predict,read,outcomes")] = (
        "predict,read,outcomes"
    ),
) -> None:
    """Create an API key: prints the key (once) and the hashed entry for the settings."""
    from loanrisk.serving.security import new_key

    key, digest = new_key()
    entry = {"name": name, "sha256": digest, "scopes": [s.strip() for s in scopes.split(",")]}
    out.print(f"key (give it to {name}; it is not stored anywhere): {key}")
    out.print("add to LOANRISK_SERVING__API_KEYS (a JSON list):")
    sys.stdout.write(json.dumps([entry]) + "\n")


@profiles_app.command("list")
def profiles_list() -> None:
    """Built-in profiles (a profile file of your own is passed by path to --profile)."""
    for name in builtin_profiles():
        out.print(f"{name}: {load_profile(name).description}")


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Built-in profile name or path to a YAML file.")],
    as_json: JsonOption = False,
) -> None:
    """Show a profile's columns, roles and parsers (and check a profile file for mistakes)."""
    try:
        profile = load_profile(name)
    except LoanriskError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(profile.model_dump(mode="json"))
        return
    table = Table(
        "column",
        "parser",
        "role",
        "required",
        "range",
        "description",
        title=f"profile {profile.name}",
    )
    for column, spec in profile.columns.items():
        bounds = "" if spec.min is None and spec.max is None else f"{spec.min}..{spec.max}"
        table.add_row(
            column,
            spec.parser.value,
            spec.role.value,
            "yes" if spec.required else "",
            bounds,
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
        f"id: {profile.id.column or '(derived from row content)'}; vintage: "
        f"{profile.vintage}; target: {profile.target.column} "
        f"(bad: {', '.join(profile.target.bad)})"
    )


@app.command("pipeline")
def pipeline_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Run the whole chain: ingest -> train -> promote -> score -> monitor.

    Ingests new files from the landing folder (<home>/landing), trains when gold changed,
    promotes @staging through the gates, scores new files in <home>/applications and
    monitors the last 30 days. Each step says why when it skips. Exit 1 when a step fails,
    75 when it failed because the database or MLflow server did not answer.
    """
    result = _run_pipeline(_settings(ctx), quiet=as_json)
    if as_json:
        _emit_json(result.as_dict())
    if result.failed:
        retry = any(s.retryable for s in result.steps)
        raise typer.Exit(code=EXIT_RETRYABLE if retry else EXIT_ERROR)


def _run_pipeline(settings: Settings, *, quiet: bool) -> PipelineResult:
    with _progress(disable=quiet, bytes_=True) as bar:
        hooks = PipelineHooks(
            on_step=None if quiet else _print_step,
            on_message=None if quiet else (lambda m: err.print(f"[dim]{m}[/]", highlight=False)),
            file_progress=_IngestBar(bar),
        )
        return run_pipeline(settings, hooks)


def _print_step(step: StepResult) -> None:
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
        _print_candidates(result)
    elif step.step == "promote":
        verdict = "promoted to @production" if result["promoted"] else "refused"
        out.print(f"  version {result['challenger']} {verdict}: {result['reason']}")
    elif step.step == "score":
        for run in result:
            _print_scoring(run)
    elif step.step == "monitor":
        _print_monitoring(result)


@app.command()
def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(help="Loans in the generated 36-month history.")] = 200_000,
    applications: Annotated[
        int, typer.Option(help="New applications in the later, drifted month.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Generate a history and a drifted month, run the pipeline, print what to do next.

    Everything lives under the home folder: <home>/landing (36 months of loans, 2015-2017,
    as extracted in 2020), <home>/applications (new applications of 2018-01 from a
    riskier population), the warehouse, the MLflow store, reports and scores. Running it
    again is safe: files are not generated, ingested, trained or scored twice.
    """
    settings = _settings(ctx)
    started = time.perf_counter()
    history = GeneratorConfig(rows=rows, seed=seed, start="2015-01", months=36, as_of="2020-01")
    drifted = GeneratorConfig(
        rows=applications, seed=seed + 1, start="2018-01", months=1, drift=1.0, as_of="2018-01"
    )
    files = {
        settings.landing_dir / f"loans_2015-01_36m_seed{seed}.csv.gz": history,
        settings.applications_dir / f"applications_2018-01_drifted_seed{seed + 1}.csv.gz": drifted,
    }
    try:
        settings.ensure_home()
        for target, config in files.items():
            if target.exists():
                out.print(f"using the existing {target}")
                continue
            with _progress() as bar:
                task = bar.add_task(f"generating {target.name}", total=config.rows)
                write_generated(config, target, progress=functools.partial(bar.advance, task))
    except LoanriskError as exc:
        raise _fail(exc) from exc
    result = _run_pipeline(settings, quiet=False)
    if result.failed:
        raise typer.Exit(code=EXIT_ERROR)
    _demo_summary(settings, result, time.perf_counter() - started)


def _demo_summary(settings: Settings, result: PipelineResult, seconds: float) -> None:
    from loanrisk.monitoring.monitor import latest_summary
    from loanrisk.serving.security import new_key
    from loanrisk.warehouse.engine import open_warehouse

    home = settings.home.resolve()
    production = registry.by_alias(settings, "production")
    warehouse = open_warehouse(settings)
    try:
        with warehouse.engine.connect() as conn:
            scored = conn.execute(
                sa.text("SELECT count(*), coalesce(sum(rows_scored), 0) FROM scoring_runs")
            ).one()
        monitoring = latest_summary(warehouse.engine)
    finally:
        warehouse.engine.dispose()

    key_file, env_file = home / "demo-api-key", home / "demo.env"
    if not key_file.exists() or not env_file.exists():
        key, digest = new_key()
        entry = [{"name": "demo", "sha256": digest, "scopes": ["predict", "read", "outcomes"]}]
        env_file.write_text(
            f"LOANRISK_HOME={home}\nLOANRISK_SERVING__API_KEYS='{json.dumps(entry)}'\n"
        )
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    bin_dir = Path(sys.executable).parent
    out.rule("summary")
    if production is not None:
        out.print(
            f"@production: version {production.version} ({production.tags.get('winner', '?')}, "
            f"test AUC {production.tags.get('test_auc', '?')[:6]})"
        )
    out.print(f"scoring runs: {scored[0]}, {scored[1]:,} applications scored")
    if monitoring is not None:
        verdict = "retrain recommended" if monitoring["retrain_recommended"] else "ok"
        drifted = monitoring["drifted_features"]
        out.print(
            f"monitoring: {verdict}; {len(drifted)} drifted inputs "
            f"({', '.join(drifted[:6])}{', ...' if len(drifted) > 6 else ''}); "
            f"PD score PSI {monitoring['score_psi']:.3f} ({monitoring['score_psi_band']})"
        )
        out.print(f"drift report: {monitoring['report_html']}")
    out.print(f"demo finished in {seconds:.0f}s (pipeline {result.seconds:.0f}s)")
    out.print("\nnext:")
    out.print(f"  set -a; . {env_file}; set +a; {bin_dir}/loanrisk serve", highlight=False)
    out.print(
        f"  curl -s -X POST http://127.0.0.1:8000/v1/predict "
        f'-H "Authorization: Bearer $(cat {key_file})" -H "Content-Type: application/json" '
        '-d \'{"loan_amnt": 12000, "term": "36 months", "annual_inc": 65000, '
        '"dti": 18.5, "fico_range_low": 700}\'',
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"  officer page: http://127.0.0.1:8000/  (API key in {key_file})", highlight=False)
    out.print(
        f"  {bin_dir}/mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000",
        highlight=False,
    )


class _IngestBar:
    """Adapts ingestion progress to a rich progress bar (bytes of each file)."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task: Any = None
        self._total = 0

    def start(self, source: str, total_bytes: int) -> None:
        self._task, self._total = (
            self._bar.add_task(Path(source).name, total=total_bytes),
            total_bytes,
        )

    def advance(self, n_bytes: int) -> None:
        self._bar.advance(self._task, n_bytes)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._total)


def _progress(*, disable: bool = False, bytes_: bool = False) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    columns += (
        [DownloadColumn(), TransferSpeedColumn()]
        if bytes_
        else [TextColumn("{task.completed:,}/{task.total:,}")]
    )
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=disable or not err.is_terminal, transient=False)
