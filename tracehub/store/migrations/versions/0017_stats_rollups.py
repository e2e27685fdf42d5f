"""Hourly roll-ups for the stats overview, kept by triggers.

`trace_hours` (sums), `trace_hour_latency` (finished traces by duration bucket) and
`trace_hour_decisions` hold, per project and UTC hour of trace start, what the overview adds up
(tracehub/store/rollups.py). Triggers on `traces` and `evaluation_results` apply each write's
difference, old row out and new row in, in the writing transaction: a trace whose start moves to
an earlier hour moves there with its evaluations, an evaluation counts in its trace's hour from
the moment both are stored. A trace row counts as if its awaited parents were given up (the
completion of tracehub/store/completion.py at the end of time); reads correct the few traces a
read at their time has not given up yet (`ix_traces_awaiting`). `ix_traces_latency` finds a
percentile's exact value in its bucket.

SQLite: row triggers. PostgreSQL: statement triggers over transition tables on INSERT and DELETE
(a COPY of a batch's new traces is one aggregate per table, not one upsert per row), a row
trigger on UPDATE (the writer updates a stored trace one row a statement), each backend writing
rows of its own (`writer_pid`). An UPDATE that changes no column the roll-ups read does nothing.
The tables are filled from the rows already stored.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from tracehub.store.schema import AWAITING_SQL, FINISHED_SQL, LAST_WRITE_SQL, LATENCY_BUCKET_SQL

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

HOUR_NS = 3_600_000_000_000
SUMS = ("trace_count", "error_count", "open_traces", "langgraph_runs", "completion_sum", "input_tokens",
        "output_tokens", "cost_usd", "eval_count", "eval_passed", "eval_failed")
KEY = "project_id, hour_ns, writer_pid"
TRACE_EVENTS = ("INSERT", "UPDATE", "DELETE")


def hour(r: str) -> str:
    return f"({r}.start_ns - {r}.start_ns % {HOUR_NS})"


def qualified(sql: str, r: str) -> str:
    """`sql` over one traces row (schema.py's text) with its columns taken from `r`."""
    for column in ("end_ns", "start_ns", "running_span_count", "missing_parent_count"):
        sql = sql.replace(column, f"{r}.{column}")
    return sql


def trace_parts(r: str) -> list[str]:
    """A trace row's share of its hour's first eight sums, its awaited parents given up."""
    awaited = (f"(CASE WHEN {r}.missing_parent_count > 0 AND {r}.running_span_count = 0 THEN 0"
               f" ELSE {r}.missing_parent_count END)")
    known, open_count = f"({r}.span_count + {awaited})", f"({r}.running_span_count + {awaited})"
    return [
        "1",
        f"(CASE WHEN {r}.status = 'error' THEN 1 ELSE 0 END)",
        f"(CASE WHEN {open_count} > 0 THEN 1 ELSE 0 END)",
        f"(CASE WHEN {r}.graph_name IS NOT NULL THEN 1 ELSE 0 END)",
        # known - open is span_count - running_span_count: the API's completion_rate, unrounded
        f"(CASE WHEN {known} > 0 THEN CAST({r}.span_count - {r}.running_span_count AS FLOAT) / {known} ELSE 0.0 END)",
        f"{r}.input_tokens",
        f"{r}.output_tokens",
        f"{r}.cost_usd",
    ]


def eval_parts(e: str, pg: bool) -> list[str]:
    passed, failed = (f"{e}.passed", f"NOT {e}.passed") if pg else (f"{e}.passed = 1", f"{e}.passed = 0")
    return ["1", f"(CASE WHEN {passed} THEN 1 ELSE 0 END)", f"(CASE WHEN {failed} THEN 1 ELSE 0 END)"]


def upsert(table: str, columns: tuple[str, ...], pg: bool) -> str:
    """INSERT INTO table, adding to a row that exists (the SELECT follows)."""
    target = f"{table}." if pg else ""
    adds = ", ".join(f"{c} = {target}{c} + excluded.{c}" for c in columns)
    key = KEY + (", bucket" if table == "trace_hour_latency" else ", action" if table == "trace_hour_decisions" else "")
    return (f"INSERT INTO {table} ({key}, {', '.join(columns)}) {{select}}"
            f" ON CONFLICT ({key}) DO UPDATE SET {adds}")


# -- row triggers: SQLite's, and PostgreSQL's on UPDATE (one row a statement from the writer) ---


def signed(sign: str, part: str) -> str:
    return part if sign == "1" else f"-{part}"


def writer(pg: bool) -> str:
    return "pg_backend_pid()" if pg else "0"


def row_sums(r: str, sign: str, where: str, pg: bool) -> str:
    """Row `r`'s whole share (`sign` 1 or -1), its evaluations included."""
    parts = [signed(sign, p) for p in trace_parts(r)]
    passed, failed = eval_parts("e", pg)[1:]
    ev = (f"(SELECT count(*) AS n, coalesce(sum({passed}), 0) AS passed, coalesce(sum({failed}), 0) AS failed"
          f" FROM evaluation_results e WHERE e.project_id = {r}.project_id AND e.trace_id = {r}.trace_id) AS ev")
    evals = ", ".join(signed(sign, f"ev.{c}") for c in ("n", "passed", "failed"))
    select = f"SELECT {r}.project_id, {hour(r)}, {writer(pg)}, {', '.join(parts)}, {evals} FROM {ev} WHERE {where}"
    return upsert("trace_hours", SUMS, pg).format(select=select)


def row_count(table: str, r: str, sign: str, key: str, where: str, pg: bool) -> str:
    select = f"SELECT {r}.project_id, {hour(r)}, {writer(pg)}, {key}, {sign} WHERE {where}"
    return upsert(table, ("n",), pg).format(select=select)


def differs(a: str, b: str, pg: bool) -> str:
    return f"{a} IS DISTINCT FROM {b}" if pg else f"{a} IS NOT {b}"


# The columns the roll-ups read: an update that changes none (a review, updated_ns) changes nothing.
READ_COLUMNS = ("project_id", "trace_id", "start_ns", "end_ns", "status", "running_span_count",
                "missing_parent_count", "span_count", "graph_name", "input_tokens", "output_tokens", "cost_usd",
                "decision")


def update_steps(pg: bool) -> list[tuple[str, Any]]:
    """An updated row's difference: (condition, statement given its WHERE) in order."""
    moved = f"(OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR {hour('OLD')} <> {hour('NEW')})"
    read = " OR ".join(differs(f"OLD.{c}", f"NEW.{c}", pg) for c in (
        "status", "running_span_count", "missing_parent_count", "span_count", "graph_name", "input_tokens",
        "output_tokens", "cost_usd"))
    new_parts, old_parts = trace_parts("NEW"), trace_parts("OLD")
    difference = (f"SELECT NEW.project_id, {hour('NEW')}, {writer(pg)}, "
                  + ", ".join(f"{n} - {o}" for n, o in zip(new_parts, old_parts)) + ", 0, 0, 0 WHERE {where}")
    finished = {r: qualified(FINISHED_SQL, r) for r in ("OLD", "NEW")}
    bucket = {r: qualified(LATENCY_BUCKET_SQL, r) for r in ("OLD", "NEW")}
    latency_moved = (f"({moved} OR NOT ({finished['OLD']}) OR NOT ({finished['NEW']})"
                     f" OR {bucket['OLD']} <> {bucket['NEW']})")
    decision_moved = f"({moved} OR {differs('OLD.decision', 'NEW.decision', pg)})"
    return [
        (f"NOT {moved} AND ({read})",
         lambda w: upsert("trace_hours", SUMS, pg).format(select=difference.format(where=w))),
        (moved, lambda w: row_sums("OLD", "-1", w, pg)),
        (moved, lambda w: row_sums("NEW", "1", w, pg)),
        (f"({finished['OLD']} OR {finished['NEW']}) AND {latency_moved}",
         lambda w: row_pair("trace_hour_latency", bucket, finished, w, pg)),
        (f"(OLD.decision IS NOT NULL OR NEW.decision IS NOT NULL) AND {decision_moved}",
         lambda w: row_pair("trace_hour_decisions", {r: f"{r}.decision" for r in ("OLD", "NEW")},
                            {r: f"{r}.decision IS NOT NULL" for r in ("OLD", "NEW")}, w, pg)),
    ]


def row_pair(table: str, key: dict[str, str], counted: dict[str, str], where: str, pg: bool) -> str:
    """One statement for an updated row's count out of its old key and into its new one."""
    sides = " UNION ALL ".join(
        f"SELECT {r}.project_id AS p, {hour(r)} AS h, {key[r]} AS k, {sign} AS n WHERE {counted[r]}"
        for r, sign in (("OLD", -1), ("NEW", 1)))
    select = (f"SELECT v.p, v.h, {writer(pg)}, v.k, sum(v.n) FROM ({sides}) AS v WHERE {where}"
              " GROUP BY v.p, v.h, v.k HAVING sum(v.n) <> 0")
    return upsert(table, ("n",), pg).format(select=select)


def changed(pg: bool) -> str:
    return " OR ".join(differs(f"OLD.{c}", f"NEW.{c}", pg) for c in READ_COLUMNS)


def sqlite_triggers() -> list[str]:
    finished, bucket = qualified(FINISHED_SQL, "{r}"), qualified(LATENCY_BUCKET_SQL, "{r}")

    def whole(r: str, sign: str) -> list[str]:
        return [row_sums(r, sign, "true", False),
                row_count("trace_hour_latency", r, sign, bucket.format(r=r), finished.format(r=r), False),
                row_count("trace_hour_decisions", r, sign, f"{r}.decision", f"{r}.decision IS NOT NULL", False)]

    def eval_sums(e: str, sign: str) -> str:
        parts = ", ".join(signed(sign, p) for p in eval_parts(e, False))
        select = (f"SELECT t.project_id, {hour('t')}, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, {parts} FROM traces t"
                  f" WHERE t.project_id = {e}.project_id AND t.trace_id = {e}.trace_id")
        return upsert("trace_hours", SUMS, False).format(select=select)

    def trigger(name: str, event: str, table: str, statements: list[str], when: str = "") -> str:
        return (f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} BEGIN "
                + "; ".join(statements) + "; END")

    return [
        trigger("trace_hours_insert", "INSERT", "traces", whole("NEW", "1")),
        trigger("trace_hours_update", "UPDATE", "traces", [make(guard) for guard, make in update_steps(False)],
                f" WHEN {changed(False)}"),
        trigger("trace_hours_delete", "DELETE", "traces", whole("OLD", "-1")),
        trigger("trace_hours_eval_insert", "INSERT", "evaluation_results", [eval_sums("NEW", "1")]),
        trigger("trace_hours_eval_update", "UPDATE", "evaluation_results", [eval_sums("OLD", "-1"),
                                                                             eval_sums("NEW", "1")]),
        trigger("trace_hours_eval_delete", "DELETE", "evaluation_results", [eval_sums("OLD", "-1")]),
    ]


