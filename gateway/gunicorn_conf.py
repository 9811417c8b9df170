"""gunicorn settings of `gateway serve` (also `gunicorn -c python:gateway.gunicorn_conf`), and
its master's hold on the signing keys and policy table that every web process serves with."""

from __future__ import annotations

import functools
import gc
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.glogging import Logger
from prometheus_client import multiprocess

from gateway.bootstrap import create_app, in_instance, warn_of_made_keys
from gateway.platform import logs, metrics
from gateway.platform.config import ConfigError, Settings
from gateway.platform.logs import JsonFormatter
from gateway.usecases.services import ServedFiles, policy_table, served_files, signing_keys

_settings = Settings.from_env()
#: The signing keys and policy table the master accepted last: read at start, then at each
#: SIGHUP onto fit files. Each web process inherits them at fork and serves with them: a process
#: started in place of one that stopped is not at the mercy of a file made unfit since, and
#: signs and judges as its siblings do.
_served: ServedFiles | None = None

bind = _settings.web_bind
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"
timeout = _settings.web_timeout
#: How long a stopping process may finish its requests before it is killed: WEB_TIMEOUT, or
#: gunicorn's default of 30 s when that is 0 ("no timeout"), which here would mean killing at once.
graceful_timeout = _settings.web_timeout or 30
keepalive = 5
# A listening socket for each worker (Linux: SO_REUSEPORT), so the kernel spreads new connections
# over the workers. On one shared socket the first worker to wake takes a burst of connections,
# and a keep-alive client stays on it: under load one process served all 16 connections of a
# benchmark, one core's worth, while the other workers idled (docs/benchmarks.md). A worker's
# socket takes connections while it is still loading the app (about a second), so workers are not
# recycled after N requests: each restart would hold up a share of new connections that long.
# A Unix socket (`unix:PATH`) or a socket handed over (`fd://FD`) is one socket: Linux refuses
# SO_REUSEPORT on a Unix socket, and every worker's bind then failed.
reuse_port = not bind.startswith(("unix:", "fd://"))
# The longest request line and header line gunicorn reads (its maximum, and twice its default):
# above the app's own limits (gateway.web.security), so that the app refuses a long URL or header
# with a problem+json answer and the security headers. Longer ones, and requests that are not
# HTTP, get gunicorn's own answer, which gateway.web.security also writes as a problem
# (docs/api.md, *Security*).
limit_request_line = 8190
limit_request_field_size = 16380
# No control socket (`gunicornc`): the gateway does not use one, and every server of a user shares
# the one default path (~/.gunicorn/gunicorn.ctl), so stopping one server deleted another's.
control_socket_disable = True
# gunicorn believes no forwarded header itself (by default it takes X-Forwarded-Proto and the
# like, SCRIPT_NAME and PATH_INFO from any peer on loopback): the app decides, by TRUSTED_PROXIES,
# which proxies' X-Forwarded-For and X-Forwarded-Proto count (gateway.web.ratelimit).
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""
accesslog = "-"
# Access lines are JSON objects written by the app's formatter (AccessLog below): a header or path
# holding quotes or backslashes is escaped, never able to break a line or forge a field. No
# headers are logged, so no tokens.
logger_class = "gateway.gunicorn_conf.AccessLog"
# gunicorn's own log (start-up, workers, errors) and the access log as JSON lines on stderr, like
# every other line of the gateway (docs/operations.md), through the app's handler and formatter
# (gateway.platform.logs, which finds that handler on the root and keeps it); gunicorn's own log
# keeps gunicorn's `loglevel`. Every key is given, so none of gunicorn's CONFIG_DEFAULTS (a plain
# text root handler; access lines propagating to the root) is merged in.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"level": _settings.log_level, "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": ["json"], "propagate": False},
    },
}


class AccessLog(Logger):
    """gunicorn's logger whose access lines are log records with the request's fields, which
    the access handler's JSON formatter writes with `ts` and `level` like every other line."""

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        if not self.access_log_enabled or not self.access_log.isEnabledFor(logging.INFO):
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        fields = {
            "remote": environ.get("REMOTE_ADDR"),
            "method": method,
            "path": path,
            "status": int(status) if str(status).isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": request_time.seconds * 1000 + request_time.microseconds // 1000,
            # the id the app answered with; none when gunicorn answered on its own
            "request_id": next(
                (value for name, value in resp.headers if name.lower() == "x-request-id"), None
            ),
        }
        record = self.access_log.makeRecord(
            self.access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s",
            (method, path, status),
            None,
        )
        vars(record).update(fields)  # over the fields a finished request may have left bound
        self.access_log.handle(record)


