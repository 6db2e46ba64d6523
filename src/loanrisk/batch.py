"""Batch scoring: a file of applications -> predictions (Parquet + table), in chunks.

Uses the same packaged model as the service (its frame path). One run is one transaction:
all its `predictions` rows and its `scoring_runs` row, or nothing. Prediction ids are
derived from (input hash, model version, row), and a run is keyed by input hash and model
version, so scoring the same input with the same model again adds nothing.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from loanrisk.config import Settings
from loanrisk.constants import LABEL, LOAN_ID, Alias, Table
from loanrisk.data.readers import RawFile, describe, expand_sources, read_chunks, read_header
from loanrisk.data.refine import check_columns
from loanrisk.errors import LoanriskError
from loanrisk.modeling.answers import SCORED_SCHEMA, Answer, answer
from loanrisk.predictions import log_table
from loanrisk.registry import Registry
from loanrisk.warehouse.bulk import write_arrow
from loanrisk.warehouse.engine import Warehouse, serialised
from loanrisk.warehouse.ingest import BackgroundWriter, Progress
from loanrisk.warehouse.schema import predictions, scoring_runs

if TYPE_CHECKING:  # the modeling stack is imported with the model, when a file is new
    from loanrisk.modeling.package import ScoringBundle
    from loanrisk.profiles.model import Profile

log = logging.getLogger(__name__)
_IDS = uuid.UUID("6f1c3f4e-9a59-4a47-8a53-2f7f3c0f6d11")


@dataclass
class ScoringRun:
    """What one `loanrisk score` did (printed by --json)."""

    scoring_run_id: str
    input: str
    input_hash: str
    model_version: str
    skipped: bool = False
    note: str = ""
    rows_in: int = 0
    rows_scored: int = 0
    rows_invalid: int = 0
    output: str = ""
    seconds: float = 0.0
    rows_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProductionModel:
    """The model behind an alias for one scoring run: the version is resolved once, the
    model loaded at most once, and only when an input is new to that version."""

    def __init__(self, models: Registry, alias: str = Alias.PRODUCTION) -> None:
        found = models.by_alias(alias)
        if found is None:
            raise LoanriskError(
                f"no version of {models.name} is @{alias}: train and promote a model first"
            )
        self.name, self.version, self.alias = models.name, found.version, alias
        self._models = models
        self._bundle: ScoringBundle | None = None

    @property
    def bundle(self) -> ScoringBundle:
        if self._bundle is None:
            self._bundle = self._models.load_bundle(self.version)
        return self._bundle


def score_file(
    settings: Settings,
    warehouse: Warehouse,
    model: ProductionModel,
    source: str,
    *,
    output_dir: Path | None = None,
    progress: Progress | None = None,
) -> ScoringRun:
    """Score every row of ``source`` with ``model`` (the @production version).

    ``source`` is a file (any format ``ingest`` reads, local or fsspec URL) or
    ``warehouse:unlabelled``: the silver loans that have no outcome yet.
    """
    name = model.name
    label, content_hash, size, chunks = _resolve_input(settings, source, warehouse)
    run = new_run(warehouse, model, label, content_hash)
    if run.skipped:
        return run
    if label != WAREHOUSE_UNLABELLED:
        check_header(settings, label, model.bundle.profile)
    run_id = run.scoring_run_id
    bundle = model.bundle
    folder = output_dir or settings.home / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"scores-{run_id}.parquet"
    partial = output.with_suffix(".parquet.part")
    started_at, started = datetime.now(UTC), time.perf_counter()
    outputs = _ChunkWriter(partial, run, name, started_at)
    try:
        # One process at a time per run (a retried task may overlap the first): the other
        # waits, then finds the run recorded and skips it.
        with serialised(warehouse.engine, run_lock(run_id), "score") as conn:
            if recorded(conn, run):
                return run
            if progress is not None:
                progress.start(label, size)
            # Output rows get their JSON and are written (Parquet, then the predictions
            # table) on a background thread while the next chunk is scored: Arrow
            # kernels and COPY release the GIL.
            background = BackgroundWriter(conn, depth=2)
            try:
                with _frozen_heap():
                    for chunk in chunks(progress.advance if progress else None):
                        background.submit(outputs.job(_score_chunk(bundle, chunk, run)))
            finally:
                background.close()
            outputs.close()
            run.seconds = round(time.perf_counter() - started, 3)
            run.output = str(output.resolve())
            record_run(conn, run, name, started_at)
            partial.replace(output)
    finally:
        outputs.close()
        partial.unlink(missing_ok=True)
        if progress is not None:
            progress.finish()
    run.rows_per_second = round(run.rows_in / run.seconds, 1) if run.seconds else 0.0
    return run


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """The objects alive now (modules, the model, settings) set aside from the garbage
    collector while the chunks are scored: its full collections walked them all again and
    again (about 4 % of a 300,000-row run's CPU, alternating runs)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def new_run(
    warehouse: Warehouse, model: ProductionModel, label: str, content_hash: str
) -> ScoringRun:
    """The run of this input with this model version: its id is derived from both, so
    it is found (``skipped``, with the earlier output) when it has been done before."""
    run_id = uuid.uuid5(_IDS, f"{content_hash}:{model.name}:{model.version}").hex
    run = ScoringRun(
        scoring_run_id=run_id, input=label, input_hash=content_hash, model_version=model.version
    )
    with warehouse.engine.connect() as conn:
        recorded(conn, run)
    return run


