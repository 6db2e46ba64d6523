"""`loanrisk score --engine spark`: the same answers and the same prediction-log rows as
the default engine, on 20,000 generated applications, and a rerun adds nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.sparkscore import output_frame
from tests.conftest import require

pytestmark = pytest.mark.integration
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
QUICK = {"LOANRISK_TRAINING__TRIALS": "0", "LOANRISK_TRAINING__CANDIDATES": '["lightgbm"]'}


def run(home: Path, *args: str) -> dict:
    done = subprocess.run(
        [LOANRISK, "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **QUICK},
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    return json.loads(done.stdout)


def logged(home: Path, run_id: str) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.connect() as conn:
        rows = pd.read_sql_query(
            sa.text("SELECT * FROM predictions WHERE scoring_run_id = :r ORDER BY prediction_id"),
            conn,
            params={"r": run_id},
        )
    engine.dispose()
    return rows


def values(column: pd.Series) -> list:
    """A column's values with every kind of missing as None."""
    return [None if pd.isna(v) else v for v in column]


def forget(home: Path, run_id: str) -> None:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.begin() as conn:
        for table in ("predictions", "scoring_runs"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE scoring_run_id = :r"), {"r": run_id})
    engine.dispose()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(
        importlib.util.find_spec("pyspark") is not None,
        "PySpark",
        "make test installs it from requirements.lock",
    )
    require(
        bool(os.environ.get("JAVA_HOME") or shutil.which("java")),
        "Java (for Spark)",
        "install a JRE 17+ (apt-get install default-jre-headless)",
    )
    folder = tmp_path_factory.mktemp("spark")
    loans = folder / "loans.csv"
    write_generated(
        GeneratorConfig(rows=20_000, start="2014-01", months=18, seed=9, as_of="2020-01"), loans
    )
    home = folder / "home"
    run(home, "ingest", str(loans))
    run(home, "train")
    assert run(home, "promote")["promoted"]
    return home


def test_spark_engine_gives_the_default_engines_answers_and_rows(home, tmp_path):
    applications = tmp_path / "applications.csv"
    write_generated(GeneratorConfig(rows=20_000, start="2016-01", months=6, seed=77), applications)

    spark = run(home, "score", str(applications), "--engine", "spark", "--master", "local[2]")
    assert not spark["skipped"] and spark["rows_in"] == 20_000
    assert spark["rows_invalid"] > 0  # the generator's malformed rows are answered too
    assert Path(spark["output"]).is_dir()  # Spark's Parquet folder
    spark_out = output_frame(spark["output"])
    spark_rows = logged(home, spark["scoring_run_id"])
    assert len(spark_rows) == spark["rows_scored"]

    # Rerunning (a retried task) adds nothing.
    again = run(home, "score", str(applications), "--engine", "spark", "--master", "local[2]")
    assert again["skipped"] and len(logged(home, spark["scoring_run_id"])) == len(spark_rows)

    # The same input with the default engine: the same run, so forget it first.
    forget(home, spark["scoring_run_id"])
    local = run(home, "score", str(applications))
    assert local["scoring_run_id"] == spark["scoring_run_id"]
    assert (local["rows_scored"], local["rows_invalid"]) == (
        spark["rows_scored"],
        spark["rows_invalid"],
    )
    local_out = output_frame(local["output"])
    assert list(local_out["source_row"]) == list(range(1, 20_001))
    assert list(spark_out["source_row"]) == list(local_out["source_row"])
    assert np.nanmax(np.abs(spark_out["pd"] - local_out["pd"])) <= 1e-12
    assert spark_out["pd"].isna().equals(local_out["pd"].isna())
    for column in ("prediction_id", "loan_id", "default_class", "decision", "grade", "error"):
        assert values(spark_out[column]) == values(local_out[column]), column
    assert [json.loads(r) if r else None for r in spark_out["reasons"]] == [
        json.loads(r) if r else None for r in local_out["reasons"]
    ]

    local_rows = logged(home, local["scoring_run_id"])
    assert list(local_rows["prediction_id"]) == list(spark_rows["prediction_id"])
    for column in local_rows.columns:
        if column in ("created_at",):
            continue
        if column in ("input", "features", "reasons"):  # JSON: the same objects
            assert list(map(json.loads, spark_rows[column])) == list(
                map(json.loads, local_rows[column])
            ), column
        elif column == "pd":
            assert np.max(np.abs(spark_rows["pd"] - local_rows["pd"])) <= 1e-12
        else:
            assert values(spark_rows[column]) == values(local_rows[column]), column

    # Scored by either engine, the run is known: Spark adds nothing either.
    after = run(home, "score", str(applications), "--engine", "spark", "--master", "local[2]")
    assert after["skipped"] and len(logged(home, local["scoring_run_id"])) == len(local_rows)


def test_a_typed_parquet_file_is_logged_as_the_default_engine_logs_it(home, tmp_path):
    """Parquet keeps types: whole numbers with gaps (nullable ints), decimals, text. Spark
    and the default engine must log the same application JSON ("5", not "5.0")."""
    csv = tmp_path / "applications.csv"
    write_generated(GeneratorConfig(rows=3_000, start="2016-01", months=3, seed=78), csv)
    frame = pd.read_csv(csv, low_memory=False)
    for name in frame.columns:
        column = frame[name]
        if column.dtype == "float64" and column.dropna().mod(1).eq(0).all():
            frame[name] = column.astype("Int64")
    nullable = [n for n in frame.columns if frame[n].dtype == "Int64" and frame[n].isna().any()]
    assert nullable and any(frame[n].dtype == "float64" for n in frame.columns)
    applications = tmp_path / "applications.parquet"
    frame.to_parquet(applications, index=False)

    spark = run(home, "score", str(applications), "--engine", "spark", "--master", "local[2]")
    spark_rows = logged(home, spark["scoring_run_id"])
    forget(home, spark["scoring_run_id"])
    local = run(home, "score", str(applications))
    local_rows = logged(home, local["scoring_run_id"])
    assert len(local_rows) == len(spark_rows) > 2_000
    assert list(spark_rows["input"]) == list(local_rows["input"])  # the same text
    assert np.max(np.abs(spark_rows["pd"] - local_rows["pd"])) <= 1e-12
    assert list(spark_rows["reasons"]) == list(local_rows["reasons"])


def test_a_header_naming_a_column_twice_is_refused_before_spark_starts(home, tmp_path):
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("id,loan_amnt,term,loan_amnt\n1,5000, 36 months,5000\n")
    done = subprocess.run(
        [LOANRISK, "--home", str(home), "score", str(doubled), "--engine", "spark"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **QUICK},
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip() == (
        f"error: {doubled}: columns 2 ('loan_amnt') and 4 ('loan_amnt') both read as "
        "loan_amnt; keep one of them (or rename the other) so it is clear which to use"
    )
