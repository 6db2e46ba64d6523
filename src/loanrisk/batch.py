"""Batch scoring: a file of applications -> predictions (Parquet + table), in chunks.

Uses the same packaged model as the service (its frame path). One run is one transaction:
all its `predictions` rows and its `scoring_runs` row, or nothing. Prediction ids are
derived from (input hash, model version, row), and a run is keyed by input hash and model
version, so scoring the same input with the same model again adds nothing.
"""

from __future__ import annotations

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
from loanrisk.data.jsonrows import arrow_column, frame_objects, json_literals, json_objects
from loanrisk.data.readers import describe, expand_sources, read_chunks
from loanrisk.errors import LoanriskError
from loanrisk.predictions import log_table
from loanrisk.registry import Registry
from loanrisk.warehouse.bulk import write_arrow
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.ingest import BackgroundWriter, Progress
from loanrisk.warehouse.schema import predictions, scoring_runs

if TYPE_CHECKING:  # the modeling stack is imported with the model, when a file is new
    from loanrisk.modeling.package import ScoringBundle

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
    name, version = model.name, model.version
    label, content_hash, size, chunks = _resolve_input(settings, source, warehouse)
    run_id = uuid.uuid5(_IDS, f"{content_hash}:{name}:{version}").hex
    run = ScoringRun(
        scoring_run_id=run_id,
        input=label,
        input_hash=content_hash,
        model_version=version,
    )
    with warehouse.engine.connect() as conn:
        earlier = conn.execute(
            sa.select(scoring_runs.c.output).where(scoring_runs.c.scoring_run_id == run_id)
        ).scalar()
    if earlier is not None:
        run.skipped, run.output = True, earlier
        run.note = f"already scored with version {version} (run {run_id})"
        return run
    bundle = model.bundle
    folder = output_dir or settings.home / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"scores-{run_id}.parquet"
    partial = output.with_suffix(".parquet.part")
    started_at, started = datetime.now(UTC), time.perf_counter()
    if progress is not None:
        progress.start(label, size)
    outputs = _ChunkWriter(partial, run, name, version, started_at)
    try:
        with warehouse.engine.begin() as conn:
            # Output rows are built and written (Parquet, then the predictions table)
            # on a background thread while the next chunk is scored: Arrow kernels and
            # COPY release the GIL.
            background = BackgroundWriter(conn, depth=2)
            try:
                for chunk in chunks(progress.advance if progress else None):
                    background.submit(outputs.job(_score_chunk(bundle, chunk, run)))
            finally:
                background.close()
            outputs.close()
            run.seconds = round(time.perf_counter() - started, 3)
            run.output = str(output.resolve())
            conn.execute(
                sa.insert(scoring_runs).values(
                    scoring_run_id=run_id,
                    input=label,
                    input_hash=content_hash,
                    model_name=name,
                    model_version=version,
                    rows_in=run.rows_in,
                    rows_scored=run.rows_scored,
                    rows_invalid=run.rows_invalid,
                    output=run.output,
                    seconds=run.seconds,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                )
            )
            partial.replace(output)
    finally:
        outputs.close()
        partial.unlink(missing_ok=True)
        if progress is not None:
            progress.finish()
    run.rows_per_second = round(run.rows_in / run.seconds, 1) if run.seconds else 0.0
    return run


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
    files = expand_sources([source], timeout=timeout)
    if len(files) != 1:
        raise LoanriskError(f"{source}: score one file at a time ({len(files)} matched)")
    raw_file = describe(files[0], timeout=timeout)

    def from_file(on_bytes: Callable[[int], None] | None) -> Iterator[pd.DataFrame]:
        yield from read_chunks(
            raw_file.url,
            chunk_size=size,
            encoding=settings.ingest.encoding,
            on_bytes=on_bytes,
            timeout=timeout,
        )

    return raw_file.url, raw_file.content_hash, raw_file.size, from_file


@dataclass
class _Scored:
    """One scored chunk: the model's answers and what the prediction log needs."""

    out: pd.DataFrame  # one row per input row, indexed by source row
    chunk: pd.DataFrame  # the rows as read
    fields: list[str]  # the chunk's columns the model reads
    features: pd.DataFrame  # the model inputs of the valid rows, in row order
    valid: np.ndarray


