"""The decision record on PostgreSQL: kill -9 under load loses no answered prediction, and
hostile values mixed into traffic never stop the log.

Both run `loanrisk serve` as a real process over HTTP with the prediction log on a fresh
PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.support import APPLICATION, KEY, Service

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


class Traffic:
    """Client threads scoring applications; keeps every prediction id answered with 200."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.answered: set[str] = set()
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        body = [APPLICATION | {"client_id": f"c{index}"}] * (1 + index % 3)
        with httpx.Client(base_url=self.url, headers={"X-API-Key": KEY}, timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    response = client.post("/v1/predict", json=body)
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is down or restarting
                    continue
                if response.status_code == 200:
                    ids = [p["prediction_id"] for p in response.json()["predictions"]]
                    with self.lock:
                        self.answered.update(ids)
                elif response.status_code != 503:
                    self.refused.append(f"{response.status_code} {response.text[:200]}")


def _stored(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT prediction_id, count(*) FROM predictions GROUP BY prediction_id")
            ).all()
    finally:
        engine.dispose()
    return {r[0]: r[1] for r in rows}


def _wait_until_stored(url: str, ids: set[str], seconds: float = 90) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        stored = _stored(url)
        if ids <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_under_load_loses_no_answered_prediction(served_home, postgres_url, workers):
    settings, _ = served_home
    env = {"LOANRISK_WAREHOUSE__URL": postgres_url, "LOANRISK_SERVING__WORKERS": str(workers)}
    service = Service(settings.home, **env)
    service.wait_ready()
    with Traffic(service.url, clients=16) as traffic:
        time.sleep(2.0)
        if workers == 2:  # one worker dies; uvicorn starts another, which replays its rows
            os.kill(service.workers()[0], signal.SIGKILL)
            time.sleep(3.0)
        before_kill = len(traffic.answered)
        service.kill()  # the whole server, mid-load
        time.sleep(0.5)
    assert before_kill > 200 and not traffic.refused, traffic.refused[:3]
    answered = set(traffic.answered)

    restarted = Service(settings.home, port=service.port, **env)
    try:
        restarted.wait_ready()
        stored = _wait_until_stored(postgres_url, answered)
    finally:
        restarted.stop()
    missing = answered - stored.keys()
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions lost"
    assert all(count == 1 for count in stored.values()), "a prediction stored twice"


HOSTILE_BODIES = [
    # (body bytes, what it is)
    (b'{"loan_amnt": 1000, "term": "36", "annual_inc": 5e4, "emp_title": "\\ud800"}', "surrogate"),
    (b'{"loan_amnt": 1000, "term": "36", "annual_inc": 5e4, "client_id": "a\\u0000b"}', "NUL"),
    (b'{"loan_amnt": NaN, "term": "36", "annual_inc": 5e4}', "NaN"),
    (b'{"loan_amnt": Infinity, "term": "36", "annual_inc": 5e4}', "Infinity"),
    (b'{"loan_amnt": 1e309, "term": "36", "annual_inc": 5e4}', "overflow"),
    (b'{"loan_amnt": true, "term": "36", "annual_inc": 5e4}', "bool"),
    (b'{"loan_amnt": ' + b"9" * 5000 + b', "term": "36", "annual_inc": 5e4}', "5,000 digits"),
    (b"[" * 50_000 + b"]" * 50_000, "deep nesting"),
    (
        b'{"loan_amnt": 1000, "term": "36", "annual_inc": 5e4, "title": "' + b"x" * 5000 + b'"}',
        "long",
    ),
    (b'{"loan_amnt": 1000, "term": "36", "annual_inc": 5e4, "\\ud800": 1}', "surrogate key"),
    (b"\xff\xfe{}", "not UTF-8"),
]


def test_hostile_values_mixed_into_traffic_never_stop_the_log(served_home, postgres_url):
    settings, _ = served_home
    service = Service(settings.home, LOANRISK_WAREHOUSE__URL=postgres_url)
    service.wait_ready()
    statuses: list[tuple[str, int]] = []
    try:
        with (
            Traffic(service.url, clients=4) as traffic,
            httpx.Client(base_url=service.url, headers={"X-API-Key": KEY}, timeout=10) as c,
        ):
            json_type = {"content-type": "application/json"}
            for _ in range(3):
                for body, what in HOSTILE_BODIES:
                    reply = c.post("/v1/predict", content=body, headers=json_type)
                    statuses.append((what, reply.status_code))
                    reply = c.post("/v1/predict", content=b"[" + body + b"]", headers=json_type)
                    statuses.append((f"{what} in a list", reply.status_code))
                for name, value in [
                    ("long X-Request-Id", "r" * 65),
                    ("spaced X-Request-Id", "a b"),
                    ("non-ASCII X-Request-Id", "r\xe9q"),
                ]:
                    reply = c.post(
                        "/v1/predict",
                        json=APPLICATION,
                        headers={"X-Request-Id": value.encode("latin-1")},  # type: ignore[dict-item]
                    )
                    statuses.append((name, reply.status_code))
                for body in [
                    {"dataframe_split": {"columns": 5, "data": 7}},
                    {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}},
                    {"inputs": {"loan_amnt": 5}},
                    {"inputs": {"loan_amnt": [1], "term": [1, 2]}},
                    {"instances": [[1, 2]]},
                    {"dataframe_records": [{"loan_amnt": {"deep": [1]}}]},
                    {"dataframe_records": [APPLICATION | {"emp_title": "a\x00b"}]},
                    [APPLICATION],
                ]:
                    statuses.append(("invocations", c.post("/invocations", json=body).status_code))
                for path, body in [  # Python refuses integers of over 4,300 digits
                    (
                        "/invocations",
                        b'{"dataframe_records": [{"loan_amnt": ' + b"9" * 5000 + b"}]}",
                    ),
                    ("/v1/outcomes", b'{"loan_id": "L1", "defaulted": ' + b"1" * 5000 + b"}"),
                ]:
                    reply = c.post(path, content=body, headers=json_type)
                    statuses.append((f"{path}: 5,000 digits", reply.status_code))
                statuses.append(("NUL id", c.get("/v1/predictions/ab%00cd").status_code))
                for page in [  # the officer pages take the same values (they answered 500)
                    "/predictions?decision=%00",
                    "/predictions?search=a%00b",
                    "/predictions?before=ab%00cd",
                    "/predictions/ab%00cd",
                    "/monitoring/ab%00cd/report",
                ]:
                    statuses.append((page, c.get(page).status_code))
                statuses.append(("long id", c.get("/v1/predictions/" + "a" * 300).status_code))
                for outcome in [
                    {"loan_id": "L1", "defaulted": True, "observed_at": "2021-02-30"},
                    {"loan_id": "L1", "defaulted": "maybe"},
                    {"loan_id": "L\x001", "defaulted": True},
                    {"prediction_id": "x" * 100, "defaulted": True},
                ]:
                    statuses.append(("outcome", c.post("/v1/outcomes", json=outcome).status_code))
                time.sleep(0.3)
            time.sleep(1.0)
        answered = set(traffic.answered)
        stored = _wait_until_stored(postgres_url, answered)
        metrics = httpx.get(f"{service.url}/metrics").text
        ready = httpx.get(f"{service.url}/ready")
    finally:
        service.stop()
    wrong = [(what, code) for what, code in statuses if not 400 <= code < 500]
    assert not wrong, wrong
    assert not traffic.refused, traffic.refused[:3]
    assert len(answered) > 100
    assert answered <= stored.keys() and all(n == 1 for n in stored.values())
    assert ready.status_code == 200, ready.text
    assert "loanrisk_prediction_log_writer_up 1.0" in metrics
    assert "loanrisk_prediction_log_dead_letter_rows_total 0.0" in metrics
    timed = r"^loanrisk_prediction_log_fsync_duration_seconds_count (\S+)$"
    commits = re.search(timed, metrics, re.M)
    assert commits is not None and float(commits.group(1)) >= 1  # group commits timed
    assert 'status="500"' not in metrics
