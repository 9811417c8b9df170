"""The plain public lookup, answered in front of Flask (`gateway.web.plain`).

`GET /v1/verifications/<id>` with no token, no query and no conditional header is most of the
gateway's traffic: employers checking a number. It keeps every promise of the view: the same rate
limit counted once, a fresh read of the public record, the same JSON body, `ETag`,
`Cache-Control` and `X-Request-ID`, the request's metrics and log fields. It reads the record
row alone: every other answer (unknown number, a certification whose record is not yet written,
over the limit, a failed read) is Flask's, told the limit's outcome so that it is not counted
twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask

from gateway.usecases import lookup
from gateway.usecases.lookup import record_answer
from gateway.web import plain
from gateway.web.api.verifications import answer_etag
from gateway.web.ratelimit import COUNT_ADDRESS, COUNTED

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ENDPOINT = "verifications.get_verification"


def answer(
    app: Flask, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes] | None:
    """The answer's body if this is a plain lookup of a record on file, within the limit; else
    None, the request left to Flask."""
    route = plain.route(app, ENDPOINT, "GET")
    match = route.path.fullmatch(environ.get("PATH_INFO", ""))
    count = app.extensions.get(COUNT_ADDRESS)
    if match is None or count is None or environ.get("CONTENT_LENGTH"):
        return None
    if not plain.is_plain(environ, token=False):
        return None
    started = time.perf_counter()
    request_id = plain.begin(environ)
    try:
        environ[COUNTED] = (count(environ.get("REMOTE_ADDR")),)
        if environ[COUNTED][0] is not None:
            return None  # over the limit: Flask answers the 429
        svc = app.extensions["gateway"]
        [found] = lookup.records_today(svc.db, svc.policy, [match.group(1)], recorded_only=True)
    except Exception:  # Flask does it again and answers the failure as it answers any
        return None
    if found is None:
        return None  # Flask answers the 404, or the record its sync job has not yet written
    base = svc.settings.public_base_url or plain.request_host_url(environ)
    answer = record_answer(found, svc.settings, base)
    body = f"{app.json.dumps(answer, separators=(',', ':'))}\n".encode()  # as jsonify writes it
    headers = (
        ("ETag", f'W/"{answer_etag(answer)}"'),  # weak: verified_at differs between equal answers
        ("Cache-Control", "public, no-cache"),  # caches may keep it, but revalidate each time
        ("X-Request-ID", request_id),
    )
    answered = plain.respond(start_response, 200, app.json.mimetype, body, headers)
    route.answered(200, started)
    return answered
