"""The Typer application, its global options and the console entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loanrisk.cli.common import (
    EXIT_RETRYABLE,
    Resources,
    err,
    fail,
    reflow_help,
    setting_help,
    show_flags_without_type,
)
from loanrisk.config import get_settings
from loanrisk.errors import LoanriskError
from loanrisk.logs import configure_logging

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


def run() -> None:
    """Console entry point: the Typer app, with infrastructure failures mapped to exit 75."""
    import sqlalchemy.exc

    show_flags_without_type()
    reflow_help(app)
    try:
        app()
    except (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        err.print(f"[bold red]infrastructure error (retryable):[/] {exc}", highlight=False)
        sys.exit(EXIT_RETRYABLE)
    except Exception as exc:
        if _mlflow_unreachable(exc):
            err.print(f"[bold red]MLflow unreachable (retryable):[/] {exc}", highlight=False)
            sys.exit(EXIT_RETRYABLE)
        raise


def _mlflow_unreachable(exc: Exception) -> bool:
    """Whether ``exc`` is MLflow failing to reach its server. MLflow (0.8 s to import) is
    loaded only by the commands that open the registry, so only they can raise this."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return False
    from loanrisk.registry import unreachable

    return unreachable(exc)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            help=setting_help("home", "Home folder for the warehouse, MLflow store and reports")
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help=setting_help("data.profile", "Dataset profile: a built-in name or a YAML file")
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help=setting_help("log_level", "DEBUG, INFO, WARNING or ERROR"))
    ] = None,
) -> None:
    """Global options come before the command, e.g. ``loanrisk --home /data/lr ingest f.csv``."""
    try:
        settings = get_settings(home=home, log_level=log_level)
        if profile is not None:
            settings.data.profile = profile
    except LoanriskError as exc:
        raise fail(exc) from exc
    configure_logging(settings.log_level)
    found = Resources(settings)
    ctx.obj = found
    ctx.call_on_close(found.close)
