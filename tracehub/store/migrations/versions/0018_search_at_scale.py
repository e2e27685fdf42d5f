"""Search at scale: short queries answered from SQLite's index, and trace text searched only where
it is the trace's own.

- `traces.own_text`: the trace's name or text is not a span's (a client stated it, or an AMENDMENT
  or a log record gave it): only those traces' text is scanned, through a partial index; every
  other trace's text is a span's, which the index covers. Existing traces are marked where a name
  or text is found in none of their spans.
- PostgreSQL: the search side tables are indexed by trace, for the list's walk over the newest
  traces (`search._each_trace`).
- SQLite: an fts5vocab table over each trigram index lists its trigrams in order, so a query of
  one or two characters finds the trigrams that start with it by range (`search.probe_queries`);
  each column is indexed padded with two spaces, so a query at the end of a text, or a text of one
  or two characters, starts a trigram too. The index is emptied and filled again that way in the
  background, as new rows are (search scans the rows not indexed yet meanwhile).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_INDEXES = (("spans_fts", "spans"), ("span_events_fts", "span_events"))
_PG_SEARCH = ("span_search", "span_event_search")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("traces", sa.Column("own_text", sa.Boolean, nullable=False, server_default=sa.false()))
    text_of_no_span = " OR ".join(
        f"({c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM spans s WHERE s.trace_seq = traces.seq"
        f" AND s.{c} = traces.{c}))" for c in ("name", "input_text", "output_text"))
    op.execute(f"UPDATE traces SET own_text = {'1' if sqlite else 'TRUE'} WHERE {text_of_no_span}")
    op.create_index("ix_traces_own_text", "traces", ["project_id"], sqlite_where=sa.text("own_text"),
                    postgresql_where=sa.text("own_text"))
    if not sqlite:
        # The list's walk checks each trace's indexed documents (`search._each_trace`).
        for table in _PG_SEARCH:
            op.create_index(f"ix_{table}_trace", table, ["project_id", "trace_id"])
        return
    for fts, table in _INDEXES:
        op.execute(f"CREATE VIRTUAL TABLE {fts}_vocab USING fts5vocab({fts}, 'row')")
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')")
        op.execute(f"UPDATE search_state SET indexed_upto = 0 WHERE name = '{table}'")


def downgrade() -> None:
    op.drop_index("ix_traces_own_text", "traces")
    op.execute("ALTER TABLE traces DROP COLUMN own_text")  # SQLite 3.35+: no table copy
    if op.get_bind().dialect.name != "sqlite":
        for table in _PG_SEARCH:
            op.drop_index(f"ix_{table}_trace", table)
        return
    for fts, table in _INDEXES:
        op.execute(f"DROP TABLE {fts}_vocab")
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')")
        op.execute(f"UPDATE search_state SET indexed_upto = 0 WHERE name = '{table}'")
