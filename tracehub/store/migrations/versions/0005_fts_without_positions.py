"""SQLite: search indexes without token positions (FTS5 `detail=none`).

With positions, indexing the benchmark's spans (~2.5 KB of text each) cost ~1.2 ms of CPU a row and
~14 KB of index a row; without them ~0.5 ms and ~5 KB. A substring query then finds candidate rows
by all of its trigrams and keeps those whose text contains it (`tracehub.store.search`). The
indexes are rebuilt from the start by the writer in its idle time; until then queries scan.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = {
    "spans_fts": ("spans", "name, input_text, output_text, attributes"),
    "span_events_fts": ("span_events", "name, payload"),
}


def _recreate(detail: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for fts, (table, columns) in TABLES.items():
        op.execute(f"DROP TABLE IF EXISTS {fts}")
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({columns}, content='{table}',"
                   f" content_rowid='id', tokenize='trigram', detail={detail})")
    op.execute("UPDATE search_state SET indexed_upto = 0")


def upgrade() -> None:
    _recreate("none")


def downgrade() -> None:
    _recreate("full")