class _ListeningAddress(logging.Filter):
    """Put the addresses into gunicorn's "Listening at:" line, which names none when each worker
    opens its own socket (the master then holds no listener to name)."""

    addresses = ""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == "Listening at: %s (%s)" and isinstance(args, tuple) and not args[0]:
            record.args = (self.addresses, *args[1:])
        return True


_listening = _ListeningAddress()


def _url(address: tuple | str) -> str:
    """An address as gunicorn names it: http://host:port, or unix:path."""
    if not isinstance(address, tuple):
        return f"unix:{address}"
    host, port = address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def on_starting(server: Any) -> None:
    """Refuse to start on an address something already listens on. With a socket per worker the
    kernel would let a second server share the port with the first, each taking some of the
    connections, where one socket for all fails to bind. Have the start-up log name the address.
    Read the signing keys and policy table the web processes are to serve with (ERROR and exit
    on an unfit file, or on a missing key file whose keys signed what the database records)."""
    _listening.addresses = ",".join(_url(address) for address in server.cfg.address)
    logging.getLogger("gunicorn.error").addFilter(_listening)
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a Unix socket path: not shared
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed ones may linger
            try:
                probe.bind(address)
            except OSError as exc:
                server.log.error("Cannot listen on %s:%s: %s", address[0], address[1], exc)
                sys.exit(1)
    try:
        _accept(served_files(in_instance(_settings)))
    except ConfigError as exc:
        server.log.error("%s", exc)
        sys.exit(1)
    # SIGHUP (a key rotation, say): the main loop calls the arbiter's handle_hup
    server.handle_hup = functools.partial(_hang_up, server, server.handle_hup)


def _accept(files: ServedFiles) -> None:
    """Have the web processes started from now on serve with `files`."""
    global _served
    if _settings.signing_keys_file:  # named, not the instance folder's own
        warn_of_made_keys(files.keys, _settings.signing_keys_file)
    _served = files


def _hang_up(server: Any, reload: Callable[[], None]) -> None:
    """SIGHUP: gunicorn's reload, which starts new web processes and then stops the old ones,
    with the key and policy files read again; unless one is unfit (what a web process checks at
    start, the policy table against the certifications too) or the key file is missing (new keys,
    as at first start, would not verify what the served ones signed). The old processes then keep
    serving with the keys and policy they have, and one ERROR names the file and what is wrong."""
    try:
        files = served_files(in_instance(_settings), database=True, create_keys=False)
    except ConfigError as exc:
        server.log.error(
            "%s; not reloaded: the web processes keep serving with the keys and policy they had",
            exc,
        )
        return
    _accept(files)
    reload()


def pre_fork(server: Any, worker: Any) -> None:
    """Before each web process starts: the key and policy files as they are now. One started in
    place of a process that stopped (after a crash or a timeout) while a file is unfit or the key
    file missing serves, as every one does, with those the master accepted last, and one ERROR
    names the file and what is wrong with it."""
    settings = in_instance(_settings)
    try:
        signing_keys(settings.signing_keys_file, create=False)
        policy_table(settings)
    except ConfigError as exc:
        server.log.error(
            "%s; a web process starting now serves with the keys and policy the server had",
            exc,
        )


def serving_app() -> Flask:
    """The app of a web process: it serves with the keys and policy table the master accepted
    last (see `_served`); without Redis it runs the jobs itself, polling."""
    return create_app(jobs="POLLING", files=_served)


def on_exit(server: Any) -> None:
    """The master exits, its workers gone: remove the metrics folder `gateway serve` made for
    this instance (when PROMETHEUS_MULTIPROC_DIR was not set), which no other process reads."""
    metrics.remove_own_folder()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the shared metrics directory."""
    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker that stops (SIGTERM once its requests are answered, SIGINT, SIGQUIT) does as
    `gateway run` does: without Redis its jobs thread gives back at once the items it claimed and
    has not started, and waits for the one under way within half the graceful timeout, which the
    worker's requests share (the master kills a worker still running after it)."""
    app = getattr(worker, "wsgi", None)  # none in the master, nor in a worker that did not boot
    if app is not None:
        app.extensions["gateway"].dispatcher.stop(grace=server.cfg.graceful_timeout / 2)


def post_worker_init(worker: Any) -> None:
    """Put the loaded app's objects out of the cyclic collector's reach: a full collection then
    scans only what requests create (under a millisecond instead of 60-90 ms, a stall of every
    thread of the process); then say the worker is ready."""
    gc.freeze()
    worker.log.info("Worker ready (pid: %s)", worker.pid)


def post_request(worker: Any, req: Any, environ: dict, resp: Any) -> None:
    """Forget the answered request's log fields: the thread's next line may be of no request of
    the app's (gunicorn refusing a request it cannot read), which is not that request's."""
    logs.clear()
