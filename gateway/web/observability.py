"""The web's observability: each request's id on its log lines and answer, its timing and count,
the `/metrics` exposition, and the gateway's public address as a request sees it."""

from __future__ import annotations

import functools
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.sansio.utils import get_current_url

from gateway.platform import logs, metrics
from gateway.platform.config import Settings
from gateway.usecases.credly_token import token_state
from gateway.usecases.queries import job_outcomes, queue_gauges
from gateway.usecases.services import Services

#: Where a request's id is kept in its environ when it was given one before Flask saw it.
REQUEST_ID = "gateway.request_id"


#: A caller's `X-Request-ID` that is kept as the request's id (else a new one is made): what
#: request ids are made of (UUIDs, trace ids), nothing a log reader or tool could misread.
GIVEN_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")


def request_id() -> str:
    """The current request's id: the caller's `X-Request-ID` (GIVEN_ID) or a new one."""
    if "request_id" not in g:
        given = request.environ.get(REQUEST_ID) or request.headers.get("X-Request-ID", "")
        g.request_id = request_id_of(given)
    return g.request_id


def request_id_of(given: str) -> str:
    """The id of a request whose `X-Request-ID` is `given` (empty: none sent)."""
    return given if GIVEN_ID.fullmatch(given) else uuid.uuid4().hex


def public_base_url(settings: Settings) -> str:
    """The gateway's public address: PUBLIC_BASE_URL, else the current request's host URL."""
    return settings.public_base_url or host_url(request.scheme, request.host)


@functools.lru_cache(maxsize=256)
def host_url(scheme: str, host: str) -> str:
    """`request.host_url` without its final slash, built once per address (werkzeug builds it
    anew for every request)."""
    return get_current_url(scheme, host).rstrip("/")


def init_app(app: Flask, svc: Services) -> None:
    """Give every request an id (on each of its log lines and in the `X-Request-ID` answer), time
    and count it, and keep the registry that `/metrics` shows."""

    @app.before_request
    def _start() -> None:
        logs.clear()
        logs.bind(request_id=request_id())
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        started = g.pop("metrics_started", None)
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = metrics.method_label(request.method)
        metrics.HTTP_REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        if started is not None:
            took = time.perf_counter() - started
            metrics.HTTP_LATENCY.labels(endpoint, method).observe(took)
        return response

    app.extensions["metrics_registry"] = metrics.registry(
        lambda: queue_gauges(svc.db),
        lambda: token_state(svc).pause_known(),
        lambda: job_outcomes(svc.db),
    )


def exposition(app: Flask) -> Response:
    """`app`'s metrics in the Prometheus text exposition format (served at `/metrics`)."""
    registry = app.extensions["metrics_registry"]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