def recorded(conn: sa.Connection, run: ScoringRun) -> bool:
    """Whether ``run`` is recorded already; if so it is marked skipped, with its output."""
    earlier = conn.execute(
        sa.select(scoring_runs.c.output).where(scoring_runs.c.scoring_run_id == run.scoring_run_id)
    ).scalar()
    if earlier is not None:
        run.skipped, run.output = True, earlier
        run.note = f"already scored with version {run.model_version} (run {run.scoring_run_id})"
    return run.skipped


def run_lock(run_id: str) -> int:
    """The advisory lock of one scoring run (a positive bigint from its id)."""
    return int(run_id[:15], 16)


def record_run(conn: sa.Connection, run: ScoringRun, name: str, started_at: datetime) -> None:
    """The ``scoring_runs`` row, written in the transaction of the run's predictions."""
    conn.execute(
        sa.insert(scoring_runs).values(
            scoring_run_id=run.scoring_run_id,
            input=run.input,
            input_hash=run.input_hash,
            model_name=name,
            model_version=run.model_version,
            rows_in=run.rows_in,
            rows_scored=run.rows_scored,
            rows_invalid=run.rows_invalid,
            output=run.output,
            seconds=run.seconds,
            started_at=started_at,
            finished_at=datetime.now(UTC),
        )
    )


def log_predictions(
    conn: sa.Connection, scored: pa.Table, run: ScoringRun, name: str, now: datetime
) -> None:
    """The valid rows of a scored table (ids given) as ``predictions`` rows."""
    valid = scored.filter(scored["pd"].is_valid())
    if not valid.num_rows:
        return
    columns = {n: valid[n] for n in valid.column_names if n not in ("error", "source_row")}
    rows, constants = log_table(
        columns,
        scoring_run_id=run.scoring_run_id,
        model_name=name,
        model_version=run.model_version,
        alias=Alias.PRODUCTION.value,
        created_at=now,
    )
    write_arrow(conn, predictions, rows, constants=constants)


def check_header(settings: Settings, url: str, profile: Profile) -> None:
    """Refuse a file, naming it, before anything is scored when its header cannot be read
    as applications of ``profile`` (a required column missing, two columns read as one)."""
    timeout = settings.ingest.source_timeout_seconds
    header = read_header(url, encoding=settings.ingest.encoding, timeout=timeout)
    check_columns(header, profile, source=url, applications=True)


def one_file(settings: Settings, source: str) -> RawFile:
    """The one file ``source`` names, with its size and SHA-256 (the run's input hash)."""
    timeout = settings.ingest.source_timeout_seconds
    files = expand_sources([source], timeout=timeout)
    if len(files) != 1:
        raise LoanriskError(f"{source}: score one file at a time ({len(files)} matched)")
    return describe(files[0], timeout=timeout)


WAREHOUSE_UNLABELLED = "warehouse:unlabelled"
Chunks = Callable[[Callable[[int], None] | None], Iterator[pd.DataFrame]]


