"""Alembic environment: run by services.ledger.db.migrate() on the ledger's own connection."""

from alembic import context

from services.ledger.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
