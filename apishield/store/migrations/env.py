"""Alembic environment: migrations run only on a connection handed over by
``apishield.store.migrate`` (online mode); there is no offline SQL generation."""

from __future__ import annotations

from alembic import context

from apishield.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("apishield's migrations run through apishield.store.migrate(url)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
