"""Fault test: the database under the prediction log is stopped during load and started again.

A private PostgreSQL instance (initdb in a temporary folder, its own port) is used, so the
machine's server is never touched. Needs PostgreSQL's server binaries; skips with the
reason elsewhere, never in CI.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import IN_CI
from tests.support import APPLICATION, KEY, Service, free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() == 0:  # the server refuses to run as root
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


class PrivatePostgres:
    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder, self.bin = folder, bin_dir
        self.port = free_port()
        self.data = folder / "data"
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        subprocess.run(
            _as_postgres(
                str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
            ),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-w",
                "-l",
                str(self.folder / "server.log"),
                "-o",
                f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop"
            ),
            check=True,
            capture_output=True,
        )


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries (pg_ctl, initdb) not installed"
        if IN_CI:
            pytest.fail(message + "; CI must run the fault test")
        pytest.skip(message)
    server = PrivatePostgres(Path("/tmp") / f"loanrisk-pg-{tmp_path.name}", bin_dir)
    server.start()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


def test_service_answers_through_a_database_outage_and_loses_nothing(served_home, private_postgres):
    settings, _ = served_home
    service = Service(
        settings.home,
        LOANRISK_WAREHOUSE__URL=private_postgres.url,
        LOANRISK_SERVING__LOG_RETRY_SECONDS="0.5",
    )
    answered = 0
    counting = threading.Lock()  # `answered += n` from several threads can lose updates
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        nonlocal answered
        with httpx.Client(base_url=service.url, headers={"X-API-Key": KEY}, timeout=10) as c:
            while not stop.is_set():
                response = c.post("/v1/predict", json=[APPLICATION] * 5)
                if response.status_code == 200:
                    with counting:
                        answered += len(response.json()["predictions"])
                else:
                    failures.append(f"{response.status_code}: {response.text[:200]}")

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.5)
        private_postgres.stop()
        time.sleep(3.0)
        during = httpx.get(f"{service.url}/metrics").text
        private_postgres.start()
        time.sleep(3.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{service.url}/metrics").text
        if (
            "loanrisk_prediction_log_database_up 1.0" in metrics
            and "loanrisk_prediction_log_queue_depth 0.0" in metrics
        ):
            break
        time.sleep(0.5)
    service.stop()

    assert not failures, failures[:3]
    assert "loanrisk_prediction_log_database_up 0.0" in during
    spooled = [
        line
        for line in during.splitlines()
        if line.startswith("loanrisk_prediction_log_spooled_rows_total")
    ]
    assert spooled and float(spooled[0].split()[-1]) > 0, during
    engine = sa.create_engine(private_postgres.url)
    with engine.connect() as conn:
        rows, distinct = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT prediction_id) FROM predictions")
        ).one()
    engine.dispose()
    assert answered > 100
    assert rows == distinct == answered
    assert not list((settings.home / "spool").glob("*.jsonl"))
