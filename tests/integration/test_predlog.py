"""The prediction log on real warehouses: durable before answered, poison isolated,
orphaned segments replayed exactly once, a writer that survives errors."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from loanrisk.serving.predlog import (
    PredictionLog,
    UnstorableRow,
    decode_line,
    encode_rows,
    log_folder,
)
from loanrisk.warehouse.engine import Warehouse

pytestmark = pytest.mark.integration


def _row(prediction_id: str, **changes: object) -> dict[str, object]:
    return {
        "prediction_id": prediction_id,
        "request_id": "r-1",
        "client_id": None,
        "loan_id": "L1",
        "model_name": "m",
        "model_version": "1",
        "run_id": None,
        "alias": "production",
        "input": json.dumps({"loan_amnt": 1000}),
        "features": "{}",
        "pd": 0.1,
        "default_class": 0,
        "decision": "approve",
        "grade": "B",
        "reasons": "[]",
        "latency_ms": 1.0,
        "source": "api",
        "scoring_run_id": None,
        "created_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        **changes,
    }


def _ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.text("SELECT prediction_id FROM predictions")))


def _wait(condition, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _log(settings, **options) -> PredictionLog:  # type: ignore[no-untyped-def]
    warehouse = Warehouse.open(settings)
    folder = log_folder(settings.spool_dir, settings.warehouse_url)
    return PredictionLog(warehouse.engine, folder, flush_seconds=0.05, retry_seconds=0.2, **options)


def test_a_recorded_row_is_on_disk_before_record_returns(warehouse_settings):
    log = _log(warehouse_settings)
    log.start()
    try:
        asyncio.run(log.record([_row("a"), _row("b")]))
        # Durable at once: the segment holds both lines whatever the database did since.
        lines = b"".join(p.read_bytes() for p in log.folder.glob("*.wal")).splitlines()
        on_disk = {decode_line(x)["prediction_id"] for x in lines if not x.startswith(b"#")}
        assert on_disk == {"a", "b"}
        _wait(lambda: _ids(log.engine) == ["a", "b"])
        assert log.recent("a")["loan_id"] == "L1"
    finally:
        log.stop()
    assert not list(log.folder.glob("*.wal"))  # all written: nothing left to replay


def _crowd(log: PredictionLog, name: str, size: int) -> int:
    """Fsyncs for ``size`` requests that arrive together and score in turn (GIL free
    while they score, as in LightGBM), as one event loop serves them."""

    async def crowd() -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(0)  # every request arrives...
            time.sleep(0.003)  # ...and scores in turn
            await log.record([_row(f"{name}-{i}")])

        await asyncio.gather(*(one(i) for i in range(size)))

    before = log.metrics.fsyncs
    asyncio.run(crowd())
    return log.metrics.fsyncs - before


def test_a_lone_client_never_waits_for_the_commit_delay_and_a_crowd_shares_fsyncs(
    sqlite_settings,
):
    """Group commit: the requests one pass of the event loop served share one fsync, and
    under load an fsync waits (at most commit_delay) for as many requests as the last one
    covered; one client at a time waits for nobody. The delay here is 0.5 s, so a lone
    client made to wait would take 10 s."""
    commits: list[float] = []
    log = _log(sqlite_settings, commit_delay=0.5, on_fsync=commits.append)
    log.start()
    try:
        started = time.monotonic()
        for i in range(20):
            asyncio.run(log.record([_row(f"lone-{i}")]))
        lone_seconds = time.monotonic() - started
        assert log.metrics.fsyncs == 20
        # Each group commit's time is reported (the service's fsync histogram).
        assert len(commits) == 20 and sum(commits) == pytest.approx(log.metrics.fsync_seconds)
        crowd_fsyncs = _crowd(log, "crowd", 40)
    finally:
        log.stop()
    assert lone_seconds < 5.0, f"20 lone requests took {lone_seconds:.1f} s"
    assert crowd_fsyncs <= 4, f"40 concurrent requests took {crowd_fsyncs} fsyncs"


def test_requests_served_in_one_pass_of_the_loop_share_an_fsync_without_a_delay(
    sqlite_settings,
):
    """With no commit delay at all, the rows are handed to the flusher only once the loop
    has served every request that was ready with them: 40 requests, one or two fsyncs,
    not one each (a flusher woken by the first row would take it alone while the others
    score)."""
    log = _log(sqlite_settings, commit_delay=0.0)
    log.start()
    try:
        fsyncs = _crowd(log, "pass", 40)
    finally:
        log.stop()
    assert fsyncs <= 2, f"40 requests served in one pass took {fsyncs} fsyncs"


def test_rows_the_database_refuses_are_dead_lettered_and_the_rest_written(warehouse_settings):
    """A value the database refuses (too long for its varchar column) must not block
    anybody's row: it goes to the dead-letter file with the reason, and rows before and
    after it are written."""
    log = _log(warehouse_settings)
    log.start()
    refused = [
        _row("bad-1", request_id="x" * 65),
        _row("bad-2", decision="d" * 40),
        _row("bad-3", grade="tab\there"),
    ]
    try:
        asyncio.run(log.record([_row("ok-1"), *refused, _row("ok-2")]))
        asyncio.run(log.record([_row("ok-3")]))
        if warehouse_settings.warehouse_url.startswith("postgresql"):
            _wait(lambda: log.metrics.dead_lettered == len(refused))
            _wait(lambda: _ids(log.engine) == ["ok-1", "ok-2", "ok-3"])
            entries = [json.loads(x) for x in log.dead_letter.read_text().splitlines()]
            assert sorted(e["row"]["prediction_id"] for e in entries) == sorted(
                r["prediction_id"] for r in refused
            )
            assert all(e["reason"] for e in entries)
            assert log.database_ok and not log.problems()
        else:  # SQLite stores any text: nothing to refuse, nothing lost
            _wait(lambda: len(_ids(log.engine)) == 3 + len(refused))
    finally:
        log.stop()


def test_a_row_that_cannot_be_encoded_is_refused_before_anything_is_written(sqlite_settings):
    with pytest.raises(UnstorableRow, match="client_id: a lone UTF-16 surrogate"):
        encode_rows([_row("a", client_id="\ud800")])
    with pytest.raises(UnstorableRow, match="client_id: text contains a NUL"):
        encode_rows([_row("a", client_id="nul\x00here")])
    # Everything else survives the round trip exactly.
    odd = _row("a", client_id="tab\tnew\nline\rback\\slash \\N é", run_id="\\N")
    assert decode_line(encode_rows([odd])[0]) == odd
    with pytest.raises(UnstorableRow, match="pd"):
        encode_rows([_row("a", pd=float("nan"))])


def test_segments_of_a_dead_process_are_replayed_once_and_a_torn_tail_ignored(
    warehouse_settings,
):
    folder = log_folder(warehouse_settings.spool_dir, warehouse_settings.warehouse_url)
    folder.mkdir(parents=True)
    lines = encode_rows([_row("x1"), _row("x2"), _row("x3")])
    # A process died: its segment is unlocked; the last line was never completed.
    (folder / "999-1.wal").write_bytes(b"".join(lines) + lines[0][:20])
    (folder / "999-2.wal").write_bytes(lines[1])  # the same row twice: stored once
    log = _log(warehouse_settings)
    log.start()
    try:
        _wait(lambda: not list(folder.glob("999-*.wal")))
        assert _ids(log.engine) == ["x1", "x2", "x3"]
        assert log.metrics.dead_lettered == 0
    finally:
        log.stop()


def test_the_writer_survives_an_unexpected_error(sqlite_settings):
    log = _log(sqlite_settings)
    calls = {"n": 0}
    original = log._replay_orphans

    def failing_once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("something nobody expected")
        original()

    log._replay_orphans = failing_once  # type: ignore[method-assign]
    log.start()
    try:
        asyncio.run(log.record([_row("s1")]))
        _wait(lambda: _ids(log.engine) == ["s1"])
        _wait(lambda: calls["n"] >= 2)  # and it keeps scanning
        assert not log.problems()
    finally:
        log.stop()


def test_the_recent_cache_is_bounded_in_bytes(sqlite_settings):
    log = _log(sqlite_settings, recent_bytes=100_000)
    log.start()
    try:
        for i in range(40):
            asyncio.run(log.record([_row(f"big-{i}", input=json.dumps({"t": "x" * 10_000}))]))
        assert log._recent.size <= 100_000
        assert log.recent("big-39") is not None and log.recent("big-0") is None
    finally:
        log.stop()
