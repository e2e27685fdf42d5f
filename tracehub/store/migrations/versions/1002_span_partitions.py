"""PostgreSQL: spans in partitions by range of trace_seq, one a day, so retention drops a day's
spans instead of deleting them row by row (tracehub/store/partitions.py). SQLite: nothing.

A partitioned table's keys must hold its partition key: the primary key becomes (id, trace_seq)
and trace_seq NOT NULL (every span row had one since migration 0011). The rows are copied into
partition 0, which numbers [0, 2^40): on a large database this migration takes as long as copying
its spans. Partition 1 is made ahead and `span_partitions` says when each became the active one.

Revision ID: 1002
Revises: 1001
"""

from __future__ import annotations

from alembic import op

revision = "1002"
down_revision = "1001"
branch_labels = None
depends_on = None

STRIDE = 1 << 40
LIKE = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMPRESSION INCLUDING STORAGE"
INDEXES = ("CREATE UNIQUE INDEX uq_spans_key ON spans (trace_seq, span_id)",
           "CREATE INDEX ix_spans_resource ON spans (project_id, resource_id) WHERE resource_id IS NOT NULL")


def _swap(make: str, key: str, partitions: tuple[str, ...]) -> None:
    """Move the spans into a new table made by `make` (LIKE spans_old), keyed by `key`."""
    op.execute("ALTER TABLE spans RENAME TO spans_old")
    op.execute("ALTER TABLE spans_old DROP CONSTRAINT spans_pkey")
    op.execute("DROP INDEX uq_spans_key, ix_spans_resource")
    op.execute(make)
    op.execute("ALTER SEQUENCE spans_id_seq OWNED BY spans.id")
    op.execute(f"ALTER TABLE spans ADD PRIMARY KEY ({key})")
    for statement in (*INDEXES, *partitions):
        op.execute(statement)
    op.execute("INSERT INTO spans SELECT * FROM spans_old")
    op.execute("DROP TABLE spans_old")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE span_partitions (number INTEGER PRIMARY KEY, started_ns BIGINT)")
    _swap(f"CREATE TABLE spans (LIKE spans_old {LIKE}) PARTITION BY RANGE (trace_seq)", "id, trace_seq", tuple(
        f"CREATE TABLE spans_p{k} PARTITION OF spans FOR VALUES FROM ({k * STRIDE}) TO ({(k + 1) * STRIDE})"
        " WITH (toast_tuple_target = 8160)" for k in (0, 1)))
    op.execute("INSERT INTO span_partitions (number, started_ns) VALUES"
               " (0, (extract(epoch FROM now()) * 1e9)::bigint), (1, NULL)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _swap(f"CREATE TABLE spans (LIKE spans_old {LIKE}) WITH (toast_tuple_target = 8160)", "id", ())
    op.execute("ALTER TABLE spans ALTER COLUMN trace_seq DROP NOT NULL")
    op.execute("DROP TABLE span_partitions")
