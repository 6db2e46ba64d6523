"""The scoring service over real HTTP on loopback: every endpoint, bad input, auth, swaps."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from loanrisk.registry import Registry
from tests import steps
from tests.support import APPLICATION, KEY, READ_ONLY, Service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(served_home) -> Iterator[Service]:
    settings, _ = served_home
    running = Service(settings.home)
    yield running
    running.stop()


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_operations_endpoints_need_no_key(service):
    assert httpx.get(f"{service.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert httpx.get(f"{service.url}/version").json()["model_version"] == "1"
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'loanrisk_model_info{alias="production",name="loan_default_model"' in metrics
    spec = httpx.get(f"{service.url}/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]
    assert "Score one application" in body["summary"]
    application = spec["components"]["schemas"]["Application"]
    assert "annual_inc" in application["required"]
    assert application["properties"]["fico_range_low"]["description"].startswith("FICO score")


def test_serve_says_when_the_model_is_loaded_and_it_answers(service):
    service.wait_ready()
    log = Path(service.log.name).read_text()
    assert "loading the model first" in log
    assert "ready (pid" in log and "loan_default_model version 1 (@production) loaded in" in log


def test_predict_one_and_many(service):
    one = httpx.post(
        f"{service.url}/v1/predict", json=APPLICATION | {"client_id": "c-1"}, headers=auth()
    )
    assert one.status_code == 200, one.text
    answer = one.json()["predictions"][0]
    assert 0 < answer["pd"] < 1 and answer["decision"] in {"approve", "decline"}
    assert answer["grade"] in "ABCDEFG" and answer["client_id"] == "c-1"
    assert answer["model"] == {"name": "loan_default_model", "version": "1", "alias": "production"}
    assert answer["reasons"] and all(
        r["reason"] and r["code"] and r["contribution"] > 0 for r in answer["reasons"]
    )
    before_ms = time.time_ns() // 1_000_000
    many = httpx.post(
        f"{service.url}/v1/predict", json=[APPLICATION] * 20, headers={"X-API-Key": KEY}
    )
    after_ms = time.time_ns() // 1_000_000
    assert many.status_code == 200 and len(many.json()["predictions"]) == 20
    # Ids are time-ordered (the index takes each new row at its right edge) and unique.
    ids = [p["prediction_id"] for p in many.json()["predictions"]]
    assert len(set(ids)) == 20 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(before_ms <= int(i[:12], 16) <= after_ms for i in ids), (before_ms, ids)
    raw_strings = {k: str(v) for k, v in APPLICATION.items()}
    same = httpx.post(f"{service.url}/v1/predict", json=raw_strings, headers=auth()).json()
    assert same["predictions"][0]["pd"] == pytest.approx(answer["pd"], abs=1e-12)


def test_auth_failures(service):
    url = f"{service.url}/v1/predict"
    missing = httpx.post(url, json=APPLICATION)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert httpx.post(url, json=APPLICATION, headers=auth("wrong")).status_code == 401
    assert (
        httpx.post(url, json=APPLICATION, headers={"Authorization": "Basic abc"}).status_code == 401
    )
    forbidden = httpx.post(url, json=APPLICATION, headers=auth(READ_ONLY))
    assert forbidden.status_code == 403 and "predict" in forbidden.json()["detail"]
    assert httpx.get(f"{service.url}/v1/model", headers=auth(READ_ONLY)).status_code == 200
    assert httpx.get(f"{service.url}/v1/model").status_code == 401


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"loan_amnt": "lots"}, "loan_amnt", "is not a number"),
        ({"loan_amnt": 0}, "loan_amnt", "below the minimum 1"),
        ({"fico_range_low": 990}, "fico_range_low", "above the maximum 850"),
        ({"term": "three years"}, "term", "is not a term in months"),
        ({"home_ownership": "CASTLE"}, "home_ownership", "is not one of RENT"),
        ({"annual_inc": None}, "annual_inc", "required value is missing"),
        ({"favourite_colour": "blue"}, "favourite_colour", "Extra inputs are not permitted"),
        ({"loan_amnt": [1, 2]}, "loan_amnt", "Input should be"),
    ],
)
def test_bad_fields_are_named(service, change, field, message):
    body = {**APPLICATION, **change}
    if change.get("annual_inc", 1) is None:
        del body["annual_inc"]
        message = "Field required"
    response = httpx.post(f"{service.url}/v1/predict", json=body, headers=auth())
    assert response.status_code == 422
    problems = [e for e in response.json()["detail"] if field in e["loc"]]
    assert problems and any(message in p["msg"] for p in problems), response.text


def test_limits(service):
    too_many = httpx.post(f"{service.url}/v1/predict", json=[APPLICATION] * 51, headers=auth())
    assert too_many.status_code == 422 and "between 1 and 50" in too_many.text
    huge = httpx.post(
        f"{service.url}/v1/predict",
        headers=auth() | {"content-type": "application/json"},
        content=b"[" + b" " * 300_000 + b"]",
    )
    assert huge.status_code == 413
    assert httpx.post(f"{service.url}/v1/predict", json=[], headers=auth()).status_code == 422


def test_mlflow_invocations_protocol(service):
    url = f"{service.url}/invocations"
    columns = list(APPLICATION)
    bodies = [
        {"dataframe_split": {"columns": columns, "data": [list(APPLICATION.values())] * 2}},
        {"dataframe_records": [APPLICATION, APPLICATION]},
        {"instances": [APPLICATION, APPLICATION]},
        {"inputs": {c: [v, v] for c, v in APPLICATION.items()}},
    ]
    expected = None
    for body in bodies:
        response = httpx.post(url, json=body, headers=auth())
        assert response.status_code == 200, response.text
        got = [p["pd"] for p in response.json()["predictions"]]
        assert len(got) == 2
        expected = expected or got
        assert got == pytest.approx(expected, abs=1e-12)
    csv = ",".join(columns) + "\n" + ",".join(f'"{v}"' for v in APPLICATION.values()) + "\n"
    response = httpx.post(url, content=csv, headers=auth() | {"content-type": "text/csv"})
    assert response.status_code == 200 and response.json()["predictions"][0]["pd"] == pytest.approx(
        expected[0], abs=1e-12
    )
    assert (
        httpx.post(
            url, content=b"{nope", headers=auth() | {"content-type": "application/json"}
        ).status_code
        == 400
    )
    bad = httpx.post(
        url,
        json={"dataframe_records": [{"loan_amnt": "x", "term": "36", "annual_inc": 1}]},
        headers=auth(),
    )
    assert bad.status_code == 200  # a refused row is answered on its own, as MLflow does
    (refused,) = bad.json()["predictions"]
    assert "loan_amnt" in refused["error"] and refused["pd"] is None
    assert refused["prediction_id"] is None


def test_logged_prediction_and_outcomes(service):
    answer = httpx.post(
        f"{service.url}/v1/predict", json=APPLICATION | {"client_id": "c-9"}, headers=auth()
    ).json()["predictions"][0]
    logged = httpx.get(
        f"{service.url}/v1/predictions/{answer['prediction_id']}", headers=auth(READ_ONLY)
    )
    assert logged.status_code == 200
    row = logged.json()
    assert row["pd"] == answer["pd"] and row["model_version"] == "1"
    assert row["input"]["loan_amnt"] == 12000 and "fico_mid" in row["features"]
    assert row["source"] == "api" and row["reasons"] == answer["reasons"]
    assert httpx.get(f"{service.url}/v1/predictions/nope", headers=auth()).status_code == 404
    time.sleep(0.6)  # let the writer flush, then it must come from the database too
    outcome = httpx.post(
        f"{service.url}/v1/outcomes",
        headers=auth(),
        json={
            "prediction_id": answer["prediction_id"],
            "defaulted": True,
            "observed_at": "2021-01-31",
        },
    )
    assert outcome.status_code == 201 and outcome.json()["matched_predictions"] == 1
    by_client = httpx.post(
        f"{service.url}/v1/outcomes", headers=auth(), json={"client_id": "c-9", "defaulted": False}
    )
    assert by_client.status_code == 201 and by_client.json()["matched_predictions"] == 1
    assert (
        httpx.post(
            f"{service.url}/v1/outcomes",
            headers=auth(),
            json={"prediction_id": "unknown", "defaulted": True},
        ).status_code
        == 404
    )
    assert (
        httpx.post(
            f"{service.url}/v1/outcomes", headers=auth(), json={"defaulted": True}
        ).status_code
        == 422
    )
    assert (
        httpx.post(
            f"{service.url}/v1/outcomes",
            headers=auth(READ_ONLY),
            json={"client_id": "c-9", "defaulted": True},
        ).status_code
        == 403
    )


def test_alias_move_during_traffic_and_complete_log(served_home, tmp_path):
    settings, _ = served_home
    service = Service(settings.home)
    failures: list[str] = []
    versions: list[str] = []
    answered = 0
    counting = threading.Lock()  # `answered += 1` from several threads can lose updates
    stop = threading.Event()

    def traffic() -> None:
        nonlocal answered
        with httpx.Client(base_url=service.url, headers=auth(), timeout=10) as client:
            while not stop.is_set():
                response = client.post("/v1/predict", json=APPLICATION)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                versions.append(response.json()["predictions"][0]["model"]["version"])
                with counting:
                    answered += 1

    engine = sa.create_engine(settings.warehouse_url)
    time.sleep(0.5)  # rows of earlier tests are flushed by now
    before = _count(engine)
    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        second = steps.train(settings).version
        Registry(settings).set_alias("production", second)
        deadline = time.monotonic() + 60
        while second not in versions[-20:] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        service.stop()
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == second
    seen = list(dict.fromkeys(versions))
    assert seen == ["1", second]  # never back and forth: the swap is atomic
    assert _count(engine) - before == answered  # flushed on shutdown: one row per answer
    engine.dispose()


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())


def test_not_ready_without_a_model(tmp_path):
    home = tmp_path / "empty"
    service = Service(home)
    try:
        ready = httpx.get(f"{service.url}/ready")
        assert ready.status_code == 503
        assert "no version of loan_default_model has alias @production" in ready.text
        predict = httpx.post(f"{service.url}/v1/predict", json=APPLICATION, headers=auth())
        assert predict.status_code == 503
    finally:
        service.stop()


def _scrape(url: str) -> dict[str, float]:
    """Sample name (with labels) -> value, from a fresh connection (any worker answers)."""
    text = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_of_several_workers_are_reported_together(served_home, tmp_path):
    settings, _ = served_home
    folder = tmp_path / "metrics"
    folder.mkdir()
    service = Service(
        settings.home, LOANRISK_SERVING__WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(folder)
    )
    try:

        def traffic() -> None:
            for _ in range(10):
                reply = httpx.post(
                    f"{service.url}/v1/predict",
                    json=APPLICATION,
                    headers=auth() | {"Connection": "close"},
                    timeout=10,
                )
                assert reply.status_code == 200

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.5)  # every worker refreshes its gauges each second
        for _ in range(12):  # both workers answer some of these scrapes
            samples = _scrape(service.url)
            predictions = sum(
                v for k, v in samples.items() if k.startswith("loanrisk_predictions_total{")
            )
            requests = sum(
                v
                for k, v in samples.items()
                if k.startswith("loanrisk_http_requests_total{")
                and 'route="/v1/predict"' in k
                and 'status="200"' in k
            )
            assert predictions == 40 and requests == 40, samples
            served = [
                k for k, v in samples.items() if k.startswith("loanrisk_model_info{") and v == 1
            ]
            assert len(served) == 1
        # Both worker processes wrote metric files (one per process and kind).
        assert len({p.stem.rsplit("_", 1)[-1] for p in folder.glob("counter_*.db")}) == 2
    finally:
        service.stop()


def _raw(service: Service, data: bytes, *, wait: float = 0.0, read: bool = True) -> bytes:
    """Send raw bytes on a fresh connection; optionally wait, then read the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(data)
        time.sleep(wait)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"connection: close" in b"".join(chunks):
                break
        return b"".join(chunks)


