"""Warehouse tables. Fixed tables are declared here; silver and gold take their typed
columns from the dataset profile the warehouse was created with (see migrations)."""

from __future__ import annotations

import sqlalchemy as sa

from loanrisk.constants import (
    BATCH_ID,
    LABEL,
    LOAN_ID,
    SOURCE_ROW,
    TARGET_RAW,
    VINTAGE,
    Table,
)
from loanrisk.profiles.model import Parser, Profile

metadata = sa.MetaData()

warehouse_meta = sa.Table(
    Table.WAREHOUSE_META,
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

ingestion_batches = sa.Table(
    Table.INGESTION_BATCHES,
    metadata,
    sa.Column(BATCH_ID, sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("profile", sa.String(100), nullable=False),
    sa.Column("rows_bronze", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_silver_new", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_silver_updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_gold", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("columns", sa.Text, nullable=False),  # JSON list: the file's header
    sa.Column("columns_ignored", sa.Text, nullable=False, server_default="[]"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

bronze_loans = sa.Table(
    Table.BRONZE,
    metadata,
    sa.Column(
        BATCH_ID,
        sa.Integer,
        sa.ForeignKey(f"{Table.INGESTION_BATCHES}.{BATCH_ID}"),
        primary_key=True,
    ),
    sa.Column(SOURCE_ROW, sa.BigInteger, primary_key=True),
    # Every raw field as text: a JSON array in the order of ingestion_batches.columns.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column(
        "ingested_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.current_timestamp(),
    ),
)

silver_rejects = sa.Table(
    Table.REJECTS,
    metadata,
    sa.Column(
        "reject_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        BATCH_ID,
        sa.Integer,
        sa.ForeignKey(f"{Table.INGESTION_BATCHES}.{BATCH_ID}"),
        nullable=False,
        index=True,
    ),
    sa.Column(SOURCE_ROW, sa.BigInteger, nullable=False),
    sa.Column(LOAN_ID, sa.Text),
    sa.Column("column_name", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column(
        "rejected_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.current_timestamp(),
    ),
)


predictions = sa.Table(
    Table.PREDICTIONS,
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("client_id", sa.Text),
    sa.Column(LOAN_ID, sa.Text),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("alias", sa.Text),
    sa.Column("input", sa.Text, nullable=False),  # the raw application, JSON
    sa.Column("features", sa.Text),  # the model inputs, JSON
    sa.Column("pd", sa.Double, nullable=False),
    sa.Column("default_class", sa.SmallInteger, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("grade", sa.String(4), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list of plain-language reasons
    sa.Column("latency_ms", sa.Double),
    sa.Column("source", sa.String(16), nullable=False),  # "api" or "batch"
    sa.Column("scoring_run_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

outcomes = sa.Table(
    Table.OUTCOMES,
    metadata,
    sa.Column(
        "outcome_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("prediction_id", sa.String(36)),
    sa.Column("client_id", sa.Text),
    sa.Column(LOAN_ID, sa.Text),
    sa.Column("defaulted", sa.SmallInteger, nullable=False),
    sa.Column("observed_at", sa.Date),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column(
        "recorded_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.current_timestamp(),
    ),
)


scoring_runs = sa.Table(
    Table.SCORING_RUNS,
    metadata,
    sa.Column("scoring_run_id", sa.String(36), primary_key=True),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("rows_in", sa.BigInteger, nullable=False),
    sa.Column("rows_scored", sa.BigInteger, nullable=False),
    sa.Column("rows_invalid", sa.BigInteger, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("seconds", sa.Double, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
)

monitoring_runs = sa.Table(
    Table.MONITORING_RUNS,
    metadata,
    sa.Column("monitoring_run_id", sa.String(36), primary_key=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rows_current", sa.BigInteger, nullable=False),
    sa.Column("rows_reference", sa.BigInteger, nullable=False),
    sa.Column("drifted_share", sa.Double, nullable=False),
    sa.Column("score_psi", sa.Double, nullable=False),
    sa.Column("realised_auc", sa.Double),
    sa.Column("outcomes", sa.BigInteger, nullable=False),
    sa.Column("retrain_recommended", sa.Boolean, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # the JSON summary
    sa.Column("report", sa.Text, nullable=False),  # where the HTML report is
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def sql_type(parser: Parser) -> sa.types.TypeEngine:
    """Column type in silver and gold for a parser's output."""
    if parser in (Parser.NUMBER, Parser.PERCENT):
        return sa.Double()
    if parser in (Parser.INTEGER, Parser.TERM_MONTHS, Parser.EMP_LENGTH):
        return sa.BigInteger()
    if parser is Parser.MONTH:
        return sa.Date()
    return sa.Text()


def profile_tables(profile: Profile, target: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """silver_loans and gold_loan_features shaped by ``profile``."""
    silver = sa.Table(
        Table.SILVER,
        target,
        sa.Column(LOAN_ID, sa.Text, primary_key=True),
        sa.Column(BATCH_ID, sa.Integer, nullable=False),
        sa.Column(SOURCE_ROW, sa.BigInteger, nullable=False),
        sa.Column(VINTAGE, sa.Date),
        sa.Column(LABEL, sa.SmallInteger),
        sa.Column(TARGET_RAW, sa.Text),
        *(
            sa.Column(name, sql_type(profile.columns[name].parser))
            for name in profile.silver_columns
        ),
        sa.Column(
            "refined_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )
    gold = sa.Table(
        Table.GOLD,
        target,
        sa.Column(LOAN_ID, sa.Text, primary_key=True),
        sa.Column(BATCH_ID, sa.Integer, nullable=False),
        sa.Column(VINTAGE, sa.Date, index=True),
        sa.Column(LABEL, sa.SmallInteger),
        *(
            sa.Column(name, sql_type(profile.columns[name].parser))
            for name in profile.feature_columns
        ),
        *(sa.Column(name, sa.Double()) for name in profile.derived),
        sa.Column(
            "built_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )
    return silver, gold
