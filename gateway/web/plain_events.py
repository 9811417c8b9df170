"""One event posted by an internal system, answered in front of Flask (`gateway.web.plain`).

`POST /v1/events` is how most internal systems send what happens, one event at a time. Its plain
path takes a JSON body of a declared length within the limit, with a bearer token that Authlib
would let through (`auth.bearer_client_id`: the same token, expiry, revocation and scope checks,
read fresh from the database). It submits the event as the view does and answers every outcome of
the submission (202, replays, 404, 409, 422) with the view's body and headers, counted in the
same metrics. Flask answers the rest before anything is recorded: no token or one refused, a body
that is not JSON, encoded, too large, streamed or cut short, a query, an oversized header, a `Host`
it cannot use (`plain.is_plain`). A submission that raises is handed to Flask, which answers the
error as it answers any, without submitting again.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.http import parse_options_header
from werkzeug.routing import Map, MapAdapter

from gateway.usecases import intake
from gateway.web import plain
from gateway.web.api.events import GET_EVENT, SUBMISSION_FAILED, event_answer
from gateway.web.auth import bearer_client_id, scope_rule
from gateway.web.problems import JSON, is_utf8

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ENDPOINT = "events.post_event"


def answer(
    app: Flask, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes] | None:
    """The answer's body if this is a plain event post and its submission did not raise; else
    None, the request left to Flask."""
    route = plain.route(app, ENDPOINT, "POST")
    if route.path.fullmatch(environ.get("PATH_INFO", "")) is None:
        return None
    length = _declared_length(app, environ)
    authorization = environ.get("HTTP_AUTHORIZATION")
    if length is None or not authorization or not _is_json(environ):
        return None
    if "HTTP_CONTENT_ENCODING" in environ:  # Flask answers the 415 (or takes `identity`)
        return None
    if not plain.is_plain(environ, token=True):
        return None
    started = time.perf_counter()
    request_id = plain.begin(environ)
    svc = app.extensions["gateway"]
    # The body first, then the token: a client revoked while its body arrives is refused.
    data = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(data)  # for Flask, should it answer after all
    if len(data) < length:
        return None  # the body was cut short: Flask answers the 400
    try:
        client_id = bearer_client_id(svc.db, authorization, _scopes(app))
    except Exception:  # Flask checks the token again and answers the failure as it answers any
        return None
    if client_id is None:
        return None  # Authlib answers the 401 or 403
    try:
        body = app.json.loads(data)
    except ValueError:
        return None  # Flask answers the 400
    try:
        submitted = intake.submit_event(svc, body, client_id=client_id, request_id=request_id)
    except Exception as exc:
        environ[SUBMISSION_FAILED] = exc
        return None
    adapter = _adapter(app.url_map, environ.get("SCRIPT_NAME") or None)
    content_type, data, headers = event_answer(
        app, body, submitted, lambda event_id: adapter.build(GET_EVENT, {"event_id": event_id})
    )
    headers.append(("X-Request-ID", request_id))
    answered = plain.respond(start_response, submitted.status, content_type, data, headers)
    route.answered(submitted.status, started)
    return answered


@functools.lru_cache(maxsize=16)
def _adapter(url_map: Map, script_name: str | None) -> MapAdapter:
    """What builds the paths of the app's routes under a script root (as `url_for` does)."""
    return url_map.bind("", script_name=script_name)


def _declared_length(app: Flask, environ: WSGIEnvironment) -> int | None:
    """The body's declared length if it is within the app's limit (Flask answers the others)."""
    declared = environ.get("CONTENT_LENGTH", "")
    limit = app.config.get("MAX_CONTENT_LENGTH")
    if not declared.isdigit() or not declared.isascii():
        return None
    length = int(declared)
    return length if length > 0 and (limit is None or length <= limit) else None


def _is_json(environ: WSGIEnvironment) -> bool:
    """A JSON body in UTF-8; any other Flask answers (the 415, or its own parse)."""
    mimetype, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
    return mimetype.lower() == JSON and is_utf8(options.get("charset"))


def _scopes(app: Flask) -> list[str]:
    rule = scope_rule(app.view_functions[ENDPOINT])
    assert rule is not None and not rule.optional, f"{ENDPOINT} requires a token"
    return list(rule.scopes)
