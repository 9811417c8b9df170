"""Requests answered in front of Flask: the app class and what its plain paths share.

The app class also answers `OPTIONS` itself (`GatewayFlask.make_default_options_response`).

Two requests make most of the gateway's traffic: the public lookup of a certification number
(`gateway.web.plain_lookup`) and one event posted by an internal system
(`gateway.web.plain_events`). Flask's request and response objects, routing and hooks cost about
as much as either one's own work, so `GatewayFlask.wsgi_app` offers the request to the plain path
of its method first. A plain path answers only the common case, keeping every promise of its view
(body, headers, request id, metrics and log fields); anything else it leaves to Flask by returning
None, before it has changed anything. Security headers, the proxy fix and the access log wrap the
plain paths as they wrap Flask.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.sansio.utils import get_host

from gateway.platform import logs, metrics
from gateway.web.observability import REQUEST_ID, host_url, request_id_of
from gateway.web.problems import allow_header
from gateway.web.security import (
    MAX_HEADER_LINE,
    MAX_URL,
    PATH_SEGMENT,
    is_usable_host,
    lacks_host,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: A plain path: the answer's body, or None to leave the request to Flask.
PlainPath = Callable[[Flask, "WSGIEnvironment", "StartResponse"], Iterable[bytes] | None]


class GatewayFlask(Flask):
    """Flask, offering each request to the plain path of its method before its own handling."""

    plain_paths: dict[str, PlainPath]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain_paths = {}

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        path = self.plain_paths.get(environ.get("REQUEST_METHOD", ""))
        if path is not None and not self.debug and not self.config.get("TRUSTED_HOSTS"):
            answered = path(self, environ, start_response)
            if answered is not None:
                return answered
        return super().wsgi_app(environ, start_response)

    def make_default_options_response(self) -> Response:
        """The answer to `OPTIONS` of a URL: `204 No Content`, `Allow` naming its methods
        (`allow_header`: as a 405 of the URL names them), no body and so no media type (Flask's
        own is a `200` with an empty `text/html` body)."""
        answer = super().make_default_options_response()
        answer.status_code = 204
        answer.headers["Allow"] = allow_header(answer.allow)
        del answer.headers["Content-Type"]
        return answer


class Route:
    """A view's URL rule: a pattern matching its path (each path value one segment) and its
    request metrics, labelled as Flask's requests label them."""

    def __init__(self, app: Flask, endpoint: str, method: str) -> None:
        self.rule = next(app.url_map.iter_rules(endpoint)).rule
        parts = re.split(r"<[^>]+>", self.rule)
        self.path = re.compile(f"({PATH_SEGMENT}+)".join(re.escape(part) for part in parts))
        self.method = method
        self.took = metrics.HTTP_LATENCY.labels(self.rule, method)

    def answered(self, status: int, started: float) -> None:
        """Count an answer of this route and observe how long it took."""
        metrics.HTTP_REQUESTS.labels(self.rule, self.method, str(status)).inc()
        self.took.observe(time.perf_counter() - started)


def route(app: Flask, endpoint: str, method: str) -> Route:
    """The view's `Route`, made once per app."""
    key = f"gateway.plain:{endpoint}"
    found = app.extensions.get(key)
    if found is None:
        found = app.extensions[key] = Route(app, endpoint, method)
    return found


def is_plain(environ: WSGIEnvironment, *, token: bool) -> bool:
    """No query, no conditional or range header (nor a token, unless `token`), nothing
    oversized, a usable host: Flask answers the others."""
    if environ.get("QUERY_STRING") or lacks_host(environ):
        return False
    if not is_usable_host(host(environ), environ.get("HTTP_HOST")):
        return False
    if len(environ.get("RAW_URI") or environ.get("PATH_INFO", "")) > MAX_URL:
        return False
    for name, value in environ.items():
        if name.startswith("HTTP_") and (
            (name == "HTTP_AUTHORIZATION" and not token)
            or name.startswith("HTTP_IF_")
            or name == "HTTP_RANGE"
            or len(name) + len(value) > MAX_HEADER_LINE  # the header line's length, give or take
        ):
            return False
    return True


def begin(environ: WSGIEnvironment) -> str:
    """Give the request its id, on its log lines and for Flask should it answer after all."""
    request_id = environ[REQUEST_ID] = request_id_of(environ.get("HTTP_X_REQUEST_ID", ""))
    logs.clear()
    logs.bind(request_id=request_id)
    return request_id


def respond(
    start_response: StartResponse,
    status: int,
    content_type: str,
    body: bytes,
    headers: Iterable[tuple[str, str]],
) -> list[bytes]:
    """Start the answer, with its length, and give its body."""
    status_line = f"{status} {HTTP_STATUS_CODES[status].upper()}"  # as Werkzeug writes it
    start_response(
        status_line,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
    )
    return [body]


def host(environ: WSGIEnvironment) -> str:
    """The request's `host[:port]`, as `request.host` gives it."""
    server_port = environ.get("SERVER_PORT")
    server = (environ.get("SERVER_NAME", ""), int(server_port) if server_port else None)
    return get_host(environ["wsgi.url_scheme"], environ.get("HTTP_HOST"), server)


def request_host_url(environ: WSGIEnvironment) -> str:
    """The request's host URL, as `request.host_url` gives it, without the final slash."""
    return host_url(environ["wsgi.url_scheme"], host(environ))
