"""Open the database: engine with SQLite pragmas, migrations to head, session factories for reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from storage import faults

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_IMMEDIATE = "sqlite_begin_immediate"
# How long a SQLite statement waits for another writer's lock before it fails as "database is locked".
BUSY_TIMEOUT_S = 10.0


def utc_now() -> datetime:
    """Now in UTC, naive: how every timestamp column stores time."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Database:
    """`read` sessions see a snapshot; `write` sessions hold SQLite's write lock from their first statement."""

    engine: Engine
    read: sessionmaker[Session]
    write: sessionmaker[Session]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def create_db_engine(url: str) -> Engine:
    engine = create_engine(url)
    faults.watch(engine)  # a full disk or a locked database is raised as ServiceUnavailable, not as a bug
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection, _record) -> None:
    # pysqlite's own implicit BEGIN is deferred; _sqlite_begin emits the BEGIN itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # A deferred transaction that reads, then writes, fails at once with "database is locked" if another
    # writer committed in between (busy_timeout does not apply); IMMEDIATE takes the lock up front and waits.
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (runs at every startup; a no-op when current)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # A migration that rebuilds a table (drop and rename) must not cascade-delete the rows that point
            # at it. The pragma only takes effect outside a transaction, so it goes to the driver directly.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("a migration left rows that refer to missing rows; nothing was changed")
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def open_database(url: str) -> Database:
    engine = create_db_engine(url)
    migrate(engine)
    writer = engine.execution_options(**{_IMMEDIATE: True})
    return Database(engine, sessionmaker(engine, expire_on_commit=False), sessionmaker(writer, expire_on_commit=False))
