"""PostgreSQL: a span's JSON documents are stored as text.

json's input check (`json_recv`: lexing every document) was 16% of the ingest backend's CPU under
the benchmark's load. Every span document comes from the writer's own JSON encoder, nothing queries
into them in SQL (the API embeds them as they are, search reads their text), and json stored them as
text already, so the type only checked what cannot be wrong. The same COPY of 8,192 benchmark span
rows took the backend 20-27 us a row with json and 16-21 with text. Trace, event and eval documents,
which clients and the JSON ingest API write, stay json.

The type change rewrites the span table and its indexes: 100,000 benchmark spans (391 MB) took
2.1 s here. It resets a column's compression, so lz4 (migration 0004) is set again.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COLUMNS = ("attributes", "scope", "events", "links")
_lz4 = importlib.import_module("tracehub.store.migrations.versions.0004_pg_lz4_compression")


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores JSON as text either way
    op.execute("ALTER TABLE spans " + ", ".join(f"ALTER COLUMN {c} TYPE {to} USING {c}::{to}" for c in COLUMNS))
    if _lz4._lz4_available():
        op.execute("ALTER TABLE spans " + ", ".join(f"ALTER COLUMN {c} SET COMPRESSION lz4" for c in COLUMNS))


def upgrade() -> None:
    _retype("text")


def downgrade() -> None:
    _retype("json")
