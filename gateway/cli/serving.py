"""The `gateway` commands that run processes: `run` (the development server), `serve`
(gunicorn) and `worker` (a job worker on Redis)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from typing import Any

import click
from flask.cli import ScriptInfo, pass_script_info, with_appcontext
from flask.cli import run_command as flask_run
from flask.helpers import get_debug_flag
from werkzeug.serving import is_running_from_reloader, run_simple

from gateway.bootstrap import in_instance
from gateway.cli.group import COUNT, TextArguments
from gateway.platform import logs, metrics
from gateway.platform.config import ConfigError, Settings
from gateway.usecases.services import (
    check_keys_not_lost,
    check_policy_covers_certifications,
    check_redis_database,
    check_schema_current,
    database_for_checks,
    policy_table,
    redis_client,
    signing_keys,
)
from gateway.web.context import services
from gateway.web.security import ProblemRequestHandler
from jobs.engine.worker import run_worker


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


@click.command("serve", cls=TextArguments)
def serve() -> None:
    """Run the production web server (gunicorn; settings WEB_BIND, WEB_WORKERS, ...)."""
    try:
        # refused here in one line, not in gunicorn's traceback
        settings = in_instance(Settings.from_env())
        if os.path.exists(settings.signing_keys_file):
            # a missing one: gunicorn's master makes it as it starts, if nothing was signed
            signing_keys(settings.signing_keys_file)
        logs.configure(settings.log_level)  # its lines JSON, as the web processes' will be
        _check_database(settings)
        os.environ[metrics.MULTIPROC_DIR] = metrics.serve_folder()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    app = "gateway.gunicorn_conf:serving_app()"
    os.execv(gunicorn, [gunicorn, "-c", "python:gateway.gunicorn_conf", app])


def _check_database(settings: Settings) -> None:
    """What every web process checks at start, checked once before gunicorn starts them: the
    policy table, a Redis that refuses its database, on PostgreSQL the schema's migrations and the
    credentials certifications hold (SQLite's the web processes migrate), and a missing key file
    where the database records what its keys signed."""
    policy = policy_table(settings)
    check_redis_database(redis_client(settings))
    sqlite = (settings.database_url or "sqlite").startswith("sqlite")
    if sqlite and os.path.exists(settings.signing_keys_file):
        return
    db = database_for_checks(settings)
    try:
        if not sqlite:
            check_schema_current(db)
            check_policy_covers_certifications(db, policy)
        check_keys_not_lost(db, settings)
    finally:
        db.dispose()


@click.command("worker", cls=TextArguments)
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
