"""Bulk writes: COPY (binary, else CSV) on PostgreSQL, executemany on SQLite; keyed upserts."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from loanrisk.warehouse import pgcopy

_COPY_PIECE = 4 << 20


def write_frame(
    conn: sa.Connection, table: sa.Table, frame: pd.DataFrame, *, into: str | None = None
) -> None:
    """Append ``frame`` (columns named like ``table``'s) to ``table`` or to table ``into``."""
    if frame.empty:
        return
    write_arrow(conn, table, pa.Table.from_pandas(frame, preserve_index=False), into=into)


def write_arrow(
    conn: sa.Connection,
    table: sa.Table,
    arrow: pa.Table,
    *,
    into: str | None = None,
    constants: dict[str, Any] | None = None,
) -> None:
    """Append an Arrow table (columns named like ``table``'s) to ``table`` or ``into``.

    ``constants`` are columns with one value for every row (a run id, a timestamp): on
    PostgreSQL their COPY fields are encoded once, not once per row.
    """
    if not arrow.num_rows:
        return
    if constants and conn.dialect.name != "postgresql":
        arrow, constants = _with_constants(arrow, constants), None
    _write_arrow(conn, table, _to_arrow(table, arrow), into, constants)


def insert_new_rows(conn: sa.Connection, table: sa.Table, rows: list[dict], *, key: str) -> None:
    """Insert ``rows`` (dicts keyed by column), skipping keys already in ``table``.

    PostgreSQL: COPY into a temporary stage table, then one ``INSERT ... SELECT ... ON
    CONFLICT DO NOTHING`` (far less Python work per row than bound parameters).
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        insert = sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
        conn.execute(insert, rows)
        return
    arrow = _to_arrow(table, pa.Table.from_pylist(rows))
    _through_stage(
        conn,
        table,
        arrow.column_names,
        key,
        lambda stage: _write_arrow(conn, table, arrow, stage),
    )


def _through_stage(
    conn: sa.Connection, table: sa.Table, columns: list[str], key: str, fill: Any
) -> None:
    """``fill(stage)`` a temporary copy of ``table``'s shape, then move the rows whose
    ``key`` is new into ``table`` with one ``INSERT ... ON CONFLICT DO NOTHING``."""
    quote = conn.dialect.identifier_preparer.quote
    target, listed = quote(table.name), ", ".join(quote(c) for c in columns)
    stage = f"stage_{table.name}"
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {quote(stage)} AS "
        f"SELECT {listed} FROM {target} WHERE 1 = 0"
    )
    fill(stage)
    conn.exec_driver_sql(
        f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {quote(stage)} "
        f"ON CONFLICT ({quote(key)}) DO NOTHING"
    )
    conn.exec_driver_sql(f"DELETE FROM {quote(stage)}")


def _write_arrow(
    conn: sa.Connection,
    table: sa.Table,
    arrow: pa.Table,
    into: str | None,
    constants: dict[str, Any] | None = None,
) -> None:
    name = into or table.name
    quote = conn.dialect.identifier_preparer.quote
    if conn.dialect.name == "postgresql":
        _copy(conn, quote(name), arrow, constants or {})
        return
    columns = ", ".join(quote(c) for c in arrow.column_names)
    marks = ", ".join("?" for _ in arrow.column_names)
    rows = list(zip(*(_sqlite_values(column) for column in arrow.columns), strict=True))
    conn.exec_driver_sql(f"INSERT INTO {quote(name)} ({columns}) VALUES ({marks})", rows)


def upsert_frame(
    conn: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    *,
    key: str,
    touched: str | None = None,
    known_new: bool = False,
) -> tuple[int, int]:
    """Insert or replace rows by ``key``; returns (new rows, updated rows).

    Rows whose keys are all new go straight in (COPY on PostgreSQL); otherwise they pass
    through a temporary stage table and ``INSERT ... ON CONFLICT DO UPDATE``.
    ``touched`` names a timestamp column set to now on update; ``known_new`` skips the
    look-up when the caller knows no key exists yet.
    """
    if frame.empty:
        return 0, 0
    if known_new or not existing_keys(conn, table, key, frame[key]):
        write_frame(conn, table, frame)
        return len(frame), 0
    quote = conn.dialect.identifier_preparer.quote
    stage = f"stage_{table.name}"
    target, q_stage, q_key = quote(table.name), quote(stage), quote(key)
    columns = [str(c) for c in frame.columns]
    listed = ", ".join(quote(c) for c in columns)
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {q_stage} AS SELECT {listed} FROM {target} WHERE 1 = 0"
    )
    conn.exec_driver_sql(f"DELETE FROM {q_stage}")
    write_frame(conn, table, frame, into=stage)
    updated = conn.exec_driver_sql(
        f"SELECT count(*) FROM {q_stage} s WHERE EXISTS "
        f"(SELECT 1 FROM {target} t WHERE t.{q_key} = s.{q_key})"
    ).scalar_one()
    assignments = [f"{quote(c)} = excluded.{quote(c)}" for c in columns if c != key]
    if touched is not None:
        assignments.append(f"{quote(touched)} = CURRENT_TIMESTAMP")
    conn.exec_driver_sql(
        f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {q_stage} WHERE true "
        f"ON CONFLICT ({q_key}) DO UPDATE SET {', '.join(assignments)}"
    )
    conn.exec_driver_sql(f"DELETE FROM {q_stage}")
    return len(frame) - int(updated), int(updated)


def existing_keys(conn: sa.Connection, table: sa.Table, key: str, keys: pd.Series) -> int:
    """How many of ``keys`` are already in ``table``."""
    quote = conn.dialect.identifier_preparer.quote
    values = [str(k) for k in keys]
    if conn.dialect.name == "postgresql":
        # One text parameter split server-side: far cheaper than binding a big array.
        sql = (
            f"SELECT count(*) FROM {quote(table.name)} "
            f"WHERE {quote(key)} = ANY(string_to_array(%(keys)s, E'\\x1f'))"
        )
        return int(conn.exec_driver_sql(sql, {"keys": "\x1f".join(values)}).scalar_one())
    sql = (
        f"SELECT count(*) FROM {quote(table.name)} "
        f"WHERE {quote(key)} IN (SELECT value FROM json_each(?))"
    )
    return int(conn.exec_driver_sql(sql, (json.dumps(values),)).scalar_one())


def _to_arrow(table: sa.Table, arrow: pa.Table) -> pa.Table:
    for i, name in enumerate(arrow.column_names):
        column_type = table.c[name].type
        if isinstance(column_type, sa.Date) and not pa.types.is_date(arrow.column(i).type):
            arrow = arrow.set_column(i, name, pc.cast(arrow.column(i), pa.date32()))
        elif pa.types.is_null(arrow.column(i).type):
            arrow = arrow.set_column(i, name, arrow.column(i).cast(pa.string()))
    return arrow


def copy_text(
    conn: sa.Connection,
    table: sa.Table,
    columns: list[str],
    data: bytes,
    *,
    key: str | None = None,
) -> None:
    """Append rows given in PostgreSQL's COPY text format (tab-separated, ``\\N`` for NULL)
    to ``table``. With ``key``, rows whose key is already there are skipped (through a
    temporary stage table and ``INSERT ... ON CONFLICT DO NOTHING``). PostgreSQL only."""
    quote = conn.dialect.identifier_preparer.quote
    listed = ", ".join(quote(c) for c in columns)

    def copy_into(relation: str) -> None:
        statement = f"COPY {quote(relation)} ({listed}) FROM STDIN"
        _run_copy(conn, statement, lambda copy: copy.write(data))

    if key is None:
        copy_into(table.name)
    else:
        _through_stage(conn, table, columns, key, copy_into)


def _run_copy(conn: sa.Connection, statement: str, feed: Any) -> None:
    """One COPY ... FROM STDIN on the driver's connection, errors raised as SQLAlchemy's."""

    def run(raw: Any) -> None:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            feed(copy)

    _on_driver(conn, statement, run)


def _copy(conn: sa.Connection, relation: str, arrow: pa.Table, constants: dict[str, Any]) -> None:
    """COPY ``arrow`` into ``relation``: binary when every column has an encoder, else CSV."""
    _on_driver(
        conn, f"COPY {relation}", lambda raw: _copy_rows(conn, raw, relation, arrow, constants)
    )


def _on_driver(conn: sa.Connection, what: str, work: Any) -> None:
    """Run ``work(driver_connection)``; its errors are raised as SQLAlchemy's (a dropped
    connection is invalidated), like every other statement's."""
    raw = conn.connection.driver_connection
    assert raw is not None
    driver_error = conn.dialect.loaded_dbapi.Error
    try:
        work(raw)
    except driver_error as exc:
        lost = conn.dialect.is_disconnect(exc, raw, None)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            what, None, exc, driver_error, connection_invalidated=lost
        ) from exc