# -- PostgreSQL: statement triggers over transition tables on INSERT (COPY) and DELETE ------------


def pg_changes(event: str, columns: str = "r.*") -> str:
    """The rows a statement changed, each with its sign: new ones add, old ones take away."""
    new, old = f"SELECT 1 AS sign, {columns} FROM new_rows r", f"SELECT -1 AS sign, {columns} FROM old_rows r"
    return {"INSERT": new, "DELETE": old, "UPDATE": f"{new} UNION ALL {old}"}[event]


def pg_grouped(table: str, columns: tuple[str, ...], select: str, group: str) -> str:
    """`select` summed by `group`, without the groups that add up to nothing (a rewritten row
    whose share did not change), into `table`."""
    nonzero = " OR ".join(f"g.{c} <> 0" for c in columns)
    return upsert(table, columns, True).format(
        select=f"SELECT * FROM ({select} GROUP BY {group}) AS g WHERE {nonzero}")


def pg_statement(changes: str) -> str:
    """One statement (data-modifying CTEs) that adds the signed rows `changes` to the three
    tables, with their evaluations."""
    parts = trace_parts("c")
    sums = ", ".join(f"sum(c.sign * {p}) AS {name}" for p, name in zip(parts, SUMS))
    evals = ", ".join(f"sum(c.sign * ev.{name}) AS {name}" for name in ("eval_count", "eval_passed", "eval_failed"))
    ev = ("LEFT JOIN LATERAL (SELECT count(*) AS eval_count,"
          " count(*) FILTER (WHERE e.passed) AS eval_passed, count(*) FILTER (WHERE NOT e.passed) AS eval_failed"
          " FROM evaluation_results e WHERE e.project_id = c.project_id AND e.trace_id = c.trace_id)"
          " AS ev ON true")
    writer = "pg_backend_pid()"
    bucket = qualified(LATENCY_BUCKET_SQL, "c")
    sums_sql = pg_grouped("trace_hours", SUMS,
                          f"SELECT c.project_id, {hour('c')} AS hour_ns, {writer} AS writer_pid, {sums}, {evals}"
                          f" FROM ({changes}) AS c {ev}", f"c.project_id, {hour('c')}")
    latency_sql = pg_grouped("trace_hour_latency", ("n",),
                             f"SELECT c.project_id, {hour('c')} AS hour_ns, {writer} AS writer_pid, {bucket} AS bucket,"
                             f" sum(c.sign) AS n FROM ({changes}) AS c WHERE {qualified(FINISHED_SQL, 'c')}",
                             f"c.project_id, {hour('c')}, {bucket}")
    decisions_sql = pg_grouped("trace_hour_decisions", ("n",),
                               f"SELECT c.project_id, {hour('c')} AS hour_ns, {writer} AS writer_pid,"
                               f" c.decision AS action, sum(c.sign) AS n FROM ({changes}) AS c"
                               " WHERE c.decision IS NOT NULL", f"c.project_id, {hour('c')}, c.decision")
    return f"WITH s AS ({sums_sql}), l AS ({latency_sql}) {decisions_sql}"


