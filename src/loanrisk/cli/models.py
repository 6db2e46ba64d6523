"""Model commands: train, models, promote, rollback."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from loanrisk.cli.app import app
from loanrisk.cli.common import (
    EXIT_REFUSED,
    JsonOption,
    emit_json,
    err,
    handles_errors,
    out,
    resources,
    setting_help,
)
from loanrisk.cli.render import print_candidates
from loanrisk.pipeline import run_promote, run_train, run_tune


@app.command("train")
@handles_errors
def train_command(
    ctx: typer.Context,
    trials: Annotated[int | None, typer.Option(help=setting_help("training.trials"))] = None,
    candidates: Annotated[
        str | None, typer.Option(help=setting_help("training.candidates"))
    ] = None,
    test_months: Annotated[
        int | None, typer.Option(help=setting_help("training.test_months"))
    ] = None,
    valid_months: Annotated[
        int | None, typer.Option(help=setting_help("training.valid_months"))
    ] = None,
    if_new_data: Annotated[
        bool,
        typer.Option(
            "--if-new-data", help="Skip (exit 0) when gold is unchanged since the newest version."
        ),
    ] = False,
    tune_only: Annotated[
        bool,
        typer.Option(
            "--tune-only",
            help="Only add trials to the shared tuning studies (training.study_storage) and "
            "register nothing: a worker beside the 'loanrisk train' that registers.",
        ),
    ] = False,
    study_storage: Annotated[
        str | None, typer.Option(help=setting_help("training.study_storage"))
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train LR, XGBoost and LightGBM on gold, out of time; register the best at @staging.

    Tuning, early stopping, calibration and the decision threshold use training and
    validation months only; reported metrics come from the untouched latest months. Data
    without issue dates gets a random split by loan id, with a warning.
    """
    run = resources(ctx)
    options = run.settings.training
    if trials is not None:
        options.trials = trials
    if candidates is not None:
        options.candidates = [c.strip() for c in candidates.split(",") if c.strip()]
    if test_months is not None:
        options.test_months = test_months
    if valid_months is not None:
        options.valid_months = valid_months
    if study_storage is not None:
        options.study_storage = study_storage
    say = None if as_json else (lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    if tune_only:
        searched = run_tune(run.settings, run.warehouse, progress=say)
        if as_json:
            emit_json({"studies": searched})
            return
        for study in searched:
            out.print(
                f"{study['candidate']}: study {study['study']} holds {study['trials']} trials "
                f"({study['this_worker']} from this worker), best validation AUC "
                f"{study['best_valid_auc']:.4f}"
            )
        return
    result = run_train(
        run.settings,
        run.warehouse,
        run.models,
        progress=None if as_json else (lambda m: err.print(f"[dim]{m}[/]", highlight=False)),
        if_new_data=if_new_data,
    )
    if as_json:
        emit_json(result.as_dict())
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    print_candidates(result)


@app.command()
@handles_errors
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List registered versions with their aliases and key metrics."""
    registry = resources(ctx).models
    found = registry.versions()
    if as_json:
        emit_json([v.as_dict() for v in found])
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
        title=registry.name,
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
@handles_errors
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
    run = resources(ctx)
    result = run_promote(
        run.settings,
        run.warehouse,
        run.models,
        version=version,
        force=force,
        reason=reason,
        if_new=if_new,
        progress=None if as_json else (lambda m: err.print(f"[dim]{m}[/]", highlight=False)),
    )
    if as_json:
        emit_json(result.as_dict())
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
@handles_errors
def rollback_command(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on the version.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Point @production back at the version it replaced."""
    from loanrisk.promotion import rollback

    old, new = rollback(resources(ctx).models, reason=reason)
    if as_json:
        emit_json({"from_version": old, "to_version": new})
        return
    out.print(f"@production moved back from version {old} to version {new}")
