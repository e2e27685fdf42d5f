"""Policies, their immutable versions, activations and shadow versions (SQLAlchemy Core).

Every function takes a connection and the caller's project_id; writers run inside the caller's
transaction (`write` retries one that lost a race for a name or a version number). The store
never validates a definition (it must not import the decision package): callers parse it first.

Rules kept here:
- Versions are immutable. Creating a version of a policy that does not exist creates the policy;
  otherwise it becomes version N+1. The same definition (canonical JSON hash) and effective time
  as the newest version is not a new version: the newest is answered, `unchanged` (as `kubectl
  apply` is idempotent).
- One active policy per project. Activating a version records an activation (`policy_activations`)
  and designates it (`policies.active_version`), clearing the project's other designation. The
  version in force at a time t is the one of the newest activation effective at t: a version
  whose `effective_from` is later leaves the one in force until then in force.
- A shadow version (`policies.shadow_version`) decides alongside and is only recorded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from tracehub.store.schema import policies, policy_activations, policy_versions, projects

T = TypeVar("T")

WRITE_ATTEMPTS = 3
MAX_NAME = 200  # policies.name's length
_ID = re.compile("[0-9]{1,18}")  # within BIGINT


class PolicyNotFound(LookupError):
    """An unknown policy or version; the message says which."""


def definition_hash(definition: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of a definition."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """Run `work` in one short transaction; once more if a concurrent writer took the same policy
    name or version number first (a unique key refused it)."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with engine.begin() as conn:
                return work(conn)
        except sa.exc.IntegrityError:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def project_id(conn: sa.Connection, name: str) -> int | None:
    found: int | None = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
    return found


def find_policy(conn: sa.Connection, project_id: int, ref: str | int) -> dict[str, Any] | None:
    """A policy by its numeric id or its name (None for text no id or name can be)."""
    where = policies.c.project_id == project_id
    if isinstance(ref, str) and ("\x00" in ref or len(ref) > MAX_NAME):
        return None
    if isinstance(ref, int) or _ID.fullmatch(ref):
        by_id = conn.execute(sa.select(policies).where(where, policies.c.id == int(ref))).mappings().first()
        if by_id is not None or isinstance(ref, int):
            return dict(by_id) if by_id else None
    row = conn.execute(sa.select(policies).where(where, policies.c.name == str(ref))).mappings().first()
    return dict(row) if row else None


def _version_row(conn: sa.Connection, project_id: int, policy_id: int, version: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(policy_versions).where(
        policy_versions.c.project_id == project_id, policy_versions.c.policy_id == policy_id,
        policy_versions.c.version == version)).mappings().first()
    return dict(row) if row else None


def get_version(conn: sa.Connection, project_id: int, policy_id: int, version: int) -> dict[str, Any]:
    found = _version_row(conn, project_id, policy_id, version)
    if found is None:
        raise PolicyNotFound(f"policy {policy_id} has no version {version}")
    return found


def versions(conn: sa.Connection, project_id: int, policy_id: int) -> list[dict[str, Any]]:
    """Every version of a policy, newest first."""
    rows = conn.execute(sa.select(policy_versions).where(
        policy_versions.c.project_id == project_id, policy_versions.c.policy_id == policy_id,
    ).order_by(policy_versions.c.version.desc())).mappings()
    return [dict(r) for r in rows]


def in_force(conn: sa.Connection, project_id: int, now_ns: int) -> dict[str, Any] | None:
    """The activation in force at `now_ns`: the newest one whose effective time has come."""
    row = conn.execute(_reads(conn.dialect.name)["in_force"], {"p": project_id, "now": now_ns}).mappings().first()
    return dict(row) if row else None


def active_policy(conn: sa.Connection, project_id: int, now_ns: int) -> dict[str, Any] | None:
    """The policy version in force at `now_ns`, or None: the version row (definition, hash, ...)
    with `policy_name`, `activated_ns` and `effective_ns` (when it took effect)."""
    activation = in_force(conn, project_id, now_ns)
    if activation is None:
        return None
    row = conn.execute(_reads(conn.dialect.name)["version"], {"v": activation["policy_version_id"]}
                       ).mappings().first()
    if row is None:
        return None
    return {**row, "activated_ns": activation["created_ns"], "effective_ns": activation["effective_ns"]}


def shadow_versions(conn: sa.Connection, project_id: int) -> list[dict[str, Any]]:
    """The project's shadow versions (version rows with `policy_name`)."""
    rows = conn.execute(_reads(conn.dialect.name)["shadows"], {"p": project_id}).mappings()
    return [dict(r) for r in rows]


@functools.cache
def _reads(dialect: str) -> dict[str, sa.Select[Any]]:
    """The engine's reads of the policy in force and the shadow versions, built once: building
    them took longer than running them."""
    a, v, p = policy_activations.c, policy_versions.c, policies.c
    project = sa.bindparam("p", type_=sa.Integer)
    named = sa.select(policy_versions, p.name.label("policy_name"))
    return {
        "in_force": sa.select(policy_activations)
        .where(a.project_id == project, a.effective_ns <= sa.bindparam("now", type_=sa.BigInteger))
        .order_by(a.id.desc()).limit(1),
        "version": named.join(policies, p.id == v.policy_id).where(v.id == sa.bindparam("v", type_=sa.Integer)),
        "shadows": named.join(policies, sa.and_(p.id == v.policy_id, p.shadow_version == v.version))
        .where(p.project_id == project).order_by(p.id),
    }


