"""The same training, registry and promotion against a real `mlflow server` over HTTP,
with a PostgreSQL backend store (loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loanrisk.config import get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.registry import Registry
from tests import steps

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_server(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    log = (tmp_path / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            f"{bin_dir}/mlflow",
            "server",
            "--backend-store-uri",
            postgres_url,
            "--artifacts-destination",
            (tmp_path / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                "mlflow server did not start:\n"
                + (tmp_path / "mlflow-server.log").read_text()[-3000:]
            )
        time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_train_register_promote_and_load_over_http(mlflow_server: str, tmp_path: Path):
    loans = tmp_path / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=12_000, start="2014-01", months=12, seed=4, as_of="2019-01"), loans
    )
    settings = get_settings(home=tmp_path / "home", mlflow={"tracking_uri": mlflow_server})
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(settings, [str(loans)])
    result = steps.train(settings)
    assert result.version == "1"
    assert Registry(settings).by_alias("staging").version == "1"
    assert steps.promote(settings).promoted
    assert [v.aliases for v in Registry(settings).versions()] == [["production", "staging"]]
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing went to the local store

    script = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("models:/loan_default_model@production")
        raw = pd.read_csv({str(loans)!r}, dtype=str, keep_default_na=False).head(50)
        out = model.predict(raw)
        print(json.dumps({{"rows": len(out), "scored": int(out["pd"].notna().sum())}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_server,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == 50 and report["scored"] >= 45
