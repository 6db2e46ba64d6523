"""The ``loanrisk`` command line: one subcommand per stage, ``--json`` for schedulers."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

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
from loanrisk.errors import LoanriskError
from loanrisk.logs import configure_logging
from loanrisk.pipeline import run_ingest, run_promote, run_status, run_train
from loanrisk.profiles import builtin_profiles, load_profile
from loanrisk.promotion import rollback

app = typer.Typer(
    name="loanrisk",
    help=(
        "Loan default prediction, from raw loan files to a governed PD service.\n\n"
        "Start with:  loanrisk generate --rows 100000 --out loans.csv.gz  then  "
        "loanrisk ingest loans.csv.gz  and  loanrisk status.\n\n"
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


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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
        raise _fail(str(exc)) from exc
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
        raise _fail(str(exc)) from exc
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
        list[str],
        typer.Argument(
            help="Files, globs or folders (CSV, CSV.gz, Parquet); local paths or "
            "fsspec URLs such as s3://bucket/loans/*.csv.gz."
        ),
    ],
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
    delimiter: Annotated[str, typer.Option(help="CSV field delimiter.")] = ",",
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
        with _progress(disable=as_json, bytes_=True) as bar:
            results, status = run_ingest(
                settings, sources, delimiter=delimiter, progress=_IngestBar(bar)
            )
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
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
        raise _fail(str(exc)) from exc
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
        )
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _emit_json(result.as_dict())
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
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
        title=f"training run {result.run_id}",
    )
    for r in result.candidates:
        t = r.test
        table.add_row(
            ("* " if r.name == result.winner else "  ") + r.name,
            f"{r.valid_auc:.4f}",
            f"{t['auc']:.4f}",
            f"{t['gini']:.4f}",
            f"{t['ks']:.4f}",
            f"{t['pr_auc']:.4f}",
            f"{t['brier']:.4f}",
            f"{t['ece']:.4f}",
            f"{t['f1']:.4f}",
            f"{r.threshold:.4f}",
            f"{r.seconds:.0f}",
        )
    out.print(table)
    split = result.split
    out.print(
        f"split {split['split']}: train {split['train_rows']:,} ({split['train_window']}), "
        f"validation {split['valid_rows']:,} ({split['valid_window']}), "
        f"test {split['test_rows']:,} ({split['test_window']})"
    )
    out.print(f"registered {result.winner} as version {result.version} -> {result.model_uri}")


@app.command()
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List registered versions with their aliases and key metrics."""
    try:
        found = registry.versions(_settings(ctx))
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
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
    as_json: JsonOption = False,
) -> None:
    """Promote the challenger to @production if it passes the gates.

    Challenger and champion are scored on the same recent labelled window; the challenger
    needs AUC >= min_auc, ECE <= max_ece and AUC no worse than the champion's minus a
    tolerance (LOANRISK_PROMOTION__*). Exit code 3 when refused.
    """
    try:
        result = run_promote(_settings(ctx), version=version, force=force, reason=reason)
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
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
        raise typer.Exit(code=3)


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
        raise _fail(str(exc)) from exc
    if as_json:
        _emit_json({"from_version": old, "to_version": new})
        return
    out.print(f"@production moved back from version {old} to version {new}")


@app.command("score")
def score_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(help="A file of applications (CSV, CSV.gz, Parquet; local or fsspec URL)."),
    ],
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
    """Score a file with the @production model: Parquet output + predictions rows.

    Streams in chunks (constant memory). The same input with the same model version is
    not scored twice. Leaves <home>/scores/latest.json for monitoring.
    """
    from loanrisk.batch import score_file

    settings = _settings(ctx)
    if chunk_size is not None:
        settings.ingest.scoring_chunk_size = chunk_size
    try:
        with _progress(disable=as_json, bytes_=True) as bar:
            run = score_file(settings, source, output_dir=output, progress=_IngestBar(bar))
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _emit_json(run.as_dict())
        return
    if run.skipped:
        out.print(f"skipped: {run.note}; 0 rows added ({run.output})")
        return
    out.print(
        f"scored {run.rows_scored:,} of {run.rows_in:,} rows with version "
        f"{run.model_version} in {run.seconds:.1f}s ({run.rows_per_second:,.0f} rows/s); "
        f"{run.rows_invalid:,} invalid; output {run.output}"
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
        raise _fail(str(exc)) from exc
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
        result = monitor(_settings(ctx), days=days)
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _emit_json(result.as_dict())
    else:
        perf = result.performance or {}
        auc = perf.get("auc")
        out.print(
            f"model v{result.model_version}: {result.rows_current:,} predictions vs "
            f"{result.rows_reference:,} training rows"
        )
        out.print(
            f"drifted inputs: {len(result.drifted_features)} "
            f"({result.drifted_share:.0%}) {', '.join(result.drifted_features)}"
        )
        out.print(f"PD score PSI {result.score_psi:.3f} ({result.score_psi_band})")
        out.print(
            "realised: "
            + (f"AUC {auc:.3f} on {perf['outcomes']:,} outcomes" if auc else "no outcomes yet")
        )
        verdict = "[red]retrain recommended[/]" if result.retrain_recommended else "[green]ok[/]"
        out.print(f"verdict: {verdict}; " + ("; ".join(result.alerts) or "no alert"))
        out.print(f"report {result.report_html}")
    if fail_on in ("drift", "any") and result.drift_alert:
        raise typer.Exit(code=4)
    if fail_on in ("performance", "any") and result.performance_alert:
        raise typer.Exit(code=5)


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
    uvicorn.run(
        "loanrisk.serving.main:app_factory",
        factory=True,
        host=serving.host,
        port=serving.port,
        workers=serving.workers,
        log_level="warning",
        access_log=False,
    )


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
        raise _fail(str(exc)) from exc
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


@app.command()
def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(help="Loans in the generated history.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Generate 36 months of loans into <home>/landing and run the data layer end to end.

    Safe to run again: the same file is not ingested twice.
    """
    settings = _settings(ctx)
    landing = settings.ensure_home() / "landing"
    target = landing / f"loans_2015-01_36m_seed{seed}.csv.gz"
    started = time.perf_counter()
    try:
        if target.exists():
            out.print(f"using the existing {target}")
        else:
            with _progress() as bar:
                task = bar.add_task("generating", total=rows)
                write_generated(
                    GeneratorConfig(rows=rows, seed=seed),
                    target,
                    progress=lambda n: bar.advance(task, n),
                )
        with _progress(bytes_=True) as bar:
            results, status_ = run_ingest(settings, [str(target)], progress=_IngestBar(bar))
    except LoanriskError as exc:
        raise _fail(str(exc)) from exc
    for r in results:
        verb = (
            f"skipped ({r.note})"
            if r.skipped
            else (
                f"{r.rows_bronze:,} rows -> {r.rows_silver_new:,} silver, "
                f"{r.rows_rejected:,} rejected, {r.rows_gold:,} gold"
            )
        )
        out.print(f"{r.source}: {verb}")
    _print_status(status_)
    out.print(
        f"demo finished in {time.perf_counter() - started:.1f}s; warehouse: "
        f"{settings.public_dict()['warehouse']['url']}"
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
