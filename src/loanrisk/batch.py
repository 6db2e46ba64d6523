"""Batch scoring: a file of applications -> predictions (Parquet + table), in chunks.

Uses the same packaged model as the service (its frame path). One run is one transaction:
all its `predictions` rows and its `scoring_runs` row, or nothing. Prediction ids are
derived from (input hash, model version, row), and a run is keyed by input hash and model
version, so scoring the same input with the same model again adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from loanrisk import registry
from loanrisk.config import Settings
from loanrisk.constants import LABEL, LOAN_ID, Alias, Table
from loanrisk.data.readers import describe, expand_sources, read_chunks
from loanrisk.errors import LoanriskError
from loanrisk.modeling.package import ScoringBundle
from loanrisk.warehouse.bulk import write_frame
from loanrisk.warehouse.engine import make_engine, open_warehouse
from loanrisk.warehouse.ingest import BackgroundWriter, Progress
from loanrisk.warehouse.schema import predictions, scoring_runs

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


def load_bundle(settings: Settings, alias: str = Alias.PRODUCTION) -> tuple[str, ScoringBundle]:
    """(version, bundle) of the model behind ``alias``."""
    version = registry.by_alias(settings, alias)
    if version is None:
        raise LoanriskError(
            f"no version of {settings.mlflow.model_name} is @{alias}: "
            "train and promote a model first"
        )
    bundle: ScoringBundle = registry.load_bundle(settings, version.version)
    return version.version, bundle


def score_file(
    settings: Settings,
    source: str,
    *,
    output_dir: Path | None = None,
    progress: Progress | None = None,
) -> ScoringRun:
    """Score every row of ``source`` with the @production model.

    ``source`` is a file (any format ``ingest`` reads, local or fsspec URL) or
    ``warehouse:unlabelled``: the silver loans that have no outcome yet.
    """
    version, bundle = load_bundle(settings)
    name = settings.mlflow.model_name
    warehouse = open_warehouse(settings)
    try:
        label, content_hash, size, chunks = _resolve_input(
            settings, source, warehouse.engine, bundle
        )
    except BaseException:
        warehouse.engine.dispose()
        raise
    warehouse.engine.dispose()
    run_id = uuid.uuid5(_IDS, f"{content_hash}:{name}:{version}").hex
    run = ScoringRun(
        scoring_run_id=run_id,
        input=label,
        input_hash=content_hash,
        model_version=version,
    )
    warehouse = open_warehouse(settings)
    try:
        with warehouse.engine.connect() as conn:
            earlier = conn.execute(
                sa.select(scoring_runs.c.output).where(scoring_runs.c.scoring_run_id == run_id)
            ).scalar()
        if earlier is not None:
            run.skipped, run.output = True, earlier
            run.note = f"already scored with version {version} (run {run_id})"
            return run
        folder = output_dir or settings.home / "scores"
        folder.mkdir(parents=True, exist_ok=True)
        output = folder / f"scores-{run_id}.parquet"
        partial = output.with_suffix(".parquet.part")
        started_at, started = datetime.now(UTC), time.perf_counter()
        if progress is not None:
            progress.start(label, size)
        writer: pq.ParquetWriter | None = None
        try:
            with warehouse.engine.begin() as conn:
                # Database writes run on a background thread while the next chunk is scored.
                background = BackgroundWriter(conn, depth=1)
                try:
                    for chunk in chunks(progress.advance if progress else None):
                        table, rows = _score_chunk(bundle, chunk, run, name, version, started_at)
                        writer = writer or pq.ParquetWriter(partial, table.schema)
                        writer.write_table(table)
                        if len(rows):
                            background.submit(_writes(rows))
                finally:
                    background.close()
                if writer is not None:
                    writer.close()
                    writer = None
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
            if writer is not None:
                writer.close()
            partial.unlink(missing_ok=True)
            if progress is not None:
                progress.finish()
    finally:
        warehouse.engine.dispose()
    run.rows_per_second = round(run.rows_in / run.seconds, 1) if run.seconds else 0.0
    (folder / "latest.json").write_text(json.dumps(run.as_dict(), indent=2))
    return run


WAREHOUSE_UNLABELLED = "warehouse:unlabelled"
Chunks = Callable[[Callable[[int], None] | None], Iterator[pd.DataFrame]]


def _resolve_input(
    settings: Settings, source: str, engine: sa.Engine, bundle: ScoringBundle
) -> tuple[str, str, int, Chunks]:
    """(label, content hash, size for the progress bar, chunk reader) of a scoring input."""
    size = settings.ingest.scoring_chunk_size
    if source == WAREHOUSE_UNLABELLED:
        unlabelled = f"FROM {Table.SILVER} WHERE {LABEL} IS NULL ORDER BY {LOAN_ID}"
        query = f"SELECT * {unlabelled}"
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text(f"SELECT {LOAN_ID} {unlabelled}"))]
        if not ids:
            raise LoanriskError("the warehouse has no unlabelled loans to score")
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        id_column = bundle.profile.id.column or LOAN_ID

        def from_warehouse(on_rows: Callable[[int], None] | None) -> Iterator[pd.DataFrame]:
            reader = make_engine(settings.warehouse_url)
            first = 1
            try:
                with reader.connect() as conn:
                    for frame in pd.read_sql_query(sa.text(query), conn, chunksize=size):
                        frame = frame.rename(columns={LOAN_ID: id_column})
                        frame.index = pd.RangeIndex(first, first + len(frame))
                        first += len(frame)
                        if on_rows is not None:
                            on_rows(len(frame))
                        yield frame
            finally:
                reader.dispose()

        return WAREHOUSE_UNLABELLED, digest, len(ids), from_warehouse
    files = expand_sources([source])
    if len(files) != 1:
        raise LoanriskError(f"{source}: score one file at a time ({len(files)} matched)")
    raw_file = describe(files[0])

    def from_file(on_bytes: Callable[[int], None] | None) -> Iterator[pd.DataFrame]:
        yield from read_chunks(
            raw_file.url, chunk_size=size, encoding=settings.ingest.encoding, on_bytes=on_bytes
        )

    return raw_file.url, raw_file.content_hash, raw_file.size, from_file


def _writes(rows: pd.DataFrame) -> Any:
    def write(conn: sa.Connection) -> None:
        write_frame(conn, predictions, rows)

    return write


def _score_chunk(
    bundle: ScoringBundle,
    chunk: pd.DataFrame,
    run: ScoringRun,
    name: str,
    version: str,
    now: datetime,
) -> tuple[pa.Table, pd.DataFrame]:
    out, features = bundle.predict_with_features(chunk)
    out.index = chunk.index
    # Deterministic ids: the run id (input hash + model version) and the source row.
    ids = [f"{run.scoring_run_id[:20]}{row:012x}" for row in chunk.index]
    out.insert(0, "prediction_id", ids)
    out.insert(1, "source_row", chunk.index.to_numpy())
    out["reasons"] = out["reasons"].map(lambda r: json.dumps(r) if isinstance(r, list) else None)
    valid = out["pd"].notna().to_numpy()
    run.rows_in += len(chunk)
    run.rows_scored += int(valid.sum())
    run.rows_invalid += int((~valid).sum())
    table = pa.Table.from_pandas(out.astype({"default_class": "Int64"}), preserve_index=False)
    if not valid.any():
        return table, pd.DataFrame()
    scored = out[valid]
    # The application as sent: the fields the model takes (not outcome columns of the file).
    fields = [c for c in chunk.columns if c in bundle.input_fields()]
    inputs = chunk.loc[valid, fields].to_json(orient="records", lines=True).splitlines()
    features.index = chunk.index[features.index.to_numpy()]
    feature_json = features.loc[scored.index].to_json(orient="records", lines=True).splitlines()
    rows = pd.DataFrame(
        {
            "prediction_id": scored["prediction_id"].to_numpy(),
            "request_id": run.scoring_run_id,
            "client_id": None,
            "loan_id": scored["loan_id"].astype(str).to_numpy(),
            "model_name": name,
            "model_version": version,
            "run_id": None,
            "alias": Alias.PRODUCTION.value,
            "input": inputs,
            "features": feature_json,
            "pd": scored["pd"].to_numpy(),
            "default_class": scored["default_class"].astype(int).to_numpy(),
            "decision": scored["decision"].to_numpy(),
            "grade": scored["grade"].to_numpy(),
            "reasons": scored["reasons"].to_numpy(),
            "latency_ms": None,
            "source": "batch",
            "scoring_run_id": run.scoring_run_id,
            "created_at": now,
        }
    )
    return table, rows


def latest_run(settings: Settings) -> dict[str, Any] | None:
    """The pointer the last scoring run left (monitoring reads it)."""
    pointer = settings.home / "scores" / "latest.json"
    return json.loads(pointer.read_text()) if pointer.exists() else None