def _resolve_input(
    settings: Settings, source: str, warehouse: Warehouse
) -> tuple[str, str, int, Chunks]:
    """(label, content hash, size for the progress bar, chunk reader) of a scoring input."""
    size = settings.ingest.scoring_chunk_size
    if source == WAREHOUSE_UNLABELLED:
        unlabelled = f"FROM {Table.SILVER} WHERE {LABEL} IS NULL ORDER BY {LOAN_ID}"
        query = f"SELECT * {unlabelled}"
        with warehouse.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text(f"SELECT {LOAN_ID} {unlabelled}"))]
        if not ids:
            raise LoanriskError("the warehouse has no unlabelled loans to score")
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        id_column = warehouse.profile.id.column or LOAN_ID

        def from_warehouse(on_rows: Callable[[int], None] | None) -> Iterator[pd.DataFrame]:
            first = 1
            # A connection of its own: the run's writes hold another one in a transaction.
            with warehouse.engine.connect() as conn:
                for frame in pd.read_sql_query(sa.text(query), conn, chunksize=size):
                    frame = frame.rename(columns={LOAN_ID: id_column})
                    frame.index = pd.RangeIndex(first, first + len(frame))
                    first += len(frame)
                    if on_rows is not None:
                        on_rows(len(frame))
                    yield frame

        return WAREHOUSE_UNLABELLED, digest, len(ids), from_warehouse
    timeout = settings.ingest.source_timeout_seconds
    raw_file = one_file(settings, source)

    def from_file(on_bytes: Callable[[int], None] | None) -> Iterator[pd.DataFrame]:
        yield from read_chunks(
            raw_file.url,
            chunk_size=size,
            encoding=settings.ingest.encoding,
            on_bytes=on_bytes,
            timeout=timeout,
        )

    return raw_file.url, raw_file.content_hash, raw_file.size, from_file


OUTPUT_SCHEMA = pa.schema(
    [pa.field("prediction_id", pa.string()), pa.field("source_row", pa.int64())]
    + [f for f in SCORED_SCHEMA if f.name not in ("input", "features")]
)


def _score_chunk(bundle: ScoringBundle, chunk: pd.DataFrame, run: ScoringRun) -> Scored:
    """Score one chunk; its JSON documents and writes are the writer thread's job."""
    scored = answer(bundle, chunk)
    valid = int(scored.valid.sum())
    run.rows_in += len(chunk)
    run.rows_scored += valid
    run.rows_invalid += len(chunk) - valid
    return Scored(scored, chunk.index.to_numpy())


@dataclass(frozen=True)
class Scored:
    """A chunk's answer and its rows' places in the input (source rows)."""

    answer: Answer
    rows: np.ndarray

    def table(self, run_id: str) -> pa.Table:
        """``score_table``'s rows, each with its prediction id and source row."""
        table = self.answer.table()
        table = table.add_column(0, "source_row", pa.array(self.rows, pa.int64()))
        return table.add_column(0, "prediction_id", prediction_ids(run_id, self.rows))


class _ChunkWriter:
    """Writes scored chunks (ids given) to the Parquet output and ``predictions``, in order."""

    def __init__(self, path: Path, run: ScoringRun, name: str, now: datetime) -> None:
        self._path, self._run, self._name, self._now = path, run, name, now
        self._parquet: pq.ParquetWriter | None = None

    def job(self, scored: Scored) -> Callable[[sa.Connection], None]:
        return lambda conn: self.write(conn, scored.table(self._run.scoring_run_id))

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def write(self, conn: sa.Connection, scored: pa.Table) -> None:
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._path, OUTPUT_SCHEMA)
        self._parquet.write_table(scored.select(OUTPUT_SCHEMA.names))
        log_predictions(conn, scored, self._run, self._name, self._now)


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_NIBBLES = np.arange(44, -1, -4, dtype=np.int64)


def prediction_ids(run_id: str, rows: np.ndarray) -> pa.Array:
    """Deterministic ids: the run id's first 20 characters, then the source row in 12 hex
    digits (the run id already stands for the input's hash and the model version)."""
    digits = np.ascontiguousarray(_HEX[(rows.astype(np.int64)[:, None] >> _NIBBLES) & 0xF])
    hexes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(12), len(rows), [None, pa.py_buffer(digits)]
    )
    return pc.binary_join_element_wise(run_id[:20], hexes.cast(pa.binary()).cast(pa.string()), "")
