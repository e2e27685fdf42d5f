"""The `tracehub` command: serve, migrate, seed, keys create. Every serve flag is also a TRACEHUB_* variable."""

from __future__ import annotations

import argparse
import dataclasses
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "keys_command", "project", "api_key")}
    settings = Settings.from_env(**overrides)
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
