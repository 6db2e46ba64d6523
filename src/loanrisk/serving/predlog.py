"""The prediction log: every answered prediction becomes exactly one ``predictions`` row.

Writes are batched on a background thread, off the request path. Requests append to a
deque (no lock, no wake-up); the writer wakes every ``flush_seconds``, or at once when a
full batch is waiting, so it rarely takes the interpreter from the request thread. While
the database is unreachable, rows go to an append-only spool file (fsynced JSON lines)
and are replayed when it is back; replays ignore prediction ids already present, so they
never duplicate. Live batches are plain appends (binary COPY on PostgreSQL). ``stop()``
drains the queue before returning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from loanrisk.warehouse.bulk import insert_new_rows, write_arrow
from loanrisk.warehouse.schema import predictions

log = logging.getLogger(__name__)


class LogMetrics:
    """Counters the writer updates (the service exports them on /metrics)."""

    def __init__(self) -> None:
        self.written = 0
        self.spooled = 0
        self.failed_writes = 0
        self.replayed = 0


class PredictionLog:
    """Batched, durable writer of prediction rows."""

    def __init__(
        self,
        engine: sa.Engine,
        spool_dir: Path,
        *,
        batch_rows: int = 500,
        flush_seconds: float = 0.2,
        retry_seconds: float = 2.0,
        recent: int = 10_000,
    ) -> None:
        self.engine = engine
        self.spool_dir = spool_dir
        self.spool = spool_dir / "predictions.jsonl"
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.metrics = LogMetrics()
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent_size = recent
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._database_ok = True
        self._next_retry = 0.0

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows for writing; never blocks on the database."""
        with self._lock:
            for row in rows:
                self._recent[row["prediction_id"]] = row
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        self._pending.extend(rows)
        if len(self._pending) >= self.batch_rows:
            self._wake.set()

    def recent(self, prediction_id: str) -> dict[str, Any] | None:
        """A prediction answered lately, whether or not it is in the database yet."""
        with self._lock:
            return self._recent.get(prediction_id)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def spooled_rows(self) -> int:
        total = 0
        for path in self._spool_files():
            with path.open("rb") as handle:
                total += sum(1 for _ in handle)
        return total

    @property
    def database_ok(self) -> bool:
        return self._database_ok

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued (to the database or the spool), then stop."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        self._replay()
        while True:
            stopping = self._stopping
            if not stopping:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            if not self._database_ok and time.monotonic() >= self._next_retry:
                self._replay()
            while self._pending:
                batch: list[dict[str, Any]] = []
                while self._pending and len(batch) < self.batch_rows:
                    batch.append(self._pending.popleft())
                self._write(batch)
            if stopping:
                break
        if self._database_ok:
            self._replay()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if self._database_ok:
            try:
                self._insert(batch)
                self.metrics.written += len(batch)
                return
            except SQLAlchemyError as exc:
                self.metrics.failed_writes += 1
                self._database_ok = False
                self._next_retry = time.monotonic() + self.retry_seconds
                log.warning(
                    "prediction log: database unreachable, spooling (%s)",
                    type(exc.orig if hasattr(exc, "orig") else exc).__name__,
                )
        self._append_spool(batch)

    def _insert(self, rows: list[dict[str, Any]], *, replay: bool = False) -> None:
        """Write rows once each. Ids are random, so a live batch is appended as it is (one
        COPY); a replayed spool, or a batch whose ids partly went in before (a commit
        whose reply was lost), goes through ``insert_new_rows``, which skips known ids."""
        if not replay and self.engine.dialect.name == "postgresql":
            try:
                with self.engine.begin() as conn:
                    write_arrow(conn, predictions, pa.Table.from_pylist(rows))
                return
            except sa.exc.IntegrityError:
                log.info("prediction log: some ids already written; skipping those")
        with self.engine.begin() as conn:
            insert_new_rows(conn, predictions, rows, key="prediction_id")

    def _append_spool(self, batch: list[dict[str, Any]]) -> None:
        with self.spool.open("a", encoding="utf-8") as handle:
            for row in batch:
                handle.write(json.dumps(row, default=_json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.metrics.spooled += len(batch)

    def _spool_files(self) -> list[Path]:
        return sorted(
            p
            for p in (self.spool_dir.glob("predictions*.jsonl"))
            if p.is_file() and p.stat().st_size > 0
        )

    def _replay(self) -> None:
        """Insert spooled rows (idempotent), then delete the spool files that went in."""
        self._next_retry = time.monotonic() + self.retry_seconds
        files = self._spool_files()
        try:
            if not files:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                self._database_ok = True
                return
            for path in files:
                replaying = (
                    path.with_name(f"predictions-replay-{time.time_ns()}.jsonl")
                    if path == self.spool
                    else path
                )
                if replaying != path:
                    path.replace(replaying)
                rows = [
                    _from_json(line)
                    for line in replaying.read_text("utf-8").splitlines()
                    if line.strip()
                ]
                for start in range(0, len(rows), self.batch_rows):
                    self._insert(rows[start : start + self.batch_rows], replay=True)
                replaying.unlink()
                self.metrics.replayed += len(rows)
                self.metrics.written += len(rows)
            self._database_ok = True
            log.info("prediction log: database back, spool replayed")
        except (SQLAlchemyError, OSError) as exc:
            self._database_ok = False
            log.warning("prediction log: replay postponed (%s)", type(exc).__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(f"cannot spool {type(value).__name__}")


def _from_json(line: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(line)
    for key, value in row.items():
        if isinstance(value, dict) and "__datetime__" in value:
            row[key] = datetime.fromisoformat(value["__datetime__"])
    return row
