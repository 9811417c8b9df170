"""The database handle: one engine per process, sessions, transactions and migrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Executable, Row, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
RECYCLE_SECONDS = 1800
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Take SQLite's write lock at BEGIN, so concurrent writers queue instead of deadlocking."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` / `postgres://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """An engine and its session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 10}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            # No pre-ping (a round trip at every checkout): a connection that died is found when
            # used, the pool is then invalidated, and `retry_disconnect` runs the work again.
            self.engine = create_engine(
                self.url,
                pool_size=10,
                pool_recycle=RECYCLE_SECONDS,
                json_deserializer=orjson.loads,
                json_serializer=_dumps,
            )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # One statement needs no transaction around it: on PostgreSQL that spares the BEGIN and
        # the ROLLBACK or COMMIT round trips. SQLite keeps its own BEGIN (see _sqlite_begin).
        self._single = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def read(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Row]:
        """The rows of one read-only statement (retried once on a connection found closed)."""

        def run() -> list[Row]:
            with self._single.connect() as connection:
                return connection.execute(statement, params).all()

        return retry_disconnect(run)

    def write(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Row]:
        """The rows a single statement returns, committed on its own: no BEGIN and COMMIT round
        trips on PostgreSQL, a transaction of its own on SQLite."""
        with self._single.begin() as connection:
            return connection.execute(statement, params).all()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed together at the end, or not at all."""
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the Alembic migrations up to `revision`."""
        with self.engine.begin() as connection:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    def dispose(self) -> None:
        """Close pooled connections (e.g. in a forked worker)."""
        self.engine.dispose(close=False)


def retry_disconnect(work: Callable[[], T]) -> T:
    """Run `work`, once more if it failed on a pooled connection the database had closed.

    `work` must be safe to repeat: a transaction that failed this way was not committed, or its
    outcome is found again by the repeat (events are idempotent by id).
    """
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return work()


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations, without any ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
