"""The database handle: one engine per process, sessions, transactions and migrations."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Executable, create_engine, event, inspect, text
from sqlalchemy.engine import Compiled, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.elements import CompilerElement

from gateway.rules import Policy

MIGRATIONS = Path(__file__).with_name("migrations")
#: The PostgreSQL advisory lock (a bigint key: the bytes of "gateway") that a migration command
#: holds until it commits.
MIGRATION_LOCK = int.from_bytes(b"gateway", "big")
RECYCLE_SECONDS = 1800
#: Up to this many rows, `execute_each` sends an INSERT as one statement of as many VALUES
#: (compiled once for each number of rows), anything else as one statement a row in one round
#: trip; beyond, a multi-row statement through SQLAlchemy (whose own work costs more than a few
#: rows). Bounded so that a statement has few texts (psycopg prepares each it sees often).
PIPELINED_ROWS = 8
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (_WriteTurns)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_WAIT_SECONDS * 1000}")
    cursor.close()


#: The execution option of the connections that only read (`Database.read`, `Database.snapshots`).
READ_ONLY = "gateway_read_only"


#: How long SQLite waits for its write lock (`busy_timeout`), then `database is locked`.
SQLITE_WAIT_SECONDS = 10


class _WriteTurns:
    """How SQLite transactions begin. One that writes takes the write lock at BEGIN (`BEGIN
    IMMEDIATE`), so concurrent writers queue instead of deadlocking, and those of this process
    take turns here first, each woken as soon as the one before ends: left to SQLite's own wait,
    waiters poll the lock at growing intervals, and under a steady stream of writes one that has
    waited long keeps losing it to newcomers until its `busy_timeout` ends it (a 503). One that
    only reads (`READ_ONLY`) begins deferred: in WAL mode it reads the last committed state at
    once, never waiting for a writer."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._taken = False
        self._waiting: deque[threading.Event] = deque()
        self._holder: Any = None

    def begin(self, connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN")
            return
        mine = self._wait()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if mine:
                self._pass_on()
            raise
        if mine:
            self._holder = connection

    def end(self, connection: Any) -> None:
        """After the COMMIT or ROLLBACK of `connection`: the next writer's turn."""
        with self._mutex:
            if connection is None or self._holder is not connection:
                return
            self._holder = None
        self._pass_on()

    def _wait(self) -> bool:
        """Whether this thread got the turn, in the order they asked; past SQLITE_WAIT_SECONDS
        it goes without it (SQLite's lock still orders the writers). A turn whose connection
        ended without a COMMIT or ROLLBACK (closed, invalidated) is taken back."""
        with self._mutex:
            if not self._taken:
                self._taken = True
                return True
            mine = threading.Event()
            self._waiting.append(mine)
        deadline = time.monotonic() + SQLITE_WAIT_SECONDS
        while not mine.wait(0.5):
            holder = self._holder
            if holder is not None and (holder.closed or holder.invalidated):
                self.end(holder)
            if time.monotonic() > deadline:
                with self._mutex:
                    if mine.is_set():  # handed over as the wait ended
                        return True
                    self._waiting.remove(mine)
                    return False
        return True

    def _pass_on(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._taken = False


ASYNCHRONOUS_COMMIT = "-c synchronous_commit=off"


def _add_option(params: dict[str, Any], option: str, name: str | None = None) -> None:
    """Add `-c name=value` to a connection's options once (SQLAlchemy 2.0 hands every connect
    the same dict), unless they set `name` already (the URL's own setting is kept)."""
    options = params.get("options", "")
    if (name or option) not in options:
        params["options"] = f"{options} {option}".strip()


#: After a connection attempt failed, how long new ones fail at once instead of waiting on the
#: database again (one attempt at a time then tries it).
RETRY_CONNECT_SECONDS = 5
#: What the database not answering raises: it is down, restarting, hung (a timeout), or every
#: pooled connection is busy. Its state, not a fault of the gateway's: logged in one line.
UNAVAILABLE = (OperationalError, PoolTimeout)


def unavailable_reason(exc: BaseException) -> str:
    """The one line saying why the database did not answer (`UNAVAILABLE`): its driver's first
    line, without SQLAlchemy's statement and link, or the error's name when it says nothing."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


class _ConnectGuard:
    """Connects to PostgreSQL with the statement timeout, and fails fast while it is unreachable.

    A database that accepts connections and never answers would hold every thread of a web
    process for the connect timeout, request after request, until `/healthz` itself waits behind
    them. After a failed attempt, new connections fail at once (as `OperationalError`, a 503) for
    RETRY_CONNECT_SECONDS; then one attempt tries the database while the others still fail fast.
    """

    def __init__(self, statement_timeout_ms: int | None) -> None:
        self.statement_timeout_ms = statement_timeout_ms
        self.options: list[str] = []  # further `-c name=value` settings of new connections
        self.lock = threading.Lock()
        self.failure: str | None = None  # the last attempt's error, while it stands
        self.retry_at = 0.0
        self.trying = False

    def __call__(
        self, dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]
    ) -> psycopg.Connection:
        with self.lock:
            if self.failure is not None:
                left = self.retry_at - time.monotonic()
                if left > 0 or self.trying:
                    raise psycopg.OperationalError(
                        f"{self.failure} (not tried again for {max(left, 0):.1f} s)"
                    )
                self.trying = True
        if self.statement_timeout_ms is not None:
            timeout = f"-c statement_timeout={self.statement_timeout_ms}"
            _add_option(cparams, timeout, "statement_timeout")
        for option in self.options:
            _add_option(cparams, option)
        try:
            connection = dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError as exc:
            with self.lock:
                self.failure = (str(exc).strip() or repr(exc)).splitlines()[0]
                self.retry_at = time.monotonic() + RETRY_CONNECT_SECONDS
                self.trying = False
            raise
        with self.lock:
            self.failure, self.trying = None, False
        return connection


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_plain_float).decode()


def _plain_float(value: Any) -> float:
    """A float of a subclass (a request body's number that keeps its text), stored as a float."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` / `postgres://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled once for psycopg, with the conversions SQLAlchemy's types make."""

    compiled: Compiled
    sql: str  # its text, with `IN` an expanding list as `= ANY` an array parameter
    binds: dict[str, Callable[[Any], Any]]  # parameter conversions, by name
    columns: tuple[Callable[[Any], Any] | None, ...] | None  # None: no column is converted
    returns_rows: bool
    lists: tuple[str, ...] = ()  # the parameters of its `IN` lists
    sql_of_one: str = ""  # its text when each list has one value: `= ` that value

    def params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """The statement's parameters: `given` and its own values, converted."""
        values = self.compiled.construct_params(given)
        for name, convert in self.binds.items():
            values[name] = convert(values[name])
        return values

    def text_for(self, values: dict[str, Any]) -> str:
        """The text to send with `values`; when each `IN` list has one value, `values` are
        changed to send it alone (an array costs psycopg more than the statement's other work)."""
        if not self.lists or any(len(values[name]) != 1 for name in self.lists):
            return self.sql
        for name in self.lists:
            values[name] = values[name][0]
        return self.sql_of_one

    def row(self, values: Sequence[Any]) -> tuple:
        """A row as SQLAlchemy would read it."""
        if self.columns is None:
            return tuple(values)
        return tuple(v if c is None else c(v) for c, v in zip(self.columns, values, strict=True))


_BIND = re.compile(r"%\((\w+)\)s")  # a named parameter of psycopg
_VALUES = " VALUES ("


def _values_tuple(sql: str) -> tuple[int, int] | None:
    """Where the one VALUES tuple of an INSERT's text starts and ends (end past its `)`)."""
    start = sql.find(_VALUES)
    if start < 0 or sql.find(_VALUES, start + 1) >= 0:
        return None
    depth, at = 0, start + len(_VALUES) - 1
    while at < len(sql):
        bind = _BIND.match(sql, at)
        if bind:  # `%(name)s` holds parentheses of its own
            at = bind.end()
            continue
        depth += {"(": 1, ")": -1}.get(sql[at], 0)
        at += 1
        if depth == 0:
            return start + len(_VALUES) - 1, at
    return None


@dataclass(frozen=True)
class _Rows:
    """An INSERT of one row compiled for several rows (`many`): one VALUES tuple a row, its
    parameters named `<name>__<row>`. Rows RETURNING the table's serial key come back sorted by
    it: the order in which PostgreSQL numbered them, the order of the VALUES."""

    one: _Compiled
    many: _Compiled

    def params(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The parameters of `rows`, each converted as `one` converts them."""
        return {
            f"{name}__{n}": value
            for n, row in enumerate(rows)
            for name, value in self.one.params(row).items()
        }

    def sort(self, found: list[tuple]) -> list[tuple]:
        """The rows returned, in the order of the VALUES."""
        return sorted(found) if self.many.returns_rows else found


def _rows_of(one: _Compiled, statement: Executable, count: int) -> _Rows | None:
    """`statement` (an INSERT of one row) for `count` rows, or None if it has no such form: not
    an INSERT, a parameter outside its VALUES, or RETURNING other than the serial key."""
    if not one.compiled.isinsert or one.lists:
        return None
    returned = list(statement.exported_columns)  # type: ignore[attr-defined]
    if returned and not (
        len(returned) == 1
        and returned[0].primary_key
        and returned[0].autoincrement in (True, "auto")
        and returned[0].type.python_type is int
    ):
        return None
    found = _values_tuple(one.sql)
    if found is None:
        return None
    start, end = found
    values = one.sql[start:end]
    if _BIND.search(one.sql[:start]) or _BIND.search(one.sql[end:]):
        return None
    tuples = ", ".join(_BIND.sub(rf"%(\1__{n})s", values) for n in range(count))
    many = replace(one, sql=f"{one.sql[:start]}{tuples}{one.sql[end:]}", lists=(), sql_of_one="")
    return _Rows(one, many)


#: A column's expanding `IN` list as SQLAlchemy compiles it for PostgreSQL (not `NOT IN`, not a
#: tuple's), and what marks any other value it works out at execution.
_IN_LIST = re.compile(r"(?<=[\w\"])(?<!\bNOT) IN \(__\[POSTCOMPILE_(\w+)\]\)")
_POSTCOMPILE = "__[POSTCOMPILE_"


def _array(convert: Callable[[Any], Any] | None) -> Callable[[Any], list]:
    """An `IN` list's values as the array parameter psycopg sends, each converted."""
    return list if convert is None else lambda values: [convert(value) for value in values]


#: The outbox items queued by the transaction this thread (or task) is in: the unit of work.
_QUEUED: ContextVar[list[int] | None] = ContextVar("queued_outbox_ids", default=None)


def wake_after_commit(outbox_ids: Iterable[int]) -> None:
    """Have the workers woken for these outbox items once the current transaction commits."""
    queued = _QUEUED.get()
    if queued is None:
        raise RuntimeError("outbox items are queued inside Database.transaction() or begin()")
    queued.extend(outbox_ids)


class Database:
    """An engine and its session factory for one database URL.

    On PostgreSQL: `connect_timeout` seconds to connect (libpq counts at least 2), `pool_timeout`
    seconds to wait for a pooled connection, `statement_timeout_ms` for any statement (but
    migrations'); None leaves each unlimited (libpq's and PostgreSQL's own defaults).

    Its errors name their statement without its values (`hide_parameters`): those carry members'
    details and secrets, and an error is logged.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: int | None = None,
        pool_timeout: int | None = None,
        statement_timeout_ms: int | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # It holds webhook signing secrets: readable by its owner only (SQLite gives its
                # journal files the database file's mode).
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": SQLITE_WAIT_SECONDS},
                hide_parameters=True,
            )
            turns = _WriteTurns()
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", turns.begin)
            event.listen(self.engine, "commit", turns.end)
            event.listen(self.engine, "rollback", turns.end)
        else:
            # No pre-ping (a round trip at every checkout): a connection that died is found when
            # used, the pool is then invalidated, and `retry_disconnect` runs the work again.
            limits: dict[str, Any] = {}
            if connect_timeout is not None:
                limits["connect_args"] = {"connect_timeout": connect_timeout}
            if pool_timeout is not None:
                limits["pool_timeout"] = pool_timeout
            self.engine = create_engine(
                self.url,
                pool_size=10,
                pool_recycle=RECYCLE_SECONDS,
                json_deserializer=orjson.loads,
                json_serializer=_dumps,
                hide_parameters=True,
                **limits,
            )
            self.connect_guard = _ConnectGuard(statement_timeout_ms)
            event.listen(self.engine, "do_connect", self.connect_guard)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Sessions that only read: on SQLite they wait for no writer (see _WriteTurns).
        self.snapshots = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        #: Called with the ids of the outbox items a transaction queued, after its commit.
        self.on_commit: Callable[[list[int]], None] | None = None
        self._compiled: weakref.WeakKeyDictionary[Executable, _Compiled | None] = (
            weakref.WeakKeyDictionary()
        )
        self._rows: weakref.WeakKeyDictionary[Executable, dict[int, _Rows | None]] = (
            weakref.WeakKeyDictionary()
        )
        # One statement needs no transaction around it: on PostgreSQL that spares the BEGIN and
        # the ROLLBACK or COMMIT round trips. SQLite keeps its own BEGIN (see _WriteTurns).
        self._single = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._reads = self._single.execution_options(**{READ_ONLY: True})

    def read(self, statement: Executable, params: dict[str, Any] | None = None) -> list[tuple]:
        """The rows of one read-only statement (retried once on a connection found closed)."""
        return retry_disconnect(lambda: self._one(statement, params, commit=False))

    def write(self, statement: Executable, params: dict[str, Any] | None = None) -> list[tuple]:
        """The rows a single statement returns, committed on its own: no BEGIN and COMMIT round
        trips on PostgreSQL, a transaction of its own on SQLite."""
        return self._one(statement, params, commit=True)

    def _one(self, statement: Executable, params: dict[str, Any] | None, commit: bool) -> list:
        """One statement outside any transaction. On PostgreSQL it runs on the pooled psycopg
        connection itself, compiled once, without SQLAlchemy's execution layer: about 150 µs less
        a statement, which is most of a lookup's or a token check's database work. An `IN` list
        is sent as one array parameter (`= ANY`), a list of one value as that value. Statements
        with other values SQLAlchemy works out when it runs them (other expanding lists, columns'
        Python defaults) go through SQLAlchemy."""
        compiled = self._compile(statement)
        if compiled is None:
            with self._single.begin() if commit else self._reads.connect() as connection:
                result = connection.execute(statement, params)
                return [tuple(row) for row in result] if result.returns_rows else []
        return self._fetch(compiled, compiled.params(params))

    def _compile(self, statement: Executable) -> _Compiled | None:
        if (  # SELECT, INSERT, UPDATE, DELETE: their columns say whether they return rows
            self.is_sqlite
            or not isinstance(statement, CompilerElement)
            or not hasattr(statement, "exported_columns")
        ):
            return None
        if statement not in self._compiled:
            dialect = self.engine.dialect
            compiled = statement.compile(dialect=dialect)
            sql = _IN_LIST.sub(r"= ANY(%(\1)s)", compiled.string)
            if (  # values SQLAlchemy works out at execution: other lists, Python defaults
                _POSTCOMPILE in sql or compiled.insert_prefetch or compiled.update_prefetch
            ):
                self._compiled[statement] = None
            else:
                binds, lists = {}, []
                for bind in compiled.binds.values():
                    convert = bind.type.bind_processor(dialect)
                    if bind.expanding:  # sent as one array
                        binds[compiled.bind_names[bind]] = _array(convert)
                        lists.append(compiled.bind_names[bind])
                    elif convert is not None:
                        binds[compiled.bind_names[bind]] = convert
                exported = statement.exported_columns
                columns = tuple(column.type.result_processor(dialect, None) for column in exported)
                self._compiled[statement] = _Compiled(
                    compiled,
                    sql,
                    binds,
                    columns if any(columns) else None,
                    returns_rows=bool(exported),
                    lists=tuple(lists),
                    sql_of_one=_IN_LIST.sub(r"= %(\1)s", compiled.string),
                )
        return self._compiled[statement]

    def _fetch(self, compiled: _Compiled, values: dict[str, Any]) -> list[tuple]:
        """Run a compiled statement autocommitted on a pooled connection; a closed connection
        invalidating the pool as SQLAlchemy would."""
        try:
            pooled = self.engine.raw_connection()
        except psycopg.Error as exc:  # the database cannot be reached: no statement was sent
            raise self._error(exc, None, values, None) from exc
        connection = pooled.driver_connection
        try:
            connection.autocommit = True  # one statement: no BEGIN, COMMIT or ROLLBACK round trips
            return self._run(connection, compiled, values)
        except DBAPIError as exc:
            self._forget_if_lost(exc, pooled)
            raise
        finally:
            if not connection.closed:
                connection.autocommit = False  # as the pool hands connections out
            pooled.close()

    def execute(
        self, connection: Connection, statement: Executable, params: dict[str, Any] | None = None
    ) -> list[tuple]:
        """The rows of one statement run in the transaction of `connection`. On PostgreSQL it
        runs on the connection's psycopg connection, compiled once, as `read` and `write` do."""
        compiled = self._compile(statement)
        if compiled is None:
            result = connection.execute(statement, params)
            return [tuple(row) for row in result] if result.returns_rows else []
        return self._run_in(connection, compiled, compiled.params(params))

    def _run_in(
        self, connection: Connection, compiled: _Compiled, values: dict[str, Any]
    ) -> list[tuple]:
        """`_run` on the psycopg connection of `connection`, forgetting it if it was lost."""
        try:
            return self._run(connection.connection.driver_connection, compiled, values)
        except DBAPIError as exc:
            self._forget_if_lost(exc, connection)
            raise

    def execute_all(
        self, connection: Connection, statements: Sequence[tuple[Executable, dict[str, Any]]]
    ) -> list[list[tuple]]:
        """The rows of each statement, run in this order in the transaction of `connection`. On
        PostgreSQL they are sent together and answered in one round trip (psycopg's pipeline
        mode); the first to fail raises, and the transaction is then lost, as with `execute`."""
        compiled = [self._compile(statement) for statement, _ in statements]
        if len(statements) < 2 or None in compiled:
            return [self.execute(connection, *statement) for statement in statements]
        runs = [(c, c.params(p)) for c, (_, p) in zip(compiled, statements, strict=True) if c]
        driver = connection.connection.driver_connection
        try:
            cursors = _pipelined(driver, runs)
            return [
                [c.row(row) for row in cursor.fetchall()] if c.returns_rows else []
                for (c, _), cursor in zip(runs, cursors, strict=True)
            ]
        except psycopg.Error as exc:
            sql = ";\n".join(c.sql for c, _ in runs)  # which one failed, psycopg does not say
            error = self._error(exc, sql, [values for _, values in runs], driver)
            self._forget_if_lost(error, connection)
            raise error from exc

    def execute_each(
        self, connection: Connection, statement: Executable, rows: Sequence[dict[str, Any]]
    ) -> list[tuple]:
        """The rows `statement` returns run once for each of `rows` (none: not run) in the
        transaction of `connection`, RETURNING rows in the order of `rows`. A single row goes the
        way of `execute`; a few (a single event's outbox items, a group's events), as one
        statement if it is an INSERT, else once each in one round trip (`execute_all`); more, as
        SQLAlchemy's executemany (multi-row statements)."""
        if not rows:
            return []
        if len(rows) == 1:
            return self.execute(connection, statement, rows[0])
        several = self._rows_for(statement, len(rows)) if len(rows) <= PIPELINED_ROWS else None
        if several is not None:
            return several.sort(self._run_in(connection, several.many, several.params(rows)))
        if len(rows) <= PIPELINED_ROWS and self._compile(statement) is not None:
            answers = self.execute_all(connection, [(statement, row) for row in rows])
            return [row for answer in answers for row in answer]
        result = connection.execute(statement, list(rows))
        return [tuple(row) for row in result] if result.returns_rows else []

    def _rows_for(self, statement: Executable, count: int) -> _Rows | None:
        """`statement` compiled for `count` rows in one statement (once), if it has that form."""
        compiled = self._compile(statement)
        if compiled is None:
            return None
        known = self._rows.setdefault(statement, {})
        if count not in known:
            known[count] = _rows_of(compiled, statement, count)
        return known[count]

    def _forget_if_lost(
        self, exc: DBAPIError, connection: Connection | PoolProxiedConnection
    ) -> None:
        """After an error that lost the connection: invalidate it, as SQLAlchemy would, and the
        idle ones (likely closed too: start afresh)."""
        if exc.connection_invalidated:
            connection.invalidate(exc.orig)
            self.engine.dispose()

    def _run(
        self, connection: psycopg.Connection, compiled: _Compiled, values: dict[str, Any]
    ) -> list[tuple]:
        """Run a compiled statement on a psycopg connection; psycopg's errors raised as
        SQLAlchemy's."""
        try:
            cursor = connection.execute(compiled.text_for(values), values)
            return [compiled.row(row) for row in cursor.fetchall()] if compiled.returns_rows else []
        except psycopg.Error as exc:
            raise self._error(exc, compiled.sql, values, connection) from exc

    def _error(
        self,
        exc: psycopg.Error,
        sql: str | None,
        values: dict[str, Any] | list[dict[str, Any]],
        connection: psycopg.Connection | None,
    ) -> DBAPIError:
        """psycopg's error as SQLAlchemy's, saying whether the connection was lost."""
        return DBAPIError.instance(
            sql,
            values,
            exc,
            psycopg.Error,
            hide_parameters=self.engine.hide_parameters,
            connection_invalidated=self.engine.dialect.is_disconnect(exc, connection, None),
            dialect=self.engine.dialect,
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed together at the end, or not at all; the outbox
        items it queued (`wake_after_commit`) are handed to `on_commit` once it has committed."""
        with self._unit_of_work(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, as `transaction` but without an ORM session."""
        with self._unit_of_work(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _unit_of_work(self) -> Iterator[None]:
        queued: list[int] = []
        token = _QUEUED.set(queued)
        try:
            yield
        finally:
            _QUEUED.reset(token)
        if queued and self.on_commit is not None:  # reached only when the work committed
            self.on_commit(queued)

    def commit_asynchronously(self) -> None:
        """Have this process's commits return before PostgreSQL has flushed them to disk
        (`synchronous_commit = off`), on every connection from now on.

        Only for a process whose every commit may be done again: a database crash can lose the
        commits of its last moments (about 0.6 s, never part of one), as if they had rolled back.
        """
        if self.is_sqlite or ASYNCHRONOUS_COMMIT in self.connect_guard.options:
            return
        self.connect_guard.options.append(ASYNCHRONOUS_COMMIT)
        self.engine.dispose()  # connections made before: closed, not handed out again

    def ping(self, timeout: float | None = None) -> None:
        """Raise when the database cannot be reached, or (PostgreSQL) has not answered within
        `timeout` seconds, connecting included: a connection that answers no more is then cut,
        as no statement timeout can help when the server itself does not answer, and one still
        being made (for up to DATABASE_CONNECT_TIMEOUT_SECONDS) is left to end on its own."""
        if timeout is None or self.is_sqlite:
            with self._reads.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                self._ping_within(timeout)
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            else:
                outcome.append(None)

        thread = threading.Thread(target=attempt, name="database-ping", daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise TimeoutError(f"no connection to the database within {timeout} s")
        if outcome[0] is not None:
            raise outcome[0]

    def _ping_within(self, timeout: float) -> None:
        with self.engine.connect() as conn:
            timer = threading.Timer(timeout, _cut, args=(conn.connection.dbapi_connection,))
            timer.start()
            try:
                conn.execute(text("SELECT 1"))
            finally:
                timer.cancel()

    def up_to_date(self) -> bool:
        """Whether the database is at exactly this code's latest migrations (read without
        waiting for a writer on SQLite)."""
        with self._reads.connect() as connection:
            applied = MigrationContext.configure(connection).get_current_heads()
        return set(applied) == set(migration_scripts().get_heads())

    def missing_migrations(self) -> list[str]:
        """The migrations this code has that the database lacks (none when it is up to date, or
        ahead: a newer release migrated it); every one when it has no version table, or one that
        names none. SQLAlchemyError when the database cannot say (down, say)."""
        scripts = migration_scripts()
        with self._reads.connect() as connection:
            applied: tuple[str, ...] = ()
            if inspect(connection).has_table("alembic_version"):  # none: never migrated
                applied = tuple(connection.scalars(text("SELECT version_num FROM alembic_version")))
        known = {script.revision for script in scripts.walk_revisions()}
        if not applied:  # no revision is known applied
            return sorted(known)
        if not set(applied) <= known:
            return []
        done = {script.revision for script in scripts.iterate_revisions(applied, "base")}
        return sorted(known - done)

    def upgrade(
        self, revision: str = "heads", *, policy: Policy | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Apply the Alembic migrations up to `revision`; a migration that judges recorded events
        does so under `policy` (None: the packaged policy table). The revisions the database was
        at before and is at after, both read under the migration lock."""
        return self._migrate(command.upgrade, revision, {"policy": policy})

    def downgrade(self, revision: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Undo the Alembic migrations after `revision`. The revisions the database was at
        before and is at after, both read under the migration lock."""
        return self._migrate(command.downgrade, revision, None)

    def _migrate(
        self,
        move: Callable[[Config, str], None],
        revision: str,
        attributes: dict[str, Any] | None,
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        with self._migrating(attributes) as (cfg, connection):
            before = MigrationContext.configure(connection).get_current_heads()
            move(cfg, revision)
            return before, MigrationContext.configure(connection).get_current_heads()

    def alembic(
        self,
        name: str,
        *args: object,
        attributes: dict[str, Any] | None = None,
        **options: object,
    ) -> None:
        """Run the Alembic command `name` (upgrade, downgrade, current, history) on this
        database, its migrations given `attributes` (Alembic's `config.attributes`); what it
        reports goes to standard output."""
        with self._migrating(attributes) as (cfg, _connection):
            getattr(command, name)(cfg, *args, **options)

    @contextmanager
    def _migrating(self, attributes: dict[str, Any] | None) -> Iterator[tuple[Config, Connection]]:
        """An Alembic config on a connection in a transaction. On PostgreSQL the transaction
        holds MIGRATION_LOCK, so commands run at once (`gateway db upgrade` on every machine of a
        deployment) take their turns: a later one finds what the earlier one did (on SQLite, the
        write lock taken at BEGIN does the same)."""
        with self.engine.begin() as connection:
            if not self.is_sqlite:  # a migration may take longer than any request's statement
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            cfg = alembic_config(self.url)
            cfg.attributes.update(attributes or {})
            cfg.attributes["connection"] = connection
            cfg.stdout = sys.stdout  # Alembic's default is the stream of its import time
            yield cfg, connection

    def dispose(self) -> None:
        """Close pooled connections (e.g. in a forked worker)."""
        self.engine.dispose(close=False)


def _pipelined(
    driver: psycopg.Connection, runs: Sequence[tuple[_Compiled, dict[str, Any]]]
) -> list[psycopg.Cursor]:
    """The cursor of each statement, sent in one pipeline; the first statement to fail raises
    its error once the pipeline has ended. (An error that psycopg meets while the statements are
    still being sent, a statement before failing meanwhile, would otherwise reach the end of the
    pipeline, which then fails too and is logged as a warning of an error ignored.)"""
    cursors: list[psycopg.Cursor] = []
    failure: psycopg.Error | None = None
    try:
        with driver.pipeline():
            for compiled, values in runs:
                try:
                    cursors.append(driver.execute(compiled.text_for(values), values))
                except psycopg.Error as exc:
                    failure = exc
                    break
    except psycopg.Error:
        if failure is None:
            raise
    if failure is not None:
        raise failure
    return cursors


def _cut(connection: psycopg.Connection) -> None:
    """Shut a PostgreSQL connection's socket down: a read waiting on it ends at once, in error."""
    with (
        contextlib.suppress(OSError),
        socket.fromfd(connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as duplicate,
    ):  # a copy of the descriptor; shutting it down shuts the socket itself
        duplicate.shutdown(socket.SHUT_RDWR)


class MigrationRefused(RuntimeError):
    """A migration found the database in a state it cannot take; the message says which."""


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


@functools.cache
def migration_scripts() -> ScriptDirectory:
    """The packaged migrations, read once a process (they do not change while it runs)."""
    return ScriptDirectory.from_config(alembic_config(""))


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations, without any ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
