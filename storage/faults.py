"""Faults of the machine, told apart from faults of the app: raw storage exceptions become ServiceUnavailable.

A full disk, a database locked by another program for longer than the busy timeout, a PostgreSQL server that is
down or out of space: none is a bug, and each has a sentence that says what is wrong and what to do. `classify`
is the one place that recognises them; `watch` makes every statement of a database engine raise them as such.
Knows nothing of models, pages or HTTP.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy import Engine, event, exc

from domain.errors import ServiceUnavailable
from domain.i18n import t

DISK_FULL = t("service.disk_full")
DATABASE_BUSY = t("service.database_busy")
DATABASE_AWAY = t("service.database_away")
# Seconds a client should wait before trying again: a lock passes soon, a full disk needs someone to act.
RETRY_BUSY_S = 5
RETRY_AWAY_S = 10
RETRY_DISK_FULL_S = 60

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# PostgreSQL's SQLSTATE classes and codes that say the server, not the request, is in trouble.
_PG_DISK_FULL = {"53100"}
_PG_AWAY_CLASSES = ("08", "57P")  # connection exceptions; the server shutting down or starting up
_PG_BUSY = {"53300", "55P03", "40P01"}  # too many connections, a lock not available, a deadlock


def disk_full() -> ServiceUnavailable:
    return ServiceUnavailable(DISK_FULL, RETRY_DISK_FULL_S)


def database_busy() -> ServiceUnavailable:
    return ServiceUnavailable(DATABASE_BUSY, RETRY_BUSY_S)


def database_away() -> ServiceUnavailable:
    return ServiceUnavailable(DATABASE_AWAY, RETRY_AWAY_S)


def classify(error: BaseException, disconnect: bool = False) -> ServiceUnavailable | None:
    """The ServiceUnavailable that `error` amounts to, or None when it is not a fault of the machine.

    `disconnect`: SQLAlchemy found that the connection to the database was lost.
    """
    if isinstance(error, ServiceUnavailable):
        return error
    if isinstance(error, exc.DBAPIError):
        return classify(error.orig, disconnect or error.connection_invalidated) if error.orig is not None else None
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return disk_full()
    if isinstance(error, sqlite3.Error):
        return _sqlite(error)
    sqlstate = getattr(error, "sqlstate", None)  # psycopg's errors carry the server's SQLSTATE
    if type(error).__module__.startswith("psycopg"):
        if sqlstate in _PG_DISK_FULL:
            return disk_full()
        if sqlstate in _PG_BUSY:
            return database_busy()
        if disconnect or sqlstate is None and type(error).__name__ == "OperationalError":
            return database_away()  # no SQLSTATE: the server never answered (refused, unreachable, gone)
        if sqlstate is not None and sqlstate.startswith(_PG_AWAY_CLASSES):
            return database_away()
    return None


def _sqlite(error: sqlite3.Error) -> ServiceUnavailable | None:
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error)
    if name.startswith("SQLITE_FULL") or "database or disk is full" in text:
        return disk_full()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text or "database table is locked" in text:
        return database_busy()
    return None


def watch(engine: Engine) -> None:
    """Make the engine raise ServiceUnavailable (chained to the original) for the faults `classify` knows."""
    event.listen(engine, "handle_error", _handle_error)


def _handle_error(context) -> ServiceUnavailable | None:
    if context.is_pre_ping:  # the pool is testing a connection: it handles a dead one itself
        return None
    return classify(context.original_exception, context.is_disconnect)
