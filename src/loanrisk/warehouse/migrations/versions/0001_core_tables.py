"""Core tables: warehouse_meta, ingestion_batches, bronze_loans, silver_rejects.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warehouse_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "ingestion_batches",
        sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
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
    op.create_table(
        "bronze_loans",
        sa.Column(
            "batch_id", sa.Integer, sa.ForeignKey("ingestion_batches.batch_id"), primary_key=True
        ),
        sa.Column("source_row", sa.BigInteger, primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )
    op.create_table(
        "silver_rejects",
        sa.Column(
            "reject_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "batch_id", sa.Integer, sa.ForeignKey("ingestion_batches.batch_id"), nullable=False
        ),
        sa.Column("source_row", sa.BigInteger, nullable=False),
        sa.Column("loan_id", sa.Text),
        sa.Column("column_name", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "rejected_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )
    op.create_index("ix_silver_rejects_batch_id", "silver_rejects", ["batch_id"])


def downgrade() -> None:
    op.drop_table("silver_rejects")
    op.drop_table("bronze_loans")
    op.drop_table("ingestion_batches")
    op.drop_table("warehouse_meta")
