"""Batch scoring, outcomes and monitoring on generated data with a real model and store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sklearn.metrics import roc_auc_score

from loanrisk.config import Settings, get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import LoanriskError
from loanrisk.registry import Registry
from tests import steps
from tests.support import Service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    folder = tmp_path_factory.mktemp("monitoring")
    history = folder / "history.csv"
    write_generated(
        GeneratorConfig(rows=40_000, start="2014-01", months=12, seed=2, as_of="2019-01"), history
    )
    settings = get_settings(home=folder / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(settings, [str(history)])
    steps.train(settings)
    assert steps.promote(settings).promoted
    for name, config in {
        "same.csv": GeneratorConfig(rows=5_000, start="2015-06", months=1, seed=3),
        "drifted.csv": GeneratorConfig(rows=5_000, start="2015-07", months=1, seed=4, drift=1.0),
        "matured.csv": GeneratorConfig(
            rows=5_000, start="2015-06", months=1, seed=3, as_of="2021-01"
        ),
    }.items():
        write_generated(config, folder / name)
    return settings, folder


def copy_home(settings: Settings, target: Path) -> Settings:
    shutil.copytree(settings.home, target)
    return get_settings(home=target)


def count(settings: Settings, table: str) -> int:
    engine = sa.create_engine(settings.warehouse_url)
    with engine.connect() as conn:
        value = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return value


def test_scoring_is_streamed_logged_and_idempotent(monitored, tmp_path):
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    settings.ingest.scoring_chunk_size = 1_000
    run = steps.score(settings, str(folder / "same.csv"))
    assert run.rows_in == 5_000 and run.rows_scored + run.rows_invalid == 5_000
    assert run.rows_invalid > 0  # the generator's dirty rows are refused, not scored
    output = pd.read_parquet(run.output)
    assert len(output) == 5_000 and output["pd"].notna().sum() == run.rows_scored
    assert output.loc[output["pd"].isna(), "error"].notna().all()
    assert count(settings, "predictions") == run.rows_scored
    assert count(settings, "scoring_runs") == 1
    again = steps.score(settings, str(folder / "same.csv"))
    assert again.skipped and count(settings, "predictions") == run.rows_scored


@pytest.mark.parametrize(
    "warehouse", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_batch_log_rows_hold_the_application_and_model_inputs(
    monitored, tmp_path, warehouse, request
):
    """What a batch run puts in `predictions` (COPY on PostgreSQL, inserts on SQLite):
    the input fields as read, the model inputs and answers the packaged model gives."""
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    if warehouse == "postgres":
        settings.warehouse.url = SecretStr(request.getfixturevalue("postgres_url"))
    settings.ingest.scoring_chunk_size = 1_500
    run = steps.score(settings, str(folder / "same.csv"))
    engine = sa.create_engine(settings.warehouse_url)
    with engine.connect() as conn:
        logged = pd.read_sql_query(sa.text("SELECT * FROM predictions"), conn)
    engine.dispose()
    assert len(logged) == run.rows_scored and logged["prediction_id"].is_unique
    assert set(logged["source"]) == {"batch"} and set(logged["request_id"]) == {run.scoring_run_id}
    assert set(logged["model_version"]) == {run.model_version}
    assert logged["client_id"].isna().all() and logged["latency_ms"].isna().all()
    output = pd.read_parquet(run.output).set_index("prediction_id")
    logged = logged.set_index("prediction_id")
    assert (logged["pd"] == output.loc[logged.index, "pd"]).all()
    assert (logged["reasons"] == output.loc[logged.index, "reasons"]).all()

    raw = pd.read_csv(folder / "same.csv", dtype=str, keep_default_na=False)
    raw.index = pd.RangeIndex(1, len(raw) + 1)
    bundle = Registry(settings).load_bundle(run.model_version)
    out, features = bundle.predict_with_features(raw)
    fields = [c for c in raw.columns if bundle.reads(c)]
    sample = logged.sample(200, random_state=0)
    for prediction_id, row in sample.iterrows():
        source_row = int(output.loc[prediction_id, "source_row"])
        # The reader keeps every field as text; an empty field is a null.
        expected = {k: (v or None) for k, v in raw.loc[source_row, fields].items()}
        assert json.loads(row["input"]) == expected
        model_inputs = json.loads(row["features"])
        assert list(model_inputs) == list(features.columns)
        for name, value in features.loc[source_row - 1].items():
            if pd.isna(value):
                assert model_inputs[name] is None, name
            else:
                assert model_inputs[name] == value, name  # exact: shortest round-trip text
        assert row["pd"] == out.loc[source_row - 1, "pd"]
        assert json.loads(row["reasons"]) == out.loc[source_row - 1, "reasons"]


def test_no_false_alarm_in_distribution(monitored, tmp_path):
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    steps.score(settings, str(folder / "same.csv"))
    result = steps.monitor(settings, days=1)
    assert not result.drift_alert, result.alerts
    assert result.score_psi < 0.1 and result.drifted_share < 0.1
    assert not result.retrain_recommended
    summary = json.loads(Path(result.summary_json).read_text())
    assert summary["monitoring_run_id"] == result.monitoring_run_id
    assert count(settings, "monitoring_runs") == 1


def test_drifted_month_raises_an_alert_naming_features(monitored, tmp_path):
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    steps.score(settings, str(folder / "drifted.csv"))
    result = steps.monitor(settings, days=1)
    assert result.drift_alert and result.retrain_recommended
    assert {"fico_range_low", "dti", "annual_inc", "revol_util"} <= set(result.drifted_features)
    assert any("fico_range_low" in alert for alert in result.alerts)
    assert result.psi["fico_range_low"]["value"] > 0.1
    # One definition of "drifted": the HTML report counts the same inputs against the
    # same threshold as the JSON summary and the alert.
    inputs = len(result.psi) - 1  # every model input, not the PD score
    html = Path(result.report_html).read_text()
    assert f"of columns ({len(result.drifted_features)} out of {inputs})" in html
    threshold = settings.monitoring.drift_share_alert
    assert f"Dataset drift detection threshold is {threshold:g}" in html
    assert f"{len(result.drifted_features)} of {inputs} model inputs drifted" in result.alerts[0]


def test_realised_auc_matches_the_pairs(monitored, tmp_path):
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    scored = steps.score(settings, str(folder / "same.csv"))
    loaded = steps.outcomes(settings, str(folder / "matured.csv"))
    assert loaded.rows == 5_000 and loaded.matched == scored.rows_scored
    assert loaded.unmatched == 5_000 - scored.rows_scored  # refused rows have no prediction
    result = steps.monitor(settings, days=1)
    engine = sa.create_engine(settings.warehouse_url)
    pairs = pd.read_sql(
        "SELECT p.prediction_id, p.pd, o.defaulted FROM predictions p "
        "JOIN outcomes o ON o.loan_id = p.loan_id ORDER BY o.outcome_id",
        engine,
    ).drop_duplicates("prediction_id", keep="last")
    engine.dispose()
    direct = roc_auc_score(pairs["defaulted"], pairs["pd"])
    assert result.performance is not None
    assert result.performance["outcomes"] == len(pairs)
    assert abs(result.performance["auc"] - direct) <= 0.01
    assert set(result.performance["by_grade"]) <= set("ABCDEFG")
    assert np.isclose(result.performance["observed_default_rate"], pairs["defaulted"].mean())


def test_monitoring_needs_predictions_and_metrics_export(monitored, tmp_path):
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    with pytest.raises(LoanriskError, match="no predictions between"):
        steps.monitor(settings, days=1)
    steps.score(settings, str(folder / "drifted.csv"))
    result = steps.monitor(settings, days=1)
    service = Service(settings.home)
    try:
        metrics = httpx.get(f"{service.url}/metrics").text
    finally:
        service.stop()
    line = next(
        m for m in metrics.splitlines() if m.startswith("loanrisk_monitoring_drifted_share ")
    )
    assert float(line.split()[-1]) == pytest.approx(result.drifted_share)
    assert "loanrisk_monitoring_score_psi " in metrics


def test_scoring_the_warehouse_unlabelled_loans(monitored, tmp_path):
    settings, _ = monitored
    settings = copy_home(settings, tmp_path / "home")
    # Young loans: their 24-month window has not passed, so they have no label yet.
    young = tmp_path / "young.csv"
    write_generated(
        GeneratorConfig(rows=2_000, start="2018-06", months=6, seed=12, as_of="2019-01"), young
    )
    steps.ingest(settings, [str(young)])
    unlabelled = count(settings, "silver_loans WHERE label IS NULL")
    assert unlabelled >= 1_900
    run = steps.score(settings, "warehouse:unlabelled")
    assert run.input == "warehouse:unlabelled"
    assert run.rows_in == unlabelled and run.rows_scored == unlabelled
    assert steps.score(settings, "warehouse:unlabelled").skipped


def test_alerts_post_to_the_webhook(monitored, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings, folder = monitored
    settings = copy_home(settings, tmp_path / "home")
    settings.monitoring.webhook_url = SecretStr(f"http://127.0.0.1:{server.server_port}/hook")
    try:
        steps.score(settings, str(folder / "drifted.csv"))
        result = steps.monitor(settings, days=1)
    finally:
        server.shutdown()
    assert result.retrain_recommended
    assert len(received) == 1 and received[0]["retrain_recommended"] is True
    assert "drift" in received[0]["text"] and "fico_range_low" in received[0]["text"]
