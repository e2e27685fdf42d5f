"""Policy activations: the log of which policy version a project asked for and from when.

`policies.active_version` says which version is designated; a version whose `effective_from` is in
the future must leave the version in force until then in force, and only a log of activations
remembers which one that is (and who replaced what, when: an audit trail).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_activations",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("policy_id", sa.BigInteger, nullable=False),
        sa.Column("policy_version_id", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("effective_ns", sa.BigInteger, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_policy_activations", "policy_activations", ["project_id", "effective_ns"])


def downgrade() -> None:
    op.drop_table("policy_activations")
