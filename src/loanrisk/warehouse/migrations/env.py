"""Alembic environment: always run programmatically with a connection and a profile."""

from alembic import context

from loanrisk.warehouse.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
