"""Traces complete without a parent that never comes.

`spans.parent_remote` keeps an OTLP span's flag that its parent is in another process (W3C
traceparent from a caller): such a span is a local root, whose parent is not waited for.
`traces.last_span_ns` is when the writer last stored or ended one of the trace's spans; a parent
still awaited a grace period after it is given up (tracehub/store/completion.py). Rows stored
before it count from `updated_ns` (no backfill: the completion condition falls back to it).

A trace whose spans all name a parent within it (a parent cycle) waited for a root that cannot
arrive; it is complete once its spans ended, so the ones stored as running are set as the writer
now derives them.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spans", sa.Column("parent_remote", sa.Boolean))
    op.add_column("traces", sa.Column("last_span_ns", sa.BigInteger))
    op.execute("UPDATE traces SET status = 'success' WHERE status = 'running' AND status_explicit IS NULL"
               " AND running_span_count = 0 AND missing_parent_count = 0 AND span_count > 0"
               " AND error_count = 0")


def downgrade() -> None:
    op.drop_column("traces", "last_span_ns")
    op.drop_column("spans", "parent_remote")
