"""Helpers shared by the service and browser tests: a real `loanrisk serve` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loanrisk.serving.security import hash_key

LOANRISK = str(Path(sys.executable).with_name("loanrisk"))
KEY, READ_ONLY = "test-key-scoring", "test-key-read-only"
APPLICATION = {
    "loan_amnt": 12000,
    "term": " 36 months",
    "int_rate": "13.56%",
    "annual_inc": 72000,
    "fico_range_low": 700,
    "fico_range_high": 704,
    "dti": 18.2,
    "grade": "C",
    "home_ownership": "RENT",
    "purpose": "credit_card",
    "issue_d": "Dec-2018",
    "earliest_cr_line": "Aug-2003",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(home: Path, **extra: str) -> dict[str, str]:
    keys = [
        {"name": "scorer", "sha256": hash_key(KEY), "scopes": ["predict", "read", "outcomes"]},
        {"name": "auditor", "sha256": hash_key(READ_ONLY), "scopes": ["read"]},
    ]
    return {
        **os.environ,
        "LOANRISK_HOME": str(home),
        "LOANRISK_SERVING__API_KEYS": json.dumps(keys),
        "LOANRISK_SERVING__POLL_SECONDS": "0.5",
        "LOANRISK_SERVING__MAX_BODY_BYTES": "200000",
        "LOANRISK_SERVING__MAX_APPLICATIONS": "50",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **extra,
    }


def wait_until_answering(
    url: str, process: subprocess.Popen, log: Path, seconds: float, what: str = "service"
) -> None:
    """Poll ``url`` until it answers 200; fail with the log's end if ``process`` exits or
    ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start: " + log.read_text()[-3000:])
        time.sleep(0.3)


class Service:
    """`loanrisk serve` in its own process group (so a test can kill -9 all of it)."""

    def __init__(self, home: Path, *, port: int | None = None, **extra: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (home.parent / f"serve-{self.port}.log").open("a")
        self.process = subprocess.Popen(
            [LOANRISK, "serve", "--port", str(self.port)],
            env=service_env(home, **extra),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_answering(f"{self.url}/health", self.process, Path(self.log.name), 120)
        except AssertionError:
            self.stop()
            raise

    def workers(self) -> list[int]:
        """Pids of the worker processes (several workers), else of the server itself."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(p) for p in found] or [self.process.pid]

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("service not ready: " + Path(self.log.name).read_text()[-3000:])

    def kill(self) -> None:
        """kill -9 of the server and all its workers at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
