"""Evaluation results; explicit trace status and LangGraph graph name on traces.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

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


def downgrade() -> None:
    op.drop_table("evaluation_results")
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("graph_name")
        batch.drop_column("status_explicit")