def pg_trace_function(event: str) -> str:
    return _pg_function(f"trace_hours_{event.lower()}", [pg_statement(pg_changes(event))], event)


def pg_eval_function(event: str) -> str:
    parts = eval_parts("c", True)
    sums = ", ".join(f"sum(c.sign * {p}) AS {name}" for p, name in zip(parts, SUMS[-3:]))
    zeros = ", ".join(f"0 AS {name}" for name in SUMS[:-3])
    select = (f"SELECT t.project_id, {hour('t')} AS hour_ns, pg_backend_pid() AS writer_pid, {zeros}, {sums}"
              f" FROM ({pg_changes(event)}) AS c JOIN traces t ON t.project_id = c.project_id"
              " AND t.trace_id = c.trace_id")
    return _pg_function(f"trace_hours_eval_{event.lower()}",
                        [pg_grouped("trace_hours", SUMS, select, f"t.project_id, {hour('t')}")], event)


def _pg_function(name: str, statements: list[str], event: str = "") -> str:
    body = "; ".join(statements)
    # An upsert's INSERT trigger fires for rows that went to DO UPDATE too, with no new rows.
    skip = {"INSERT": "new_rows", "DELETE": "old_rows", "UPDATE": "new_rows"}.get(event)
    early = f"IF NOT EXISTS (SELECT 1 FROM {skip}) THEN RETURN NULL; END IF; " if skip else ""
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {early}{body}; RETURN NULL; END $$"


