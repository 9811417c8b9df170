"""The `gateway` command: a Flask CLI group bound to the app, with the operators' commands."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import textwrap
from datetime import date
from typing import Any

import click
import psycopg
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError as AlembicCommandError
from flask import Flask
from flask.cli import AppGroup, FlaskGroup, ScriptInfo, pass_script_info, with_appcontext
from flask.cli import run_command as flask_run
from flask.helpers import get_debug_flag
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from werkzeug.serving import is_running_from_reloader, run_simple

from connectors.credly.errors import CredlyError
from connectors.errors import describe
from gateway.bootstrap import create_app
from gateway.platform import logs, metrics, signing
from gateway.platform.config import MAX_WHOLE_NUMBER, ConfigError, Settings
from gateway.rules.periods import EARLIEST_DAY, LATEST_DAY
from gateway.store.db import MigrationRefused, migration_scripts
from gateway.store.models import utcnow
from gateway.usecases import backfill, housekeeping
from gateway.usecases import clients as api_clients
from gateway.usecases.queries import failed_jobs, queue_status
from gateway.usecases.services import (
    DRY_RUN_BADGES,
    check_policy_covers_certifications,
    check_redis_database,
    check_schema_current,
    database_for_checks,
    policy_table,
    redis_client,
    signing_keys,
)
from gateway.usecases.sweep import Scope, count, range_in_order
from gateway.usecases.unclaimed import list_unclaimed
from gateway.web.context import services
from gateway.web.security import ProblemRequestHandler
from jobs.cron import SweepRunning, locked_sweep
from jobs.engine.dispatch import requeue
from jobs.engine.worker import run_worker
from jobs.reconcile import UnknownCertification, reconcile


def command_app() -> Flask:
    """The app of a command. Without Redis (the embedded default) jobs run in the serving
    process (`gateway run`; with its reloader, the child that serves), which also looks for due
    ones now and then; any other command leaves its jobs to it."""
    command = click.get_current_context(silent=True)
    serving = command is not None and command.info_name == "run"
    if serving and not is_running_from_reloader():
        reload = command.params.get("reload")
        serving = not (get_debug_flag() if reload is None else reload)  # else: the watcher
    migrating = (
        command is not None and command.parent is not None and (command.parent.info_name == "db")
    )
    try:
        return create_app(jobs="POLLING" if serving else "IN_SERVER", migrate=not migrating)
    except ConfigError as exc:  # one line, not a traceback
        raise click.ClickException(str(exc)) from exc


#: A count, a size or a number of seconds given to a command: 1 or more, and no more than the
#: database (and Redis) take as a whole number.
COUNT = click.IntRange(min=1, max=MAX_WHOLE_NUMBER)

#: The commands Flask's own `flask` command has already.
FLASK_COMMANDS = frozenset({"run", "shell", "routes"})


class _TextArguments(click.Command):
    """A command that refuses an argument that is not UTF-8 text (a usage error, exit status
    2): no id, name or option value of the gateway's is, and the database could not be sent it.
    On the groups and on their commands, so that Flask's own `flask` command refuses it too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            try:
                arg.encode()
            except UnicodeEncodeError:
                raw = _one_line(repr(arg.encode(errors="surrogateescape")))
                raise click.UsageError(f"an argument is not UTF-8 text: {raw}", ctx) from None
        return super().parse_args(ctx, args)


class _CommandGroup(_TextArguments, AppGroup):
    """A group of the gateway's commands (`gateway jobs`, ...)."""

    command_class = _TextArguments


