"""Ingest raw files: bronze (raw text) -> silver (typed, clean) -> gold (features).

One file is one batch keyed by the SHA-256 of its bytes, loaded in one transaction:
the same file again adds nothing, and a failure part-way leaves no trace of the batch.
Rows stream through in chunks, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from loanrisk.constants import BATCH_ID, LOAN_ID, ROW_PROBLEM, SOURCE_ROW, Table
from loanrisk.data.build import build_features
from loanrisk.data.jsonrows import json_arrays
from loanrisk.data.parsers import to_arrow_text
from loanrisk.data.readers import (
    SOURCE_TIMEOUT,
    RawFile,
    describe,
    expand_sources,
    read_chunks,
    read_header,
)
from loanrisk.data.refine import check_columns, drop_duplicate_ids, refine
from loanrisk.errors import RejectedFileError
from loanrisk.profiles.model import Profile
from loanrisk.warehouse.bulk import upsert_frame, write_frame
from loanrisk.warehouse.engine import LOAD_LOCK, serialised
from loanrisk.warehouse.schema import (
    bronze_loans,
    ingestion_batches,
    profile_tables,
    silver_rejects,
)

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What ingestion reports while it works (the CLI draws a progress bar from it)."""

    def start(self, source: str, total_bytes: int) -> None: ...

    def advance(self, n_bytes: int) -> None: ...

    def finish(self) -> None: ...


@dataclass
class BatchResult:
    """What one file added to the warehouse (all zero when it was skipped)."""

    source: str
    content_hash: str
    skipped: bool = False
    note: str = ""
    batch_id: int | None = None
    rows_bronze: int = 0
    rows_silver_new: int = 0
    rows_silver_updated: int = 0
    rows_rejected: int = 0
    rows_gold: int = 0
    columns_ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Why rows were rejected, most frequent first: column, problem, rows, an example value.
    top_reasons: list[dict[str, Any]] = field(default_factory=list)
    # Feature columns without a single value in this file (absent or always empty).
    empty_features: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reject_share(self) -> float:
        return self.rows_rejected / self.rows_bronze if self.rows_bronze else 0.0


class _Tally:
    """What one file's chunks add up to besides row counts: the problems by column and
    kind (the value left out, one example kept) and the features that had a value."""

    def __init__(self, profile: Profile) -> None:
        self.features = profile.feature_columns
        self.counts: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], str] = {}
        self.valued: set[str] = set()

    def add(self, problems: pd.DataFrame, silver: pd.DataFrame) -> None:
        for column, reason in zip(problems["column_name"], problems["reason"], strict=True):
            found = _QUOTED.match(reason) or _QUOTED_LAST.search(reason)
            kind = reason.replace(found.group(0), "", 1).strip() if found else reason
            key = (column, kind)
            self.counts[key] += 1
            if found and key not in self.examples:
                self.examples[key] = found.group(1)
        self.valued.update(c for c in self.features if c in silver and silver[c].notna().any())

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        return [
            {
                "column": column,
                "problem": problem,
                "rows": rows,
                "example": self.examples.get((column, problem)),
            }
            for (column, problem), rows in self.counts.most_common(n)
        ]

    def empty(self) -> list[str]:
        return [c for c in self.features if c not in self.valued]


# Where a reason quotes the value: first ("'16.02' is above the maximum 1") or last ("the
# row has 6 fields, ...: 'A10...'"). The kind of problem is the reason without it.
_QUOTED = re.compile(r"^'(.*?)' ")
_QUOTED_LAST = re.compile(r": '(.*)'$")


@dataclass(frozen=True)
class IngestOptions:
    chunk_size: int = 50_000
    encoding: str = "utf-8"
    delimiter: str = ","
    timeout: float = SOURCE_TIMEOUT
    max_reject_share: float = 1.0


