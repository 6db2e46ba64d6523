"""Bulk writes to PostgreSQL: loanrisk's Arrow-kernel binary COPY (`warehouse/pgcopy.py`)
against psycopg 3's own binary COPY (`Copy.set_types` + `write_row`) and Arrow CSV COPY.

    python benchmarks/pgwrite.py [--rows 100000] [--repeat 3]

Writes the same prediction-log rows (batch-scoring shape: two JSON documents of ~1 KB
each, ids, PD, decision, grade, reasons, timestamps) into `predictions` of a fresh
database, three ways, each timed from the Arrow table in memory to the committed rows
(encoding included), best of --repeat, the table emptied between runs. The issue it
answers: keep hand-written machinery only where it beats the library.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from common import POSTGRES_URL
from pydantic import SecretStr

from loanrisk.config import get_settings
from loanrisk.warehouse.bulk import write_arrow
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.schema import predictions


def rows(n: int) -> tuple[pa.Table, dict[str, Any]]:
    """n prediction-log rows (own columns) and the columns constant for all of them."""
    rng = np.random.default_rng(1)
    application = {f"field_{i}": round(float(v), 3) for i, v in enumerate(rng.normal(size=40))}
    text = json.dumps(application)
    pd_ = rng.uniform(size=n)
    table = pa.table(
        {
            "prediction_id": [uuid.uuid4().hex for _ in range(n)],
            "loan_id": [str(i) for i in range(n)],
            "input": pa.repeat(pa.scalar(text), n).cast(pa.string()),
            "features": pa.repeat(pa.scalar(text), n).cast(pa.string()),
            "pd": pd_,
            "default_class": pa.array((pd_ > 0.5).astype(np.int16)),
            "decision": np.where(pd_ > 0.5, "decline", "approve"),
            "grade": np.where(pd_ > 0.5, "E", "B"),
            "reasons": pa.repeat(pa.scalar('["Debt-to-income ratio", "FICO"]'), n),
        }
    )
    constants = {
        "request_id": "bench",
        "client_id": None,
        "model_name": "loan-default",
        "model_version": "1",
        "run_id": None,
        "alias": "production",
        "latency_ms": None,
        "source": "batch",
        "scoring_run_id": "bench",
        "created_at": datetime.now(UTC),
    }
    return table, constants


def loanrisk_binary(engine: sa.Engine, table: pa.Table, constants: dict[str, Any]) -> None:
    with engine.begin() as conn:
        write_arrow(conn, predictions, table, constants=constants)


def psycopg_binary(engine: sa.Engine, table: pa.Table, constants: dict[str, Any]) -> None:
    names = [*table.column_names, *constants]
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = 'predictions'::regclass AND a.attnum > 0"
            )
            types = dict(cursor.fetchall())
            listed = ", ".join(f'"{n}"' for n in names)
            with cursor.copy(f"COPY predictions ({listed}) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types([types[n].split("(")[0] for n in names])
                fixed = tuple(constants.values())
                for row in zip(
                    *(table.column(n).to_pylist() for n in table.column_names), strict=True
                ):
                    copy.write_row(row + fixed)


def arrow_csv(engine: sa.Engine, table: pa.Table, constants: dict[str, Any]) -> None:
    for name, value in constants.items():
        table = table.append_column(name, pa.repeat(pa.scalar(value), table.num_rows))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, write_options=pacsv.WriteOptions(include_header=False))
    listed = ", ".join(f'"{n}"' for n in table.column_names)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        statement = f"COPY predictions ({listed}) FROM STDIN (FORMAT csv)"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getbuffer())


WAYS = {
    "loanrisk binary COPY (pgcopy, Arrow kernels)": loanrisk_binary,
    "psycopg binary COPY (set_types + write_row)": psycopg_binary,
    "CSV COPY (Arrow CSV writer)": arrow_csv,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
    )
    args = parser.parse_args()
    table, constants = rows(args.rows)
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"loanrisk_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    results: dict[str, float] = {}
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        settings = get_settings()
        settings.warehouse.url = SecretStr(url)
        with Warehouse.open(settings) as warehouse:
            for label, way in WAYS.items():
                best = float("inf")
                for _ in range(args.repeat):
                    with warehouse.engine.begin() as conn:
                        conn.exec_driver_sql("TRUNCATE predictions")
                    started = time.perf_counter()
                    way(warehouse.engine, table, constants)
                    best = min(best, time.perf_counter() - started)
                with warehouse.engine.connect() as conn:
                    stored = conn.exec_driver_sql("SELECT count(*) FROM predictions").scalar()
                assert stored == args.rows, (label, stored)
                results[label] = best
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    reference = results["loanrisk binary COPY (pgcopy, Arrow kernels)"]
    print(f"\n{args.rows:,} prediction-log rows into PostgreSQL, best of {args.repeat}\n")
    header = f"{'way':<46} {'seconds':>8} {'rows/s':>9} {'vs loanrisk':>12}"
    print(header)
    print("-" * len(header))
    for label, seconds in results.items():
        print(
            f"{label:<46} {seconds:>8.2f} {args.rows / seconds:>9,.0f} "
            f"{seconds / reference:>11.2f}x"
        )
    print("\nvs loanrisk: seconds relative to loanrisk's binary COPY (above 1 = slower).")


if __name__ == "__main__":
    main()