class GatewayGroup(_TextArguments, FlaskGroup):
    """Flask's command group. Its commands are all the gateway's own, so listing them (`gateway
    --help`) does not load the app, which would create the embedded default's database.

    The group always runs the gateway's app with the settings of the environment, so it has
    none of Flask's group options (`-e/--env-file`, `-A/--app`, `--debug`; `gateway run --debug`
    stays) and reads no `.env` file."""

    command_class = _TextArguments

    #: The names of the options FlaskGroup adds that do not apply to the gateway.
    FLASK_OPTIONS = frozenset({"env_file", "app", "debug"})

    def __init__(self, **extra: Any) -> None:
        super().__init__(load_dotenv=False, **extra)
        self.params = [param for param in self.params if param.name not in self.FLASK_OPTIONS]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(super(FlaskGroup, self).list_commands(ctx))

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database or Redis that cannot be reached (or a Redis that refuses
        the configured database), or a migration that does not exist, ends it with one line (exit
        status 1), not a traceback."""
        try:
            return super().invoke(ctx)
        except (OperationalError, InterfaceError, ProgrammingError) as exc:
            raise click.ClickException(_database_error(exc)) from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise click.ClickException(f"Redis cannot be reached: {exc}") from exc
        except RedisResponseError as exc:  # a database number the server does not have, say
            raise click.ClickException(f"Redis refused: {exc}") from exc
        except AlembicCommandError as exc:
            raise click.ClickException(str(exc)) from exc


def _database_error(exc: DBAPIError, *, migrating: bool = False) -> str:
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


@click.group(cls=GatewayGroup, create_app=command_app, add_version_option=False)
@click.version_option(package_name="credential-gateway", prog_name="gateway")
def cli() -> None:
    """Operate the credential gateway."""


@click.command(
    "run",
    params=list(flask_run.params),
    short_help="Run the development server.",
)
@pass_script_info
def run_development(
    info: ScriptInfo,
    host: str,
    port: int,
    reload: bool | None,
    debugger: bool | None,
    with_threads: bool,
    cert: Any,
    extra_files: list[str] | None,
    exclude_patterns: list[str] | None,
) -> None:
    """Run the development server (werkzeug; not for production), with Flask's options. It
    logs as every process does, JSON lines on stderr, and prints nothing on stdout. The reloader
    and debugger are on with --debug. A request it cannot hand to the app gets a problem+json
    answer, as from `gateway serve`. SIGTERM stops it as Ctrl-C does; on either, its jobs
    thread gives back the items it claimed and has not started."""
    if not 0 <= port <= 65535:  # werkzeug would listen on another (99999: 34463)
        raise click.BadParameter(f"{port} is not a port from 0 to 65535", param_hint="--port")
    debug = get_debug_flag()
    if not is_running_from_reloader():  # the reloader's child is handed the parent's socket
        _check_free(host, port)
    app = info.load_app()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # the reloader sets its own
    try:
        run_simple(
            host,
            port,
            app,
            use_reloader=debug if reload is None else reload,
            use_debugger=debug if debugger is None else debugger,
            threaded=with_threads,
            ssl_context=cert,
            extra_files=extra_files,
            exclude_patterns=exclude_patterns,
            request_handler=ProblemRequestHandler,
        )
    finally:
        app.extensions["gateway"].dispatcher.stop()  # its jobs thread, without Redis


def _check_free(host: str, port: int) -> None:
    """Fail in one line, before anything starts, when `host`:`port` cannot be listened on (a
    port in use; werkzeug would say so in two lines of its own, after the jobs had started)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug's
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from exc


cli.add_command(run_development)  # in place of Flask's, which prints a banner on stdout


class _MigrationGroup(_CommandGroup):
    """`gateway db`: a database error of any of its commands, a migration the database refuses
    included, ends it in one line (exit status 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            raise click.ClickException(_database_error(exc, migrating=True)) from exc
        except MigrationRefused as exc:
            raise click.ClickException(f"the migration was refused: {exc}") from exc


@cli.group(cls=_MigrationGroup)
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply the database migrations up to --revision (default: all); a database already
    there, or past it, is left as it is (and the command says so). Upgrades run at once take
    their turns."""
    svc = services()
    before, after = svc.db.upgrade(revision, policy=svc.policy)
    reached = " ".join(after) or "base (no migration applied)"
    if before != after:
        click.echo(f"database upgraded to {reached}")
    elif set(after) == {s.revision for s in migration_scripts().get_revisions(revision)}:
        click.echo(f"database already at {reached}: nothing to upgrade")
    else:
        click.echo(
            f"database already at {reached}, past {revision}: nothing to upgrade "
            f"(`gateway db downgrade {revision}` goes back to it)"
        )


