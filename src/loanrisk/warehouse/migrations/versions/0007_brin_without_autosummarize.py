"""The prediction log's BRIN index on created_at no longer asks for autosummarize.

With ``autosummarize = on`` every filled block range queues a work item for autovacuum;
the queue holds 256 items, and under the log's steady inserts (the service, and batch
scoring's COPY) it is full, so PostgreSQL writes "request for BRIN range summarization
... was not recorded" to its log once per range (measured: 584 such lines while
``loanrisk score`` logged 300,000 rows, none with this migration), lines a DBA has to
wade through, and no summary either way. Without it, VACUUM (autovacuum runs it
on insert-only tables too) summarizes the ranges; a range not yet summarized is simply
read by a query on created_at, which for monitoring's recent windows are the pages it
reads anyway.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _autosummarize(value: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX ix_predictions_created_at SET (autosummarize = {value})")


def upgrade() -> None:
    _autosummarize("off")


def downgrade() -> None:
    _autosummarize("on")
