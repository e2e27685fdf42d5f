"""The `tracehub` command: serve, migrate, seed, keys create, policy apply / list / activate,
projects set-retention, prune, backup and restore.

Every serve flag is also a TRACEHUB_* variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

from tracehub.settings import Settings, describe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracehub", description="LLM Trace Hub: OpenTelemetry-native tracing for LLM apps.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    env_only = "\n".join(f"  {env}={default!r}\n      {help_text}"
                         for _name, env, default, help_text, flag in describe() if not flag)
    serve = sub.add_parser("serve", help="run the API, OTLP/HTTP and OTLP/gRPC servers",
                           description="Run the REST API and OTLP receivers (migrates first).",
                           epilog="settings read from the environment only:\n" + env_only,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, env, default, help_text, flag in describe():
        if flag:
            kind = int if isinstance(default, int) else str
            serve.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(),
                               help=f"{help_text} Default {default!r}; env {env}.")

    migrate = sub.add_parser("migrate", help="apply database migrations and exit",
                             description="Bring the database schema to the newest version.")
    migrate.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")

    seed = sub.add_parser("seed", help="load demo data (idempotent)",
                          description="Load demo traces, a LangGraph run, evals, a failure and an open "
                                      "trace through the API, so a first start is not empty.")
    seed.add_argument("--api-key", default="dev-key", help="key of the project to seed (default dev-key)")
    seed.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")

    keys = sub.add_parser("keys", help="manage API keys", description="Manage API keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key for a project (printed once)",
                                 description="Create a project if needed and print a new key once.")
    create.add_argument("--project", required=True, help="project name")
    create.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")

    backup = sub.add_parser(
        "backup", help="copy the SQLite database to PATH (safe while the server runs)",
        description="Copy the SQLite database to PATH with SQLite's online backup: one consistent"
                    " snapshot, taken while the server keeps ingesting. On PostgreSQL it explains pg_dump.")
    backup.add_argument("path", metavar="PATH", help="the backup file to write (replaced if it exists)")
    restore = sub.add_parser(
        "restore", help="put a backup in place of the SQLite database (server stopped)",
        description="Copy the backup at PATH to the SQLite database of TRACEHUB_DATABASE_URL. Refused"
                    " while a server (or anything else) has that database open. On PostgreSQL it explains"
                    " pg_restore.")
    restore.add_argument("path", metavar="PATH", help="a file written by `tracehub backup`")
    restore.add_argument("--replace", action="store_true",
                         help="replace the database if it exists (its data is lost)")
    for command in (backup, restore):
        command.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")

    projects = sub.add_parser("projects", help="manage project settings", description="Manage project settings.")
    projects_sub = projects.add_subparsers(dest="projects_command", required=True, metavar="ACTION")
    retention = projects_sub.add_parser(
        "set-retention", help="delete a project's traces DAYS after their last activity",
        description="Keep project NAME's traces DAYS days after their last activity (the latest of their"
                    " start, their end and the server's last write to them); then the server's retention"
                    " passes, or `tracehub prune`, delete them with their spans, events, evaluations,"
                    " decisions, judge runs and cases. 0 or off: keep them for ever (the default).")
    retention.add_argument("name", metavar="NAME", help="project name")
    retention.add_argument("days", metavar="DAYS", help="days (1-36500), or 0 / off")
    prune = sub.add_parser(
        "prune", help="delete the traces past their project's retention now",
        description="Delete, now, the traces whose last activity is older than their project's retention"
                    " (what the server's retention passes do), a chunk of traces a transaction; safe while"
                    " the server runs. Prints what it deleted.")
    prune.add_argument("--project", default=None, help="only this project (default: every project with a retention)")
    prune.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    for command in (retention, prune):
        command.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")

    policy = sub.add_parser("policy", help="manage decision policies",
                            description="Create, list and activate decision policies on the database.")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    apply = policy_sub.add_parser(
        "apply", help="store a policy file as the policy's next version",
        description="Store FILE (YAML or JSON, the body of POST /api/v1/policies: name, description, "
                    "effective_from, active, definition) as a new version of the policy with its name. "
                    "The same definition as the newest version stores nothing (unchanged).")
    apply.add_argument("file", metavar="FILE", help="a .yaml, .yml or .json file")
    apply.add_argument("--activate", action="store_true", help="activate the version (as `active: true`)")
    listing = policy_sub.add_parser("list", help="list the project's policies and their versions")
    activate = policy_sub.add_parser("activate", help="make a version the project's active policy",
                                     description="Activate VERSION of policy NAME (from its effective_from,"
                                                 " if later); the project's other policy stops deciding.")
    activate.add_argument("name", metavar="NAME", help="policy name or numeric id")
    activate.add_argument("version", metavar="VERSION", type=int, help="version number")
    for command in (apply, listing, activate):
        command.add_argument("--project", default="default", help="project name (default: default)")
        command.add_argument("--database-url", default=None, help="SQLAlchemy URL; env TRACEHUB_DATABASE_URL.")
    return parser


def _policy_command(engine: sa.Engine, args: argparse.Namespace) -> int:
    """`tracehub policy ...` on the database: 0 done, 1 not found, 2 a file the API would refuse."""
    from tracehub.api.errors import ProblemError
    from tracehub.api.policies import parse_request
    from tracehub.decision.policy import PolicyError, SourceError, load_source, parse_policy
    from tracehub.store import policies

    now = time.time_ns()
    with engine.connect() as conn:
        project_id = policies.project_id(conn, args.project)
    if project_id is None:
        print(f"no project {args.project!r}: create it with `tracehub keys create --project NAME`",
              file=sys.stderr)
        return 1
    try:
        if args.policy_command == "list":
            with engine.connect() as conn:
                rows = policies.list_policies(conn, project_id, now)
            print("NAME  ACTIVE  LATEST  SHADOW  IN_FORCE")
            for r in rows:
                cells = (r["active_version"], r["latest_version"], r["shadow_version"], r["in_force_version"])
                print(r["name"], *("-" if c is None else c for c in cells), sep="  ")
            return 0
        if args.policy_command == "activate":
            def activate(conn: sa.Connection) -> dict[str, Any]:
                found = policies.find_policy(conn, project_id, args.name)
                if found is None:
                    raise policies.PolicyNotFound(f"no policy {args.name!r} in project {args.project!r}")
                parse_policy(policies.get_version(conn, project_id, found["id"], args.version)["definition"])
                return policies.activate(conn, project_id, found["id"], args.version, now)

            done = policies.write(engine, activate)
            print(f"{done['policy']['name']} version {args.version} {_activated(done['activation'], now)}")
            return 0
        path = Path(args.file)
        source_format = "json" if path.suffix.lower() == ".json" else "yaml"
        text = path.read_text("utf-8")
        req = parse_request(load_source(text, source_format), source_format,
                            text if source_format == "yaml" else None)

        def apply(conn: sa.Connection) -> dict[str, Any]:
            made = policies.create_version(
                conn, project_id, req.name, req.definition, description=req.description,
                source_format=req.source_format, source_text=req.source_text,
                effective_from_ns=req.effective_from_ns, now_ns=now)
            made["activation"] = None
            if req.active or args.activate:
                made["activation"] = policies.activate(conn, project_id, made["policy"]["id"],
                                                       made["version"]["version"], now)["activation"]
            return made

        made = policies.write(engine, apply)
        state = "unchanged" if made["unchanged"] else "created"
        line = f"{req.name} version {made['version']['version']} {state}"
        print(line + (f", {_activated(made['activation'], now)}" if made["activation"] else ""))
        return 0
    except policies.PolicyNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, SourceError) as exc:
        print(f"{getattr(exc, 'filename', None) or args.file}: {exc}", file=sys.stderr)
        return 2
    except (ProblemError, PolicyError) as exc:
        for error in exc.errors or [{"path": "", "message": str(exc)}]:
            print(f"{error['path']}: {error['message']}", file=sys.stderr)
        return 2


def _set_retention(engine: sa.Engine, name: str, text: str) -> int:
    """`tracehub projects set-retention`: 0 done, 1 no such project, 2 DAYS not understood."""
    from tracehub.store.retention import MAX_RETENTION_DAYS, retention_days_of
    from tracehub.store.schema import projects

    try:
        days = retention_days_of(text)
    except ValueError:
        print(f"DAYS must be a number of days (0-{MAX_RETENTION_DAYS}) or off, not {text!r}", file=sys.stderr)
        return 2
    with engine.begin() as conn:
        changed = conn.execute(projects.update().where(projects.c.name == name).values(retention_days=days))
    if not changed.rowcount:
        print(f"no project {name!r}: create it with `tracehub keys create --project NAME`", file=sys.stderr)
        return 1
    print(f"project {name!r}: traces are " + ("kept for ever" if days is None else
                                             f"deleted {days} days after their last activity"))
    return 0


def _prune(engine: sa.Engine, project: str | None, dry_run: bool) -> int:
    """`tracehub prune`: each chunk in a transaction of its own (run again after a conflict with
    another PostgreSQL transaction, as the writer does). 0 done, 1 no such project."""
    from tracehub.store.sql import Sql

    sql = Sql(engine.dialect.name)
    pooled = engine.raw_connection()
    dbapi: Any = pooled.driver_connection
    try:
        return _prune_on(dbapi, sql, project, dry_run)
    finally:
        pooled.close()


def _prune_on(dbapi: Any, sql: Any, project: str | None, dry_run: bool) -> int:
    """`_prune` on a DB-API connection of its own."""
    from tracehub.api.params import iso
    from tracehub.store import retention
    from tracehub.store.background import rollback
    from tracehub.store.faults import conflict
    from tracehub.store.writer import CONFLICT_RERUNS

    with retention.autocommit(dbapi, sql.pg):
        if not sql.pg:
            sql.use_variable_limit(dbapi)

        def run(work: Any) -> Any:
            for rerun in range(CONFLICT_RERUNS, -1, -1):
                cur = dbapi.cursor()
                try:
                    sql.begin(cur)
                    result = work(cur, sql)
                    cur.execute("COMMIT")
                    return result
                except Exception as exc:
                    rollback(dbapi)
                    if not rerun or not conflict(exc):
                        raise
            raise AssertionError("unreachable")

        cur = dbapi.cursor()
        passes = list(retention.prune(cur, sql, run, time.time_ns(), project, dry_run))
        if not passes:
            print(f"no project {project!r}" if project is not None else
                  "no project has a retention (tracehub projects set-retention NAME DAYS); nothing to delete",
                  file=sys.stderr if project is not None else sys.stdout)
            return 1 if project is not None else 0
        deleted = 0
        for done in passes:
            if not done.retention_days:
                print(f"{done.name}: keeps its traces for ever (tracehub projects set-retention NAME DAYS)")
                continue
            deleted += done.pruned.traces
            verb = "would delete" if dry_run else "deleted"
            print(f"{done.name}: {verb} {done.pruned.describe()}; retention {done.retention_days} days,"
                  f" last activity before {iso(done.cutoff_ns)}")
        if not sql.pg and deleted and not dry_run:
            given = retention.free_pages(cur, sql, run)
            cur.execute("PRAGMA freelist_count")
            free = cur.fetchone()[0]
            cur.execute("PRAGMA page_size")
            size = cur.fetchone()[0]
            if given:
                print(f"SQLite: {given * size / 2**20:.1f} MiB given back to the file (auto_vacuum=INCREMENTAL)")
            if free:
                print(f"SQLite: {free * size / 2**20:.1f} MiB of free pages, reused by new rows (a VACUUM with"
                      " the server stopped gives them back to the file; see docs/OPERATIONS.md)")
        return 0


SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_path(settings: Settings) -> Path:
    import sqlalchemy as sa

    database = sa.make_url(settings.database_url).database
    if not database or database == ":memory:":
        raise SystemExit(f"{settings.database_url} names no database file")
    return Path(database)


def _postgres_url(settings: Settings) -> str:
    import sqlalchemy as sa

    url = sa.make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=True)


def _backup(settings: Settings, target: Path) -> int:
    if not settings.is_sqlite:
        url = _postgres_url(settings)
        print("tracehub backs up SQLite only; back up PostgreSQL with its own tools (safe while the server"
              " runs: pg_dump reads one consistent snapshot):\n"
              f"  pg_dump --format=custom --file={target} '{url}'\n"
              "and restore into a new, empty database, then point TRACEHUB_DATABASE_URL at it:\n"
              f"  createdb NEWDB && pg_restore --no-owner --dbname='postgresql://.../NEWDB' {target}\n"
              "(see docs/OPERATIONS.md)", file=sys.stderr)
        return 2
    source = _sqlite_path(settings)
    if not source.is_file():
        print(f"no database at {source}", file=sys.stderr)
        return 1
    partial = target.with_name(target.name + ".partial")  # never a half-written file under PATH
    partial.unlink(missing_ok=True)
    # A reader of a WAL database blocks no writer: the server keeps committing while the pages are
    # copied in one step, from the snapshot the step started on.
    src = sqlite3.connect(source, timeout=60)
    try:
        dest = sqlite3.connect(partial)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()
    os.replace(partial, target)
    print(f"backed up {source} to {target} ({target.stat().st_size} bytes)")
    return 0


def _sqlite_in_use(path: Path) -> bool:
    """Whether another connection has the database open: in WAL mode every open connection holds a
    shared lock on the file for as long as it is open, so an exclusive lock is refused."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def _restore(settings: Settings, backup: Path, replace: bool) -> int:
    if not settings.is_sqlite:
        print("tracehub restores SQLite only; restore a pg_dump file into a new, empty PostgreSQL database:\n"
              f"  createdb NEWDB && pg_restore --no-owner --dbname='postgresql://.../NEWDB' {backup}\n"
              "then point TRACEHUB_DATABASE_URL at it (see docs/OPERATIONS.md)", file=sys.stderr)
        return 2
    target = _sqlite_path(settings)
    try:
        with backup.open("rb") as f:
            if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                print(f"{backup} is not an SQLite database", file=sys.stderr)
                return 1
    except OSError as exc:
        print(f"{backup}: {exc}", file=sys.stderr)
        return 1
    if target.exists():
        if target.samefile(backup):
            print(f"{backup} is the database itself", file=sys.stderr)
            return 1
        if not replace:
            print(f"{target} exists: pass --replace to replace it (its data is lost)", file=sys.stderr)
            return 1
        if _sqlite_in_use(target):
            print(f"{target} is in use (a running server?): stop it first", file=sys.stderr)
            return 1
    restoring = target.with_name(target.name + ".restoring")
    shutil.copyfile(backup, restoring)
    try:
        conn = sqlite3.connect(restoring)
        try:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        restoring.unlink(missing_ok=True)
        print(f"{backup} is not a tracehub database: {exc}", file=sys.stderr)
        return 1
    # A write-ahead log left beside the old file would be replayed into the restored one.
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(restoring, target)
    print(f"restored {backup} to {target} (schema {revision[0] if revision else 'unknown'}); the server"
          " migrates it to the newest schema at start")
    return 0


