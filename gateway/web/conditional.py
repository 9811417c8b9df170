"""Conditional GETs (RFC 9110 §13) of the answers that carry an `ETag`: the public lookup and the
status lists."""

from __future__ import annotations

from flask import Response, request
from werkzeug.http import parse_etags

from gateway.web.problems import Problem


def precondition_failed() -> Problem:
    """The 412 of an `If-Match` that names no current entity tag."""
    return Problem(
        412,
        "Precondition Failed",
        "If-Match names no current entity tag of this resource (its ETag is weak, so only "
        "If-Match: * matches it).",
    )


def answer_conditionally(response: Response) -> Response:
    """`response` as the request's preconditions make it, in RFC 9110's order: a failed `If-Match`
    is a 412 problem (`*` matches; a tag only by strong comparison, so never a weak `ETag`), then a
    matching `If-None-Match` a 304 (Werkzeug's `make_conditional`)."""
    if_match = request.headers.get("If-Match")
    if if_match:
        tags = parse_etags(if_match)
        etag, weak = response.get_etag()
        if not (tags.star_tag or (etag is not None and not weak and tags.is_strong(etag))):
            raise precondition_failed()
    evaluated = {name: value for name, value in request.environ.items() if name != "HTTP_IF_MATCH"}
    return response.make_conditional(evaluated)
