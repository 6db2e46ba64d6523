"""The real ``loanrisk`` command, run as a user would run it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.integration
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))


def run(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LOANRISK, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_generate_ingest_status_round_trip(tmp_path: Path):
    home = tmp_path / "home"
    loans = tmp_path / "loans.csv.gz"
    made = run(
        "generate",
        "--rows",
        "5000",
        "--months",
        "6",
        "--seed",
        "4",
        "--out",
        str(loans),
        "--json",
        home=home,
    )
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["rows"] == 5000 and Path(summary["truth"]).exists()

    first = run("ingest", str(loans), "--json", home=home)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    batch = result["batches"][0]
    assert batch["rows_bronze"] == 5000
    assert result["warehouse"]["reconciled"] is True

    second = run("ingest", str(loans), home=home)
    assert second.returncode == 0
    assert "skipped" in second.stderr and "0 rows added" in second.stderr

    status = json.loads(run("status", "--json", home=home).stdout)
    tables = status["tables"]
    assert tables["bronze_loans"] == 5000
    assert tables["silver_loans"] + tables["silver_rejects"] == 5000
    assert tables["gold_loan_features"] == tables["silver_loans"]


def test_errors_are_one_clear_line_and_exit_non_zero(tmp_path: Path):
    home = tmp_path / "home"
    bad = tmp_path / "people.csv"
    bad.write_text("name,age\nann,3\n")
    result = run("ingest", str(bad), home=home)
    assert result.returncode == 1
    assert "error:" in result.stderr and "required column(s)" in result.stderr
    assert "Traceback" not in result.stderr

    profile = tmp_path / "broken.yaml"
    profile.write_text("name: x\ncolumns: {}\n")
    shown = run("profiles", "show", str(profile), home=home)
    assert shown.returncode == 1 and "target: Field required" in shown.stderr

    made = run(
        "generate",
        "--rows",
        "10",
        "--start",
        "2015/01",
        "--out",
        str(tmp_path / "x.csv"),
        home=home,
    )
    assert made.returncode == 1 and "--start must look like YYYY-MM" in made.stderr

    # A monitoring window that ends before it starts, or overflows a date, is refused (a
    # negative one ran, a huge one was an OverflowError traceback).
    for window in ("-5d", "0d", "99999999999d", "1e3d"):
        watched = run("monitor", f"--window={window}", home=home)
        assert watched.returncode == 1 and "Traceback" not in watched.stderr, watched.stderr
        assert watched.stderr.startswith("error: --window must look like 30d or 12h")

    # An option meets its setting's bounds (assigned, it skipped them: --trials -1 trained,
    # --trials 10**20 ran on, --candidates '' was a ValueError traceback).
    for args, message in [
        (["train", "--trials", "-1"], "--trials: Input should be greater than or equal to 0"),
        (["train", "--trials", str(10**20)], "--trials: Input should be less than or equal to 500"),
        (["train", "--candidates", ""], "--candidates: List should have at least 1 item"),
        (["ingest", "--chunk-size", "5", str(bad)], "--chunk-size: Input should be greater"),
    ]:
        refused = run(*args, home=home)
        assert refused.returncode == 1, (args, refused.stderr)
        assert refused.stderr.startswith(f"error: {message}"), (args, refused.stderr)

    # A path that cannot be written is one line naming it, not an OSError traceback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    written = run("generate", "--rows", "10", "--out", str(blocker / "x.csv"), home=home)
    assert written.returncode == 1 and "Traceback" not in written.stderr, written.stderr
    assert written.stderr.startswith(f"error: {blocker}"), written.stderr


def test_a_key_that_could_do_nothing_is_refused_where_it_is_made_and_where_it_is_set(
    tmp_path: Path,
):
    made = run("apikey", "--scopes", "predict,admin", home=tmp_path)
    assert made.returncode == 1
    assert made.stderr.strip() == "error: --scopes: Input should be 'predict', 'read' or 'outcomes'"
    typo = '[{"name": "ops", "sha256": "abc", "scopes": ["admin"]}]'
    started = run("status", home=tmp_path, env={"LOANRISK_SERVING__API_KEYS": typo})
    assert started.returncode == 1 and len(started.stderr.strip().splitlines()) == 1
    assert started.stderr.startswith(
        "error: invalid settings: serving.api_keys.0.sha256 (LOANRISK_SERVING__API_KEYS): "
        "must be the 64 hex digits of a SHA-256"
    ), started.stderr
    assert "serving.api_keys.0.scopes.0 (LOANRISK_SERVING__API_KEYS)" in started.stderr
    never = run("status", home=tmp_path, env={"LOANRISK_MONITORING__MIN_AUC": "5"})
    assert never.returncode == 1 and never.stderr.strip() == (  # an AUC alert that always fires
        "error: invalid settings: monitoring.min_auc (LOANRISK_MONITORING__MIN_AUC): "
        "Input should be less than or equal to 1"
    )


def test_config_masks_secrets(tmp_path: Path):
    env = {"LOANRISK_WAREHOUSE__URL": "postgresql+psycopg://lr:s3cret@db:5432/lr"}
    result = run("config", "--json", home=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["warehouse"]["url"] == "postgresql+psycopg://lr:***@db:5432/lr"
    assert "s3cret" not in result.stdout
    table = run("config", home=tmp_path, env=env)
    assert "s3cret" not in table.stdout and "LOANRISK_WAREHOUSE__URL" in table.stdout


def test_help_teaches(tmp_path: Path):
    result = run("ingest", "--help", home=tmp_path)
    assert result.returncode == 0
    assert "fsspec" in result.stdout and "--chunk-size" in result.stdout
    # A paragraph wraps at the screen's width, not where its docstring's source was
    # wrapped (which broke it after 'go to', ragged at 80 columns).
    paragraph = "Rows that fail validation go to silver_rejects"
    assert any(paragraph in line for line in result.stdout.splitlines()), result.stdout


def test_train_models_promote_rollback_commands(tmp_path: Path):
    home = tmp_path / "home"
    loans = tmp_path / "loans.csv"
    assert (
        run(
            "generate",
            "--rows",
            "8000",
            "--start",
            "2014-01",
            "--months",
            "12",
            "--as-of",
            "2019-01",
            "--out",
            str(loans),
            home=home,
        ).returncode
        == 0
    )
    assert run("ingest", str(loans), home=home).returncode == 0
    trained = run(
        "train", "--trials", "0", "--candidates", "logistic_regression", "--json", home=home
    )
    assert trained.returncode == 0, trained.stderr
    # What a newcomer reads on stderr: loanrisk's own lines, not library warnings (MLflow
    # printed its integer-column hint three times per train).
    assert "Warning:" not in trained.stderr and "warnings.warn" not in trained.stderr
    assert "INFO mlflow" not in trained.stderr  # MLflow's own loggers stay at WARNING
    result = json.loads(trained.stdout)
    assert result["version"] == "1" and result["winner"] == "logistic_regression"
    assert result["split"]["split"] == "out_of_time"
    assert {"auc", "gini", "ks", "ece"} <= set(result["candidates"][0]["test"])

    promoted = run("promote", "--json", home=home)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["promoted"] is True
    listed = json.loads(run("models", "--json", home=home).stdout)
    assert listed[0]["aliases"] == ["production", "staging"]
    assert listed[0]["tags"]["promoted_by"]

    again = run("promote", home=home)
    assert again.returncode == 1 and "already @production" in again.stderr
    forced = run("promote", "--force", home=home)
    assert forced.returncode == 1 and "--force needs --reason" in forced.stderr
    back = run("rollback", home=home)
    assert back.returncode == 1 and "no previous production version" in back.stderr

    # A header naming one column twice: which holds the value is anybody's guess, so both
    # loads refuse the file in one line naming it (they stopped with a traceback).
    with loans.open(newline="") as source:
        rows = [[*row, row[1]] for row, _ in zip(csv.reader(source), range(30), strict=False)]
    doubled = tmp_path / "doubled.csv"
    with doubled.open("w", newline="") as target:
        csv.writer(target).writerows(rows)
    assert rows[0][1] == "loan_amnt"
    for command in ("ingest", "score"):
        refused = run(command, str(doubled), home=home)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.strip() == (
            f"error: {doubled}: columns 2 ('loan_amnt') and {len(rows[0])} ('loan_amnt') both "
            "read as loan_amnt; keep one of them (or rename the other) so it is clear which "
            "to use"
        )
    assert not list((home / "scores").glob("*"))  # nothing scored, nothing half-written


def test_train_without_data_says_what_to_do(tmp_path: Path):
    result = run("train", home=tmp_path / "home")
    assert result.returncode == 1
    assert "ingest loan files first" in result.stderr


def test_unreachable_servers_exit_75_so_schedulers_retry(tmp_path: Path):
    closed = free_port()
    warehouse = run(
        "status",
        home=tmp_path / "home",
        env={"LOANRISK_WAREHOUSE__URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed}/x"},
    )
    assert warehouse.returncode == 75, warehouse.stderr
    assert "cannot reach the warehouse" in warehouse.stderr
    mlflow = run(
        "models",
        home=tmp_path / "home",
        env={
            "LOANRISK_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{closed}",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        },
    )
    assert mlflow.returncode == 75, mlflow.stderr
    assert "MLflow server did not answer" in mlflow.stderr
    # A plain mistake is not retryable.
    assert run("ingest", str(tmp_path / "missing.csv"), home=tmp_path / "home").returncode == 1


def test_commands_without_a_model_start_without_mlflow(tmp_path: Path):
    """MLflow takes most of a second to import: --help, generate, ingest and status never
    load it (a command that opens the registry does)."""
    probe = (
        "import sys\n"
        "from loanrisk.cli import app, run\n"
        "sys.argv = ['loanrisk', '--home', sys.argv[1], *sys.argv[2:]]\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('mlflow' in sys.modules, file=sys.stderr)\n"
    )
    for args in (["--help"], ["status"], ["ingest", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / "home"), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stderr.strip().splitlines()[-1] == "False", (args, done.stderr[-2000:])


def test_an_unreachable_mlflow_raised_anywhere_is_retryable():
    from mlflow.exceptions import MlflowException

    from loanrisk.cli.app import _mlflow_unreachable

    assert _mlflow_unreachable(MlflowException("... Failed to establish a new connection ..."))
    assert not _mlflow_unreachable(MlflowException("RESOURCE_DOES_NOT_EXIST: no such model"))
    assert not _mlflow_unreachable(ValueError("Connection refused"))


def test_help_renders_flags_without_a_type_and_settings_with_their_defaults(tmp_path: Path):
    for command in ("ingest", "train", "score", "monitor", "serve", "promote"):
        shown = run(command, "--help", home=tmp_path / "home")
        assert shown.returncode == 0, shown.stderr
        assert "<bool>" not in shown.stdout, (command, shown.stdout)
        assert "--json" in shown.stdout or command == "serve"
    ingest = run("ingest", "--help", home=tmp_path / "home").stdout
    assert "LOANRISK_INGEST__MAX_REJECT_SHARE; default 0.2" in " ".join(ingest.split())


def test_long_paths_are_never_cut_in_an_80_column_log(tmp_path: Path):
    folder = tmp_path / ("a-rather-long-folder-name-for-landed-loan-files-" * 2) / "2026-12"
    folder.mkdir(parents=True)
    loans = folder / "loans-extract-with-a-long-name.csv"
    assert (
        run("generate", "--rows", "2000", "--out", str(loans), home=tmp_path / "h").returncode == 0
    )
    narrow = run("ingest", str(loans), home=tmp_path / "h", env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    assert "…" not in narrow.stdout and "…" not in narrow.stderr
    assert "loans-extract-with-a-long-name.csv" in "".join(
        line.strip(" │|") for line in narrow.stdout.splitlines()
    ).replace(" ", "")
