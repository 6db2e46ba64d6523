"""Long text columns compressed with lz4 instead of pglz, where PostgreSQL has it.

The prediction log's JSON (about 2 KB per row) and bronze's raw rows are compressed on
the way in (TOAST). pglz cost the server about 37 µs of CPU per log row, more than
scoring the row; lz4 about 13 µs, with a slightly smaller table (measured on 100,000
batch rows, PostgreSQL 15). Rows already stored keep pglz (both read the same). SQLite
and PostgreSQL built without lz4 (or older than 14) are left as they are.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = {"predictions": ("input", "features", "reasons"), "bronze_loans": ("payload",)}


def _has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.exec_driver_sql(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
        " AND 'lz4' = ANY(enumvals)"
    ).first()
    return found is not None


def _compress(method: str) -> None:
    if not _has_lz4():
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} SET COMPRESSION {method}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _compress("lz4")


def downgrade() -> None:
    _compress("pglz")