def _activated(activation: dict[str, Any], now_ns: int) -> str:
    from tracehub.api.params import iso

    if activation["effective_ns"] <= now_ns:
        return "active"
    return f"active from {iso(activation['effective_ns'])} (the version in force stays until then)"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "keys_command", "project", "api_key", "policy_command", "file",
                              "activate", "name", "version", "path", "replace", "projects_command", "days",
                              "dry_run")}
    settings = Settings.from_env(**overrides)
    if args.command == "backup":
        return _backup(settings, Path(args.path))
    if args.command == "restore":
        return _restore(settings, Path(args.path), args.replace)
    if args.command == "serve":
        from tracehub.server import serve

        serve(settings)
        return 0

    if args.command == "seed":
        from tracehub.hub import Hub
        from tracehub.seed import seed

        hub = Hub(dataclasses.replace(settings, decode_workers=0))  # seeds through the JSON API
        hub.prepare()
        try:
            counts = seed(hub, args.api_key)
        finally:
            hub.close()
        if counts["requests"]:
            print(f"seeded {counts['created']} items in {counts['requests']} requests")
        else:
            print("demo data already present; nothing to do")
        return 0

    from tracehub.store import db, keys

    engine = db.create_engine(settings.database_url)
    db.migrate(engine)
    if args.command == "policy":
        keys.ensure_default_project(engine)
        try:
            return _policy_command(engine, args)
        finally:
            engine.dispose()
    if args.command in ("projects", "prune"):
        try:
            if args.command == "prune":
                return _prune(engine, args.project, args.dry_run)
            return _set_retention(engine, args.name, args.days)
        finally:
            engine.dispose()
    if args.command == "migrate":
        print(f"database at the newest schema: {engine.url.render_as_string(hide_password=True)}")
    elif args.command == "keys":
        keys.ensure_default_project(engine)
        key = keys.create_key(engine, args.project)
        print(key)
        print(f"(API key for project {args.project!r}; it is shown only this once)", file=sys.stderr)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
