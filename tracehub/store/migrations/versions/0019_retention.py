"""Per-project retention (tracehub/store/retention.py).

- `projects.retention_days`: traces whose last activity is older are pruned; NULL keeps them.
- `ix_cases_trace`: a pruned trace's cases are found by trace, not by a scan of the project's.
- `ix_spans_resource`: after a prune, whether any span still names a resource is one probe; without
  it, finding a resource no span names read every span row.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("retention_days", sa.Integer))
    op.create_index("ix_cases_trace", "cases", ["project_id", "trace_id"])
    named = sa.text("resource_id IS NOT NULL")
    op.create_index("ix_spans_resource", "spans", ["project_id", "resource_id"], sqlite_where=named,
                    postgresql_where=named)


def downgrade() -> None:
    op.drop_index("ix_spans_resource", "spans")
    op.drop_index("ix_cases_trace", "cases")
    op.execute("ALTER TABLE projects DROP COLUMN retention_days")  # SQLite 3.35+: no table copy
