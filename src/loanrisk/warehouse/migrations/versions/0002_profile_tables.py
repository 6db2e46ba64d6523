"""Profile-shaped tables: silver_loans and gold_loan_features.

Their typed columns come from the dataset profile the warehouse is created with
(passed in as ``config.attributes["profile"]``); the profile's name and fingerprint are
recorded in warehouse_meta so a different profile is refused later.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import context, op

from loanrisk.profiles.loader import profile_fingerprint
from loanrisk.warehouse.schema import profile_tables, warehouse_meta

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    profile = context.config.attributes["profile"]
    silver, gold = profile_tables(profile, sa.MetaData())
    bind = op.get_bind()
    silver.create(bind)
    gold.create(bind)
    op.bulk_insert(
        warehouse_meta,
        [
            {"key": "profile", "value": profile.name},
            {"key": "profile_fingerprint", "value": profile_fingerprint(profile)},
        ],
    )


def downgrade() -> None:
    op.drop_table("gold_loan_features")
    op.drop_table("silver_loans")
    op.execute(sa.text("DELETE FROM warehouse_meta WHERE key LIKE 'profile%'"))
