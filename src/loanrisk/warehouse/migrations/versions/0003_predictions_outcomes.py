"""The prediction log and realised outcomes: predictions, outcomes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.Text),
        sa.Column("loan_id", sa.Text),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("alias", sa.Text),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("features", sa.Text),
        sa.Column("pd", sa.Double, nullable=False),
        sa.Column("default_class", sa.SmallInteger, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("grade", sa.String(4), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Double),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("scoring_run_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_client_id", "predictions", ["client_id"])
    op.create_index("ix_predictions_loan_id", "predictions", ["loan_id"])
    op.create_table(
        "outcomes",
        sa.Column(
            "outcome_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("prediction_id", sa.String(36)),
        sa.Column("client_id", sa.Text),
        sa.Column("loan_id", sa.Text),
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
    op.create_index("ix_outcomes_prediction_id", "outcomes", ["prediction_id"])


def downgrade() -> None:
    op.drop_table("outcomes")
    op.drop_table("predictions")
