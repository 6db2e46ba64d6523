"""Run commands: score, monitor, pipeline, demo."""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from loanrisk.cli.app import app
from loanrisk.cli.common import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_PERFORMANCE,
    EXIT_RETRYABLE,
    FileBar,
    JsonOption,
    Resources,
    emit_json,
    err,
    fail,
    handles_errors,
    out,
    progress_bar,
    resources,
    setting_help,
)
from loanrisk.cli.render import print_monitoring, print_scoring, print_step
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import NothingToDo
from loanrisk.pipeline import PipelineHooks, PipelineResult, run_pipeline

WINDOW_DAYS_MAX = 36_500  # a hundred years: longer than any loan book's history


class Engine(StrEnum):
    """Where ``loanrisk score`` scores."""

    PANDAS = "pandas"
    SPARK = "spark"


@app.command("score")
@handles_errors
def score_command(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            help="A file of applications (CSV, CSV.gz, Parquet; local or fsspec URL), a local "
            "folder of such files (each scored once), or 'warehouse:unlabelled'. Default: the "
            "applications folder \\[env: LOANRISK_DATA__APPLICATIONS_DIR; default "
            "<home>/applications]."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for the Parquet output (default <home>/scores).")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(help=setting_help("ingest.scoring_chunk_size"))
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            envvar="LOANRISK_SCORE_ENGINE",
            help="pandas: chunks in this process. spark: the same scoring on Spark "
            "executors through mlflow.pyfunc.spark_udf (files, not the warehouse; needs the "
            "'spark' extra and Java 17+); output is a Parquet folder per file.",
        ),
    ] = Engine.PANDAS,
    master: Annotated[
        str | None,
        typer.Option(help=setting_help("spark.master")),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a file or folder with the @production model: Parquet + predictions rows.

    Streams in chunks (constant memory). The same input with the same model version is
    not scored twice, whichever engine scored it; the model is loaded once per run.
    """
    from loanrisk.batch import ProductionModel, score_file
    from loanrisk.pipeline import run_score_folder

    run = resources(ctx)
    settings = run.settings
    if chunk_size is not None:
        settings.ingest.scoring_chunk_size = chunk_size
    source = source or str(settings.applications_dir)
    folder = Path(source).is_dir()
    if engine is Engine.SPARK:
        from loanrisk.pipeline import data_files
        from loanrisk.sparkscore import score_file_spark

        model = ProductionModel(run.models)
        files = [str(f) for f in data_files(Path(source))] if folder else [source]
        if not files:
            raise NothingToDo(f"no application files in {source}")
        done = [
            score_file_spark(settings, run.warehouse, model, f, master=master, output_dir=output)
            for f in files
        ]
        if as_json:
            emit_json([r.as_dict() for r in done] if folder else done[0].as_dict())
            return
        for scored in done:
            print_scoring(scored)
        return
    with progress_bar(disable=as_json, bytes_=True) as bar:
        if folder:
            runs = run_score_folder(
                settings, run.warehouse, run.models, Path(source), progress=FileBar(bar)
            )
        else:
            model = ProductionModel(run.models)
            runs = [
                score_file(
                    settings,
                    run.warehouse,
                    model,
                    source,
                    output_dir=output,
                    progress=FileBar(bar),
                )
            ]
    if as_json:
        emit_json([r.as_dict() for r in runs] if folder else runs[0].as_dict())
        return
    for scored in runs:
        print_scoring(scored)


@app.command("monitor")
@handles_errors
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

    found = re.fullmatch(r"(\d+(?:\.\d+)?)([dh])", window.strip())
    days = float(found[1]) / (24 if found[2] == "h" else 1) if found else 0.0
    if not 0 < days <= WINDOW_DAYS_MAX:  # a window that ends before it starts means nothing
        raise fail(
            f"--window must look like 30d or 12h: more than nothing and at most "
            f"{WINDOW_DAYS_MAX:,} days; got {window!r}"
        )
    if fail_on not in (None, "drift", "performance", "any"):
        raise fail("--fail-on must be drift, performance or any")
    run = resources(ctx)
    say = None if as_json else (lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    result = monitor(
        run.settings, run.warehouse, run.models, days=days, if_new=if_new, progress=say
    )
    if as_json:
        emit_json(result.as_dict())
    else:
        print_monitoring(result)
    if fail_on in ("drift", "any") and result.drift_alert:
        raise typer.Exit(code=EXIT_DRIFT)
    if fail_on in ("performance", "any") and result.performance_alert:
        raise typer.Exit(code=EXIT_PERFORMANCE)


@app.command("pipeline")
@handles_errors
def pipeline_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Run the whole chain: ingest -> train -> promote -> score -> monitor.

    Ingests new files from the landing folder (<home>/landing), trains when gold changed,
    promotes @staging through the gates, scores new files in <home>/applications and
    monitors the last 30 days. Each step says why when it skips. Exit 1 when a step fails,
    75 when it failed because the database or MLflow server did not answer.
    """
    result = _run_pipeline(resources(ctx), quiet=as_json)
    if as_json:
        emit_json(result.as_dict())
    if result.failed:
        retry = any(s.retryable for s in result.steps)
        raise typer.Exit(code=EXIT_RETRYABLE if retry else EXIT_ERROR)


def _run_pipeline(run: Resources, *, quiet: bool) -> PipelineResult:
    with progress_bar(disable=quiet, bytes_=True) as bar:
        hooks = PipelineHooks(
            on_step=None if quiet else print_step,
            on_message=None if quiet else (lambda m: err.print(f"[dim]{m}[/]", highlight=False)),
            file_progress=FileBar(bar),
        )
        return run_pipeline(run.settings, run.warehouse, run.models, hooks)


@app.command()
@handles_errors
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
    run = resources(ctx)
    settings = run.settings
    started = time.perf_counter()
    history = GeneratorConfig(rows=rows, seed=seed, start="2015-01", months=36, as_of="2020-01")
    drifted = GeneratorConfig(
        rows=applications, seed=seed + 1, start="2018-01", months=1, drift=1.0, as_of="2018-01"
    )
    files = {
        settings.landing_dir / f"loans_2015-01_36m_seed{seed}.csv.gz": history,
        settings.applications_dir / f"applications_2018-01_drifted_seed{seed + 1}.csv.gz": drifted,
    }
    settings.ensure_home()
    for target, config in files.items():
        if target.exists():
            out.print(f"using the existing {target}")
            continue
        with progress_bar() as bar:
            task = bar.add_task(f"generating {target.name}", total=config.rows)
            write_generated(config, target, progress=functools.partial(bar.advance, task))
    result = _run_pipeline(run, quiet=False)
    if result.failed:
        raise typer.Exit(code=EXIT_ERROR)
    _demo_summary(run, result, time.perf_counter() - started)


def _demo_summary(run: Resources, result: PipelineResult, seconds: float) -> None:
    from loanrisk.monitoring.store import latest_summary
    from loanrisk.serving.security import new_key
    from loanrisk.warehouse.queries import scoring_totals

    settings = run.settings
    home = settings.home.resolve()
    production = run.models.by_alias("production")
    runs, scored = scoring_totals(run.warehouse.engine)
    monitoring = latest_summary(run.warehouse.engine)

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
        tags = production.tags
        out.print(
            f"@production: version {production.version} ({tags.get('winner', '?')}, "
            f"test AUC {tags.get('test_auc', '?')[:6]}, PD horizon "
            f"{tags.get('pd_horizon_months', '?')} months)"
        )
        if "test_approval_rate" in tags:
            out.print(
                f"on the test window: approves {float(tags['test_approval_rate']):.1%} "
                f"(policy {tags.get('policy', '?')}, cut-off PD {float(tags['threshold']):.3f}); "
                f"mean PD {float(tags['test_mean_pd']):.1%} against an observed default rate "
                f"of {float(tags['test_default_rate']):.1%}"
            )
    out.print(f"scoring runs: {runs}, {scored:,} applications scored")
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
