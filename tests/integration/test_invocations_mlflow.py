"""``/invocations`` answers as ``mlflow models serve`` does for the same registered model:
side by side, a batch with one invalid row is a 200 with a per-row ``error``, and every
key the packaged model answers carries the same value in both."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import APPLICATION, KEY, Service, free_port, wait_until_answering

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def both(served_home) -> Iterator[tuple[str, str]]:
    settings, _ = served_home
    ours = Service(settings.home)
    # The version the service answers with (other tests may have moved @production).
    version = httpx.get(f"{ours.url}/version").json()["model_version"]
    port = free_port()
    log = (settings.home.parent / f"mlflow-serve-{port}.log").open("w")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow runs its venv's tools
        # Both: an earlier test in this process may have left MLFLOW_REGISTRY_URI set
        # (mlflow.set_registry_uri exports it), pointing at another home's registry.
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.tracking_uri,
    }
    model = f"models:/{settings.mlflow.model_name}/{version}"
    command = ["models", "serve", "-m", model, "--env-manager", "local"]
    mlflow = subprocess.Popen(
        [str(BIN / "mlflow"), *command, "--host", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/ping", mlflow, Path(log.name), 180, "mlflow models serve")
        yield url, ours.url
    finally:
        ours.stop()
        os.killpg(mlflow.pid, 15)
        mlflow.wait(timeout=30)
        log.close()


def test_one_invalid_row_is_a_per_row_error_in_both(both):
    mlflow_url, our_url = both
    rows = [
        APPLICATION,
        APPLICATION | {"loan_amnt": "lots"},  # not a number
        APPLICATION | {"home_ownership": "CASTLE"},  # not a category the profile lists
        {k: v for k, v in APPLICATION.items() if k != "annual_inc"},  # a required field
        APPLICATION | {"loan_amnt": 9000, "unknown_field": "dropped, as MLflow drops it"},
    ]
    body = {"dataframe_records": rows}
    theirs = httpx.post(f"{mlflow_url}/invocations", json=body, timeout=60)
    ours = httpx.post(
        f"{our_url}/invocations", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == 200, ours.text
    expected, got = theirs.json()["predictions"], ours.json()["predictions"]
    assert len(expected) == len(got) == len(rows)
    for want, have in zip(expected, got, strict=True):
        assert set(want) <= set(have), (sorted(want), sorted(have))
        for key, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert have[key] is None  # MLflow writes NaN, which is not JSON; null here
            elif key == "pd" and value is not None:
                assert have[key] == pytest.approx(value, abs=1e-12)
            else:
                assert have[key] == value, (key, value, have[key])
    errors = [p["error"] for p in got]
    assert errors[0] is None and errors[4] is None
    assert "loan_amnt" in errors[1] and "CASTLE" in errors[2] and "annual_inc" in errors[3]
    assert got[0]["prediction_id"] and got[1]["prediction_id"] is None  # only answers are logged
    assert got[1]["pd"] is None and got[1]["decision"] is None
