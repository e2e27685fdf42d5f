"""Tool spans keep the name of the tool they ran.

OpenInference and Traceloop name a tool span after its tool, but the Vercel AI SDK names every one
`ai.toolCall` and states the tool in `ai.toolCall.name`; the span's name stays as sent, so the tool
gets a column of its own. Nullable, with no default: spans of other types, and those stored before
this migration, read NULL, and adding it rewrites no table (on PostgreSQL the partitioned `spans`
passes the column on to its partitions).

Revision ID: 1003
Revises: 1002
"""

from __future__ import annotations

from alembic import op

revision = "1003"
down_revision = "1002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE spans ADD COLUMN tool_name TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE spans DROP COLUMN tool_name")