def _status_counts(service: Service, code: str) -> float:
    samples = _scrape(service.url)
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("loanrisk_http_requests_total{") and f'status="{code}"' in k
    )


def test_a_client_that_leaves_mid_body_is_not_a_server_error(service):
    before = _status_counts(service, "500")
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000\r\n\r\nloan_amnt=1"
    )
    for _ in range(5):
        _raw(service, head, read=False)  # and hang up
    head = head.replace(b"POST / ", b"POST /v1/predict ").replace(
        b"Host: x", f"Host: x\r\nX-API-Key: {KEY}".encode()
    )
    for _ in range(5):
        _raw(service, head, read=False)
    time.sleep(1.0)
    assert _status_counts(service, "500") == before
    assert _status_counts(service, "499") >= 10


def test_a_body_that_never_finishes_gets_408(served_home):
    settings, _ = served_home
    slow = Service(settings.home, LOANRISK_SERVING__BODY_TIMEOUT_SECONDS="1")
    try:
        answer = _raw(
            slow,
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{".encode(),
            wait=2.0,
        )
    finally:
        slow.stop()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_security_headers_on_every_answer(service):
    for method, path, key in [
        ("GET", "/health", None),
        ("GET", "/", None),
        ("GET", "/v1/model", KEY),
        ("POST", "/v1/predict", KEY),
        ("GET", "/no-such-page", None),
    ]:
        reply = httpx.request(
            method,
            f"{service.url}{path}",
            json=APPLICATION,
            headers={"X-API-Key": key} if key else {},
        )
        headers = reply.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    docs = httpx.get(f"{service.url}/docs")
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert httpx.get(f"{service.url}/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "script-src 'self'" in docs.headers["content-security-policy"]


def test_the_officer_page_cookie_is_secure_away_from_localhost(served_home):
    from fastapi.testclient import TestClient

    from loanrisk.config import ApiKey, get_settings
    from loanrisk.serving.app import create_app
    from loanrisk.serving.security import hash_key

    settings, _ = served_home
    keyed = get_settings(home=settings.home)
    keyed.serving.api_keys = [ApiKey(name="o", sha256=hash_key(KEY), scopes=["predict"])]
    form = {"api_key": KEY, **{k: str(v) for k, v in APPLICATION.items()}}
    with TestClient(create_app(keyed)) as client:
        reply = client.post("https://loans.example.com/", data=form)
        assert reply.status_code == 200
        cookie = reply.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "strict-transport-security" in reply.headers
        cookie = client.post("http://127.0.0.1/", data=form).headers["set-cookie"].lower()
        assert "secure" not in cookie


def test_text_is_bounded_and_the_worker_memory_stays_flat(service):
    """A free-text field over the limit is refused; many large-but-allowed requests do
    not grow the worker (the recent cache is bounded in bytes)."""
    long = httpx.post(
        f"{service.url}/v1/predict", json=APPLICATION | {"emp_title": "x" * 201}, headers=auth()
    )
    assert long.status_code == 422 and "longer than 200" in long.text
    pid = service.workers()[0]

    def rss() -> int:
        with open(f"/proc/{pid}/status") as handle:
            line = next(x for x in handle if x.startswith("VmRSS"))
        return int(line.split()[1]) * 1024

    body = [APPLICATION | {"emp_title": "y" * 200, "title": "z" * 200}] * 50
    with httpx.Client(base_url=service.url, headers=auth(), timeout=30) as client:
        for _ in range(50):
            assert client.post("/v1/predict", json=body).status_code == 200
        start = rss()
        for _ in range(300):
            assert client.post("/v1/predict", json=body).status_code == 200
    grown = rss() - start
    assert grown < 40 << 20, f"worker grew by {grown / 2**20:.0f} MB over 15,000 answers"


@pytest.mark.slow
def test_two_workers_start_and_stay_up_on_a_busy_machine(served_home):
    """Six busy processes on two cores: both workers load the model and become ready, and
    none is killed by the supervisor's health check while it loads (uvicorn's 5 s default
    replaced such workers over and over)."""
    import subprocess
    import sys

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(6)]
    try:
        settings, _ = served_home
        service = Service(settings.home, LOANRISK_SERVING__WORKERS="2", LOANRISK_LOG_LEVEL="INFO")
        try:
            service.wait_ready(seconds=180)
            first = sorted(service.workers())
            time.sleep(8)
            assert sorted(service.workers()) == first, "a worker was replaced"
        finally:
            service.stop()
    finally:
        for hog in hogs:
            hog.kill()
    log = (settings.home.parent / f"serve-{service.port}.log").read_text()
    assert log.count("serving loan_default_model version") == 2, log[-2000:]
    assert "died" not in log, log[-2000:]


def test_the_fast_lane_answers_exactly_as_the_route(service, served_home):
    """`loanrisk serve` answers plainly valid requests in the fast lane; the FastAPI route
    (create_app alone has no fast lane) must give the same answer, field for field."""
    from fastapi.testclient import TestClient

    from loanrisk.config import ApiKey, get_settings
    from loanrisk.serving.app import create_app
    from loanrisk.serving.security import hash_key

    settings, _ = served_home
    keyed = get_settings(home=settings.home)
    keyed.serving.api_keys = [ApiKey(name="o", sha256=hash_key(KEY), scopes=["predict"])]
    body = [APPLICATION | {"client_id": "same"}, APPLICATION | {"dti": 30, "mort_acc": None}]
    headers = auth() | {"X-Request-Id": "req-1"}
    fast = httpx.post(f"{service.url}/v1/predict", json=body, headers=headers)
    with TestClient(create_app(keyed)) as client:
        route = client.post("/v1/predict", json=body, headers=headers)
    assert fast.status_code == route.status_code == 200
    assert fast.headers["content-security-policy"] == route.headers["content-security-policy"]

    def comparable(reply: httpx.Response) -> dict:
        answer = reply.json()
        for p in answer["predictions"]:
            p.pop("prediction_id")
        return answer

    assert comparable(fast) == comparable(route)


def test_predictions_page_pages_filters_and_links_each_prediction(service):
    answers = httpx.post(
        f"{service.url}/v1/predict",
        json=[APPLICATION | {"client_id": f"page-{i}"} for i in range(40)],
        headers=auth(),
    ).json()["predictions"]
    httpx.post(f"{service.url}/v1/predict", json=[APPLICATION] * 40, headers=auth())
    deadline = time.monotonic() + 30  # the log reaches the database a moment after answers
    while True:
        one = httpx.get(f"{service.url}/predictions", params={"search": "page-39"}, headers=auth())
        if "page-39" in one.text.split('id="predictions"')[1] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    first = httpx.get(f"{service.url}/predictions", params={"source": "api"}, headers=auth())
    assert first.status_code == 200
    ids = re.findall(r'href="/predictions/([0-9a-f]+)"', first.text)
    assert len(ids) == 50 and 'id="older"' in first.text
    older = re.search(r'href="/predictions\?([^"]+)" id="older"', first.text)
    assert older is not None
    second = httpx.get(f"{service.url}/predictions?{html.unescape(older.group(1))}", headers=auth())
    more = re.findall(r'href="/predictions/([0-9a-f]+)"', second.text)
    assert more and not set(more) & set(ids)  # the next page, no row twice
    one = httpx.get(f"{service.url}/predictions", params={"search": "page-7"}, headers=auth())
    (only,) = re.findall(r'href="/predictions/([0-9a-f]+)"', one.text)
    assert only == answers[7]["prediction_id"]
    declined = httpx.get(
        f"{service.url}/predictions", params={"decision": "decline"}, headers=auth()
    )
    assert 'class="approve"' not in declined.text.split('id="predictions"')[1]
    detail = httpx.get(f"{service.url}/predictions/{only}", headers=auth())
    assert detail.status_code == 200 and 'id="input"' in detail.text and "page-7" in detail.text
    assert httpx.get(f"{service.url}/predictions/nope", headers=auth()).status_code == 404
