"""Two `loanrisk train` processes share one Optuna study in the warehouse's PostgreSQL:
a search-only worker (`--tune-only`) beside the run that registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from loanrisk.data.generate import GeneratorConfig, write_generated

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
TRIALS = 12


def test_two_workers_share_one_study_and_one_version_is_registered(postgres_url, tmp_path):
    loans = tmp_path / "loans.csv"
    write_generated(
        GeneratorConfig(rows=12_000, start="2014-01", months=12, seed=6, as_of="2019-01"), loans
    )
    env = {
        **os.environ,
        "LOANRISK_HOME": str(tmp_path / "home"),
        "LOANRISK_WAREHOUSE__URL": postgres_url,
        "LOANRISK_TRAINING__STUDY_STORAGE": "warehouse",
        "LOANRISK_TRAINING__TRIALS": str(TRIALS),
        "LOANRISK_TRAINING__CANDIDATES": '["lightgbm"]',
    }
    ingest = subprocess.run(
        [LOANRISK, "ingest", str(loans), "--json"], env=env, capture_output=True, timeout=600
    )
    assert ingest.returncode == 0, ingest.stderr

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [LOANRISK, "train", *args, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    worker, trainer = start("--tune-only"), start()
    worker_out, worker_err = worker.communicate(timeout=900)
    trainer_out, trainer_err = trainer.communicate(timeout=900)
    assert worker.returncode == 0, worker_err[-3000:]
    assert trainer.returncode == 0, trainer_err[-3000:]
    searched = json.loads(worker_out)["studies"][0]
    result = json.loads(trainer_out)

    # Optuna's tables sit in a schema of their own in the warehouse's database.
    storage = optuna.storages.RDBStorage(
        postgres_url, engine_kwargs={"connect_args": {"options": "-csearch_path=optuna"}}
    )
    studies = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in studies] == [searched["study"]]
    study = optuna.load_study(study_name=searched["study"], storage=storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert TRIALS <= len(finished) <= TRIALS + 2  # each process checks the count per trial
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2, workers  # both processes ran trials
    assert searched["this_worker"] >= 1

    # The registered model is the study's best trial, whichever process ran it.
    best = study.best_trial
    (candidate,) = result["candidates"]
    assert candidate["trials"] >= TRIALS
    assert {k: candidate["params"][k] for k in best.params} == pytest.approx(best.params)
    assert candidate["valid_auc"] == pytest.approx(best.value, abs=1e-9)
    # Both URIs given: MlflowClient otherwise reads the registry URI another test in this
    # process set globally (mlflow.set_registry_uri), and lists that home's versions.
    store = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = client.search_model_versions("name = 'loan_default_model'")
    assert [str(v.version) for v in versions] == [result["version"]] == ["1"]
