"""The plain public lookup answered without Flask's per-request work.

`GET /v1/verifications/<id>` with no token, no query and no conditional header is most of the
gateway's traffic: employers checking a number. Flask's request and response objects, routing and
hooks cost about as much as the lookup's own work, so `GatewayFlask.wsgi_app` answers such a
request itself, keeping every promise of the view: the same rate limit counted once, a fresh read of
the public record, the same JSON body, `ETag`, `Cache-Control` and `X-Request-ID`, the request's
metrics and log fields. Security headers, the proxy fix and the access log wrap it as they wrap
Flask. Anything else goes through Flask: a request that is not plain, and every answer but a 200
(unknown number, over the limit, a failed read), told the limit's outcome so that it is not counted
twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.sansio.utils import get_host

from gateway.platform import logs, metrics
from gateway.usecases import lookup
from gateway.web.api.verifications import record_answer
from gateway.web.observability import REQUEST_ID, host_url, request_id_of
from gateway.web.ratelimit import COUNT_ADDRESS, COUNTED
from gateway.web.security import MAX_HEADER_LINE, MAX_URL, PATH_SEGMENT

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ENDPOINT = "verifications.get_verification"
_ROUTE = "gateway.plain_lookup"  # the app extension: the view's path pattern and its metrics


class _Route:
    """The view's URL rule as a pattern of its one path value, and its request metrics (200, GET)
    as Flask's requests count them."""

    def __init__(self, app: Flask) -> None:
        rule = next(app.url_map.iter_rules(ENDPOINT)).rule
        prefix, _, _ = rule.partition("<")  # "/v1/verifications/<certification_id>"
        self.path = re.compile(f"{re.escape(prefix)}({PATH_SEGMENT}+)")
        self.answered = metrics.HTTP_REQUESTS.labels(rule, "GET", "200")
        self.took = metrics.HTTP_LATENCY.labels(rule, "GET")


def _route(app: Flask) -> _Route:
    route = app.extensions.get(_ROUTE)
    if route is None:
        route = app.extensions[_ROUTE] = _Route(app)
    return route


class GatewayFlask(Flask):
    """Flask, answering plain lookups before its own request handling (see the module)."""

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        answered = _answer_plain(self, environ, start_response)
        if answered is not None:
            return answered
        return super().wsgi_app(environ, start_response)


def _is_plain(environ: WSGIEnvironment) -> bool:
    """No token, query, body, conditional or range header, nothing oversized: Flask answers
    those."""
    if environ.get("QUERY_STRING") or environ.get("CONTENT_LENGTH"):
        return False
    if len(environ.get("RAW_URI") or environ.get("PATH_INFO", "")) > MAX_URL:
        return False
    for name, value in environ.items():
        if name.startswith("HTTP_") and (
            name == "HTTP_AUTHORIZATION"
            or name.startswith("HTTP_IF_")
            or name == "HTTP_RANGE"
            or len(name) + len(value) > MAX_HEADER_LINE  # the header line's length, give or take
        ):
            return False
    return True


def _answer_plain(
    app: Flask, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes] | None:
    """The answer's body if this is a plain lookup of a record on file, within the limit; else
    None, the request left to Flask."""
    if environ.get("REQUEST_METHOD") != "GET" or app.debug or app.config.get("TRUSTED_HOSTS"):
        return None
    route = _route(app)
    match = route.path.fullmatch(environ.get("PATH_INFO", ""))
    count = app.extensions.get(COUNT_ADDRESS)
    if match is None or count is None or not _is_plain(environ):
        return None
    started = time.perf_counter()
    request_id = environ[REQUEST_ID] = request_id_of(environ.get("HTTP_X_REQUEST_ID", ""))
    logs.clear()
    logs.bind(request_id=request_id)
    try:
        environ[COUNTED] = (count(environ.get("REMOTE_ADDR")),)
        if environ[COUNTED][0] is not None:
            return None  # over the limit: Flask answers the 429
        svc = app.extensions["gateway"]
        [found] = lookup.verify(svc.db, [match.group(1)])
    except Exception:  # Flask does it again and answers the failure as it answers any
        return None
    if found is None:
        return None  # Flask answers the 404
    base = svc.settings.public_base_url or host_url(environ["wsgi.url_scheme"], _host(environ))
    answer = record_answer(found, svc.settings, base)
    body = f"{app.json.dumps(answer, separators=(',', ':'))}\n".encode()  # as jsonify writes it
    start_response(
        "200 OK",
        [
            ("Content-Type", app.json.mimetype),
            ("Content-Length", str(len(body))),
            ("ETag", f'W/"{found.etag}"'),  # weak: verified_at differs between equal answers
            ("Cache-Control", "public, no-cache"),  # caches may keep it, but revalidate each time
            ("X-Request-ID", request_id),
        ],
    )
    route.answered.inc()
    route.took.observe(time.perf_counter() - started)
    return [body]


def _host(environ: WSGIEnvironment) -> str:
    server_port = environ.get("SERVER_PORT")
    server = (environ.get("SERVER_NAME", ""), int(server_port) if server_port else None)
    return get_host(environ["wsgi.url_scheme"], environ.get("HTTP_HOST"), server)
