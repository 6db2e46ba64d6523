"""Bulk writes on real warehouses: binary COPY on PostgreSQL round-trips every type it
encodes, falls back to CSV where it cannot, SQLite gets the same rows, and the prediction
log's appends never duplicate."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from loanrisk.config import get_settings
from loanrisk.serving.predlog import COLUMNS, PredictionLog, encode_rows
from loanrisk.warehouse import pgcopy
from loanrisk.warehouse.bulk import write_arrow
from loanrisk.warehouse.engine import Warehouse

pytestmark = pytest.mark.integration

metadata = sa.MetaData()
sample = sa.Table(
    "bulk_sample",
    metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("note", sa.Text),
    sa.Column("amount", sa.Double),
    sa.Column("small", sa.SmallInteger),
    sa.Column("count", sa.BigInteger),
    sa.Column("flag", sa.Boolean),
    sa.Column("day", sa.Date),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("source", sa.Text),
    sa.Column("run_at", sa.DateTime(timezone=True)),
)
WHEN = datetime(2026, 11, 21, 10, 30, 15, 123456, tzinfo=UTC)
ROWS = pa.table(
    {
        "id": ["a", "b", "c"],
        "note": ['{"json": "with \\"quotes\\""}', None, "tab\tnew\nline é"],
        "amount": pa.array([0.1, None, float("nan")], pa.float64()),
        "small": pa.array([1, None, -32768], pa.int64()),
        "count": pa.array([2**40, 0, None], pa.int64()),
        "flag": [True, None, False],
        "day": pa.array([date(1999, 12, 31), date(2000, 1, 1), None]),
        "at": pa.array([WHEN, None, datetime(1970, 1, 1, tzinfo=UTC)], pa.timestamp("us", "UTC")),
    }
)
CONSTANTS = {"source": "batch", "run_at": WHEN}


def read_back(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(sample).order_by(sample.c.id))]


def check(rows: list[tuple]) -> None:
    a, b, c = rows
    assert a[1] == '{"json": "with \\"quotes\\""}' and b[1] is None and c[1] == "tab\tnew\nline é"
    assert a[2] == 0.1 and b[2] is None and c[2] != c[2]  # NaN stays NaN
    assert (a[3], b[3], c[3]) == (1, None, -32768)
    assert (a[4], b[4], c[4]) == (2**40, 0, None)
    assert (a[5], b[5], c[5]) == (True, None, False)
    assert (a[6], b[6], c[6]) == (date(1999, 12, 31), date(2000, 1, 1), None)
    assert a[7].astimezone(UTC) == WHEN and b[7] is None
    assert c[7].astimezone(UTC) == datetime(1970, 1, 1, tzinfo=UTC)
    assert {r[8] for r in rows} == {"batch"}
    assert {r[9].astimezone(UTC) for r in rows} == {WHEN}


@pytest.mark.postgres
def test_binary_copy_round_trips_every_encoded_type(postgres_url):
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            types = pgcopy.column_types(cursor, "bulk_sample")
        assert pgcopy.encode(ROWS, types, CONSTANTS) is not None  # the binary path is taken
        write_arrow(conn, sample, ROWS, constants=CONSTANTS)
    check(read_back(engine))
    engine.dispose()


@pytest.mark.postgres
def test_unencodable_columns_fall_back_to_csv(postgres_url):
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE bulk_sample ALTER COLUMN amount TYPE numeric(12, 4)")
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            assert pgcopy.encode(ROWS, pgcopy.column_types(cursor, "bulk_sample")) is None
        write_arrow(conn, sample, ROWS.drop(["amount"]), constants=CONSTANTS)
        write_arrow(conn, sample, pa.table({"id": ["d"], "amount": [1.25]}), constants=CONSTANTS)
    rows = read_back(engine)
    assert len(rows) == 4 and float(rows[3][2]) == 1.25
    engine.dispose()


@pytest.mark.postgres
def test_out_of_range_integers_are_refused_by_postgres_not_wrapped(postgres_url):
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    too_big = pa.table({"id": ["x"], "small": pa.array([70_000], pa.int64())})
    with pytest.raises(sa.exc.DataError, match="smallint"), engine.begin() as conn:
        write_arrow(conn, sample, too_big)
    assert read_back(engine) == []
    engine.dispose()


def test_sqlite_gets_the_same_rows(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        write_arrow(conn, sample, ROWS, constants=CONSTANTS)
    rows = read_back(engine)
    assert len(rows) == 3 and rows[0][1] == '{"json": "with \\"quotes\\""}'
    assert (rows[0][3], rows[2][3]) == (1, -32768) and rows[0][8] == "batch"
    engine.dispose()


def _log_row(prediction_id: str) -> dict:
    return {
        "prediction_id": prediction_id,
        "request_id": "r1",
        "client_id": None,
        "loan_id": None,
        "model_name": "m",
        "model_version": "1",
        "run_id": None,
        "alias": "production",
        "input": '{"loan_amnt": "1000"}',
        "features": '{"loan_amnt": 1000}',
        "pd": 0.1,
        "default_class": 0,
        "decision": "approve",
        "grade": "A",
        "reasons": "[]",
        "latency_ms": 1.5,
        "source": "api",
        "scoring_run_id": None,
        "created_at": WHEN,
    }


@pytest.mark.postgres
def test_prediction_log_appends_and_never_duplicates_a_retried_batch(postgres_url, tmp_path):
    """Live batches are plain COPY appends; a batch whose ids partly went in already (a
    commit whose reply was lost) falls back to skipping the known ids."""
    settings = get_settings(home=tmp_path / "home")
    settings.warehouse.url = SecretStr(postgres_url)
    warehouse = Warehouse.open(settings)
    writer = PredictionLog(warehouse.engine, tmp_path / "spool")
    lines = {i: encode_rows([_log_row(i)])[0] for i in "abcd"}
    writer._insert([lines["a"], lines["b"]], COLUMNS)
    writer._insert([lines["b"], lines["c"]], COLUMNS)  # "b" again: skipped, not an error
    writer._insert([lines["c"], lines["d"]], COLUMNS, replay=True)
    with warehouse.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT prediction_id FROM predictions"))]
    warehouse.engine.dispose()
    assert sorted(ids) == ["a", "b", "c", "d"]


@pytest.mark.postgres
def test_long_text_is_compressed_with_lz4_where_postgres_has_it(postgres_url, tmp_path):
    """The prediction log's JSON and bronze's raw rows: lz4 (about a third of pglz's
    server CPU per log row), new rows stored with it."""
    settings = get_settings(home=tmp_path / "home")
    settings.warehouse.url = SecretStr(postgres_url)
    warehouse = Warehouse.open(settings)
    with warehouse.engine.connect() as conn:
        has_lz4 = conn.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
        methods = dict(
            conn.exec_driver_sql(
                "SELECT attrelid::regclass::text || '.' || attname, attcompression"
                " FROM pg_attribute"
                " WHERE attrelid IN ('predictions'::regclass, 'bronze_loans'::regclass)"
                " AND attname IN ('input', 'features', 'reasons', 'payload')"
            ).all()
        )
    writer = PredictionLog(warehouse.engine, tmp_path / "spool")
    row = _log_row("long")
    row["input"] = '{"text": "' + "0123456789abcdef" * 400 + '"}'  # compressible, > 2 KB
    writer._insert(encode_rows([row]), COLUMNS)
    with warehouse.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT pg_column_compression(input), input FROM predictions"
        ).one()
    warehouse.engine.dispose()
    assert stored[1] == row["input"]
    if not has_lz4:
        pytest.skip("this PostgreSQL was built without lz4")
    assert methods == {
        "predictions.input": "l",
        "predictions.features": "l",
        "predictions.reasons": "l",
        "bronze_loans.payload": "l",
    }
    assert stored[0] == "lz4"


@pytest.mark.postgres
def test_the_log_brin_index_does_not_queue_a_summary_per_range(postgres_url, tmp_path):
    """autosummarize filled autovacuum's 256-item queue under the log's steady inserts,
    and PostgreSQL then logged 'request for BRIN range summarization ... was not
    recorded' once per block range (584 lines for one 300,000-row batch score here);
    VACUUM summarizes the ranges instead."""
    settings = get_settings(home=tmp_path / "home")
    settings.warehouse.url = SecretStr(postgres_url)
    warehouse = Warehouse.open(settings)
    with warehouse.engine.connect() as conn:
        options = conn.exec_driver_sql(
            "SELECT c.reloptions, am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
            " WHERE c.relname = 'ix_predictions_created_at'"
        ).one()
    warehouse.engine.dispose()
    assert tuple(options) == (["autosummarize=off"], "brin")