def _score_chunk(bundle: ScoringBundle, chunk: pd.DataFrame, run: ScoringRun) -> _Scored:
    """Score one chunk; everything else (ids, JSON, Arrow, writes) is the writer's job."""
    out, features = bundle.predict_with_features(chunk)
    out.index = chunk.index
    valid = out["pd"].notna().to_numpy()
    run.rows_in += len(chunk)
    run.rows_scored += int(valid.sum())
    run.rows_invalid += int((~valid).sum())
    if not features.index.is_monotonic_increasing:
        features = features.sort_index()
    # The application as sent: the fields the model takes (not outcome columns of the file).
    fields = [c for c in chunk.columns if c in bundle.input_fields()]
    return _Scored(out, chunk, fields, features, valid)


# One adverse-action reason: its code, the applicant-facing statement, its contribution.
REASON = pa.struct([("code", pa.string()), ("reason", pa.string()), ("contribution", pa.float64())])
_OUTPUT_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("source_row", pa.int64()),
        ("loan_id", pa.string()),
        ("pd", pa.float64()),
        ("default_class", pa.int64()),
        ("decision", pa.string()),
        ("grade", pa.string()),
        ("reasons", pa.string()),
        ("error", pa.string()),
    ]
)


class _ChunkWriter:
    """Turns scored chunks into the Parquet output and ``predictions`` rows, in order."""

    def __init__(
        self,
        path: Path,
        run: ScoringRun,
        name: str,
        version: str,
        now: datetime,
    ) -> None:
        self._path, self._run, self._now = path, run, now
        self._name, self._version = name, version
        self._parquet: pq.ParquetWriter | None = None

    def job(self, scored: _Scored) -> Callable[[sa.Connection], None]:
        return lambda conn: self._write(conn, scored)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def _write(self, conn: sa.Connection, scored: _Scored) -> None:
        table = self._output_table(scored.out)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._path, _OUTPUT_SCHEMA)
        self._parquet.write_table(table)
        if scored.valid.any():
            rows, constants = self._prediction_rows(table, scored)
            write_arrow(conn, predictions, rows, constants=constants)

    def _output_table(self, out: pd.DataFrame) -> pa.Table:
        rows = out.index.to_numpy()
        reasons = pa.array(out["reasons"].to_numpy(), pa.list_(REASON), from_pandas=True)
        columns = {
            "prediction_id": _prediction_ids(self._run.scoring_run_id, rows),
            "source_row": pa.array(rows, pa.int64()),
            "loan_id": pc.cast(arrow_column(out["loan_id"]), pa.string()),
            "pd": pa.array(out["pd"].to_numpy(), pa.float64()),
            "default_class": pa.array(out["default_class"], pa.int64(), from_pandas=True),
            "decision": pa.array(out["decision"], pa.string(), from_pandas=True),
            "grade": pa.array(out["grade"], pa.string(), from_pandas=True),
            "reasons": pc.if_else(reasons.is_null(), None, json_literals(reasons)),
            "error": pa.array(out["error"], pa.string(), from_pandas=True),
        }
        return pa.table(columns, schema=_OUTPUT_SCHEMA)

    def _prediction_rows(self, table: pa.Table, scored: _Scored) -> tuple[pa.Table, dict[str, Any]]:
        """The valid rows as prediction-log rows (``predictions.log_table``)."""
        mask = pa.array(scored.valid)
        valid = table.filter(mask)
        # JSON of every row, then one filter (cheaper than filtering each field).
        inputs = [arrow_column(scored.chunk[field]) for field in scored.fields]
        columns = {name: valid[name] for name in valid.column_names}
        columns["input"] = pc.filter(json_objects(scored.fields, inputs), mask)
        columns["features"] = frame_objects(scored.features)
        return log_table(
            columns,
            scoring_run_id=self._run.scoring_run_id,
            model_name=self._name,
            model_version=self._version,
            alias=Alias.PRODUCTION.value,
            created_at=self._now,
        )


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_NIBBLES = np.arange(44, -1, -4, dtype=np.int64)


def _prediction_ids(run_id: str, rows: np.ndarray) -> pa.Array:
    """Deterministic ids: the run id's first 20 characters, then the source row in 12 hex
    digits (the run id already stands for the input's hash and the model version)."""
    digits = np.ascontiguousarray(_HEX[(rows.astype(np.int64)[:, None] >> _NIBBLES) & 0xF])
    hexes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(12), len(rows), [None, pa.py_buffer(digits)]
    )
    return pc.binary_join_element_wise(run_id[:20], hexes.cast(pa.binary()).cast(pa.string()), "")
