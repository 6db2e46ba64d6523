"""Batch scoring and monitoring runs: scoring_runs, monitoring_runs.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scoring_runs",
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
        sa.UniqueConstraint(
            "input_hash", "model_name", "model_version", name="uq_scoring_runs_input_model"
        ),
    )
    op.create_table(
        "monitoring_runs",
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
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_monitoring_runs_created_at", "monitoring_runs", ["created_at"])


def downgrade() -> None:
    op.drop_table("monitoring_runs")
    op.drop_table("scoring_runs")
