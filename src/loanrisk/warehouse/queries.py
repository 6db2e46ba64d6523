"""Reads of the warehouse for training, packaging and promotion."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import sqlalchemy as sa

from loanrisk.constants import LABEL, VINTAGE, Table


def read_gold(engine: sa.Engine, *, labelled_only: bool = True) -> pd.DataFrame:
    """Gold rows (labelled ones by default), vintage as datetime, label as int."""
    where = f" WHERE {LABEL} IS NOT NULL" if labelled_only else ""
    with engine.connect() as conn:
        gold = pd.read_sql_query(sa.text(f"SELECT * FROM {Table.GOLD}{where}"), conn)
    gold[VINTAGE] = pd.to_datetime(gold[VINTAGE])
    if labelled_only:
        gold[LABEL] = gold[LABEL].astype("int64")
    return gold.drop(columns=["batch_id", "built_at"], errors="ignore")


def raw_rows(engine: sa.Engine, loan_ids: list[str]) -> pd.DataFrame:
    """The raw rows (text, as in the source file) that produced these silver loans."""
    if not loan_ids:
        return pd.DataFrame()
    query = sa.text(
        f"SELECT s.loan_id, b.payload, i.columns FROM {Table.SILVER} s "
        f"JOIN {Table.BRONZE} b ON b.batch_id = s.batch_id AND b.source_row = s.source_row "
        f"JOIN {Table.INGESTION_BATCHES} i ON i.batch_id = s.batch_id "
        "WHERE s.loan_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    with engine.connect() as conn:
        rows = conn.execute(query, {"ids": loan_ids}).all()
    records = {
        r.loan_id: dict(zip(json.loads(r.columns), json.loads(r.payload), strict=True))
        for r in rows
    }
    return pd.DataFrame([records[i] for i in loan_ids if i in records])


def read_silver(engine: sa.Engine, *, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Labelled silver rows (typed fields), optionally from vintage ``since`` on."""
    query = f"SELECT * FROM {Table.SILVER} WHERE {LABEL} IS NOT NULL"
    params = {}
    if since is not None:
        query += f" AND {VINTAGE} >= :since"
        params["since"] = since.date()
    with engine.connect() as conn:
        silver = pd.read_sql_query(sa.text(query), conn, params=params)
    silver[VINTAGE] = pd.to_datetime(silver[VINTAGE])
    return silver


def latest_vintage(engine: sa.Engine) -> pd.Timestamp | None:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text(f"SELECT max({VINTAGE}) FROM {Table.SILVER} WHERE {LABEL} IS NOT NULL")
        ).scalar()
    return None if value is None else pd.Timestamp(value)


def gold_state(engine: sa.Engine) -> str | None:
    """A digest of the labelled gold rows, cheap enough to check before every training run:
    per ingestion batch, its labelled rows and defaults (a re-loaded loan moves to the batch
    that replaced it, so any change to gold changes the digest). None when nothing is
    labelled."""
    query = (
        f"SELECT batch_id, COUNT(*), SUM({LABEL}) FROM {Table.GOLD} "
        f"WHERE {LABEL} IS NOT NULL GROUP BY batch_id ORDER BY batch_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query)).all()
    if not rows:
        return None
    text = "\n".join(f"{batch}:{count}:{int(bad or 0)}" for batch, count, bad in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scoring_totals(engine: sa.Engine) -> tuple[int, int]:
    """(batch scoring runs, applications they scored)."""
    with engine.connect() as conn:
        runs, rows = conn.execute(
            sa.text(f"SELECT count(*), coalesce(sum(rows_scored), 0) FROM {Table.SCORING_RUNS}")
        ).one()
    return int(runs), int(rows)
