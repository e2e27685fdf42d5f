"""Evaluation results; explicit trace status and graph name on traces; search over trace text
and span events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tracehub.store.schema import SEARCH_EVENTS_PG, SEARCH_TRACES_PG

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("status_explicit", sa.String(16)))
        batch.add_column(sa.Column("graph_name", sa.Text))
    op.create_table(
        "evaluation_results",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(32)),
        sa.Column("eval_name", sa.Text, nullable=False),
        sa.Column("eval_model", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("passed", sa.Boolean),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("user_review_passed", sa.Boolean),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_evals_trace", "evaluation_results", ["project_id", "trace_id"])
    op.create_index("ix_evals_name", "evaluation_results", ["project_id", "eval_name", "created_ns"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE traces_fts USING fts5(name, input_text, output_text,"
                   " content='traces', content_rowid='rowid', tokenize='trigram')")
        op.execute("INSERT INTO traces_fts(traces_fts) VALUES ('rebuild')")
        op.execute(
            "CREATE TRIGGER traces_fts_insert AFTER INSERT ON traces BEGIN"
            " INSERT INTO traces_fts(rowid, name, input_text, output_text)"
            " VALUES (new.rowid, new.name, new.input_text, new.output_text); END")
        # Trace rows are upserted on every batch: re-index only when their text really changed.
        op.execute(
            "CREATE TRIGGER traces_fts_update AFTER UPDATE ON traces WHEN"
            " old.name IS NOT new.name OR old.input_text IS NOT new.input_text"
            " OR old.output_text IS NOT new.output_text BEGIN"
            " INSERT INTO traces_fts(traces_fts, rowid, name, input_text, output_text)"
            " VALUES ('delete', old.rowid, old.name, old.input_text, old.output_text);"
            " INSERT INTO traces_fts(rowid, name, input_text, output_text)"
            " VALUES (new.rowid, new.name, new.input_text, new.output_text); END")
        op.execute("CREATE VIRTUAL TABLE span_events_fts USING fts5(name, payload,"
                   " content='span_events', content_rowid='id', tokenize='trigram')")
        op.execute(
            "CREATE TRIGGER span_events_fts_insert AFTER INSERT ON span_events BEGIN"
            " INSERT INTO span_events_fts(rowid, name, payload) VALUES (new.id, new.name, new.payload);"
            " END")
    else:
        op.execute(f"CREATE INDEX ix_traces_search ON traces USING gin (({SEARCH_TRACES_PG}) gin_trgm_ops)")
        op.execute(
            f"CREATE INDEX ix_span_events_search ON span_events USING gin (({SEARCH_EVENTS_PG}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE traces_fts")
        op.execute("DROP TABLE span_events_fts")
    op.drop_table("evaluation_results")
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("graph_name")
        batch.drop_column("status_explicit")