def pg_trigger(name: str, table: str, event: str) -> str:
    tables = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows",
              "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}[event]
    return (f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def pg_update_function() -> str:
    """A row trigger, as SQLite's: the writer updates a stored trace one row a statement, where a
    statement trigger (transition tables, a grouped upsert per table) cost twice as much."""
    body = " ".join(f"IF {guard} THEN {make('true')}; END IF;" for guard, make in update_steps(True))
    return (f"CREATE FUNCTION trace_hours_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}"
            " RETURN NULL; END $$")


def pg_ddl() -> list[str]:
    out = [pg_update_function(),
           f"CREATE TRIGGER trace_hours_update AFTER UPDATE ON traces FOR EACH ROW WHEN ({changed(True)})"
           " EXECUTE FUNCTION trace_hours_update()"]
    for event in ("INSERT", "DELETE"):
        out += [pg_trace_function(event), pg_trigger(f"trace_hours_{event.lower()}", "traces", event)]
    for event in TRACE_EVENTS:
        out += [pg_eval_function(event), pg_trigger(f"trace_hours_eval_{event.lower()}", "evaluation_results", event)]
    return out


# -- the rows already stored ----------------------------------------------------------------------


def backfill(pg: bool) -> list[str]:
    parts = ", ".join(f"sum({p})" for p in trace_parts("r"))
    eval_sums = ", ".join(f"sum({p})" for p in eval_parts("e", pg))
    zeros = ", ".join(["0", "0", "0", "0", "0.0", "0", "0", "0.0"])
    by_hour = f"r.project_id, {hour('r')}"
    return [
        f"INSERT INTO trace_hours ({KEY}, {', '.join(SUMS)}) SELECT {by_hour}, 0, {parts}, 0, 0, 0"
        f" FROM traces r GROUP BY {by_hour}",
        upsert("trace_hours", SUMS, pg).format(
            select=f"SELECT t.project_id, {hour('t')}, 0, {zeros}, {eval_sums} FROM traces t"
                   " JOIN evaluation_results e ON e.project_id = t.project_id AND e.trace_id = t.trace_id"
                   f" GROUP BY t.project_id, {hour('t')}"),
        f"INSERT INTO trace_hour_latency ({KEY}, bucket, n) SELECT {by_hour}, 0, {qualified(LATENCY_BUCKET_SQL, 'r')},"
        f" count(*) FROM traces r WHERE {qualified(FINISHED_SQL, 'r')}"
        f" GROUP BY {by_hour}, {qualified(LATENCY_BUCKET_SQL, 'r')}",
        f"INSERT INTO trace_hour_decisions ({KEY}, action, n) SELECT {by_hour}, 0, r.decision, count(*)"
        f" FROM traces r WHERE r.decision IS NOT NULL GROUP BY {by_hour}, r.decision",
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    key = [sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("hour_ns", sa.BigInteger, primary_key=True, autoincrement=False),
           sa.Column("writer_pid", sa.Integer, primary_key=True, autoincrement=False)]
    op.create_table(
        "trace_hours", *[c.copy() for c in key],
        *[sa.Column(c, sa.Float if c in ("completion_sum", "cost_usd") else sa.BigInteger, nullable=False)
          for c in SUMS],
        sqlite_with_rowid=False)
    op.create_table("trace_hour_latency", *[c.copy() for c in key],
                    sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("n", sa.BigInteger, nullable=False), sqlite_with_rowid=False)
    op.create_table("trace_hour_decisions", *[c.copy() for c in key],
                    sa.Column("action", sa.String(32), primary_key=True),
                    sa.Column("n", sa.BigInteger, nullable=False), sqlite_with_rowid=False)
    op.create_index("ix_traces_latency", "traces",
                    ["project_id", sa.text(LATENCY_BUCKET_SQL), "start_ns", "end_ns"],
                    sqlite_where=sa.text(FINISHED_SQL), postgresql_where=sa.text(FINISHED_SQL))
    op.create_index("ix_traces_awaiting", "traces", ["project_id", sa.text(LAST_WRITE_SQL)],
                    sqlite_where=sa.text(AWAITING_SQL), postgresql_where=sa.text(AWAITING_SQL))
    for statement in backfill(pg):
        op.execute(statement)
    for statement in (pg_ddl() if pg else sqlite_triggers()):
        op.execute(statement)


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for event in TRACE_EVENTS:
        for name, table in ((f"trace_hours_{event.lower()}", "traces"),
                            (f"trace_hours_eval_{event.lower()}", "evaluation_results")):
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if pg else ""))
            if pg:
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("ix_traces_awaiting", "traces")
    op.drop_index("ix_traces_latency", "traces")
    for table in ("trace_hour_decisions", "trace_hour_latency", "trace_hours"):
        op.drop_table(table)
