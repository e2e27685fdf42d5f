"""Alembic environment: runs the packaged migrations on the connection `tracehub.store.db` hands in."""

from __future__ import annotations

from alembic import context

from tracehub.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tracehub.store.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
