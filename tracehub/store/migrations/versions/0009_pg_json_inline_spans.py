"""PostgreSQL: JSON columns as json instead of jsonb; span rows up to a page stay inline.

The writer's database backend is what limits ingest on PostgreSQL. Of its time a span:
- jsonb_in took ~18%: building jsonb de-escapes every string a character at a time and sorts every
  object's keys, while json only checks the text. Nothing queries into these documents in SQL (the
  API returns them whole, search reads their text), and json keeps the keys as sent.
- TOAST took ~14%: rows of 2-6 KB were compressed, then their largest values moved into the TOAST
  table, one more heap and index insert each. With toast_tuple_target at a page, rows up to 8 KB
  are stored as they are; larger ones are still compressed and moved out.
Backend CPU a span, writer in isolation: 162 -> 134 (json) -> 109-113 us (inline), for ~30% more
space on disk (105 -> 138 MB for 30,000 benchmark spans).

A type change resets a column's compression, so lz4 (migration 0004) is set again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = {
    "spans": ("attributes", "resource", "scope", "events", "links"),
    "span_events": ("payload",),
    "traces": ("attributes",),
    "evaluation_results": ("metadata",),
    "idempotency_keys": ("response",),
}
_lz4 = importlib.import_module("tracehub.store.migrations.versions.0004_pg_lz4_compression")


def _retype(to: str, toast_tuple_target: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores JSON as text either way
    lz4 = _lz4._lz4_available()
    for table, columns in COLUMNS.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(
            f"ALTER COLUMN {c} TYPE {to} USING {c}::{to}" for c in columns))
        lz4_columns = [c for c in columns if c in _lz4.COLUMNS.get(table, ())]
        if lz4 and lz4_columns:
            op.execute(f"ALTER TABLE {table} " + ", ".join(
                f"ALTER COLUMN {c} SET COMPRESSION lz4" for c in lz4_columns))
    op.execute(f"ALTER TABLE spans {toast_tuple_target}")


def upgrade() -> None:
    _retype("json", "SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    _retype("jsonb", "RESET (toast_tuple_target)")
