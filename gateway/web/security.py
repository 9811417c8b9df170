"""Hardening of every request and answer: security headers; input too big, unstorable or naming
no usable host refused.

The CSP suits the only HTML the gateway serves (`/verify`, `/docs`): server-rendered pages with
their own stylesheet, a same-origin GET form, no scripts, no inline styles, nothing from elsewhere.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from contextlib import suppress
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Request, Response, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SessionInterface
from gunicorn import util as gunicorn_util
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import (
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    RequestURITooLarge,
)
from werkzeug.routing import IntegerConverter, Map, PathConverter, UnicodeConverter
from werkzeug.sansio.utils import get_current_url
from werkzeug.serving import WSGIRequestHandler
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from gateway.schemas.events import WrittenFloat, written_integer
from gateway.web.problems import Problem, RefusedJSON, status_title, unreadable_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# One path segment without NUL: PostgreSQL cannot store NUL, so such a value names nothing.
PATH_SEGMENT = r"[^/\x00]"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
HSTS = "max-age=31536000; includeSubDomains"


def readable_from_any_origin(response: Response) -> Response:
    """`response` readable by a web page of any origin (`Access-Control-Allow-Origin: *`, which
    browsers honour only for requests without credentials): for the public documents a credential
    names (keys, issuer profile, achievements, status lists), which a wallet or verifier running
    in a browser fetches. Nothing else of the gateway is, nor an `OPTIONS` answer (no preflight
    is needed for a plain GET)."""
    if request.method != "OPTIONS":
        response.access_control_allow_origin = "*"
    return response


# The longest request target and header line the gateway takes: gunicorn's defaults, which
# gunicorn_conf raises above these so that the app, not gunicorn, refuses longer ones (414, 431
# problem+json with the headers above).
MAX_URL = 4094
MAX_HEADER_LINE = 8190


class SecurityHeaders:
    """WSGI middleware adding `HEADERS` (and HSTS over HTTPS) to every answer that has not set
    its own, and `Cache-Control: no-store` to an answer to a request with credentials that sets
    no caching of its own (it may hold a secret, or a member's details): a few tuples appended
    once per answer, where Flask's header methods cost tens of microseconds a request."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        https = environ.get("wsgi.url_scheme") == "https"
        added = _ADDED[https, "HTTP_AUTHORIZATION" in environ]

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            missing = [header for header in added if header[0].lower() not in present]
            return start_response(status, [*headers, *missing], exc_info)

        return self.app(environ, start)


_HEADERS = tuple(HEADERS.items())
_HTTPS_HEADERS = (*_HEADERS, ("Strict-Transport-Security", HSTS))
_NO_STORE = ("Cache-Control", "no-store")
#: The headers added, by (over HTTPS, with credentials).
_ADDED = {
    (False, False): _HEADERS,
    (True, False): _HTTPS_HEADERS,
    (False, True): (*_HEADERS, _NO_STORE),
    (True, True): (*_HTTPS_HEADERS, _NO_STORE),
}


class _NoSessions(SessionInterface):
    """The gateway keeps no cookie sessions: Flask's default would build a signing serializer
    for every request only to find no cookie."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None


class _ServerBody(LimitedStream):
    """gunicorn's body stream, capped at `limit`: chunked framing that gunicorn cannot parse (its
    parse errors would be 500s), or that ends within a chunk, answers 400."""

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        try:
            return super().readinto(b)
        except ParseException as exc:
            raise unreadable_body("The chunked body is malformed or cut short.") from exc

    def on_disconnect(self, error: Exception | None = None) -> None:
        if isinstance(error, NoMoreData):  # the connection ended within a chunk
            raise unreadable_body("The chunked body is malformed or cut short.") from error
        super().on_disconnect(error)


class _WholeOrTooLarge(_ServerBody):
    """A streamed body capped at the size limit that answers 413 when more was sent.

    Werkzeug answers 413 for a declared length over the limit, but reads a streamed (chunked) one
    up to the limit and stops without a word: it would read as malformed JSON or a cut form.
    """

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._more():
            raise RequestEntityTooLarge()
        return data

    def _more(self) -> bytes:
        """A byte past the limit, if one was sent; at the limit, the end must still be sound."""
        try:
            return self._stream.read(1)
        except (ParseException, OSError) as exc:  # NoMoreData is an OSError
            raise unreadable_body("The chunked body is malformed or cut short.") from exc


class _Declared(_ServerBody):
    """A body of a declared length that answers 400 when it ends before that length (gunicorn
    hands over what came before the client closed its half of the connection)."""

    def on_disconnect(self, error: Exception | None = None) -> None:
        raise unreadable_body(
            f"The body ended before its Content-Length of {self.limit} bytes."
        ) from error


class BoundedRequest(Request):
    """Flask's request reading gunicorn's body: a streamed body over the limit (app's, or a
    blueprint's) answers 413, one cut short or badly chunked 400."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length  # read when the body is, after every before_request
        declared = self.content_length
        if "wsgi.input_terminated" not in self.environ or (declared is None and limit is None):
            return super().stream
        if declared is None:
            return _WholeOrTooLarge(self.environ["wsgi.input"], limit, is_max=True)
        if limit is not None and declared > limit:
            raise RequestEntityTooLarge()
        return _Declared(self.environ["wsgi.input"], declared)


class SegmentConverter(UnicodeConverter):
    """Flask's default path converter, refusing NUL: such a path matches no route (404)."""

    def __init__(self, map: Map, *args: int | None, **kwargs: int | None) -> None:
        super().__init__(map, *args, **kwargs)
        self.regex = self.regex.replace("[^/]", PATH_SEGMENT)


class IdPathConverter(PathConverter):
    """A value that may hold `/` (an event id chosen by its sender), refusing NUL likewise."""

    regex = "[^/\x00][^\x00]*?"


class NumberConverter(IntegerConverter):
    """A number in a path as the gateway writes it: ASCII digits without a leading zero. Werkzeug's
    `int` took any script's digits and leading zeros too (`/00/`, Arabic-Indic digits): aliases
    of the one URL."""

    regex = "0|[1-9][0-9]*"


class SafeJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing request bodies Python could decode but the gateway cannot use.

    JSON may escape a lone UTF-16 surrogate (`"\\ud800"`): Python decodes it into a string that
    cannot be encoded, hashed or stored. Arrays nested thousands deep (which fit in 64 KiB) exceed
    Python's recursion limit. A key may appear twice in an object: Python keeps the last, a proxy
    or log may read the first, and see another request. Python also reads `NaN`, `Infinity` and
    `-Infinity`, which are no JSON numbers (RFC 8259, 6) and which other parsers refuse. Each is a
    `RefusedJSON`, which answers 400 as malformed JSON does, saying why.

    Every request body is read with it (the plain event path's too): a number with a fraction or
    an exponent is a `WrittenFloat`, which keeps its text for the checks of its decimals; an
    integer too long for Python to read is a `LongInteger`, which the fields refuse. A body is
    UTF-8 (RFC 8259, 8.1), a byte order mark before it ignored: Python would read UTF-16 and
    UTF-32 as well, which a body's `charset` may not name either (`problems.json_body`).
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if isinstance(s, bytes):
            s = s.decode("utf-8-sig")  # a UnicodeDecodeError is a ValueError: malformed JSON
        objects = _Objects()
        try:
            value = super().loads(
                s,
                parse_float=WrittenFloat,
                parse_int=written_integer,
                parse_constant=_no_json_number,
                object_pairs_hook=objects,
                **kwargs,
            )
            if objects.repeated is not None:
                raise objects.refusal(value)
            json.dumps(value, ensure_ascii=False).encode()
        except RecursionError as exc:
            raise RefusedJSON("The JSON is nested too deep.") from exc
        except UnicodeEncodeError as exc:
            raise _surrogate_refusal(value) from exc
        return value


def _no_json_number(name: str) -> Any:
    """Refuse `NaN`, `Infinity` or `-Infinity`, which Python's parser reads as numbers."""
    raise RefusedJSON(f"{name} is not a JSON number.")


class _Objects:
    """The objects of one parse, as the JSON parser hands them over: each made a dict, the first
    in which a key appears more than once noted with that key."""

    def __init__(self) -> None:
        self.repeated: tuple[dict[str, Any], str] | None = None

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(pairs)
        if len(made) < len(pairs) and self.repeated is None:
            seen: set[str] = set()
            self.repeated = (made, next(k for k, _ in pairs if k in seen or seen.add(k)))
        return made

    def refusal(self, value: Any) -> RefusedJSON:
        """The refusal of `value`, the parse's result: the repeated key and where it is."""
        assert self.repeated is not None
        made, key = self.repeated
        path = next(path for node, path in _nodes(value) if node is made)
        where = f" in {path}" if path else ""
        message = f"Key {json.dumps(key, ensure_ascii=False)} appears more than once{where}."
        return RefusedJSON(message, _child(path, key))


def _surrogate_refusal(value: Any) -> RefusedJSON:
    """The refusal of `value`, the parse's result, for its first key or text holding a lone
    surrogate, naming where."""
    message = "{} holds a lone surrogate, which is not Unicode text."
    for node, path in _nodes(value) if isinstance(value, dict | list) else ():
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(key, str) and not _encodable(key):
                return RefusedJSON(message.format(f"A key in {path or 'the body'}"), path or "body")
            if isinstance(child, str) and not _encodable(child):
                place = _child(path, key)
                return RefusedJSON(message.format(place), place)
    return RefusedJSON(message.format("The JSON"))


def _encodable(text: str) -> bool:
    """Whether `text` is Unicode text (no lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _nodes(value: Any) -> Iterator[tuple[Any, str]]:
    """Each object and array of a parsed JSON `value` with its dotted path ("" for `value`)."""
    stack = [(value, "")]
    while stack:
        node, path = stack.pop()
        yield node, path
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend(
            (child, _child(path, key)) for key, child in items if isinstance(child, dict | list)
        )


def init_app(app: Flask) -> None:
    """Add the security headers to every answer of `app`, errors included, and refuse bodies over
    the limit, input that cannot be stored and a Host header it cannot use; call it before the
    blueprints are registered, so that their path values use `SegmentConverter`
    (`IdPathConverter` for `path:`, `NumberConverter` for `int:`) and a path with an empty segment
    (`/v1//events`) matches no route, where Werkzeug redirected it to another resource
    (`/v1/events//X` to the event X)."""
    app.json = SafeJSONProvider(app)
    app.url_map.converters["default"] = app.url_map.converters["string"] = SegmentConverter
    app.url_map.converters["path"] = IdPathConverter
    app.url_map.converters["int"] = NumberConverter
    app.url_map.merge_slashes = False
    app.request_class = BoundedRequest
    app.session_interface = _NoSessions()
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(_refuse_unusable)
    gunicorn_util.write_error = _write_problem  # in a gunicorn worker, its own error answers


def _write_problem(sock: Any, status: int, reason: str, message: str) -> None:
    """What gunicorn answers a request it cannot hand to the app (not HTTP/1.x, a request line
    or header past its maxima): `server_refusal`, where gunicorn writes an HTML page. `message`
    may quote the request: it is not written back."""
    gunicorn_util.write_nonblock(sock, server_refusal(status, reason))


def server_refusal(status: int, reason: str) -> bytes:
    """The answer to a request the server refuses before the app can read it: a problem+json
    with the security headers, as every other error, closing the connection, naming nothing of
    the request. The reason phrase is the status code's own, as the app titles it (`status_title`;
    gunicorn's `reason` is "Bad Request" for some codes that are not 400, 501 for one); `reason`
    only for a code Python does not know."""
    with suppress(ValueError):
        reason = HTTPStatus(status).phrase
    reason = status_title(status, reason)
    text = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status,
            "detail": f"The request was refused before it could be read: {reason}.",
            "errors": [],
        }
    )
    body = f"{text}\n".encode()
    headers = [
        ("Connection", "close"),
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        *_HEADERS,
    ]
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return f"{head}\r\n".encode("latin-1") + body


class ProblemRequestHandler(WSGIRequestHandler):
    """The development server's (`gateway run`) handler of a connection: a request it cannot hand
    to the app (a malformed request line, an HTTP version it does not serve, too many headers, a
    request line too long) is answered as `gateway serve` answers it (`server_refusal`), where
    werkzeug writes an HTML page, with no status line at all for a request line it cannot read."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.log_error("code %d, message %s", code, message)
        self.log_request(code)
        self.close_connection = True
        self.wfile.write(server_refusal(code, "Error"))


@functools.lru_cache(maxsize=256)
def is_usable_host(host: str, header: str | None) -> bool:
    """Whether Werkzeug can route a request to `host` and build its URLs. `host` is the
    `host[:port]` that `werkzeug.sansio.utils.get_host` makes of the Host header `header`
    (`request.host`). It is "" when the header's characters are not a host's (`x/y`, `a b`,
    `user@host`, a port that is not a number from 1 to 65535, a name that is not ASCII): Werkzeug
    then builds URLs naming no host (`http:/issuer`, a receipt issued by `http:`). Without a
    header (HTTP/1.0; `lacks_host` refuses HTTP/1.1) the server's address stands in for it.
    Routing encodes the name with the idna codec (`Map.bind`; a failure is a 400 there). Every URL
    of the request (`request.url`, `request.host_url`, Authlib's checks of a token) is built by
    `get_current_url`, whose `werkzeug.urls.uri_to_iri` decodes the name with that codec: a label
    that is not IDNA (`xn--zz`, `xn--`) lets the codec's UnicodeError out, and brackets around no
    IPv6 address (`[a:b]`) urlsplit's ValueError, a 500 and a traceback in the log. Both are
    tried here as Werkzeug does them, so that a host Werkzeug can use is never refused."""
    if header and not host:
        return False
    try:
        host.partition(":")[0].encode("idna")
        get_current_url("http", host)
    except ValueError:  # UnicodeError is one
        return False
    return True


def lacks_host(environ: WSGIEnvironment) -> bool:
    """Whether an HTTP/1.1 request has no Host header, or an empty one, which a server must
    answer 400 (RFC 9112, 3.2; an `http` URL names a host). HTTP/1.0 needs none. Neither
    gunicorn nor Werkzeug's server refuses one: the app does (`_refuse_unusable`)."""
    return not environ.get("HTTP_HOST") and environ.get("SERVER_PROTOCOL") not in _HOSTLESS


#: The versions of HTTP whose requests need no Host header.
_HOSTLESS = ("HTTP/1.0", "HTTP/0.9")


def _refuse_unusable() -> None:
    """An HTTP/1.1 request without a Host header (`lacks_host`) or one naming no usable host
    answers 400 (`is_usable_host`), a request target over MAX_URL characters 414, a header line
    over MAX_HEADER_LINE 431, before anything else is done with them."""
    if lacks_host(request.environ):
        raise Problem(
            400,
            "Bad Request",
            "An HTTP/1.1 request must name its host in a Host header.",
            errors=[{"field": "Host", "message": "Missing."}],
        )
    if not is_usable_host(request.host, request.environ.get("HTTP_HOST")):
        raise Problem(
            400,
            "Bad Request",
            "The Host header names no host the gateway can use.",
            errors=[{"field": "Host", "message": "Not a valid host name."}],
        )
    target = request.environ.get("RAW_URI") or request.full_path
    if len(target) > MAX_URL:
        raise RequestURITooLarge(f"The URL is longer than {MAX_URL} characters.")
    for name, value in request.headers.items():
        if len(name) + len(value) + 2 > MAX_HEADER_LINE:
            raise RequestHeaderFieldsTooLarge(
                f"The {name} header is longer than {MAX_HEADER_LINE} characters."
            )


def _child(path: str, key: str | int) -> str:
    """The dotted path of `key` in the object or array at `path` ("" for the body itself)."""
    return f"{path}.{key}" if path else str(key)
