"""What every command shares: consoles, exit codes, one error handler, the run's warehouse
and registry, help text taken from the settings, progress bars."""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core
from pydantic import BaseModel, ValidationError
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

from loanrisk.config import Settings
from loanrisk.errors import LoanriskError, NothingToDo, UnreachableError


def show_flags_without_type() -> None:
    """A flag takes no value: its help shows none (Typer 0.29 renders ``--json <bool>``).
    Called by the console entry point before the app runs."""
    option = typer.core.TyperOption
    if getattr(option.display_type_rich, "_loanrisk", False):
        return
    shown = option.display_type_rich

    def display(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display._loanrisk = True  # type: ignore[attr-defined]
    option.display_type_rich = display  # type: ignore[method-assign]


def reflow_help(app: typer.Typer) -> None:
    """Each command's help as paragraphs that wrap at the reader's screen width: Typer's
    rich mode keeps a docstring's line breaks, which are where its source was wrapped, so
    an 80-column terminal showed ragged lines ('... go' / 'to' / 'silver_rejects ...').
    A line starting with '-' or indented keeps its break (a list or an example)."""
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback)
        if doc:
            info.help = re.sub(r"(?<=\S)\n(?=[^\s-])", " ", doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


if TYPE_CHECKING:  # MLflow and SQLAlchemy are imported by the commands that use them
    from loanrisk.registry import Registry
    from loanrisk.warehouse.engine import Warehouse

out = Console(soft_wrap=True)  # a long path stays on one line (copyable), never cut
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")]

# Exit codes a scheduler can branch on (documented in the README and used by the DAGs).
EXIT_ERROR = 1  # bad input or state: retrying will not help
EXIT_REFUSED = 3  # promotion refused by the gates
EXIT_DRIFT = 4
EXIT_PERFORMANCE = 5
EXIT_RETRYABLE = 75  # infrastructure unreachable (database, MLflow server): retry later


class Resources:
    """The settings of one command, and its warehouse and registry: each opened once, on
    first use, and closed when the command ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._warehouse: Warehouse | None = None
        self._models: Registry | None = None

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            from loanrisk.warehouse.engine import Warehouse

            self._warehouse = Warehouse.open(self.settings)
        return self._warehouse

    @property
    def models(self) -> Registry:
        if self._models is None:
            from loanrisk.registry import Registry

            self._models = Registry(self.settings)
        return self._models

    def close(self) -> None:
        if self._warehouse is not None:
            self._warehouse.close()
            self._warehouse = None


def resources(ctx: typer.Context) -> Resources:
    found: Resources = ctx.obj
    return found


def fail(problem: str | Exception) -> typer.Exit:
    """Print the problem; exit 75 when a server did not answer (retryable), else 1."""
    retry = isinstance(problem, UnreachableError)
    label = "unreachable (retry later)" if retry else "error"
    err.print(f"[bold red]{label}:[/] {problem}", highlight=False)
    return typer.Exit(code=EXIT_RETRYABLE if retry else EXIT_ERROR)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def skipped(exc: NothingToDo, as_json: bool) -> typer.Exit:
    """Nothing new to do is a success: say why (schedulers read ``skipped`` in --json)."""
    if as_json:
        emit_json({"skipped": True, "note": str(exc)})
    else:
        out.print(f"skipped: {exc}", highlight=False)
    return typer.Exit(code=0)


Command = TypeVar("Command", bound=Callable[..., Any])


def handles_errors(command: Command) -> Command:
    """The one error handler of every command: NothingToDo is a skip (exit 0, with why),
    any other LoanriskError a message and exit 1, or 75 when a server did not answer."""

    @functools.wraps(command)
    def handled(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NothingToDo as exc:
            raise skipped(exc, bool(kwargs.get("as_json"))) from None
        except LoanriskError as exc:
            raise fail(exc) from exc
        except ValidationError as exc:  # an option outside its setting's bounds
            raise fail(
                "; ".join(
                    f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
            ) from exc
        except (ConnectionError, TimeoutError):
            raise  # the entry point says "retryable" (exit 75)
        except OSError as exc:  # a path that cannot be read or written: one line, exit 1
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from exc

    return handled  # type: ignore[return-value]


def setting_help(path: str, text: str | None = None) -> str:
    """Help for an option that overrides setting ``path`` (e.g. ``ingest.chunk_size``): its
    description (or ``text``), environment variable and default, read from the settings."""
    model: type[BaseModel] = Settings
    *sections, name = path.split(".")
    for section in sections:
        annotation = model.model_fields[section].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    field = model.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(map(str, default))
    env = "LOANRISK_" + "__".join(p.upper() for p in path.split("."))
    shown = "" if default is None else f"; default {default}"
    # Escaped: Typer renders help as Rich markup, where [env: ...] would vanish as a tag.
    return f"{text or field.description} \\[env: {env}{shown}]"


class FileBar:
    """Adapts file progress (bytes of each file) to a rich progress bar."""

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


def progress_bar(*, disable: bool = False, bytes_: bool = False) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    columns += (
        [DownloadColumn(), TransferSpeedColumn()]
        if bytes_
        else [TextColumn("{task.completed:,}/{task.total:,}")]
    )
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=disable or not err.is_terminal, transient=False)
