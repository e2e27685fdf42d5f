"""Core tables: projects, api_keys, traces, spans, span_events, idempotency_keys, search index.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tracehub.store.schema import SEARCH_DOCUMENT_PG

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_ns", sa.BigInteger),
    )
    op.create_table(
        "traces",
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger),
        sa.Column("model", sa.Text),
        sa.Column("environment", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("input_text", sa.Text),
        sa.Column("output_text", sa.Text),
        sa.Column("attributes", Json),
        sa.Column("root_span_id", sa.String(32)),
        sa.Column("span_count", sa.Integer, nullable=False),
        sa.Column("running_span_count", sa.Integer, nullable=False),
        sa.Column("missing_parent_count", sa.Integer, nullable=False),
        sa.Column("error_count", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("decision", sa.String(32)),
        sa.Column("user_review_passed", sa.Boolean),
        sa.Column("input_rank_ns", sa.BigInteger),
        sa.Column("output_rank_ns", sa.BigInteger),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_traces_project_start", "traces", ["project_id", "start_ns"])
    op.create_index("ix_traces_project_session", "traces", ["project_id", "session_id"])
    op.create_index("ix_traces_project_user", "traces", ["project_id", "user_id"])
    op.create_table(
        "spans",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(32), nullable=False),
        sa.Column("parent_span_id", sa.String(32)),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("span_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger),
        sa.Column("model", sa.Text),
        sa.Column("input_text", sa.Text),
        sa.Column("output_text", sa.Text),
        sa.Column("input_tokens", sa.BigInteger),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("cost_usd", sa.Float),
        sa.Column("user_id", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("environment", sa.Text),
        sa.Column("graph_name", sa.Text),
        sa.Column("node_name", sa.Text),
        sa.Column("step", sa.Integer),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("resource", Json, nullable=False),
        sa.Column("scope", Json, nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("links", Json, nullable=False),
        sa.UniqueConstraint("project_id", "trace_id", "span_id", name="uq_spans_key"),
    )
    op.create_index("ix_spans_parent", "spans", ["project_id", "trace_id", "parent_span_id"])
    op.create_table(
        "span_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(32)),
        sa.Column("event_type", sa.String(24), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("idempotency_key", sa.Text),
    )
    op.create_index("ix_span_events_span", "span_events", ["project_id", "trace_id", "span_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", Json, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    _create_search_index()


def _create_search_index() -> None:
    # Case-insensitive substring search that also finds Korean words inside longer text.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE spans_fts USING fts5(name, input_text, output_text, attributes,"
            " content='spans', content_rowid='id', tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER spans_fts_insert AFTER INSERT ON spans BEGIN"
            " INSERT INTO spans_fts(rowid, name, input_text, output_text, attributes)"
            " VALUES (new.id, new.name, new.input_text, new.output_text, new.attributes); END"
        )
        op.execute(
            "CREATE TRIGGER spans_fts_update AFTER UPDATE OF input_text, output_text ON spans BEGIN"
            " INSERT INTO spans_fts(spans_fts, rowid, name, input_text, output_text, attributes)"
            " VALUES ('delete', old.id, old.name, old.input_text, old.output_text, old.attributes);"
            " INSERT INTO spans_fts(rowid, name, input_text, output_text, attributes)"
            " VALUES (new.id, new.name, new.input_text, new.output_text, new.attributes); END"
        )
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_spans_search ON spans USING gin ((" + SEARCH_DOCUMENT_PG + ") gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE spans_fts")
    for table in ("idempotency_keys", "span_events", "spans", "traces", "api_keys", "projects"):
        op.drop_table(table)
