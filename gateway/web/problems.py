"""RFC 9457 problem details: the one shape of every error the gateway answers."""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable
from typing import Any

from flask import Flask, Response, current_app, json, request
from marshmallow import RAISE, Schema, ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException

from gateway.schemas.events import field_errors
from gateway.schemas.responses import MAX_ERRORS, listed
from gateway.store.db import RETRY_CONNECT_SECONDS, UNAVAILABLE, unavailable_reason

PROBLEM_TYPE = "application/problem+json"
JSON = "application/json"  # the media type of every JSON request body
UNAVAILABLE_RETRY_SECONDS = RETRY_CONNECT_SECONDS
#: RFC 9110's names of the statuses that Werkzeug and Python's http module still call by older ones
#: ("Request URI Too Long", "Request-URI Too Long", ...).
_RFC_9110_TITLES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}

log = logging.getLogger("gateway")


def status_title(status: int, name: str) -> str:
    """The title of a problem with `status`: its RFC 9110 name where Werkzeug's or Python's `name`
    is an older one, so that the app and the server answer it alike, else `name`."""
    return _RFC_9110_TITLES.get(status, name)


def allow_header(methods: Iterable[str]) -> str:
    """The `Allow` header naming `methods`, in alphabetical order: the same on an `OPTIONS` answer
    and on a `405` of one URL (Werkzeug lists a 405's in its rules' order)."""
    return ", ".join(sorted(set(methods)))


class RefusedJSON(ValueError):
    """JSON that parses but that the gateway refuses (`gateway.web.security.SafeJSONProvider`):
    answered 400 as malformed JSON is, its message saying why and `field` where (a dotted path,
    or `body`)."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


class Problem(Exception):
    """An error to answer as problem+json; raise it from any request handler."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of this problem (its first MAX_ERRORS errors: `listed`)."""
        detail, errors = listed(self.detail or self.title, self.errors or [])
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": detail,
            "errors": errors,  # docs/api.md: every problem has the list, empty or not
        }
        body.update(self.extra)
        return body


def unprocessable(field: str, message: str, detail: str | None = None) -> Problem:
    """A 422 naming one field of the request."""
    return Problem(
        422,
        "Unprocessable Content",
        detail or message,
        errors=[{"field": field, "message": message}],
    )


def unreadable_body(detail: str) -> Problem:
    """The 400 of a body that could not be read whole (its framing broken or cut short)."""
    errors = [{"field": "body", "message": "Malformed or incomplete body."}]
    return Problem(400, "Bad Request", detail, errors=errors)


def unknown_certification(certification_id: str) -> Problem:
    """The 404 of a certification id no certification has."""
    return Problem(404, "Not Found", f"Certification {certification_id} is unknown.")


def problem_response(problem: Problem) -> Response:
    """A Flask response for `problem`."""
    body = f"{json.dumps(problem.body())}\n"
    response = Response(body, status=problem.status, mimetype=PROBLEM_TYPE)
    response.headers.update(problem.headers)
    return response


def _http_exception(exc: HTTPException) -> Response:
    if isinstance(exc, ClientDisconnected):  # Werkzeug's server (`gateway run`) read it short
        return problem_response(
            unreadable_body("The body ended before it was whole, or its chunked framing is broken.")
        )
    code = exc.code or 500
    headers = {}
    if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = allow_header(exc.valid_methods)  # type: ignore[attr-defined]
    response = problem_response(
        Problem(code, status_title(code, exc.name), exc.description, headers=headers)
    )
    if exc.response is not None:  # e.g. auth responses keep their headers
        for key, value in exc.response.headers.items():
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
    return response


def _internal_error(exc: Exception) -> Response:
    from flask import current_app

    current_app.logger.exception("unhandled error", exc_info=exc)
    return problem_response(
        Problem(500, "Internal Server Error", "The server failed to answer; the error is logged.")
    )


