"""One warehouse and one registry per run: counted while `loanrisk pipeline` runs in-process."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy
from typer.testing import CliRunner

from loanrisk import registry as registry_module
from loanrisk.cli import app
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.registry import Registry
from loanrisk.warehouse import engine as engine_module

pytestmark = pytest.mark.integration
QUICK = {"LOANRISK_TRAINING__TRIALS": "0", "LOANRISK_TRAINING__CANDIDATES": '["lightgbm"]'}
STAGES = ("run_score_folder", "run_promote", "monitor")


class Counts:
    """Warehouse engines, migrations, registries, MLflow clients and model loads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, warehouse_file: Path) -> None:
        self.seen: Counter[str] = Counter()
        self.loads: list[str] = []
        create, migrate = sqlalchemy.create_engine, engine_module.migrate
        client, init, load = registry_module.MlflowClient, Registry.__init__, Registry.load

        def create_engine(url, *args, **kwargs):
            engine = create(url, *args, **kwargs)
            if engine.url.database == str(warehouse_file):  # MLflow's own store is not ours
                self.seen["warehouse engines"] += 1
            return engine

        def migrating(*args, **kwargs):
            self.seen["migrations"] += 1
            return migrate(*args, **kwargs)

        def new_client(*args, **kwargs):
            self.seen["MLflow clients"] += 1
            return client(*args, **kwargs)

        def new_registry(registry, *args, **kwargs):
            self.seen["registries"] += 1
            init(registry, *args, **kwargs)

        def loading(registry, version):
            names = {frame.function for frame in inspect.stack()}
            self.loads.append(next((s for s in STAGES if s in names), "other"))
            return load(registry, version)

        monkeypatch.setattr(sqlalchemy, "create_engine", create_engine)
        monkeypatch.setattr(engine_module, "migrate", migrating)
        monkeypatch.setattr(registry_module, "MlflowClient", new_client)
        monkeypatch.setattr(Registry, "__init__", new_registry)
        monkeypatch.setattr(Registry, "load", loading)

    def reset(self) -> None:
        self.seen.clear()
        self.loads.clear()


def pipeline(home: Path) -> dict:
    result = CliRunner().invoke(app, ["--home", str(home), "pipeline", "--json"], env=QUICK)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_pipeline_run_opens_one_warehouse_and_one_registry(tmp_path, monkeypatch):
    home = tmp_path / "home"
    history = GeneratorConfig(rows=8_000, start="2015-01", months=12, seed=3, as_of="2019-01")
    write_generated(history, home / "landing" / "loans.csv")
    for seed in (4, 5):  # two application files: one scoring run, one model load
        month = GeneratorConfig(rows=1_000, start="2016-01", months=1, seed=seed, as_of="2016-01")
        write_generated(month, home / "applications" / f"applications-{seed}.csv")
    counts = Counts(monkeypatch, (home / "warehouse.db").resolve())

    ran = pipeline(home)
    assert [s["status"] for s in ran["steps"]] == ["ran"] * 5, ran
    assert len(ran["steps"][3]["result"]) == 2  # both files scored
    assert counts.seen == {
        "warehouse engines": 1,
        "migrations": 1,
        "registries": 1,
        "MLflow clients": 1,
    }
    assert counts.loads.count("run_score_folder") == 1
    assert counts.loads.count("monitor") == 1

    counts.reset()
    skipped = pipeline(home)
    assert [s["status"] for s in skipped["steps"]] == ["skipped"] * 5, skipped
    assert counts.seen["warehouse engines"] == 1 and counts.seen["registries"] == 1
    assert counts.seen["MLflow clients"] == 1
    assert counts.loads == []  # nothing new: no model is loaded
