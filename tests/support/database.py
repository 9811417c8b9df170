"""The test databases: new ones, connection strings for psycopg, emptying every table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Connection

from gateway.store.db import Database
from gateway.store.models import Base

#: Redis databases a test session may take when GATEWAY_TEST_REDIS_URL names none (13: benches').
REDIS_DATABASES = (15, 14, 12, 11, 10, 9)
#: The key in database 0 under which a test session (or a bench run) holds a Redis database.
REDIS_CLAIM = "gateway-tests:redis-db:{number}"


def pg_conninfo(url: str) -> str:
    """A PostgreSQL URL as psycopg itself takes it (without SQLAlchemy's driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def new_database(admin_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on `admin_url`'s server, dropped at the end.
    psycopg.OperationalError when the server cannot be reached."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = pg_conninfo(admin_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    """Empty every table of the database at `url` (identities restart on PostgreSQL).

    PostgreSQL: DELETE, children first, then a restart of the tables' own sequences, in one round
    trip; a TRUNCATE of every table takes ten times as long on tables this small."""
    db = Database(url)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        else:
            conn.exec_driver_sql(_emptying(conn))
    db.engine.dispose()


def _emptying(conn: Connection) -> str:
    """The statements that empty the gateway's tables and restart the sequences they own."""
    names = [table.name for table in Base.metadata.sorted_tables]
    owned = conn.exec_driver_sql(
        "SELECT DISTINCT s.oid::regclass::text FROM pg_class s"
        " JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
        " JOIN pg_class t ON t.oid = d.refobjid"
        " WHERE s.relkind = 'S' AND t.relname = ANY(%s)",
        (names,),
    ).scalars()
    deletes = [f'DELETE FROM "{name}"' for name in reversed(names)]
    restarts = [f"ALTER SEQUENCE {sequence} RESTART" for sequence in owned]
    return "; ".join(deletes + restarts)
