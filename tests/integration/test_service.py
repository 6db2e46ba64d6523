"""The scoring service over real HTTP on loopback: every endpoint, bad input, auth, swaps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from loanrisk import registry
from loanrisk.pipeline import run_train
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


def test_predict_one_and_many(service):
    one = httpx.post(
        f"{service.url}/v1/predict", json=APPLICATION | {"client_id": "c-1"}, headers=auth()
    )
    assert one.status_code == 200, one.text
    answer = one.json()["predictions"][0]
    assert 0 < answer["pd"] < 1 and answer["decision"] in {"approve", "decline"}
    assert answer["grade"] in "ABCDEFG" and answer["client_id"] == "c-1"
    assert answer["model"] == {"name": "loan_default_model", "version": "1", "alias": "production"}
    assert all(isinstance(r, str) for r in answer["reasons"]) and answer["reasons"]
    many = httpx.post(
        f"{service.url}/v1/predict", json=[APPLICATION] * 20, headers={"X-API-Key": KEY}
    )
    assert many.status_code == 200 and len(many.json()["predictions"]) == 20
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
    assert bad.status_code == 400 and "loan_amnt" in bad.text


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
        second = run_train(settings).version
        registry.set_alias(settings, "production", second)
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