def ingest(
    engine: sa.Engine,
    profile: Profile,
    sources: list[str],
    *,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
) -> list[BatchResult]:
    """Ingest every file named by ``sources`` (files, globs, folders; local or fsspec URLs).

    Files are checked (readable, required columns present) before anything is written.
    """
    options = options or IngestOptions()
    timeout = options.timeout
    files = [describe(url, timeout=timeout) for url in expand_sources(sources, timeout=timeout)]
    results = []
    for raw_file in files:
        results.append(_ingest_file(engine, profile, raw_file, options, progress))
    return results


def _ingest_file(
    engine: sa.Engine,
    profile: Profile,
    raw_file: RawFile,
    options: IngestOptions,
    progress: Progress | None,
) -> BatchResult:
    result = BatchResult(source=raw_file.url, content_hash=raw_file.content_hash)
    with engine.connect() as conn:
        earlier = _earlier_batch(conn, raw_file)
    if earlier is not None:
        return _skipped(result, earlier)

    header = read_header(
        raw_file.url,
        encoding=options.encoding,
        delimiter=options.delimiter,
        timeout=options.timeout,
    )
    mapping = check_columns(header, profile, source=raw_file.url)
    result.columns_ignored = [c for c in header if c not in mapping]

    started = time.perf_counter()
    silver_table, gold_table = profile_tables(profile, sa.MetaData())
    if progress is not None:
        progress.start(raw_file.url, raw_file.size)
    try:
        # Loads take turns: two runs of one file give one batch and one "skipped", and
        # files that share loan ids cannot race on the same silver rows.
        with serialised(engine, LOAD_LOCK, "load") as conn:
            earlier = _earlier_batch(conn, raw_file)
            if earlier is not None:  # a concurrent run loaded it while we waited
                return _skipped(result, earlier)
            batch_id = conn.execute(
                sa.insert(ingestion_batches)
                .values(
                    source=raw_file.url,
                    content_hash=raw_file.content_hash,
                    size_bytes=raw_file.size,
                    profile=profile.name,
                    columns=json.dumps(header),
                    columns_ignored=json.dumps(result.columns_ignored),
                    started_at=datetime.now(UTC),
                )
                .returning(ingestion_batches.c.batch_id)
            ).scalar_one()
            result.batch_id = batch_id
            seen: set[str] = set()
            tally = _Tally(profile)
            writer = BackgroundWriter(conn)
            try:
                for raw in _chunks(raw_file, options, progress):
                    jobs = _prepare_chunk(
                        profile, raw, batch_id, seen, result, tally, silver_table, gold_table
                    )
                    for job in jobs:
                        writer.submit(job)
            finally:
                writer.close()
            _summarise(result, tally, header, mapping)
            if result.reject_share > options.max_reject_share:
                raise RejectedFileError(_refusal(result, options.max_reject_share))
            conn.execute(
                sa.update(ingestion_batches)
                .where(ingestion_batches.c.batch_id == batch_id)
                .values(
                    rows_bronze=result.rows_bronze,
                    rows_silver_new=result.rows_silver_new,
                    rows_silver_updated=result.rows_silver_updated,
                    rows_rejected=result.rows_rejected,
                    rows_gold=result.rows_gold,
                    finished_at=datetime.now(UTC),
                )
            )
    finally:
        if progress is not None:
            progress.finish()
    result.seconds = round(time.perf_counter() - started, 3)
    log.info("ingested %s as batch %s: %s rows", raw_file.url, batch_id, result.rows_bronze)
    return result


def _summarise(
    result: BatchResult, tally: _Tally, header: list[str], mapping: dict[str, str]
) -> None:
    """The file's reasons for rejects and its empty features, as warnings too."""
    result.top_reasons = tally.top()
    result.empty_features = tally.empty()
    if result.rows_rejected:
        result.warnings.append(
            f"{result.rows_rejected:,} of {result.rows_bronze:,} rows rejected "
            f"({result.reject_share:.1%}); most often: {describe_reasons(result.top_reasons)}"
        )
    if result.empty_features:
        present = set(mapping.values())
        absent = [c for c in result.empty_features if c not in present]
        empty = [c for c in result.empty_features if c in present]
        parts = ([f"not in the file: {', '.join(absent)}"] if absent else []) + (
            [f"empty in every row: {', '.join(empty)}"] if empty else []
        )
        result.warnings.append(
            f"{len(result.empty_features)} feature(s) have no value ({'; '.join(parts)}); "
            "models trained on this data cannot use them"
        )


