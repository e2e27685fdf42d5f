"""Storage size: span bodies, and one search document per trace.

- `spans.body`: a span's input, output and JSON documents compressed together
  (tracehub/store/spanbody.py). The rows stored before are packed here, in chunks; their columns
  are then NULL or ''.
- The spans' search index holds a document per trace and indexing step instead of one per span
  (`search._index_spans`); SQLite lists the documents in `spans_fts_docs` (first and last span id),
  which retention needs to take one out. The index is emptied and filled again in the background,
  as new rows are (search scans the rows not indexed yet meanwhile).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

CHUNK = 2000


def upgrade() -> None:
    op.add_column("spans", sa.Column("body", sa.LargeBinary))
    _pack()
    if op.get_bind().dialect.name != "sqlite":
        op.execute("TRUNCATE span_search")
        op.execute("UPDATE search_state SET indexed_upto = 0 WHERE name = 'spans'")
        return
    op.execute("CREATE TABLE spans_fts_docs (id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL)")
    op.execute("INSERT INTO spans_fts(spans_fts) VALUES ('delete-all')")
    op.execute("UPDATE search_state SET indexed_upto = 0 WHERE name = 'spans'")


def _pack() -> None:
    from tracehub.store import spanbody

    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(sa.text("SELECT id, input_text, output_text, attributes, scope, events, links"
                                    " FROM spans WHERE id > :a ORDER BY id LIMIT :n"), {"a": after, "n": CHUNK}).all()
        if not rows:
            return
        conn.execute(sa.text("UPDATE spans SET body = :b, input_text = NULL, output_text = NULL, attributes = '',"
                             " scope = '', events = '', links = '' WHERE id = :id"),
                     [{"b": spanbody.pack(i, o, *(_bytes(v) for v in json)), "id": row_id}
                      for row_id, i, o, *json in rows])
        after = rows[-1][0]


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def downgrade() -> None:
    from tracehub.store import spanbody

    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.execute("TRUNCATE span_search")
    else:
        op.execute("DROP TABLE spans_fts_docs")
        op.execute("INSERT INTO spans_fts(spans_fts) VALUES ('delete-all')")
    rows = conn.execute(sa.text("SELECT id, body FROM spans WHERE body IS NOT NULL")).all()
    for row_id, body in rows:
        i, o, attributes, scope, events, links = spanbody.unpack(body)
        conn.execute(sa.text("UPDATE spans SET input_text = COALESCE(:i, input_text),"
                             " output_text = COALESCE(:o, output_text), attributes = :a, scope = :s,"
                             " events = :e, links = :l WHERE id = :id"),
                     {"i": i, "o": o, "a": attributes, "s": scope, "e": events, "l": links, "id": row_id})
    op.execute("UPDATE search_state SET indexed_upto = 0 WHERE name = 'spans'")
    op.execute("ALTER TABLE spans DROP COLUMN body")  # SQLite 3.35+: no table copy
