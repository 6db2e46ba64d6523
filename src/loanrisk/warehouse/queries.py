"""The warehouse queries that stages and the service run (SQL lives here, not in routes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loanrisk.constants import LABEL, VINTAGE, Table
from loanrisk.warehouse.schema import outcomes, predictions


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


def database_answers(engine: sa.Engine) -> str | None:
    """None when the warehouse answers a trivial query, else the kind of failure."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        return type(exc).__name__
    return None


def find_prediction(engine: sa.Engine, prediction_id: str) -> dict[str, Any] | None:
    """One row of the prediction log, or None."""
    with engine.connect() as conn:
        found = (
            conn.execute(sa.select(predictions).where(predictions.c.prediction_id == prediction_id))
            .mappings()
            .first()
        )
    return dict(found) if found else None


def recent_predictions(
    engine: sa.Engine,
    limit: int,
    *,
    before: str | None = None,
    filters: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The newest rows of the prediction log (what the officer page lists), newest first:
    ``before`` a prediction id (the next page starts after it), ``filters`` exact values of
    ``decision``, ``grade``, ``source``, ``model_version``, or ``search`` for a client or
    loan id."""
    p = predictions.c
    columns = (p.prediction_id, p.created_at, p.client_id, p.loan_id, p.pd, p.decision)
    query = sa.select(*columns, p.grade, p.reasons, p.model_version, p.source)
    for name, value in (filters or {}).items():
        if name == "search":
            query = query.where(sa.or_(p.client_id == value, p.loan_id == value))
        else:
            query = query.where(getattr(p, name) == value)
    with engine.connect() as conn:
        if before is not None:
            at = conn.execute(
                sa.select(p.created_at).where(p.prediction_id == before)
            ).scalar_one_or_none()
            if at is not None:
                query = query.where(
                    sa.or_(
                        p.created_at < at,
                        sa.and_(p.created_at == at, p.prediction_id < before),
                    )
                )
        query = query.order_by(p.created_at.desc(), p.prediction_id.desc()).limit(limit)
        return [dict(r) for r in conn.execute(query).mappings().all()]


def store_outcome(
    engine: sa.Engine,
    keys: dict[str, str],
    *,
    defaulted: bool,
    observed_at: Any,
    pending: bool,
) -> tuple[int, int | None]:
    """Record an outcome reported by prediction id, client id or loan id (``keys``):
    (predictions it matches, new outcome id). With a prediction id that matches nothing
    and is not ``pending`` (answered, not yet in the database), nothing is stored."""
    with engine.begin() as conn:
        condition = sa.or_(*(predictions.c[k] == v for k, v in keys.items()))
        matched = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(predictions).where(condition)
            ).scalar_one()
        )
        if "prediction_id" in keys and not matched and not pending:
            return 0, None
        new_id = conn.execute(
            sa.insert(outcomes)
            .values(
                prediction_id=keys.get("prediction_id"),
                client_id=keys.get("client_id"),
                loan_id=keys.get("loan_id"),
                defaulted=int(defaulted),
                observed_at=observed_at,
                source="api",
            )
            .returning(outcomes.c.outcome_id)
        ).scalar_one()
    return max(matched, int(pending)), int(new_id)


def labels_by_vintage(engine: sa.Engine) -> list[dict[str, Any]]:
    """Bad, good and censored (no label yet) loans of silver per vintage month."""
    query = (
        f"SELECT {VINTAGE} AS vintage, "
        f"SUM(CASE WHEN {LABEL} = 1 THEN 1 ELSE 0 END) AS bad, "
        f"SUM(CASE WHEN {LABEL} = 0 THEN 1 ELSE 0 END) AS good, "
        f"SUM(CASE WHEN {LABEL} IS NULL THEN 1 ELSE 0 END) AS censored "
        f"FROM {Table.SILVER} GROUP BY {VINTAGE} ORDER BY {VINTAGE}"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query)).mappings().all()
    return [
        {
            "vintage": "none"
            if r["vintage"] is None
            else pd.Timestamp(r["vintage"]).strftime("%Y-%m"),
            "bad": int(r["bad"] or 0),
            "good": int(r["good"] or 0),
            "censored": int(r["censored"] or 0),
        }
        for r in rows
    ]


def protected_attributes(engine: sa.Engine, columns: list[str]) -> pd.DataFrame:
    """The protected attributes of the labelled silver loans, by loan id (for the
    fairness report: they are never features)."""
    if not columns:
        return pd.DataFrame(columns=["loan_id"])
    listed = ", ".join(columns)
    query = f"SELECT loan_id, {listed} FROM {Table.SILVER} WHERE {LABEL} IS NOT NULL"
    with engine.connect() as conn:
        return pd.read_sql_query(sa.text(query), conn)
