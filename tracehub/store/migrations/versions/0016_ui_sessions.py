"""Web UI sign-in sessions.

A session is a random token in an HttpOnly cookie; the table keeps only its SHA-256, the API key it
was opened with (revoking the key ends its sessions) and the session's CSRF token. Kept in the
database, not in a signed cookie, so sign-out ends a session everywhere and any replica knows it.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ui_sessions_expires", "ui_sessions", ["expires_ns"])


def downgrade() -> None:
    op.drop_table("ui_sessions")