def list_policies(conn: sa.Connection, project_id: int, now_ns: int,
                  policy_id: int | None = None) -> list[dict[str, Any]]:
    """Every policy of the project (or only `policy_id`) by name, with its latest version and the
    version of it in force now (`in_force_version`, None when another policy or none is)."""
    latest = (sa.select(policy_versions.c.policy_id, sa.func.max(policy_versions.c.version).label("latest"))
              .where(policy_versions.c.project_id == project_id)
              .group_by(policy_versions.c.policy_id).subquery())
    rows = conn.execute(
        sa.select(policies, latest.c.latest.label("latest_version"))
        .outerjoin(latest, latest.c.policy_id == policies.c.id)
        .where(policies.c.project_id == project_id,
               *([policies.c.id == policy_id] if policy_id is not None else []))
        .order_by(policies.c.name)).mappings().all()
    current = in_force(conn, project_id, now_ns)
    return [{**r, "in_force_version": current["version"] if current and current["policy_id"] == r["id"] else None}
            for r in rows]


def summary(conn: sa.Connection, project_id: int, policy_id: int, now_ns: int) -> dict[str, Any]:
    """One policy as `list_policies` shows it."""
    found = list_policies(conn, project_id, now_ns, policy_id)
    if not found:
        raise PolicyNotFound(f"no policy {policy_id}")
    return found[0]


def create_version(conn: sa.Connection, project_id: int, name: str, definition: dict[str, Any], *,
                   description: str | None = None, source_format: str = "json",
                   source_text: str | None = None, effective_from_ns: int | None = None,
                   now_ns: int | None = None) -> dict[str, Any]:
    """Store a definition as the next version of the policy `name` (created if new).

    Returns {"policy", "version", "created_policy", "unchanged"}: `unchanged` when the newest
    version already holds this definition and effective time (nothing is written)."""
    now = now_ns or time.time_ns()
    digest = definition_hash(definition)
    policy = _by_name(conn, project_id, name)
    created_policy = policy is None
    if policy is None:
        policy_id = conn.execute(policies.insert().values(
            project_id=project_id, name=name, description=description, created_ns=now, updated_ns=now,
        ).returning(policies.c.id)).scalar_one()
        number = 1
    else:
        policy_id = policy["id"]
        newest = versions(conn, project_id, policy_id)[:1]
        if newest and newest[0]["definition_hash"] == digest and newest[0]["effective_from_ns"] == effective_from_ns:
            return {"policy": policy, "version": newest[0], "created_policy": False, "unchanged": True}
        number = (newest[0]["version"] if newest else 0) + 1
        values: dict[str, Any] = {"updated_ns": now}
        if description is not None:
            values["description"] = description
        conn.execute(policies.update().where(policies.c.id == policy_id).values(**values))
    conn.execute(policy_versions.insert().values(
        project_id=project_id, policy_id=policy_id, version=number, definition=definition,
        definition_hash=digest, source_format=source_format, source_text=source_text,
        description=description, effective_from_ns=effective_from_ns, created_ns=now))
    return {"policy": _by_id(conn, project_id, policy_id), "version": get_version(conn, project_id, policy_id, number),
            "created_policy": created_policy, "unchanged": False}


def _by_name(conn: sa.Connection, project_id: int, name: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(policies).where(
        policies.c.project_id == project_id, policies.c.name == name)).mappings().first()
    return dict(row) if row else None


def _by_id(conn: sa.Connection, project_id: int, policy_id: int) -> dict[str, Any]:
    found = find_policy(conn, project_id, policy_id)
    if found is None:
        raise PolicyNotFound(f"no policy {policy_id}")
    return found


def activate(conn: sa.Connection, project_id: int, policy_id: int, version: int,
             now_ns: int | None = None) -> dict[str, Any]:
    """Make `version` the project's active policy version from its effective time on (now if
    that has passed). Returns {"policy", "version", "activation", "unchanged"}: `unchanged` when
    it is already the designated version (no activation is recorded)."""
    now = now_ns or time.time_ns()
    policy = _by_id(conn, project_id, policy_id)
    row = get_version(conn, project_id, policy_id, version)
    latest = conn.execute(sa.select(policy_activations).where(policy_activations.c.project_id == project_id)
                          .order_by(policy_activations.c.id.desc()).limit(1)).mappings().first()
    if latest is not None and latest["policy_version_id"] == row["id"] and policy["active_version"] == version:
        return {"policy": policy, "version": row, "activation": dict(latest), "unchanged": True}
    effective = max(row["effective_from_ns"] or now, now)
    activation = {"project_id": project_id, "policy_id": policy_id, "policy_version_id": row["id"],
                  "version": version, "effective_ns": effective, "created_ns": now}
    activation["id"] = conn.execute(
        policy_activations.insert().values(**activation).returning(policy_activations.c.id)).scalar_one()
    conn.execute(policies.update().where(policies.c.project_id == project_id, policies.c.id != policy_id,
                                         policies.c.active_version.is_not(None))
                 .values(active_version=None, updated_ns=now))
    conn.execute(policies.update().where(policies.c.id == policy_id).values(active_version=version, updated_ns=now))
    return {"policy": _by_id(conn, project_id, policy_id), "version": row, "activation": activation,
            "unchanged": False}


def set_shadow(conn: sa.Connection, project_id: int, policy_id: int, version: int | None,
               now_ns: int | None = None) -> dict[str, Any]:
    """Mark `version` as the policy's shadow version, or clear it (None). Returns the policy."""
    _by_id(conn, project_id, policy_id)
    if version is not None:
        get_version(conn, project_id, policy_id, version)
    conn.execute(policies.update().where(policies.c.id == policy_id)
                 .values(shadow_version=version, updated_ns=now_ns or time.time_ns()))
    return _by_id(conn, project_id, policy_id)
