"""Every answer a test receives is checked against the OpenAPI document of the app.

`check_answers(app)` (the apps of `make_app`, so the whole suite) adds an `after_request` hook, and
for the answers Flask does not make (`gateway.web.plain_lookup`) a WSGI wrapper: an answer of an
operation of the gateway's document whose status the document does not list for it, whose media
type is not the one documented (none for an answer without a body), or whose JSON body does not
match the documented schema fails the test (an AssertionError, raised out of the test client since
test apps propagate exceptions). Routes a test adds for itself are not in the document and go
unchecked; so does a 500, the server failing, which no document promises (the tests that provoke
one assert it).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Flask, Response, request
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS31Validator
from werkzeug.exceptions import HTTPException

from gateway.bootstrap import register_routes
from gateway.web.openapi import build_spec, openapi_path

_validators: dict[tuple[int, str, str, str], OAS31Validator] = {}


def routes_only() -> Flask:
    """An app with every route of the gateway and nothing behind them (no settings, database or
    keys): the OpenAPI document as read outside a running gateway."""
    app = Flask("gateway")
    register_routes(app)
    return app


_CHECKED = "tests.openapi_checked"  # set in the environ of a request whose answer Flask checked


def _answer(document: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in answer:
        return document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer


def validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    """A validator of `schema`, a schema of `document` whose references point into it."""
    return OAS31Validator(
        {**schema, "components": document["components"]},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    )


def mismatch(
    document: dict[str, Any], path: str, method: str, status: int, mimetype: str, body: bytes
) -> str | None:
    """What is wrong with an answer of `method path` by the document; None when it is right."""
    operation = document["paths"].get(path, {}).get(method.lower())
    if operation is None:  # not an operation of the document (HEAD, OPTIONS): nothing promised
        return None
    where = f"{method} {path} answered {status} {mimetype or '(no body)'}"
    promised = operation["responses"].get(str(status)) or operation["responses"].get("default")
    if promised is None:
        return f"{where}: the document lists only {sorted(operation['responses'])}"
    content = _answer(document, promised).get("content", {})
    if not content:
        if body:
            return f"{where} with a body, where the document promises none"
        return f"{where}: the document promises no body, so no media type" if mimetype else None
    if mimetype not in content:
        return f"{where}: the document promises {sorted(content)}"
    if not mimetype.endswith("json"):
        return None
    key = (id(document), path, method, f"{status} {mimetype}")
    if key not in _validators:
        _validators[key] = validator(document, content[mimetype]["schema"])
    error = best_match(_validators[key].iter_errors(json.loads(body)))
    if error is None:
        return None
    at = "/".join(str(part) for part in error.absolute_path)
    return f"{where} that does not match its documented schema at /{at}: {error.message}"


@functools.cache
def _routes_and_document() -> tuple[Flask, dict[str, Any]]:
    """The gateway's routes and its OpenAPI document, made once a test process (the same for
    every app: neither depends on settings)."""
    routes = routes_only()
    return routes, build_spec(routes)


def check_answers(app: Flask) -> None:
    """Fail the test on any answer of `app` that the gateway's OpenAPI document does not promise."""
    routes, document = _routes_and_document()

    def check(rule: str, method: str, status: int, mimetype: str, body: bytes) -> None:
        if status == 500:
            return
        problem = mismatch(
            document,
            openapi_path(rule),
            method,
            status,
            "" if status == 304 else mimetype,  # Werkzeug sends a 304 without its entity headers
            b"" if status in (204, 304) else body,  # sent without a body
        )
        if problem:
            raise AssertionError(problem)

    @app.after_request
    def _check(response: Response) -> Response:
        request.environ[_CHECKED] = True
        if request.url_rule is None or response.is_streamed:
            return response  # no route matched (404, 405): no operation to compare with
        check(
            request.url_rule.rule,
            request.method,
            response.status_code,
            response.mimetype or "",
            response.get_data(),
        )
        return response

    inner = app.wsgi_app

    def answered_before_flask(environ: dict, start_response: Any) -> list[bytes]:
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started.append((status, headers))
            return start_response(status, headers, exc_info)

        answer = inner(environ, start)
        try:
            body = b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        if started and not environ.get(_CHECKED):
            try:
                rule, _ = routes.url_map.bind_to_environ(environ).match(return_rule=True)
            except HTTPException:
                return [body]
            status, headers = started[-1]
            content_type = dict(headers).get("Content-Type", "")
            check(rule.rule, environ["REQUEST_METHOD"], int(status.split()[0]),
                  content_type.split(";")[0].strip(), body)  # fmt: skip
        return [body]

    app.wsgi_app = answered_before_flask  # type: ignore[method-assign]
