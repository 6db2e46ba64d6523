"""Training, the packaged model, the registry and promotion, on a real MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loanrisk.config import Settings, get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import LoanriskError
from loanrisk.modeling.train import TrainResult, train
from loanrisk.registry import Registry
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.queries import raw_rows, read_gold
from tests import steps

pytestmark = pytest.mark.integration


def predictions_of(result: TrainResult, settings: Settings) -> pd.DataFrame:
    Registry(settings)  # sets MLflow's tracking URI for the fluent calls below
    path = mlflow.artifacts.download_artifacts(result.test_predictions)
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainResult, Path]:
    """150,000 matured loans over 24 months, all three candidates, default parameters."""
    folder = tmp_path_factory.mktemp("train")
    loans = folder / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=150_000, start="2014-01", months=24, seed=21, as_of="2020-01"), loans
    )
    settings = get_settings(home=folder / "home")
    settings.training.trials = 0
    steps.ingest(settings, [str(loans)])
    return settings, steps.train(settings), loans


def test_selected_model_is_near_the_best_achievable_and_calibrated(trained):
    settings, result, loans = trained
    assert result.split["split"] == "out_of_time"
    assert result.split["test_window"] == "2015-10..2015-12"
    winner = next(c for c in result.candidates if c.name == result.winner)
    assert winner.valid_auc == max(c.valid_auc for c in result.candidates)
    predictions = predictions_of(result, settings)
    truth = pd.read_parquet(loans.with_name("loans.truth.parquet")).drop_duplicates("id")
    joined = predictions.merge(truth.astype({"id": str}), left_on="loan_id", right_on="id")
    assert len(joined) == len(predictions) == result.split["test_rows"]
    best = roc_auc_score(joined["label"], joined["true_pd"])
    model = roc_auc_score(joined["label"], joined["pd"])
    assert model == pytest.approx(winner.test["auc"], abs=1e-9)
    assert abs(best - model) <= 0.015, (best, model)
    assert winner.test["ece"] <= 0.02
    assert set(winner.test) >= {
        "auc",
        "gini",
        "ks",
        "pr_auc",
        "precision",
        "recall",
        "f1",
        "brier",
        "ece",
        "log_loss",
    }
    assert len(winner.test_auc_by_vintage) == 3


def test_runs_plots_and_tags_are_in_mlflow(trained):
    settings, result, _ = trained
    client = Registry(settings).client
    parent = client.get_run(result.run_id)
    assert parent.data.tags["loanrisk.profile"] == "lendingclub"
    assert parent.data.tags["loanrisk.git_commit"]
    assert parent.data.params["data_rows"] == str(result.data["rows"])
    assert parent.data.params["data_content_hash"] == result.data["content_hash"]
    assert parent.data.params["data_vintage_range"] == "2014-01..2015-12"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.run_id}'"
    )
    assert {c.data.tags["loanrisk.candidate"] for c in children} == {
        "logistic_regression",
        "xgboost",
        "lightgbm",
    }
    plots = {Path(a.path).name for a in client.list_artifacts(children[0].info.run_id, "plots")}
    assert plots == {
        "roc.png",
        "precision_recall.png",
        "confusion_matrix.png",
        "calibration.png",
        "ks.png",
        "score_distribution.png",
        "feature_importance.png",
    }
    # The rows it was trained, tuned and tested on, as MLflow datasets with their source.
    inputs = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in parent.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation", "test"}
    assert inputs["training"].name == "gold_train" and inputs["training"].digest
    assert json.loads(inputs["test"].profile)["num_rows"] == result.split["test_rows"]
    source = json.loads(inputs["training"].source)
    assert source["table"] == "gold_loan_features" and source["gold_state"]
    assert inputs["training"].source_type == "loanrisk_warehouse"
    # The run the registry links to shows the winner's plots too.
    on_parent = {Path(a.path).name for a in client.list_artifacts(result.run_id, "plots")}
    assert on_parent == plots
    card = Path(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/model_card.md"))
    assert "## Limitations" in card.read_text() and "Decline when PD >=" in card.read_text()
    # ... and the registered version is described by the card.
    registered = client.get_model_version(settings.mlflow.model_name, result.version)
    assert registered.description == card.read_text()
    version = Registry(settings).by_alias("staging")
    assert version is not None and version.version == result.version
    assert version.tags["run_id"] == result.run_id
    assert float(version.tags["test_auc"]) == pytest.approx(
        next(c.test["auc"] for c in result.candidates if c.name == result.winner), abs=1e-6
    )


def test_fresh_process_scores_raw_csv_rows_like_training(trained, tmp_path):
    settings, result, loans = trained
    expected = predictions_of(result, settings)[["loan_id", "pd"]]
    expected.to_parquet(tmp_path / "expected.parquet")
    script = textwrap.dedent(f"""
        import json, mlflow, numpy as np, pandas as pd
        mlflow.set_tracking_uri({settings.tracking_uri!r})
        model = mlflow.pyfunc.load_model("models:/loan_default_model@staging")
        raw = pd.read_csv({str(loans)!r}, dtype=str, keep_default_na=False)
        expected = pd.read_parquet({str(tmp_path / "expected.parquet")!r})
        rows = raw[raw["id"].isin(expected["loan_id"])].drop_duplicates("id")
        out = model.predict(rows)
        got = pd.Series(out["pd"].to_numpy(), index=out["loan_id"])
        want = expected.set_index("loan_id")["pd"].reindex(got.index)
        print(json.dumps({{"rows": int(len(got)), "max_diff": float(np.max(np.abs(got - want))),
                          "columns": list(out.columns), "grades": sorted(set(out["grade"])),
                          "reasons": out["reasons"].iloc[0]}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == len(expected)
    assert report["max_diff"] < 1e-9
    assert report["columns"] == [
        "loan_id",
        "pd",
        "default_class",
        "decision",
        "grade",
        "reasons",
        "error",
    ]
    assert set(report["grades"]) <= set("ABCDEFG") and len(report["grades"]) >= 5
    assert 1 <= len(report["reasons"]) <= 4


def test_invalid_rows_get_an_error_not_a_pd(trained):
    settings, _, _ = trained
    model = Registry(settings).load(Registry(settings).by_alias("staging").version)
    good = {
        "loan_amnt": "10000",
        "term": " 36 months",
        "annual_inc": "60000",
        "int_rate": "12.5%",
        "fico_range_low": "700",
        "fico_range_high": "704",
        "issue_d": "Dec-2015",
        "earliest_cr_line": "Jan-2001",
        "dti": "18.2",
    }
    out = model.predict(pd.DataFrame([good, {**good, "annual_inc": "lots"}]))
    assert 0 < out.loc[0, "pd"] < 1 and out.loc[0, "decision"] in {"approve", "decline"}
    assert np.isnan(out.loc[1, "pd"]) and "annual_inc" in out.loc[1, "error"]


def test_real_lendingclub_extract_random_split(tmp_path, real_data):
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    steps.ingest(settings, [str(real_data)])
    result = steps.train(settings)
    assert result.split["split"] == "random"
    assert any("no vintage" in w for w in result.warnings)
    client = Registry(settings).client
    assert "no vintage" in client.get_run(result.run_id).data.tags["loanrisk.warning"]
    winner = next(c for c in result.candidates if c.name == result.winner)
    assert winner.test["auc"] >= 0.665, result.candidates


def test_promotion_gates_rollback_and_tags(tmp_path):
    loans = tmp_path / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=30_000, start="2014-01", months=18, seed=8, as_of="2020-01"), loans
    )
    settings = get_settings(home=tmp_path / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(settings, [str(loans)])
    warehouse = Warehouse.open(settings)
    gold = read_gold(warehouse.engine)

    def train_on(frame: pd.DataFrame) -> str:
        return train(
            settings,
            Registry(settings),
            frame,
            warehouse.profile,
            raw_example=lambda ids: raw_rows(warehouse.engine, ids),
        ).version

    # A deliberately weakened model: trained on labels of which 70% were shuffled.
    rng = np.random.default_rng(0)
    noisy = gold.copy()
    flip = rng.random(len(noisy)) < 0.7
    noisy.loc[flip, "label"] = rng.permutation(noisy.loc[flip, "label"].to_numpy())
    settings.promotion.min_auc, settings.promotion.max_ece = 0.5, 0.1
    weak = train_on(noisy)
    first = steps.promote(settings)  # no champion yet: only the absolute gates
    assert first.promoted and first.champion is None

    strong = train_on(gold)
    better = steps.promote(settings)
    assert better.promoted and better.challenger == strong and better.champion == weak
    assert better.metrics[strong]["auc"] > better.metrics[weak]["auc"] + 0.02
    tags = Registry(settings).get(strong).tags
    assert tags["previous_production_version"] == weak
    assert tags["promotion_reason"] == "passed every gate" and tags["promoted_by"]
    assert json.loads(tags["promotion_comparison"])[weak]["auc"] < 0.7

    weaker = train_on(noisy)
    refused = steps.promote(settings)
    assert not refused.promoted and refused.champion == strong
    assert "champion" in refused.reason
    assert Registry(settings).by_alias("production").version == strong
    assert "promotion_refused_reason" in Registry(settings).get(weaker).tags

    forced = steps.promote(settings, force=True, reason="incident drill")
    assert forced.promoted and forced.forced
    assert Registry(settings).get(weaker).tags["promotion_forced"] == "true"
    with pytest.raises(LoanriskError, match="--reason"):
        steps.promote(settings, version=weak, force=True)

    assert steps.rollback(settings, reason="drill over") == (weaker, strong)
    assert Registry(settings).by_alias("production").version == strong
    assert Registry(settings).get(weaker).tags["rolled_back_to"] == strong
    assert steps.rollback(settings) == (strong, weak)
    with pytest.raises(LoanriskError, match="no previous production version"):
        steps.rollback(settings)
    warehouse.engine.dispose()
