"""`loanrisk demo` and `loanrisk pipeline`, run as a user would run them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from loanrisk.data.generate import GeneratorConfig, write_generated

pytestmark = pytest.mark.integration
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
# Small and quick: one candidate, no tuning (the full demo is `make demo`).
QUICK = {"LOANRISK_TRAINING__TRIALS": "0", "LOANRISK_TRAINING__CANDIDATES": '["lightgbm"]'}


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LOANRISK, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "80", **QUICK},  # a narrow terminal; not a TTY
    )


def count(home: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.connect() as conn:
        value = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return value


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    home = tmp_path_factory.mktemp("demo") / "home"
    first = run("demo", "--rows", "30000", "--applications", "3000", home=home)
    return home, first


def test_demo_runs_every_step_and_says_what_next(demo_home):
    home, first = demo_home
    assert first.returncode == 0, first.stdout + first.stderr
    for step in ("ingest", "train", "promote", "score", "monitor"):
        assert f"{step} ran" in first.stdout, first.stdout
    assert "@production: version 1" in first.stdout
    assert "retrain recommended" in first.stdout  # the later month is drifted
    assert "drift report:" in first.stdout and "loanrisk serve" in first.stdout
    # At 80 columns and without a TTY every figure of the candidates table is whole.
    labels = ["valid AUC", "AUC", "Gini", "KS", "PR-AUC", "Brier", "ECE", "F1", "cut-off PD"]
    for label in labels:
        assert re.search(rf"^\s*{re.escape(label)}\s+-?\d\.\d{{4}}\s*$", first.stdout, re.M), label
    assert "…" not in first.stdout
    assert count(home, "scoring_runs") == 1 and count(home, "monitoring_runs") == 1
    # The printed API key matches the hash the service will be given.
    key = (home / "demo-api-key").read_text().strip()
    env = (home / "demo.env").read_text()
    assert hashlib.sha256(key.encode()).hexdigest() in env
    # The generator's truth sidecar sits in the landing folder but is not ingested.
    assert list((home / "landing").glob("*.truth.parquet"))
    assert count(home, "ingestion_batches") == 1


def test_demo_again_skips_every_step_and_adds_nothing(demo_home):
    home, _ = demo_home
    rows = {t: count(home, t) for t in ("bronze_loans", "predictions", "monitoring_runs")}
    again = run("demo", "--rows", "30000", "--applications", "3000", home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    for step in ("ingest", "train", "promote", "score", "monitor"):
        assert f"{step} skipped" in again.stdout, again.stdout
    assert {t: count(home, t) for t in rows} == rows


def test_pipeline_picks_up_a_new_month_and_rescores_with_the_new_model(demo_home, tmp_path):
    home, _ = demo_home
    newer = home / "landing" / "loans_2018-01_6m.csv.gz"
    write_generated(
        GeneratorConfig(rows=8_000, start="2018-01", months=6, seed=9, as_of="2021-01"), newer
    )
    result = run("pipeline", "--json", home=home)
    assert result.returncode == 0, result.stderr
    steps = {s["step"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["ingest"]["status"] == "ran"
    assert steps["ingest"]["result"]["batches"][-1]["rows_bronze"] == 8_000
    assert steps["train"]["status"] == "ran" and steps["train"]["result"]["version"] == "2"
    assert steps["promote"]["status"] == "ran"
    promoted = steps["promote"]["result"]["promoted"]
    # A new production version scores the applications again; a refused one does not.
    assert steps["score"]["status"] == ("ran" if promoted else "skipped")
    assert steps["monitor"]["status"] == ("ran" if promoted else "skipped")


def test_pipeline_stops_at_a_failed_step_and_names_it(tmp_path):
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "broken.csv").write_text("a,b\n1,2\n")
    result = run("pipeline", home=home)
    assert result.returncode == 1
    assert "ingest failed" in result.stdout and "required column" in result.stdout
    assert "train" not in result.stdout