def _copy_rows(
    conn: sa.Connection, raw: Any, relation: str, arrow: pa.Table, constants: dict[str, Any]
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    with raw.cursor() as cursor:
        rows = pgcopy.encode(arrow, pgcopy.column_types(cursor, relation), constants)
        columns = ", ".join(quote(c) for c in [*arrow.column_names, *constants])
        if rows is not None:
            with cursor.copy(f"COPY {relation} ({columns}) FROM STDIN (FORMAT binary)") as copy:
                for piece in pgcopy.pieces(rows):
                    copy.write(piece)
            return
        buffer = io.BytesIO()
        pacsv.write_csv(
            _with_constants(arrow, constants),
            buffer,
            write_options=pacsv.WriteOptions(include_header=False),
        )
        data = buffer.getbuffer()
        with cursor.copy(f"COPY {relation} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, len(data), _COPY_PIECE):
                copy.write(data[start : start + _COPY_PIECE])


def _with_constants(arrow: pa.Table, constants: dict[str, Any]) -> pa.Table:
    """``arrow`` with each constant as a column of its own (repeated on every row)."""
    for name, value in constants.items():
        arrow = arrow.append_column(name, pa.repeat(pa.scalar(value), arrow.num_rows))
    return arrow


def _sqlite_values(column: pa.ChunkedArray) -> list[object]:
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.string())
    return column.to_pylist()
