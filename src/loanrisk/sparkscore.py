"""Batch scoring on Spark: ``loanrisk score FILE --engine spark [--master URL]``.

The same run as the default engine (``loanrisk.batch``), with the scoring spread over
Spark's executors:

1. Spark reads the file (CSV, CSV.gz or Parquet; a local path or any URI Hadoop reads)
   with every column as text, as ``read_chunks`` does, and numbers its rows in file order
   (1-based ``source_row``) without leaving the JVM.
2. The registered version behind ``@production`` scores each partition through
   ``mlflow.pyfunc.spark_udf`` with ``params={"output": "spark"}``: one struct column
   holding the answer (PD, class, decision, grade, reasons, error) and the prediction
   log's JSON of the application and the model inputs, computed by
   ``loanrisk.modeling.answers.score_table``, the function the default engine calls.
3. Spark writes the rows, with the same deterministic prediction ids, as a Parquet folder
   (``scores-<run>-spark.parquet/``) under a ``.part`` name.
4. The driver streams that folder's valid rows into ``predictions`` (COPY on PostgreSQL)
   and writes the ``scoring_runs`` row in one transaction, then renames the folder. A
   rerun, or a retried Airflow task, finds the run and adds nothing; a run that died
   before its commit left no rows, and its ``.part`` folder is overwritten.

The driver must be able to read the output folder (a local path, or a URI pyarrow or
fsspec opens) and reach the warehouse; executors need only the input and the output.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loanrisk.batch import (
    OUTPUT_SCHEMA,
    ProductionModel,
    ScoringRun,
    check_header,
    log_predictions,
    new_run,
    one_file,
    record_run,
    recorded,
    run_lock,
)
from loanrisk.config import Settings
from loanrisk.errors import InputFileError, LoanriskError
from loanrisk.modeling.answers import SCORED_SCHEMA
from loanrisk.warehouse.engine import Warehouse, serialised

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ENGINES = ("pandas", "spark")
# The struct the pyfunc answers with under params={"output": "spark"}: SCORED_SCHEMA with
# text in one-element arrays and numbers as doubles (``answers.spark_columns``), made
# plain text, null and long again in Spark.
_SPARK_TYPES = {"string": "array<string>", "double": "double", "int64": "double"}
RESULT_TYPE = ", ".join(f"{f.name} {_SPARK_TYPES[str(f.type)]}" for f in SCORED_SCHEMA)


def spark_session(settings: Settings, master: str | None = None) -> SparkSession:
    """A Spark session set up for loanrisk: executors run this interpreter (its venv has
    the model's packages), Arrow batches of ``ingest.scoring_chunk_size`` rows (Spark's
    10,000 default costs a call per 10,000 rows), then ``spark.conf`` from the settings."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise LoanriskError(
            "the Spark engine needs PySpark: pip install 'loanrisk[spark]' (and Java 17+)"
        ) from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise LoanriskError("the Spark engine needs Java 17 or newer: set JAVA_HOME or PATH")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master or settings.spark.master)
        .appName("loanrisk-score")
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config(
            "spark.sql.execution.arrow.maxRecordsPerBatch",
            str(settings.ingest.scoring_chunk_size),
        )
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in settings.spark.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def score_file_spark(
    settings: Settings,
    warehouse: Warehouse,
    model: ProductionModel,
    source: str,
    *,
    master: str | None = None,
    output_dir: Path | None = None,
) -> ScoringRun:
    """Score one file with the @production version on Spark (see the module's doc)."""
    label, content_hash = _identify(settings, source)
    run = new_run(warehouse, model, label, content_hash)
    if run.skipped:
        return run
    check_header(settings, label, model.bundle.profile)
    started_at, started = datetime.now(UTC), time.perf_counter()
    folder = output_dir or settings.home / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"scores-{run.scoring_run_id}-spark.parquet"
    partial = output.with_name(output.name + ".part")
    try:
        # One process at a time per run, as the default engine (a retried task may overlap
        # the first; both would write the same partial folder): the other skips it.
        with serialised(warehouse.engine, run_lock(run.scoring_run_id), "score") as conn:
            if recorded(conn, run):
                return run
            _score(spark_session(settings, master), settings, model, run, source, partial)
            _load(conn, partial, run, model.name, started_at, settings.ingest.scoring_chunk_size)
            run.seconds = round(time.perf_counter() - started, 3)
            run.output = str(output.resolve())
            record_run(conn, run, model.name, started_at)
            shutil.rmtree(output, ignore_errors=True)  # a folder left by a run never recorded
            partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    run.rows_per_second = round(run.rows_in / run.seconds, 1) if run.seconds else 0.0
    return run


