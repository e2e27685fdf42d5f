"""Search indexing moves off the ingest path: indexes are filled by the writer when it is idle.

Indexing 2 KB of text per span inside the ingest transaction (trigram triggers on SQLite, pg_trgm
GIN on PostgreSQL) capped ingest near 700 spans/s. Now `search_state` records how far each indexed
table is covered; queries read the index and scan only the rows above that mark.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("indexed_upto", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("spans_fts_insert", "spans_fts_update", "span_events_fts_insert",
                        "traces_fts_insert", "traces_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS traces_fts")
        # Rows indexed by the old triggers are covered already.
        op.execute("INSERT INTO search_state SELECT 'spans', coalesce(max(id), 0) FROM spans")
        op.execute("INSERT INTO search_state SELECT 'span_events', coalesce(max(id), 0) FROM span_events")
        return
    for index in ("ix_spans_search", "ix_traces_search", "ix_span_events_search"):
        op.execute(f"DROP INDEX IF EXISTS {index}")
    for table in ("span_search", "span_event_search"):
        op.create_table(
            table,
            sa.Column("id", sa.BigInteger, primary_key=True),
            sa.Column("project_id", sa.Integer, nullable=False),
            sa.Column("trace_id", sa.String(32)),
            sa.Column("doc", sa.Text, nullable=False),
        )
        op.execute(f"CREATE INDEX ix_{table}_doc ON {table} USING gin (doc gin_trgm_ops)")
    op.execute("INSERT INTO search_state VALUES ('spans', 0), ('span_events', 0)")


def downgrade() -> None:
    op.drop_table("search_state")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_table("span_search")
        op.drop_table("span_event_search")
