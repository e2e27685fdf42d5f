"""Database failures, sorted by what a client should do about them: retry later or not at all.

`Unavailable`: the database cannot be reached or is busy (a lost connection, one refused, a lock
timeout, a full disk). The same request will succeed later, so clients are told to retry.
`Rejected`: this request's data fails the same way on every try (a value out of the database's
range, a constraint, an SQL limit). Answered as retryable, an exporter would send it for ever.

`fault_of` is the one place that tells them apart, from the driver's own classification (SQLSTATE
on PostgreSQL, the result code on SQLite). Neither exception carries the driver's text: it names
tables, values and internals, so it goes to the log, never to a client.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import sqlalchemy as sa

# A client that follows it comes back about when a lost connection has been replaced
# (`background.Backoff`'s longest wait).
RETRY_AFTER_S = 2.0

# PostgreSQL SQLSTATE classes where the data or the statement is at fault, so a retry fails alike:
# data exception, integrity constraint, syntax or access rule, program limit exceeded.
_PG_REJECTED_CLASSES = frozenset(("22", "23", "42", "54"))
# ... except a unique violation: the writer looks for stored rows before it inserts, so one means
# another process stored the row meanwhile (`conflict`), and the retry finds it stored.
_PG_UNIQUE_VIOLATION = "23505"
_PG_RETRYABLE = frozenset((_PG_UNIQUE_VIOLATION,))
# SQLite result codes where the statement or its values are at fault: SQL error (no such table,
# too many SQL variables), too big, constraint, datatype mismatch, bind out of range. The others
# (busy, locked, I/O error, full, can't open, read-only, no memory) pass.
_SQLITE_REJECTED = frozenset((1, 18, 19, 20, 25))


class Fault(Exception):
    """A database failure, told apart by what the client should do (`Unavailable`, `Rejected`)."""


class Unavailable(Fault):
    def __init__(self, message: str = "the database is unavailable; retry later") -> None:
        super().__init__(message)


class Rejected(Fault):
    def __init__(self, message: str = "the database cannot store this request; sending it again"
                 " will fail the same way (the server log says why)") -> None:
        super().__init__(message)


def retryable(exc: BaseException) -> bool:
    """Whether the operation that raised `exc` may succeed if tried again later, unchanged."""
    if isinstance(exc, Fault):
        return isinstance(exc, Unavailable)
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is not None:
            return state in _PG_RETRYABLE or state[:2] not in _PG_REJECTED_CLASSES
        # Raised by psycopg itself, before or without the server: a lost connection, or values
        # it cannot send (NUL in text, too many parameters).
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF not in _SQLITE_REJECTED
        return isinstance(exc, sqlite3.OperationalError)
    # The pool's wait for a connection, or one SQLAlchemy found closed.
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return isinstance(exc, (sa.exc.TimeoutError, sa.exc.DisconnectionError))
    # Python's own errors are the request's: a value that does not bind (an int beyond 64 bits,
    # a lone surrogate in text) or that the writer's code cannot handle.
    return isinstance(exc, (MemoryError, OSError))


def conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL failed the transaction for a conflict with another one: a deadlock or a
    serialization failure (SQLSTATE class 40), or a unique violation, which on the write path means
    another server process stored the row (a trace's first row, a span) after this transaction
    looked for it. Run again at once, it reads what the other committed and goes through."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate or ""
    return state.startswith("40") or state == _PG_UNIQUE_VIOLATION


def fault_of(exc: BaseException) -> Fault:
    return exc if isinstance(exc, Fault) else Unavailable() if retryable(exc) else Rejected()


# What the database, its drivers and the connection pool raise.
DATABASE_ERRORS = (Fault, sa.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error)


def database_error(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


def lost(dbapi: Any) -> bool:
    """Whether a DB-API connection broke (its PostgreSQL backend ended, or the network failed) and
    must be replaced. SQLite's connections do not break."""
    return isinstance(dbapi, psycopg.Connection) and (dbapi.broken or dbapi.closed)