def database_unavailable(exc: Exception) -> Problem:
    """A 503 for a database that could not answer, logged in one line (no traceback: it is the
    database's state, not a fault of the gateway's)."""
    log.warning("database unavailable: %s", unavailable_reason(exc))
    return Problem(
        503,
        "Service Unavailable",
        "The database cannot be reached right now. Try again shortly.",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
    )


def register(app: Flask) -> None:
    """Make every error of `app` answer problem+json, never HTML or a traceback."""
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, _http_exception)
    for error in UNAVAILABLE:
        app.register_error_handler(error, lambda exc: problem_response(database_unavailable(exc)))
    app.register_error_handler(Exception, _internal_error)


def query_args(read: Container[str], status: int = 422) -> dict[str, str]:
    """The request's query parameters, or a `status` problem naming each of those `read` that is
    given more than once (`?on=A&on=B`: which one a cache or a log reads is anyone's guess)."""
    repeated = [name for name, values in request.args.lists() if len(values) > 1 and name in read]
    if repeated:
        errors = [{"field": name, "message": "Given more than once."} for name in repeated]
        title = "Unprocessable Content" if status == 422 else "Bad Request"
        raise Problem(status, title, "The query is malformed.", errors=errors)
    return request.args.to_dict()


def loaded(schema: Schema, data: Any, what: str) -> Any:
    """`data` loaded by `schema`, or a 422 problem naming each bad field of the `what`. Past
    MAX_ERRORS unknown keys, it names those alone, in the body's order, without loading:
    marshmallow takes about a second to name each of the 180,000 that 2 MiB hold, where the
    problem lists 100."""
    unknown = _unknown_keys(schema, data)
    if len(unknown) > MAX_ERRORS:
        message = schema.error_messages["unknown"]
        errors = [{"field": key, "message": message} for key in unknown]
        raise Problem(422, "Unprocessable Content", f"The {what} is malformed.", errors=errors)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            f"The {what} is malformed.",
            errors=field_errors(exc.messages, given=data),
        ) from exc


def _unknown_keys(schema: Schema, data: Any) -> list[str]:
    """The keys of `data` that `schema` refuses as unknown, in their order."""
    if schema.unknown != RAISE or not isinstance(data, dict):
        return []
    fields = schema.load_fields.items()
    known = {name if field.data_key is None else field.data_key for name, field in fields}
    return [key for key in data if key not in known]


def is_utf8(charset: str | None) -> bool:
    """Whether a media type's `charset` parameter (None: left out) says UTF-8."""
    return charset is None or charset.strip().lower() in ("utf-8", "utf8")


def json_body() -> object:
    """The request's JSON body, or a problem saying what is wrong with it. Its media type is
    `application/json` only: another `+json` type (a merge patch, a problem) means another thing
    than the resource the endpoint takes. It has no content coding (RFC 9110, 8.4)."""
    if request.mimetype != JSON:
        raise Problem(
            415,
            "Unsupported Media Type",
            "Send the body as application/json.",
            errors=[{"field": "Content-Type", "message": "Must be application/json."}],
        )
    if not is_utf8(request.mimetype_params.get("charset")):
        raise Problem(
            415,
            "Unsupported Media Type",
            "JSON is UTF-8 (RFC 8259): send the body in UTF-8, with charset=utf-8 or none.",
            errors=[{"field": "Content-Type", "message": "Its charset must be utf-8."}],
        )
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise Problem(  # a body compressed, or said to be: read as it is, it is another body
            415,
            "Unsupported Media Type",
            "Send the body without a content coding.",
            errors=[{"field": "Content-Encoding", "message": "Must be left out."}],
            headers={"Accept-Encoding": "identity"},
        )
    try:
        return current_app.json.loads(request.get_data(cache=True))
    except RefusedJSON as exc:
        raise Problem(
            400, "Bad Request", str(exc), errors=[{"field": exc.field, "message": str(exc)}]
        ) from exc
    except ValueError as exc:
        raise Problem(
            400,
            "Bad Request",
            "The body is not valid JSON.",
            errors=[{"field": "body", "message": "Malformed JSON."}],
        ) from exc
