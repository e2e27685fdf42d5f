"""Spans keep OTel's status code and the time to their first token.

`status` says success / error / running, and OTel's UNSET and OK both read `success` there:
`status_code` keeps the number the client sent (0 UNSET, 1 OK, 2 ERROR; NULL for spans of the
JSON ingest API, which states no OTel code). `first_token_ms` is the time a streaming model call
took to its first chunk (the Vercel AI SDK's `ai.response.msToFirstChunk`). Both nullable, with no
default: rows stored before this migration read NULL, and adding them rewrites no table.

Revision ID: 1001
Revises: 1000
"""

from __future__ import annotations

from alembic import op

revision = "1001"
down_revision = "1000"
branch_labels = None
depends_on = None

COLUMNS = (("status_code", "SMALLINT"), ("first_token_ms", "FLOAT"))


def upgrade() -> None:
    for name, sql_type in COLUMNS:
        op.execute(f"ALTER TABLE spans ADD COLUMN {name} {sql_type}")


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.execute(f"ALTER TABLE spans DROP COLUMN {name}")
