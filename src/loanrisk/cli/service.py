"""Service and settings commands: serve, apikey, config, version."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from loanrisk import __version__
from loanrisk.cli.app import app
from loanrisk.cli.common import JsonOption, emit_json, err, fail, out, resources, setting_help
from loanrisk.config import ApiKey


@app.command()
def version() -> None:
    """Print the loanrisk version."""
    out.print(__version__)


@app.command()
def config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the effective settings (defaults < .env < environment < options), secrets masked."""
    data = resources(ctx).settings.public_dict()
    if as_json:
        emit_json(data)
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
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help=setting_help("serving.host"))] = None,
    port: Annotated[int | None, typer.Option(help=setting_help("serving.port"))] = None,
    workers: Annotated[int | None, typer.Option(help=setting_help("serving.workers"))] = None,
) -> None:
    """Serve PDs over HTTP from the model at @production (hot-reloaded when the alias moves).

    API keys: create one with 'loanrisk apikey', put its hash in LOANRISK_SERVING__API_KEYS,
    send it as 'Authorization: Bearer <key>'. Docs at /docs; the officer page at /.
    """
    from loanrisk.serving.main import run_server

    settings = resources(ctx).settings
    serving = settings.serving
    if host is not None:
        serving.host = host
    if port is not None:
        serving.port = port
    if workers is not None:
        serving.workers = workers
    if serving.auth_enabled and not serving.api_keys:
        err.print(
            "[yellow]warning:[/] no API keys configured: every scoring request will get "
            "401. Create one with 'loanrisk apikey' or set "
            "LOANRISK_SERVING__AUTH_ENABLED=false for local use."
        )
    err.print(
        f"starting on http://{serving.host}:{serving.port}: loading the model first; "
        "a 'ready' line follows when it answers",
        highlight=False,
    )
    run_server(settings)


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
    try:  # what the settings will accept, checked now rather than when the service starts
        ApiKey.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors(include_url=False))
        raise fail(problems) from exc
    out.print(f"key (give it to {name}; it is not stored anywhere): {key}")
    out.print("add to LOANRISK_SERVING__API_KEYS (a JSON list):")
    sys.stdout.write(json.dumps([entry]) + "\n")
