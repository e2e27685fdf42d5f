"""Trace rows list the parents their spans name that have not arrived (`awaited_parents`).

The writer asked an index on spans.parent_span_id, for every batch, whether stored spans named
the new spans as parents. The trace row, which the writer reads anyway, now says it, and the
index goes: one B-tree fewer to update for every span (~12 µs of the ~75 µs a benchmark span
row cost SQLite, measured in isolation).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_MISSING = (
    "SELECT DISTINCT c.parent_span_id AS id FROM spans c"
    " WHERE c.project_id = traces.project_id AND c.trace_id = traces.trace_id"
    " AND c.parent_span_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM spans p"
    " WHERE p.project_id = c.project_id AND p.trace_id = c.trace_id AND p.span_id = c.parent_span_id)"
)


def upgrade() -> None:
    op.add_column("traces", sa.Column("awaited_parents", sa.Text))
    joined = ("(SELECT group_concat(id, ' ') FROM ({}))" if op.get_bind().dialect.name == "sqlite"
              else "(SELECT string_agg(id, ' ') FROM ({}) AS missing)")
    op.execute(f"UPDATE traces SET awaited_parents = {joined.format(_MISSING)}"
               " WHERE missing_parent_count > 0")
    op.drop_index("ix_spans_parent", "spans")


def downgrade() -> None:
    op.create_index("ix_spans_parent", "spans", ["project_id", "trace_id", "parent_span_id"])
    op.drop_column("traces", "awaited_parents")