def describe_reasons(top: list[dict[str, Any]]) -> str:
    """``column: problem (rows, e.g. 'value')``, joined, for messages."""
    parts = []
    for reason in top:
        example = f", e.g. {reason['example']!r}" if reason["example"] is not None else ""
        parts.append(f"{reason['column']}: {reason['problem']} ({reason['rows']:,} rows{example})")
    return "; ".join(parts)


def _refusal(result: BatchResult, limit: float) -> str:
    hint = ""
    if any("above the maximum" in r["problem"] for r in result.top_reasons):
        hint = (
            " A percent column written like 16.02 needs 'unit: percent' in the profile; a "
            "column with sentinel codes needs 'missing: [...]' or 'out_of_range: missing'."
        )
    return (
        f"{result.source}: {result.rows_rejected:,} of {result.rows_bronze:,} rows "
        f"({result.reject_share:.1%}) would be rejected, above ingest.max_reject_share "
        f"({limit:.0%}); nothing from this file was loaded. Most often: "
        f"{describe_reasons(result.top_reasons)}.{hint} Fix the profile (or the file) and "
        "ingest again, or raise the limit (--max-reject-share, LOANRISK_INGEST__MAX_REJECT_SHARE)."
    )


def _skipped(result: BatchResult, earlier: Any) -> BatchResult:
    result.skipped, result.batch_id = True, earlier.batch_id
    result.note = f"already ingested as batch {earlier.batch_id} ({earlier.source})"
    log.info("skip %s: %s", result.source, result.note)
    return result


def _earlier_batch(conn: sa.Connection, raw_file: RawFile) -> Any:
    """The batch that already holds these exact bytes, if any."""
    return conn.execute(
        sa.select(ingestion_batches.c.batch_id, ingestion_batches.c.source).where(
            ingestion_batches.c.content_hash == raw_file.content_hash
        )
    ).first()


def _chunks(
    raw_file: RawFile, options: IngestOptions, progress: Progress | None
) -> Iterator[pd.DataFrame]:
    yield from read_chunks(
        raw_file.url,
        chunk_size=options.chunk_size,
        encoding=options.encoding,
        delimiter=options.delimiter,
        on_bytes=progress.advance if progress is not None else None,
        timeout=options.timeout,
    )


Job = Callable[[sa.Connection], None]


def _prepare_chunk(
    profile: Profile,
    raw: pd.DataFrame,
    batch_id: int,
    seen: set[str],
    result: BatchResult,
    tally: _Tally,
    silver_table: sa.Table,
    gold_table: sa.Table,
) -> list[Job]:
    """Parse one chunk here; return the database writes for the background writer."""
    bronze = pd.DataFrame(
        {
            BATCH_ID: batch_id,
            SOURCE_ROW: raw.index.to_numpy(),
            "payload": bronze_payload(raw),
        }
    )
    refined = refine(raw, profile)
    deduped = drop_duplicate_ids(refined.silver, seen)
    seen.update(deduped.silver[LOAN_ID])
    rejects = pd.concat([refined.rejects, deduped.rejects], ignore_index=True)
    tally.add(
        pd.concat([refined.problems, deduped.rejects[["column_name", "reason"]]]), deduped.silver
    )
    silver = deduped.silver.assign(**{BATCH_ID: batch_id})
    gold = build_features(silver, profile).assign(**{BATCH_ID: batch_id})
    result.rows_bronze += len(raw)
    result.rows_rejected += len(rejects)
    result.rows_gold += len(gold)

    def write_bronze_and_rejects(conn: sa.Connection) -> None:
        write_frame(conn, bronze_loans, bronze)
        write_frame(conn, silver_rejects, rejects.assign(**{BATCH_ID: batch_id}))

    def write_silver_and_gold(conn: sa.Connection) -> None:
        new, updated = upsert_frame(conn, silver_table, silver, key=LOAN_ID, touched="refined_at")
        # Gold holds exactly the silver keys: all new in silver means all new in gold.
        upsert_frame(
            conn, gold_table, gold, key=LOAN_ID, touched="built_at", known_new=updated == 0
        )
        result.rows_silver_new += new
        result.rows_silver_updated += updated

    return [write_bronze_and_rejects, write_silver_and_gold]


