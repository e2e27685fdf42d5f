"""PostgreSQL: a spans search document now starts with the short pieces of its non-ASCII words behind
marks, so Korean words of one or two syllables are found through the index (tracehub/store/
search.py, `short_pieces`). The documents made before lack them: they go, and the index is built
again from the spans. Search stays complete meanwhile (the rows above the index's mark are read),
only slower until the index catches up. SQLite: nothing.

Revision ID: 1004
Revises: 1003
"""

from __future__ import annotations

from alembic import op

revision = "1004"
down_revision = "1003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("TRUNCATE span_search")
        op.execute("UPDATE search_state SET indexed_upto = 0 WHERE name = 'spans'")


def downgrade() -> None:
    pass  # the documents with pieces search right without them: a piece never holds a longer match