@db.command(
    "downgrade",
    short_help="Undo migrations, down to REVISION.",
    context_settings={"ignore_unknown_options": True},  # `-1` is a revision, not an option
)
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Undo the migrations after REVISION (e.g. `-1` for the last one, `base` for all)."""
    db = services().db
    db.alembic("downgrade", revision)
    with db.engine.connect() as connection:
        reached = MigrationContext.configure(connection).get_current_heads()
    click.echo(f"database downgraded to {' '.join(reached) or 'base (no migration applied)'}")


@db.command("current")
@with_appcontext
def db_current() -> None:
    """The revision the database is at (`base` for a database never migrated)."""
    db = services().db
    db.alembic("current", verbose=False)
    with db.engine.connect() as connection:
        if not MigrationContext.configure(connection).get_current_heads():
            click.echo("base (no migration applied)")  # Alembic itself says nothing


@db.command("history")
@with_appcontext
def db_history() -> None:
    """Every migration, newest first, marking the current one."""
    services().db.alembic("history", indicate_current=True)


@cli.group(cls=_CommandGroup)
def clients() -> None:
    """OAuth2 API clients."""


@clients.command("create")
@click.option("--name", required=True, help="Who the client is, e.g. 'membership system'.")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    help="A scope to grant, or several separated by spaces; repeat it for more "
    f"(--scope admin --scope events:write). Scopes: {' '.join(api_clients.SCOPES)}.",
)
@with_appcontext
def clients_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a client; prints {"client_id", "client_secret"} (the secret is shown only here)."""
    try:
        new = api_clients.register(services().db, name, " ".join(scopes))
    except api_clients.InvalidClientField as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}") from exc
    _echo_secret(new)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def clients_list(as_json: bool) -> None:
    """List clients (never their secrets)."""
    rows = [
        {
            "client_id": c.client_id,
            "name": c.name,
            "scope": c.scope,
            "created_at": c.created_at.isoformat(timespec="seconds"),
            "revoked_at": c.revoked_at.isoformat(timespec="seconds") if c.revoked_at else None,
        }
        for c in api_clients.listing(services().db)
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    lines = [("CLIENT ID", "NAME", "SCOPE", "STATE")] + [
        (
            row["client_id"],
            row["name"],
            row["scope"],
            f"revoked {row['revoked_at']}" if row["revoked_at"] else "active",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(3)]
    for *cells, state in lines:  # each column as wide as its longest cell: nothing cut off
        click.echo(
            " ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            + f" {state}"
        )


@clients.command("new-secret")
@click.argument("client_id")
@with_appcontext
def clients_new_secret(client_id: str) -> None:
    """Give a client a new secret, as when its secret leaked: the old one gets no token from now
    on and every token issued stops working at once; the client keeps its id, scopes and webhook
    subscriptions. Prints {"client_id", "client_secret"} (the secret is shown only here)."""
    try:
        new = api_clients.change_secret(services().db, client_id)
    except api_clients.ClientRevoked as exc:
        raise click.ClickException(f"{client_id} is revoked; create a new client") from exc
    if new is None:
        raise click.ClickException(_one_line(f"no client {client_id}"))
    _echo_secret(new)


def _echo_secret(new: api_clients.NewClient) -> None:
    click.echo(json.dumps({"client_id": new.client_id, "client_secret": new.client_secret}))


@clients.command("revoke")
@click.argument("client_id")
@with_appcontext
def clients_revoke(client_id: str) -> None:
    """Revoke a client; its tokens stop working at once, and its webhook subscriptions are
    deleted (nothing more is delivered to them)."""
    done = api_clients.revoke_client(services().db, client_id)
    if done is None:
        raise click.ClickException(_one_line(f"no client {client_id}"))
    deleted = done.subscriptions_deleted
    subscriptions = f"{deleted} webhook subscription{'' if deleted == 1 else 's'} deleted"
    if not done.already:
        click.echo(f"revoked {client_id}; {subscriptions}")
        return
    when = done.revoked_at.isoformat(timespec="seconds")
    click.echo(
        f"{client_id} was already revoked ({when})" + (f"; {subscriptions}" if deleted else "")
    )


@cli.group(cls=_CommandGroup)
def keys() -> None:
    """The signing keys of receipts and credentials (SIGNING_KEYS_FILE)."""


@keys.command("list")
@with_appcontext
def keys_list() -> None:
    """List the keys and their algorithms: the first of each signs, every one is published and
    verifies."""
    key_set = services().keys
    signers = {key_set.signer(alg).kid for alg in signing.ALGORITHMS.values()}
    for key in key_set.keys:
        role = "signs" if key.kid in signers else "verifies only"
        click.echo(f"{key.kid}  {signing.algorithm_of(key)}  {role}")


@keys.command("rotate")
@with_appcontext
def keys_rotate() -> None:
    """Add a new signing key of each algorithm first; the old ones stay published. Restart the web
    processes."""
    svc = services()
    path = svc.settings.signing_keys_file
    if svc.keys.created:  # this command's start made a fresh set: nothing to rotate
        kids = " ".join(key.kid for key in svc.keys.keys)
        click.echo(f"no signing keys were at {path}: made new ones {kids}")
        return
    try:
        kids = signing.rotate(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"new signing keys {' '.join(kids)}; restart the web processes to sign with them")


@keys.command("retire")
@click.argument("kid")
@with_appcontext
def keys_retire(kid: str) -> None:
    """Remove a key that no longer signs: what it signed stops verifying.

    Put `--` before a KID that begins with "-": `gateway keys retire -- -Uvl...`.
    """
    try:
        signing.retire(services().settings.signing_keys_file, kid)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"retired {kid}; restart the web processes")


@cli.command("serve", with_appcontext=False)
def serve() -> None:
    """Run the production web server (gunicorn; settings WEB_BIND, WEB_WORKERS, ...)."""
    try:
        settings = Settings.from_env()  # refused here in one line, not in gunicorn's traceback
        # the instance folder as the app will find it (SIGNING_KEYS_FILE's default is in it)
        folder = Flask("gateway", instance_path=settings.instance_path).instance_path
        keys_file = settings.with_instance(folder).signing_keys_file
        if keys_file and os.path.exists(keys_file):
            signing_keys(keys_file)  # a missing one: the web processes make it
        logs.configure(settings.log_level)  # its lines JSON, as the web processes' will be
        _check_database(settings.with_instance(folder))
        os.environ[metrics.MULTIPROC_DIR] = metrics.serve_folder()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    app = "gateway.gunicorn_conf:serving_app()"
    os.execv(gunicorn, [gunicorn, "-c", "python:gateway.gunicorn_conf", app])


def _check_database(settings: Settings) -> None:
    """What every web process checks at start, checked once before gunicorn starts them: the
    policy table, a Redis that refuses its database, and on PostgreSQL the schema's migrations
    and the credentials certifications hold (SQLite's the web processes migrate)."""
    policy = policy_table(settings)
    check_redis_database(redis_client(settings))
    if settings.database_url is None or settings.database_url.startswith("sqlite"):
        return
    db = database_for_checks(settings)
    try:
        check_schema_current(db)
        check_policy_covers_certifications(db, policy)
    finally:
        db.dispose()


@cli.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Do not run RQ's scheduler, which queues scheduled jobs when due (the wake-ups of job "
    "retries, the daily reconciliation's retries); the daily jobs are --no-cron's.",
)
@click.option(
    "--maintenance-interval",
    default=600,
    show_default=True,
    type=COUNT,
    help="Seconds between passes that recover jobs of dead workers.",
)
@click.option(
    "--ttl",
    default=420,
    show_default=True,
    type=COUNT,
    help="Seconds a silent worker lives in Redis; an idle worker wakes up every TTL-15 s.",
)
@click.option(
    "--name",
    default=None,
    help="Worker name (default: RQ's). One of a worker killed on this machine is taken over; "
    "one a live worker holds is refused.",
)
@click.option(
    "--no-cron",
    is_flag=True,
    help="Do not queue the daily jobs at SWEEP_TIME from this worker: the sweep, then "
    "reconciliation with Credly and pruning, and the Credly token check.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's metrics on this port (default: WORKER_METRICS_PORT; 0: none).",
)
@with_appcontext
def worker(
    burst: bool,
    no_scheduler: bool,
    maintenance_interval: int,
    ttl: int,
    name: str | None,
    no_cron: bool,
    metrics_port: int | None,
) -> None:
    """Run a job worker on the configured Redis, with the outbox relay."""
    svc = services()
    try:
        run_worker(
            svc,
            burst=burst,
            with_scheduler=not no_scheduler,
            maintenance_interval=maintenance_interval,
            worker_ttl=ttl,
            name=name,
            with_cron=not no_cron,
            metrics_port=svc.settings.worker_metrics_port if metrics_port is None else metrics_port,
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group(cls=_CommandGroup)
def jobs() -> None:
    """Side-effect jobs: the queue's state, failed ones, requeueing."""


def _outbox_id(job_id: str) -> int:
    """A job id as `gateway jobs failed` prints it (outbox-123), or its number alone (123), as
    its outbox id."""
    number = re.fullmatch(r"(?:outbox-)?([0-9]{1,20})", job_id, flags=re.ASCII)
    outbox_id = int(number.group(1)) if number else 0
    if not 0 < outbox_id <= MAX_WHOLE_NUMBER:  # an id column's range
        raise click.BadParameter(f"{job_id[:40]!r}: job ids look like outbox-123 (or 123)")
    return outbox_id


def _job_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else _outbox_id(value)


@jobs.command("failed")
@click.option(
    "--limit",
    type=COUNT,
    default=None,
    help="List at most this many (default: every one).",
)
@click.option(
    "--after",
    callback=_job_id,
    default=None,
    metavar="JOB_ID",
    help="Start after this job (the last one a --limit listing showed).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def jobs_failed(limit: int | None, after: int | None, as_json: bool) -> None:
    """List jobs that failed for good, oldest first, with their error."""
    rows = failed_jobs(services().db, after=after or 0, limit=limit)
    if as_json:  # streamed as they are read: one array, as json.dumps writes it
        click.echo("[", nl=False)
        for number, row in enumerate(rows):
            click.echo((", " if number else "") + json.dumps(row), nl=False)
        click.echo("]")
        return
    listed = None
    for listed in rows:  # the error indented under its job, each of its lines
        error = textwrap.indent(listed["error"] or "(no error recorded)", "    ", lambda _: True)
        click.echo(
            f"{listed['job_id']:14} {listed['kind']:18} {listed['certification_id'] or '-':20} "
            f"attempts={listed['attempts']} {listed['finished_at']}\n{error}"
        )
    if listed is None:
        click.echo("no failed jobs")
    elif limit is not None:
        click.echo(f"(more may follow: --after {listed['job_id']})", err=True)


@jobs.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@with_appcontext
def jobs_status(as_json: bool) -> None:
    """The outbox, which is the queue: items by kind and state, how many are due now."""
    found = queue_status(services().db)
    waiting = (utcnow() - found.oldest_due_at).total_seconds() if found.oldest_due_at else 0
    if as_json:
        rows = [{"kind": k, "state": s, "count": n} for (k, s), n in sorted(found.counts.items())]
        click.echo(json.dumps({"items": rows, "due": found.due, "oldest_due_seconds": waiting}))
        return
    click.echo(f"{'KIND':22} {'STATE':10} COUNT")
    for (kind, state), number in sorted(found.counts.items()):
        click.echo(f"{kind:22} {state:10} {number}")
    click.echo(f"due now: {found.due} (the longest waiting for {waiting:.0f} s)")


@jobs.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every failed job.")
@with_appcontext
def jobs_requeue(job_ids: tuple[str, ...], requeue_all: bool) -> None:
    """Put failed jobs back on the queue: JOB_ID ... (outbox-12, as `jobs failed` prints it,
    or 12) or --all. A JOB_ID that is not of a failed job is named at the end (exit status 1)."""
    if bool(job_ids) == requeue_all:
        both = "JOB_ID(s) and --all cannot be combined: give one or the other"
        raise click.UsageError(both if requeue_all else "give JOB_ID(s) or --all")
    ids = None if requeue_all else [_outbox_id(job_id) for job_id in job_ids]  # None: every one

    def say(requeued: list[int]) -> None:  # as each chunk commits: true should a later one fail
        click.echo("".join(f"requeued outbox-{outbox_id}\n" for outbox_id in requeued), nl=False)

    done = requeue(services(), ids, say)
    if requeue_all and not done:
        click.echo("no failed jobs")
    missing = sorted(set(ids) - set(done)) if ids is not None else []
    if missing:
        raise click.ClickException(
            "not failed (or unknown): " + ", ".join(f"outbox-{i}" for i in missing)
        )


def _revision_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A revision id that is also a file name's start: digits, small letters and _."""
    if not re.fullmatch(r"[0-9a-z_]+", value):
        raise click.BadParameter(f"{value!r} is not made of digits, small letters and _")
    return value


@db.command("revision")
@click.option("--message", "-m", required=True, help="What the migration does.")
@click.option(
    "--rev-id",
    required=True,
    callback=_revision_id,
    help="The new revision's id: digits, small letters and _, e.g. 0015.",
)
@click.option("--down", default=None, help="The revision it follows (default: the single head).")
@with_appcontext
def db_revision(message: str, rev_id: str, down: str | None) -> None:
    """Autogenerate a migration from the models (development)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from gateway.store.db import alembic_config

    db = services().db
    cfg = alembic_config(db.url)
    if rev_id in {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}:
        raise click.ClickException(f"--rev-id {rev_id} is a migration already; give a new id")
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(
            cfg, message=message, autogenerate=True, rev_id=rev_id, head=down or "head"
        )


class Day(click.ParamType):
    """A day written YYYY-MM-DD, one of the days the rules compute with."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            self.fail(f"{value!r} is not a day written YYYY-MM-DD", param, ctx)
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value} is not a real date", param, ctx)
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            self.fail(f"must be from {EARLIEST_DAY} to {LATEST_DAY}", param, ctx)
        return day


@cli.command("sweep")
@click.option(
    "--as-of",
    type=Day(),
    help="The day (default: today, UTC). A later day is recorded too, with a warning: "
    "standings as of that day, their jobs queued now.",
)
@click.option("--dry-run", is_flag=True, help="Report what would change; record nothing.")
@click.option("--full", is_flag=True, help="Evaluate every certification, not only the due ones.")
@click.option("--from-id", default=None, help="First certification id of this run's range.")
@click.option("--to-id", default=None, help="Last certification id of this run's range.")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=COUNT,
    help="Certifications per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_appcontext
def sweep_command(
    as_of: date | None,
    dry_run: bool,
    full: bool,
    from_id: str | None,
    to_id: str | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """Re-evaluate the certifications whose standing changes on the day (today unless --as-of),
    record the changes and queue what they call for."""
    svc = services()
    if from_id is not None and to_id is not None and not range_in_order(svc, from_id, to_id):
        raise click.BadParameter(
            f"{from_id!r} comes after --to-id {to_id!r} in the database's order of ids: "
            "the range holds none",
            param_hint="--from-id",
        )
    scope = Scope(
        as_of=as_of or utcnow().date(),
        full=full,
        first_id=from_id,
        last_id=to_id,
        batch_size=batch_size,
        dry_run=dry_run,
    )
    total = count(svc, scope)
    sink = None if sys.stdout.isatty() and not as_json else io.StringIO()
    with click.progressbar(length=total, label="sweeping", file=sink) as bar:
        try:
            summary = locked_sweep(svc, scope, on_batch=bar.update)
        except SweepRunning as exc:
            raise click.ClickException(str(exc)) from exc
    result = summary.as_dict()
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"as of {result['as_of']}{' (dry run)' if dry_run else ''}: evaluated {summary.evaluated}, "
        f"changed {summary.changed} in {result['seconds']} s"
    )
    for transition, n in sorted(summary.transitions.items()):
        click.echo(f"  {transition}: {n}")
    for kind, n in sorted(summary.actions.items()):
        click.echo(f"  {'would queue' if dry_run else 'queued'} {kind}: {n}")


@cli.group(cls=_CommandGroup)
def badges() -> None:
    """Credly badges: the ones members have not claimed; reconciling them with Credly."""


class _Progress:
    """Progress of a long command: a bar per stage on a terminal, else a line per tenth."""

    def __init__(self, terminal: bool) -> None:
        self.terminal, self.label, self.bar, self.said = terminal, None, None, -1

    def __call__(self, label: str, total: int | None, done: int) -> None:
        if label != self.label:
            self.close()
            self.label, self.said = label, -1
            if self.terminal:
                self.bar = click.progressbar(length=total or 0, label=label).__enter__()
                self.bar.pos = 0
        if self.bar is not None:
            self.bar.update(done - self.bar.pos)
            return
        tenth = done * 10 // total if total else done
        if tenth != self.said:
            self.said = tenth
            click.echo(f"{label}: {done}{f' of {total}' if total else ''}", err=True)

    def close(self) -> None:
        """End the current stage's bar."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


#: The most characters of another service's answer, or of an argument, a one-line error shows.
SHOWN_ANSWER = 500


def _one_line(text: str) -> str:
    """`text` on one line (each run of whitespace one space), cut to SHOWN_ANSWER characters."""
    line = " ".join(text.split())
    return line if len(line) <= SHOWN_ANSWER else f"{line[: SHOWN_ANSWER - 1]}…"


@badges.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Report the drift; repair nothing.")
@click.option("--certification", "certification_id", default=None, help="Only this one.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_appcontext
def badges_reconcile(dry_run: bool, certification_id: str | None, as_json: bool) -> None:
    """Compare the badges Credly holds with the standings and repair drift through the badge
    jobs: revoke a live badge a standing keeps none of, issue a missing one (not one its earner
    deleted), take Credly's id and state where they differ. With the dry-run backend, its
    recorded badges are compared (those this machine pretended to issue)."""
    svc = services()
    progress = _Progress(sys.stderr.isatty() and not as_json)
    try:
        summary = reconcile(
            svc, dry_run=dry_run, certification_id=certification_id, progress=progress
        )
    except UnknownCertification as exc:
        raise click.ClickException(_one_line(str(exc))) from exc
    except CredlyError as exc:  # still failing after its tries: one line, not a traceback
        raise click.ClickException(f"reconciliation stopped: {_one_line(describe(exc))}") from exc
    finally:
        progress.close()
    if svc.settings.credly_dry_run:
        kept = os.path.join(svc.settings.instance_path or "", DRY_RUN_BADGES)
        click.echo(
            f"compared with the dry-run Credly backend's badges ({kept}): the ones this "
            "machine pretended to issue, not Credly's",
            err=True,
        )
    result = summary.as_dict()
    if as_json:
        click.echo(json.dumps(result))
        return
    verb = "would repair" if dry_run else "repaired"
    click.echo(
        f"{'CHECKED':34} {result['badges_checked']} Credly badges, "
        f"{result['certifications_checked']} certifications"
    )
    click.echo(f"{'IN STEP':34} {result['in_step']}")
    for kind, n in result["repaired"].items():
        click.echo(f"{f'{verb} ({kind})'.upper():34} {n}")
    if result["successors_unknown"]:  # dry run: replaced in Credly, successor not looked up
        click.echo(f"{'SUCCESSORS UNKNOWN':34} {result['successors_unknown']}")
    if result["no_template"]:  # CREDLY_BADGE_TEMPLATES names no template for their credential
        click.echo(f"{'NO BADGE TEMPLATE (NOT ISSUED)':34} {result['no_template']}")
    if result["refused"]:  # Credly refused their issue for good, as it would be sent again
        click.echo(f"{'REFUSED BY CREDLY (NOT ISSUED)':34} {result['refused']}")
    if result["failed_jobs_superseded"]:  # failed badge jobs of badges found in step
        click.echo(f"{'FAILED JOBS SUPERSEDED':34} {result['failed_jobs_superseded']}")
    click.echo(f"{'SECONDS':34} {result['seconds']}")


@badges.command("unclaimed")
@click.option(
    "--days",
    default=14,
    show_default=True,
    type=click.IntRange(min=0, max=36_500),
    help="Pending (not claimed) for at least this many days.",
)
@click.option(
    "--limit",
    type=COUNT,
    default=None,
    help="List at most this many, the longest pending first (default: every one).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def badges_unclaimed(days: int, limit: int | None, as_json: bool) -> None:
    """List badges members have not claimed for --days days or more, so the membership team
    can nudge them."""
    rows = [b.to_dict() for b in list_unclaimed(services().db, days=days, limit=limit)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"no badge pending for {days} days or more")
        return
    click.echo(f"{'CERTIFICATION':20} {'NAME':28} {'EMAIL':32} {'ISSUED AT':20} DAYS PENDING")
    for row in rows:
        issued = (row["issued_at"] or "")[:19]
        click.echo(
            f"{row['certification_id']:20} {row['name'][:28]:28} {row['email'][:32]:32} "
            f"{issued:20} {row['days_pending']}"
        )


@cli.group(cls=_CommandGroup)
def receipts() -> None:
    """The record of signed verification receipts issued."""


@receipts.command("prune")
@with_appcontext
def receipts_prune() -> None:
    """Delete the records of receipts older than RECEIPT_RETENTION_DAYS (also done daily)."""
    svc = services()
    pruned = housekeeping.prune_receipts(svc, utcnow())
    click.echo(f"pruned {pruned} receipts older than {svc.settings.receipt_retention_days} days")


@cli.group(cls=_CommandGroup)
def sync() -> None:
    """Pushes of public records to the verification directory and webhook subscriptions."""


@sync.command("backfill")
@click.option(
    "--target", default="directory", show_default=True, help="`directory` or a subscription id."
)
@click.option("--restart", is_flag=True, help="Start over instead of resuming the last run.")
@click.option("--batch-size", default=500, show_default=True, type=COUNT, help="Per commit.")
@with_appcontext
def sync_backfill(target: str, restart: bool, batch_size: int) -> None:
    """Queue a push of every current public record to the target, resuming the last run."""
    svc = services()
    try:
        plan = backfill.prepare(svc, target, restart=restart)
    except backfill.UnknownTarget as exc:
        raise click.BadParameter(_one_line(str(exc)), param_hint="--target") from exc
    if plan.resumes_after:
        click.echo(f"resuming after {plan.resumes_after} (--restart starts over)")
    sink = None if sys.stdout.isatty() else io.StringIO()
    with click.progressbar(length=plan.remaining, label=f"queueing for {target}", file=sink) as bar:
        queued = backfill.run(svc, target, batch_size=batch_size, on_batch=bar.update)
    click.echo(f"queued {queued} deliveries to {target}")


def register(app: Flask) -> None:
    """Put the operators' commands on `app.cli` too, so that
    `flask --app gateway.bootstrap:create_app <command>` works."""
    for name, command in cli.commands.items():
        if name not in FLASK_COMMANDS:
            app.cli.add_command(command, name)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gateway")
