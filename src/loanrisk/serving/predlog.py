"""The prediction log: every answered prediction becomes exactly one ``predictions`` row.

Durable before answered. A request's rows are encoded as lines of PostgreSQL's COPY text
format (which also proves they can be stored: no NUL, no lone surrogate, no NaN) and
handed to one flusher thread, which appends them to this process's write-ahead segment
and calls ``fdatasync``; the request is answered only after that. Group commit: a
request's rows are released to the flusher only once its event loop has run every step
that was ready with it (a ``call_soon`` callback), so the requests one pass of the loop
served share an fsync, and so do those that arrive while an fsync runs. Under load the
flusher also waits, at most ``commit_delay``, for as many requests as the last fsync
covered. So one fsync covers many requests when the service is busy, and a lone client
waits for nobody.

A writer thread tails the segments into ``predictions`` in batches and deletes a segment
once all its rows are in. The segment bytes *are* the COPY stream: on PostgreSQL a batch
is one ``COPY ... FROM STDIN`` of a block of lines, with no Python work per row (on
SQLite the lines are parsed back into rows). While the database is unreachable the rows
wait on disk and memory stays flat; nothing is held only in memory at any time.

Recovery. Each process holds an exclusive ``flock`` on its own segments. A segment whose
lock can be taken belongs to a process that is gone (a clean stop with the database down,
or kill -9): any process of the service replays it at start and on every retry interval,
with ``ON CONFLICT (prediction_id) DO NOTHING``, so a row is never stored twice.

Poison. A batch the database refuses while it still answers ``SELECT 1`` is not an
outage: it is split until the refused rows are isolated; those go to the dead-letter
file with the database's reason and are counted, and the rest are written. The writer
survives any exception; ``problems()`` reports a dead or stuck writer to ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import numbers
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loanrisk.errors import LoanriskError
from loanrisk.warehouse.bulk import copy_text, insert_new_rows
from loanrisk.warehouse.schema import predictions

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".wal"
DEAD_LETTER = "dead-letter.jsonl"


class UnstorableRow(ValueError):
    """A prediction row that cannot be written as it is (the request is refused)."""


class LogUnavailable(LoanriskError):
    """The write-ahead log could not be written (disk full, read-only): do not answer."""


@dataclass
class LogMetrics:
    """Counters the log updates (the service exports them on /metrics)."""

    written: int = 0  # rows now in the database
    spooled: int = 0  # rows answered while the database was unreachable
    failed_writes: int = 0  # database writes that met an outage
    dead_lettered: int = 0  # rows the database refused, kept in the dead-letter file
    fsyncs: int = 0
    fsync_seconds: float = 0.0


def log_folder(spool_dir: Path, warehouse_url: str) -> Path:
    """One folder per warehouse, so a segment is never replayed into another database."""
    digest = hashlib.sha256(warehouse_url.encode()).hexdigest()[:12]
    return spool_dir / f"predictions-{digest}"


# The fields of a log line, in order; each segment starts with a header line naming them,
# so a segment written before a schema change is still read by name.
COLUMNS = [c.name for c in predictions.columns]
_KINDS = {
    c.name: (
        "float"
        if isinstance(c.type, sa.Float)
        else "int"
        if isinstance(c.type, sa.Integer)
        else "datetime"
        if isinstance(c.type, sa.DateTime)
        else "text"
    )
    for c in predictions.columns
}
HEADER_MARK = b"#loanrisk-prediction-log 1"
_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "N": "N"}


def header(columns: list[str]) -> bytes:
    return HEADER_MARK + b"\t" + "\t".join(columns).encode() + b"\n"


def encode_rows(rows: list[dict[str, Any]]) -> list[bytes]:
    """COPY text lines for ``rows``; raises ``UnstorableRow`` naming the column that cannot
    be stored (a NUL, a lone surrogate, a non-finite number, an unknown type)."""
    lines = []
    for row in rows:
        text = "\t".join([_field(name, row.get(name)) for name in COLUMNS]) + "\n"
        try:
            lines.append(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise UnstorableRow(f"{_culprit(row)}: a lone UTF-16 surrogate") from exc
    return lines


def decode_line(line: bytes, columns: list[str] = COLUMNS) -> dict[str, Any]:
    """A row from its log line (the inverse of ``encode_rows``)."""
    fields = line.rstrip(b"\n").decode("utf-8").split("\t")
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields where {len(columns)} were expected")
    row: dict[str, Any] = {}
    for name, text in zip(columns, fields, strict=True):
        if text == "\\N":
            row[name] = None
            continue
        if "\\" in text:
            text = _UNESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(1)), text)
        kind = _KINDS.get(name, "text")
        row[name] = (
            float(text)
            if kind == "float"
            else int(text)
            if kind == "int"
            else datetime.fromisoformat(text)
            if kind == "datetime"
            else text
        )
    return row


def _field(name: str, value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\x00" in value:
            raise UnstorableRow(f"{name}: text contains a NUL character")
        if "\\" in value:
            value = value.replace("\\", "\\\\")
        if "\t" in value or "\n" in value or "\r" in value:
            value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise UnstorableRow(f"{name}: {number} is not a finite number")
        return repr(number)
    raise UnstorableRow(f"{name}: cannot store a {type(value).__name__}")


def _culprit(row: dict[str, Any]) -> str:
    """The first column of ``row`` that cannot be encoded (for the refusal message)."""
    for name in COLUMNS:
        try:
            _field(name, row.get(name)).encode("utf-8")
        except (UnicodeEncodeError, UnstorableRow):
            return name
    return "row"


def _legacy_rows(data: bytes) -> list[bytes]:
    """Lines of the older JSON-lines spool (``predictions*.jsonl``), re-encoded."""
    lines = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        row = json.loads(raw)
        created = row.get("created_at")
        if isinstance(created, dict) and "__datetime__" in created:
            row["created_at"] = datetime.fromisoformat(created["__datetime__"])
        lines.extend(encode_rows([row]))
    return lines


class PredictionLog:
    """Durable (write-ahead, group-committed) and batched writer of prediction rows."""

    def __init__(
        self,
        engine: sa.Engine,
        folder: Path,
        *,
        batch_rows: int = 500,
        flush_seconds: float = 0.2,
        retry_seconds: float = 2.0,
        recent_bytes: int = 16 << 20,
        segment_bytes: int = 16 << 20,
        stuck_seconds: float = 60.0,
        commit_delay: float = 0.010,
        on_fsync: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.folder = folder
        self.dead_letter = folder / DEAD_LETTER
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.segment_bytes = segment_bytes
        self.stuck_seconds = stuck_seconds
        self.commit_delay = commit_delay
        self.on_fsync = on_fsync  # each group commit's write + fsync time, in seconds
        self.metrics = LogMetrics()
        self._recent = _RecentRows(recent_bytes)
        # flusher side
        self._cond = threading.Condition()
        self._flusher_idle = False
        self._gathering = False
        self._want = 0
        self._last_group = 0
        self._waiting: list[
            tuple[list[bytes], asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._released = 0  # requests in _waiting that their loop has released
        self._releasing: set[asyncio.AbstractEventLoop] = set()  # loops with a release due
        self._stopping = False
        # segments: shared by the flusher (appends) and the writer (tails, deletes)
        self._segments: list[_Segment] = []
        self._segments_lock = threading.Lock()
        self._wake = threading.Event()
        self._database_ok = True
        self._next_retry = 0.0
        self._next_scan = 0.0
        self._progress = time.monotonic()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="prediction-wal", daemon=True
        )
        self._writer = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._new_segment()
        self._flusher.start()
        self._writer.start()

    async def record(self, rows: list[dict[str, Any]]) -> None:
        """Make ``rows`` durable (fsynced to the write-ahead log); return only then.

        Raises ``UnstorableRow`` before anything is written when a row cannot be stored,
        and ``LogUnavailable`` when the write-ahead log cannot be written.
        """
        lines = encode_rows(rows)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._stopping or not self._flusher.is_alive():
                raise LogUnavailable("the prediction log is not running")
            self._waiting.append((lines, loop, done))
        if loop not in self._releasing:
            self._releasing.add(loop)
            loop.call_soon(self._release, loop)
        await done
        for row, line in zip(rows, lines, strict=True):
            self._recent.put(row["prediction_id"], line)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called back once ``loop`` has run every step that was ready when a request
        recorded, so the requests it was serving meanwhile have recorded too: the flusher
        may take them all for one fsync."""
        self._releasing.discard(loop)
        with self._cond:
            self._released = len(self._waiting)
            # Wake an idle flusher, or a gathering one once everybody it waits for is here.
            if self._flusher_idle or (self._gathering and len(self._waiting) >= self._want):
                self._cond.notify()

    def recent(self, prediction_id: str) -> dict[str, Any] | None:
        """A prediction answered lately, whether or not it is in the database yet."""
        line = self._recent.get(prediction_id)
        return None if line is None else decode_line(line)

    @property
    def queue_depth(self) -> int:
        """Rows durable on disk and not yet in the database."""
        with self._segments_lock:
            return sum(s.rows - s.done_rows for s in self._segments)

    @property
    def database_ok(self) -> bool:
        return self._database_ok

    def problems(self) -> list[str]:
        """Why the log cannot be trusted right now (empty when it is healthy)."""
        found = []
        if not self._flusher.is_alive():
            found.append("prediction log: the write-ahead flusher is not running")
        if not self._writer.is_alive():
            found.append("prediction log: the database writer is not running")
        idle = time.monotonic() - self._progress
        if self._database_ok and self.queue_depth and idle > self.stuck_seconds:
            found.append(
                f"prediction log: {self.queue_depth} rows waiting, no progress for {idle:.0f} s"
            )
        return found

    def stop(self, timeout: float = 30.0) -> None:
        """Flush what was recorded, write it to the database if it answers, then stop.

        Rows the database did not take stay in the write-ahead segments, which the next
        process replays."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        if self._flusher.is_alive():
            self._flusher.join(timeout)
        self._wake.set()
        if self._writer.is_alive():
            self._writer.join(max(deadline - time.monotonic(), 0.1))
        if self._writer.is_alive():
            return  # still writing: leave the segments to the process that replays them
        with self._segments_lock:
            for segment in self._segments:
                if segment.done == segment.synced:
                    segment.path.unlink(missing_ok=True)
                segment.close()

    # ------------------------------------------------------------------ flusher
    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._released and not self._stopping:
                    self._flusher_idle = True
                    self._cond.wait()
                self._flusher_idle = False
                if not self._waiting and self._stopping:
                    return
                # Under load, wait (at most commit_delay) for as many requests as the last
                # fsync covered: fewer, larger fsyncs when busy; a lone client waits for
                # nobody.
                self._want = max(self._last_group, len(self._waiting))
                if self.commit_delay and len(self._waiting) < self._want and not self._stopping:
                    self._gathering = True
                    self._cond.wait(self.commit_delay)
                    self._gathering = False
                waiting, self._waiting, self._released = self._waiting, [], 0
            self._last_group = len(waiting)
            error: BaseException | None = None
            try:
                self._append(b"".join(b"".join(lines) for lines, _, _ in waiting), waiting)
            except Exception as exc:  # the requests learn of it; the flusher lives on
                error = exc
                log.error("prediction log: cannot write the write-ahead log (%s)", exc)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, loop, done in waiting:
                by_loop.setdefault(loop, []).append(done)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a loop that has closed
                    loop.call_soon_threadsafe(_settle, futures, error)

    def _append(self, data: bytes, waiting: list[Any]) -> None:
        segment = self._segments[-1]
        if segment.synced >= self.segment_bytes:
            segment = self._new_segment()
        started = time.perf_counter()
        view = memoryview(data)
        while view:
            written = os.write(segment.fd, view)
            view = view[written:]
        os.fdatasync(segment.fd)
        elapsed = time.perf_counter() - started
        self.metrics.fsyncs += 1
        self.metrics.fsync_seconds += elapsed
        if self.on_fsync is not None:
            self.on_fsync(elapsed)
        rows = sum(len(lines) for lines, _, _ in waiting)
        with self._segments_lock:
            segment.synced += len(data)
            segment.rows += rows
        if not self._database_ok:
            self.metrics.spooled += rows
        if self.queue_depth >= self.batch_rows:
            self._wake.set()

    def _new_segment(self) -> _Segment:
        path = self.folder / f"{os.getpid()}-{time.time_ns()}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        start = header(COLUMNS)
        os.write(fd, start)
        os.fdatasync(fd)
        _fsync_folder(self.folder)
        segment = _Segment(path, fd, synced=len(start), done=len(start))
        with self._segments_lock:
            if self._segments:
                self._segments[-1].sealed = True
            self._segments.append(segment)
        return segment

    # ------------------------------------------------------------------ writer
    def _write_loop(self) -> None:
        while True:
            stopping = self._stopping and not self._flusher.is_alive()
            if not stopping:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            try:
                now = time.monotonic()
                if self._database_ok or now >= self._next_retry:
                    if now >= self._next_scan:
                        self._next_scan = now + self.retry_seconds
                        self._replay_orphans()
                    self._drain()
                    self._database_up()
            except _Outage as outage:
                self._database_down(outage.__cause__)
            except Exception:  # never die: say so, wait, try again
                log.exception("prediction log: unexpected error in the writer; retrying")
                self._next_retry = time.monotonic() + self.retry_seconds
            if stopping:
                return

    def _drain(self) -> None:
        """Write every durable row of this process's segments; delete finished segments."""
        while True:
            with self._segments_lock:
                if not self._segments:
                    return
                segment = self._segments[0]
                start, end, sealed = segment.done, segment.synced, segment.sealed
            if start == end:
                if not sealed:
                    return
                with self._segments_lock:
                    self._segments.pop(0)
                segment.path.unlink(missing_ok=True)  # before the lock goes with the fd
                segment.close()
                continue
            with segment.path.open("rb") as handle:
                handle.seek(start)
                block = handle.read(min(end - start, 8 << 20))
                if b"\n" not in block:  # one very long row
                    block += handle.read(end - start - len(block))
            block = block[: block.rfind(b"\n") + 1]  # whole lines only
            lines = block.splitlines(keepends=True)
            for first in range(0, len(lines), self.batch_rows):
                batch = lines[first : first + self.batch_rows]
                self._store(batch, COLUMNS, replay=False)
                with self._segments_lock:
                    segment.done += sum(len(line) for line in batch)
                    segment.done_rows += len(batch)
                self._progress = time.monotonic()

    def _replay_orphans(self) -> None:
        """Replay segments left by processes that are gone (their lock is free)."""
        with self._segments_lock:
            own = {s.path for s in self._segments}
        legacy = sorted(self.folder.parent.glob("predictions*.jsonl"))  # the older spool
        for path in [*sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}")), *legacy]:
            if path in own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                if os.fstat(fd).st_nlink == 0:
                    continue  # another process replayed it just now
                with os.fdopen(os.dup(fd), "rb") as handle:
                    data = handle.read()
                complete = data[: data.rfind(b"\n") + 1]
                if len(complete) < len(data):  # never fsynced, so never answered
                    log.info("prediction log: %s ends in a partial line; ignored", path.name)
                columns, lines = _segment_lines(path, complete)
                for first in range(0, len(lines), self.batch_rows):
                    self._store(lines[first : first + self.batch_rows], columns, replay=True)
                path.unlink(missing_ok=True)
                log.info("prediction log: replayed %d rows from %s", len(lines), path.name)
            finally:
                os.close(fd)

    def _store(self, lines: list[bytes], columns: list[str], *, replay: bool) -> None:
        """Write ``lines`` once each; if the database refuses some, write the others and
        dead-letter those (with the reason). Raises ``_Outage`` when it did not answer."""
        lines = [line for line in lines if line.strip()]
        if not lines:
            return
        try:
            self._insert(lines, columns, replay=replay)
            self.metrics.written += len(lines)
            return
        except Exception as exc:
            if self._is_outage(exc):
                raise _Outage from exc
            if len(lines) == 1:
                self._dead(lines[0], columns, _reason(exc))
                return
        middle = len(lines) // 2
        self._store(lines[:middle], columns, replay=True)
        self._store(lines[middle:], columns, replay=True)

    def _insert(self, lines: list[bytes], columns: list[str], *, replay: bool = False) -> None:
        """Write lines once each. Ids are unique, so a live batch is appended as it is (one
        COPY of the lines as they are on disk); a replayed segment, or a batch whose ids
        partly went in before (a commit whose reply was lost), skips the ids already there.
        """
        if self.engine.dialect.name == "postgresql":
            data = b"".join(lines)
            if not replay:
                try:
                    with self.engine.begin() as conn:
                        copy_text(conn, predictions, columns, data)
                    return
                except sa.exc.IntegrityError:
                    log.info("prediction log: some ids already written; skipping those")
            with self.engine.begin() as conn:
                copy_text(conn, predictions, columns, data, key="prediction_id")
            return
        rows = [decode_line(line, columns) for line in lines]
        with self.engine.begin() as conn:
            insert_new_rows(conn, predictions, rows, key="prediction_id")

    def _is_outage(self, exc: BaseException) -> bool:
        """True when the database did not answer (retry later), False when it refused."""
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return True
        if not isinstance(exc, sa.exc.SQLAlchemyError):
            return False  # the rows could not be converted: a refusal, not an outage
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.SQLAlchemyError:
            return True
        return False

    def _dead(self, line: bytes, columns: list[str], reason: str) -> None:
        try:
            row: dict[str, Any] | str = decode_line(line, columns)
        except (ValueError, UnicodeDecodeError):
            row = line.decode("utf-8", "backslashreplace")
        entry = {"at": datetime.now(UTC).isoformat(), "reason": reason, "row": row}
        with self.dead_letter.open("a", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.metrics.dead_lettered += 1
        prediction_id = row.get("prediction_id") if isinstance(row, dict) else None
        log.error(
            "prediction log: the database refused row %s (%s); kept in %s",
            prediction_id,
            reason,
            self.dead_letter,
        )

    def _database_down(self, exc: BaseException | None) -> None:
        self.metrics.failed_writes += 1
        self._next_retry = time.monotonic() + self.retry_seconds
        if self._database_ok:
            self._database_ok = False
            name = type(getattr(exc, "orig", None) or exc).__name__
            log.warning(
                "prediction log: database unreachable (%s); answers wait in the write-ahead "
                "log under %s and are written when it is back",
                name,
                self.folder,
            )

    def _database_up(self) -> None:
        self._progress = time.monotonic()
        if not self._database_ok:
            self._database_ok = True
            log.info("prediction log: database back; waiting rows written")


@dataclass
class _Segment:
    """One write-ahead file of this process: bytes fsynced, bytes and rows in the database."""

    path: Path
    fd: int
    synced: int = 0
    done: int = 0
    rows: int = 0
    done_rows: int = 0
    sealed: bool = False
    closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class _RecentRows:
    """Lately answered rows by prediction id, bounded in bytes (oldest dropped first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._rows: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, line: bytes) -> None:
        with self._lock:
            self._rows[key] = line
            self.size += len(line)
            while self.size > self.limit and self._rows:
                _, dropped = self._rows.popitem(last=False)
                self.size -= len(dropped)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._rows.get(key)


class _Outage(Exception):
    """The database did not answer (the cause is chained)."""


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(LogUnavailable(f"prediction not recorded: {error}"))


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_lines(path: Path, data: bytes) -> tuple[list[str], list[bytes]]:
    """The column names and row lines of a segment (or of the older JSON spool)."""
    if path.suffix == ".jsonl":
        return COLUMNS, _legacy_rows(data)
    lines = data.splitlines(keepends=True)
    columns = COLUMNS
    if lines and lines[0].startswith(HEADER_MARK):
        columns = lines[0].rstrip(b"\n").decode().split("\t")[1:]
        lines = lines[1:]
    return columns, lines


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"[:500]
