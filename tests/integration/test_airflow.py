"""The DAGs under real Airflow 3 (its own venv, airflow/.venv, from airflow/requirements.lock).

`airflow dags test` runs every DAG against a fresh home with data generated here; the DAG
tasks run the real `loanrisk` command. Needs `make airflow-venv` (CI's .ci/run does it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from loanrisk.data.generate import GeneratorConfig, write_generated
from tests.conftest import require

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = ROOT / "airflow" / ".venv" / "bin"
DAGS = ROOT / "airflow" / "dags"
LOANRISK = Path(sys.executable).with_name("loanrisk")
EXPECTED = {
    "loanrisk_training": ("0 0 * * 0", ["ingest", "train"]),
    "loanrisk_promotion": (None, ["promote"]),
    "loanrisk_batch_scoring": ("0 0 * * *", ["score"]),
    "loanrisk_monitoring": ("0 0 * * *", ["monitor", "retrain_recommended", "trigger_training"]),
}


@pytest.fixture(scope="module")
def airflow_bin() -> Path:
    require(
        (AIRFLOW_BIN / "airflow").exists(),
        "Airflow venv (airflow/.venv)",
        "run 'make airflow-venv' to run the Airflow tests",
    )
    return AIRFLOW_BIN


def check_dags(airflow_bin: Path, folder: Path = DAGS) -> dict:
    done = subprocess.run(
        [str(airflow_bin / "python"), str(ROOT / "airflow" / "check_dags.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_dag_parses_fast_without_network_database_or_loanrisk(airflow_bin):
    report = check_dags(airflow_bin)
    assert report["import_errors"] == {}
    assert {d: (v["schedule"], v["tasks"]) for d, v in report["dags"].items()} == EXPECTED
    assert all(not v["catchup"] for v in report["dags"].values())
    assert set(report["parse_seconds"]) == {f"{d}.py" for d in EXPECTED}
    assert max(report["parse_seconds"].values()) < 2.0, report["parse_seconds"]
    assert report["attempts"] == [] and report["loanrisk_run"] is False


def test_the_integrity_check_catches_io_at_parse_time(airflow_bin, tmp_path):
    # The check must be able to fail: a DAG file that connects and runs loanrisk when parsed.
    (tmp_path / "bad_dag.py").write_text(
        "import os, socket, subprocess\n"
        "from datetime import datetime\n"
        "from airflow.sdk import dag, task\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
        "except OSError:\n"
        "    pass\n"
        "subprocess.run([os.environ['LOANRISK_BIN']])\n"
        "@dag(dag_id='bad', schedule=None, start_date=datetime(2026, 1, 1))\n"
        "def bad():\n"
        "    @task\n"
        "    def noop():\n"
        "        return 1\n"
        "    noop()\n"
        "bad()\n"
    )
    report = check_dags(airflow_bin, tmp_path)
    assert "bad" in report["dags"]
    assert report["attempts"] and report["loanrisk_run"] is True


@pytest.fixture(scope="module")
def airflow_env(airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("airflow")
    home = folder / "home"
    write_generated(
        GeneratorConfig(rows=20_000, start="2015-01", months=24, seed=3, as_of="2019-01"),
        home / "landing" / "loans.csv.gz",
    )
    write_generated(
        GeneratorConfig(rows=3_000, start="2017-01", months=1, seed=4, drift=1.0),
        home / "applications" / "applications.csv",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOANRISK_", "AIRFLOW"))},
        "AIRFLOW_HOME": str(folder / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "LOANRISK_BIN": str(LOANRISK),
        "LOANRISK_HOME": str(home),
        "LOANRISK_TRAINING__TRIALS": "0",
        "LOANRISK_TRAINING__CANDIDATES": '["lightgbm"]',
    }
    airflow(env, "db", "migrate")
    return env


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(AIRFLOW_BIN / "airflow"), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def loanrisk_json(env: dict[str, str], *args: str) -> object:
    done = subprocess.run(
        [str(LOANRISK), *args, "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def count(env: dict[str, str], table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{env['LOANRISK_HOME']}/warehouse.db")
    with engine.connect() as conn:
        value = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return value


def test_dags_run_the_whole_chain_and_drift_triggers_training(airflow_env):
    env = airflow_env
    airflow(env, "dags", "test", "loanrisk_training")
    versions = loanrisk_json(env, "models")
    assert [v["version"] for v in versions] == ["1"] and "staging" in versions[0]["aliases"]

    airflow(env, "dags", "test", "loanrisk_promotion", "-c", '{"reason": "first model"}')
    versions = loanrisk_json(env, "models")
    assert "production" in versions[0]["aliases"]
    assert versions[0]["tags"]["promotion_reason"] == "first model"

    airflow(env, "dags", "test", "loanrisk_batch_scoring")
    assert count(env, "scoring_runs") == 1 and count(env, "predictions") > 2_900

    airflow(env, "dags", "test", "loanrisk_monitoring")
    assert count(env, "monitoring_runs") == 1
    summary = loanrisk_json(env, "monitor", "--if-new")
    assert summary == {"skipped": True, "note": summary["note"]}  # nothing new since

    # The drifted applications made monitoring trigger a training run with force + reason.
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        triggered = db.execute(
            "SELECT conf FROM dag_run WHERE dag_id = 'loanrisk_training' AND state = 'queued'"
        ).fetchall()
    assert len(triggered) == 1
    conf = json.loads(triggered[0][0])
    assert conf["force"] is True and "monitoring" in conf["reason"]
    # Run it as the scheduler would (with its conf): gold is unchanged, but forced retraining
    # registers a new version.
    airflow(env, "dags", "test", "loanrisk_training", "-c", json.dumps(conf))
    assert [v["version"] for v in loanrisk_json(env, "models")] == ["2", "1"]


def test_weekly_training_without_new_data_skips_and_promotion_refusal_fails(airflow_env):
    env = airflow_env
    before = len(loanrisk_json(env, "models"))
    done = airflow(env, "dags", "test", "loanrisk_training")
    assert "gold is unchanged" in done.stdout + done.stderr
    assert len(loanrisk_json(env, "models")) == before
    command = ["dags", "test", "loanrisk_promotion", "-c", '{"version": "1"}']
    refused = subprocess.run(
        [str(AIRFLOW_BIN / "airflow"), *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert refused.returncode != 0
    assert "already @production" in refused.stdout + refused.stderr


def test_make_airflow_registers_the_dags_so_they_are_listed_at_once(airflow_bin, tmp_path):
    """Airflow 3 lists a DAG only once it is serialized: `make airflow` (through
    `make airflow-dags`) migrates and reserializes before the UI starts."""
    done = subprocess.run(
        ["make", "--no-print-directory", "airflow-dags", f"AIRFLOW_HOME={tmp_path / 'airflow'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LOANRISK_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {line.split("|")[0].strip() for line in done.stdout.splitlines() if "|" in line}
    assert set(EXPECTED) <= listed, done.stdout[-2000:]