class BackgroundWriter:
    """Runs database writes on one thread, in order, while the next chunk is parsed.

    The connection is used by this thread only until ``close``; the first error stops
    the remaining writes and is raised again by ``submit`` or ``close``.
    """

    def __init__(self, conn: sa.Connection, depth: int = 3) -> None:
        self._conn = conn
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loanrisk-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and sys.exc_info()[1] is None:
            raise self._error

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    job(self._conn)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc


def bronze_payload(raw: pd.DataFrame) -> pa.Array:
    """Each raw row as a JSON array of its fields (text or null), in header order.

    The header itself is stored once, in ``ingestion_batches.columns``.
    """
    return json_arrays(  # by position: a header may name two columns alike
        [to_arrow_text(raw.iloc[:, i]) for i, name in enumerate(raw.columns) if name != ROW_PROBLEM]
    )


@dataclass(frozen=True)
class WarehouseStatus:
    """Row counts per table and whether they reconcile with the batch records."""

    tables: dict[str, int]
    batches: int
    batch_totals: dict[str, int]
    reconciled: bool
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def warehouse_status(engine: sa.Engine) -> WarehouseStatus:
    """Counts of bronze, silver, rejects and gold, checked against ingestion_batches."""
    tables = [Table.INGESTION_BATCHES, Table.BRONZE, Table.SILVER, Table.REJECTS, Table.GOLD]
    with engine.connect() as conn:
        counts = {
            str(t): int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in tables
        }
        totals_row = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(ingestion_batches.c.rows_bronze), 0),
                sa.func.coalesce(sa.func.sum(ingestion_batches.c.rows_silver_new), 0),
                sa.func.coalesce(sa.func.sum(ingestion_batches.c.rows_silver_updated), 0),
                sa.func.coalesce(sa.func.sum(ingestion_batches.c.rows_rejected), 0),
                sa.func.coalesce(sa.func.sum(ingestion_batches.c.rows_gold), 0),
            )
        ).one()
    names = ("rows_bronze", "rows_silver_new", "rows_silver_updated", "rows_rejected", "rows_gold")
    totals = {n: int(v) for n, v in zip(names, totals_row, strict=True)}
    problems = []
    checks = [
        ("bronze rows = ingested rows", counts[Table.BRONZE], totals["rows_bronze"]),
        (
            "ingested rows = new + updated + rejected",
            totals["rows_bronze"],
            totals["rows_silver_new"] + totals["rows_silver_updated"] + totals["rows_rejected"],
        ),
        ("silver rows = new silver rows", counts[Table.SILVER], totals["rows_silver_new"]),
        ("rejects rows = rejected rows", counts[Table.REJECTS], totals["rows_rejected"]),
        ("gold rows = silver rows", counts[Table.GOLD], counts[Table.SILVER]),
    ]
    for text, left, right in checks:
        if left != right:
            problems.append(f"{text}: {left} != {right}")
    return WarehouseStatus(
        tables=counts,
        batches=counts[Table.INGESTION_BATCHES],
        batch_totals=totals,
        reconciled=not problems,
        problems=problems,
    )
