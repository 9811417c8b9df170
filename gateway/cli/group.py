"""What every `gateway` command shares: the classes of the group and its subgroups, the app a
command runs with, the type of counts, errors told in one line, and tables."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import click
import psycopg
from alembic.util import CommandError as AlembicCommandError
from flask import Flask
from flask.cli import AppGroup, FlaskGroup
from flask.helpers import get_debug_flag
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from werkzeug.serving import is_running_from_reloader

from gateway.bootstrap import create_app
from gateway.platform.config import MAX_WHOLE_NUMBER


def command_app() -> Flask:
    """The app of a command. Without Redis (the embedded default) jobs run in the serving
    process (`gateway run`; with its reloader, the child that serves), which also looks for due
    ones now and then; any other command leaves its jobs to it. The signing keys are read at
    start by `gateway run` and the `keys` commands; the others read them only if they sign."""
    command = click.get_current_context(silent=True)
    serving = command is not None and command.info_name == "run"
    if serving and not is_running_from_reloader():
        reload = command.params.get("reload")
        serving = not (get_debug_flag() if reload is None else reload)  # else: the watcher
    group = command.parent.info_name if command is not None and command.parent else None
    migrating = group == "db"
    reads_keys = command is not None and (command.info_name == "run" or group == "keys")
    return create_app(  # settings that cannot be used end the command in one line
        jobs="POLLING" if serving else "IN_SERVER", migrate=not migrating, reads_keys=reads_keys
    )


#: A count, a size or a number of seconds given to a command: 1 or more, and no more than the
#: database (and Redis) take as a whole number.
COUNT = click.IntRange(min=1, max=MAX_WHOLE_NUMBER)


class TextArguments(click.Command):
    """A command that refuses an argument that is not UTF-8 text (a usage error, exit status
    2): no id, name or option value of the gateway's is, and the database could not be sent it;
    and that tells in one line what it could not reach or find. On the groups and on their
    commands, so that Flask's own `flask` command does both too."""

    #: Whether its database errors are a migration's (`gateway db`): each told in one line.
    migrating = False

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database or Redis that cannot be reached (or a Redis that refuses
        the configured database), a migration that does not exist, or a stdout that does not take
        its output (`watched_stdout`) ends it with one line (exit status 1), not a traceback."""
        with watched_stdout():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            told = (OperationalError, InterfaceError, ProgrammingError)
            if not self.migrating and not isinstance(exc, told):
                raise
            raise click.ClickException(database_error(exc, migrating=self.migrating)) from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise click.ClickException(f"Redis cannot be reached: {exc}") from exc
        except RedisResponseError as exc:  # a database number the server does not have, say
            raise click.ClickException(f"Redis refused: {exc}") from exc
        except AlembicCommandError as exc:
            raise click.ClickException(str(exc)) from exc

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            try:
                arg.encode()
            except UnicodeEncodeError:
                raw = one_line(repr(arg.encode(errors="surrogateescape")))
                raise click.UsageError(f"an argument is not UTF-8 text: {raw}", ctx) from None
        return super().parse_args(ctx, args)


class WatchedStdout:
    """A command's stdout (`stream`; None when it was closed as the command started, so that
    writing fails rather than going nowhere), keeping in `failed` the first error a write met,
    even one its writer swallowed (Alembic's messages do)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        if self.stream is not None:  # nothing was written, so nothing is lost
            self._call("flush")

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def __getattr__(self, name: str) -> Any:
        if self.stream is None:
            raise AttributeError(name)
        return getattr(self.stream, name)

    def _call(self, name: str, *args: str) -> Any:
        try:
            if self.stream is None:
                raise OSError(errno.EBADF, "it is closed")
            return getattr(self.stream, name)(*args)
        except OSError as exc:
            self.failed = self.failed or exc
            raise


@contextmanager
def watched_stdout() -> Iterator[None]:
    """Run a command (or its group's help) with its stdout watched: output the stdout does not
    take (a full disk, closed) ends it with one line (exit status 1) once it stops, what stdout
    still holds dropped so that exit does not try again. A reader that stopped reading (a broken
    pipe, as with `| head`) is left to click, which ends the command quietly."""
    if isinstance(sys.stdout, WatchedStdout):  # a subcommand: its group watches
        yield
        return
    stdout = WatchedStdout(sys.stdout)
    sys.stdout = stdout  # type: ignore[assignment]
    try:
        yield
        stdout.flush()
    except OSError:
        if stdout.failed is None:
            raise
    finally:
        sys.stdout = stdout.stream  # type: ignore[assignment]
        if stdout.failed is not None:
            _drop_stdout()
    if stdout.failed is None:
        return
    if stdout.failed.errno == errno.EPIPE:
        raise stdout.failed
    reason = stdout.failed.strerror or stdout.failed
    raise click.ClickException(f"the output could not be written on stdout ({reason})")


def _drop_stdout() -> None:
    """Send what stdout still holds, and anything written to it from now on, to /dev/null."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or no file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class CommandGroup(TextArguments, AppGroup):
    """A group of the gateway's commands (`gateway jobs`, ...)."""

    command_class = TextArguments


class GatewayGroup(TextArguments, FlaskGroup):
    """Flask's command group. Its commands are all the gateway's own, so listing them (`gateway
    --help`) does not load the app, which would create the embedded default's database.

    The group always runs the gateway's app with the settings of the environment, so it has
    none of Flask's group options (`-e/--env-file`, `-A/--app`, `--debug`; `gateway run --debug`
    stays) and reads no `.env` file."""

    command_class = TextArguments

    #: The names of the options FlaskGroup adds that do not apply to the gateway.
    FLASK_OPTIONS = frozenset({"env_file", "app", "debug"})

    def __init__(self, **extra: Any) -> None:
        super().__init__(load_dotenv=False, **extra)
        self.params = [param for param in self.params if param.name not in self.FLASK_OPTIONS]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(super(FlaskGroup, self).list_commands(ctx))

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """Parse the arguments, the group's help or version shown as a command's output is."""
        with watched_stdout():
            return super().make_context(*args, **kwargs)


def database_error(exc: DBAPIError, *, migrating: bool = False) -> str:
    """One line for a database error a command met. Unless `migrating` (a migration the data
    refuses is no bug of the command's), a query the database refused for its own reason (not a
    missing schema) is raised again, a bug to be seen whole."""
    reason = next(iter(str(exc.orig or exc).strip().splitlines()), "")
    code = getattr(exc.orig, "sqlstate", None)
    if isinstance(exc, ProgrammingError) and not migrating:
        if code == "42P01" or reason.startswith("no such table"):
            return f"the database has no gateway schema yet (run `gateway db upgrade`): {reason}"
        raise exc
    work = "migration" if migrating else "command"
    if code is None and isinstance(exc, (OperationalError, InterfaceError)):
        if isinstance(exc.orig, psycopg.Error) and exc.statement and not exc.connection_invalidated:
            # psycopg refused to send a statement (too many parameters, say): no server was asked
            return f"the {work} could not be sent to the database: {reason}"
        # no answer from the server: connecting failed, or the connection broke
        return f"the database cannot be reached: {reason}"
    return f"the database refused the {work}: {reason}"


#: The most characters of another service's answer, or of an argument, a one-line error shows.
SHOWN_ANSWER = 500


def one_line(text: str) -> str:
    """`text` on one line (each run of whitespace one space), cut to SHOWN_ANSWER characters."""
    line = " ".join(text.split())
    return line if len(line) <= SHOWN_ANSWER else f"{line[: SHOWN_ANSWER - 1]}…"


def table(lines: Sequence[Sequence[str]]) -> Iterator[str]:
    """The lines of a table whose first line is its headings: each column as wide as its
    longest cell (nothing cut off), the last one not padded."""
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]) - 1)]
    for *cells, last in lines:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        yield " ".join([*padded, last])