def _identify(settings: Settings, source: str) -> tuple[str, str]:
    """(label, content hash) of the input: the SHA-256 of its bytes, as the default engine
    hashes it (so both engines know the same run), for anything fsspec opens."""
    if source.startswith("warehouse:"):
        raise LoanriskError(f"{source}: the Spark engine scores files; use the default engine")
    raw = one_file(settings, source)
    return raw.url, raw.content_hash


def _score(
    spark: SparkSession,
    settings: Settings,
    model: ProductionModel,
    run: ScoringRun,
    source: str,
    partial: Path,
) -> None:
    import mlflow
    from pyspark.sql import functions as F

    frame = _read(spark, source, settings)
    numbered = _numbered(frame)
    if numbered.rdd.getNumPartitions() < spark.sparkContext.defaultParallelism:
        numbered = numbered.repartition(spark.sparkContext.defaultParallelism)
    fields = [c for c in frame.columns if model.bundle.reads(c)]
    if not fields:
        raise InputFileError(f"{source}: none of its columns is an input of the model")
    answer = mlflow.pyfunc.spark_udf(
        spark,
        f"models:/{model.name}/{model.version}",
        result_type=RESULT_TYPE,
        env_manager="local",
        params={"output": "spark"},
    )
    hex_row = F.lpad(F.lower(F.hex(F.col("source_row"))), 12, "0")
    scored = numbered.select(
        F.concat(F.lit(run.scoring_run_id[:20]), hex_row).alias("prediction_id"),
        "source_row",
        answer(*[F.col(f"`{c}`").alias(c) for c in fields]).alias("answer"),
    ).select("prediction_id", "source_row", "answer.*")
    for field in SCORED_SCHEMA:
        if str(field.type) == "string":
            scored = scored.withColumn(field.name, F.element_at(field.name, 1))
        else:
            number = F.col(field.name)
            typed = number.cast("long") if str(field.type) == "int64" else number
            scored = scored.withColumn(field.name, F.when(F.isnan(number), None).otherwise(typed))
    scored.sortWithinPartitions("source_row").write.mode("overwrite").parquet(str(partial))


def _read(spark: SparkSession, source: str, settings: Settings) -> DataFrame:
    """The file's rows, every column as text (CSV is read without inferring types;
    Parquet values are cast as ``read_chunks`` casts them, in the model's pyfunc)."""
    path = source.removeprefix("file://")
    if _is_parquet(path):
        return spark.read.parquet(path)
    return (
        spark.read.option("header", True)
        .option("inferSchema", False)
        .option("multiLine", True)  # a quoted field may hold a newline, as in LendingClub's
        .option("escape", '"')
        .option("encoding", settings.ingest.encoding)
        .csv(path)
    )


def _is_parquet(path: str) -> bool:
    if path.endswith(".parquet"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:  # a remote URI: the name decides
        return False


def _numbered(frame: DataFrame) -> DataFrame:
    """``frame`` with ``source_row``: 1-based position in the file, computed in the JVM
    (partition offsets from one count per partition, as ``zipWithIndex`` does)."""
    from pyspark.sql import functions as F

    tagged = frame.withColumn("_part", F.spark_partition_id()).withColumn(
        "_id", F.monotonically_increasing_id()
    )
    counts: dict[int, int] = dict(tagged.groupBy("_part").count().collect())
    offsets: dict[int, int] = {}
    total = 0
    for part in sorted(counts):
        offsets[part], total = total, total + counts[part]
    spark = frame.sparkSession
    starts = spark.createDataFrame(list(offsets.items()), "_part int, _offset long")
    # monotonically_increasing_id is (partition << 33) + position within the partition.
    position = F.col("_id") - F.shiftleft(F.col("_part").cast("long"), 33)
    return (
        tagged.join(F.broadcast(starts), "_part")
        .withColumn("source_row", F.col("_offset") + position + 1)
        .drop("_part", "_id", "_offset")
    )


def _load(
    conn: Any, partial: Path, run: ScoringRun, name: str, now: datetime, batch_rows: int
) -> None:
    """Stream the written rows into ``predictions`` and count the run's rows."""

    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(partial), format="parquet")
    for batch in dataset.to_batches(batch_size=batch_rows):
        table = pa.Table.from_batches([batch])
        invalid = table["pd"].null_count
        run.rows_in += table.num_rows
        run.rows_invalid += invalid
        run.rows_scored += table.num_rows - invalid
        log_predictions(conn, table, run, name, now)
    if run.rows_in == 0:
        raise InputFileError(f"{run.input}: the file has a header but no rows")


def output_frame(path: str) -> Any:
    """The scoring output of either engine as a pandas frame in source-row order (the
    Parquet file of the default engine, or the Spark engine's folder)."""
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table(columns=OUTPUT_SCHEMA.names)
    return table.sort_by("source_row").to_pandas()
