"""Alembic environment: runs the packaged migrations on the connection `tracehub.store.db` hands in.

A migration is self-contained: it writes out the DDL and constants it needs and imports nothing
from tracehub (schema.py follows today's schema; a migration must make the same schema whenever it
is replayed). `target_metadata` is only what autogenerate compares with.
"""

from __future__ import annotations

from alembic import context

from tracehub.store.schema import metadata

# The migrations written before the first release, squashed into the baseline (1000): a database
# at one of them holds a schema no release made.
PRE_RELEASE = frozenset(f"{n:04d}" for n in range(1, 21))

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tracehub.store.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
stale = PRE_RELEASE.intersection(context.get_context().get_current_heads())
if stale:
    raise SystemExit(
        f"The database is at migration {min(stale)}, from before the first release: its schema cannot be"
        " upgraded. Recreate the database (a new SQLite file, or an empty PostgreSQL database).")
with context.begin_transaction():
    context.run_migrations()
