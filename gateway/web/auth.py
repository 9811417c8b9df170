"""OAuth 2.0 client credentials served with Authlib: token endpoint, client store, scope checks."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn
from urllib.parse import unquote_to_bytes

from authlib.common.security import is_secure_transport
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.oauth2 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.errors import (
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    MissingAuthorizationError,
    UnsupportedGrantTypeError,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash, generate_password_hash

from gateway.platform import clock
from gateway.schemas.responses import TokenRequestSchema, TokenSchema
from gateway.store.db import Database, retry_disconnect
from gateway.store.models import OAuthClient
from gateway.usecases import clients
from gateway.usecases.clients import SCOPES
from gateway.web.apidoc import FORM, json_answer, operation
from gateway.web.context import services
from gateway.web.problems import PROBLEM_TYPE, Problem

_ERROR_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


def token_hash(token: str) -> str:
    """The stored form of an access token (tokens are random, so SHA-256 suffices).

    Tokens are looked up by this hash, never compared as given: how long the lookup takes can
    only tell an attacker about the hash of a guess, which says nothing about any real token's
    characters (a preimage of SHA-256 is out of reach), so the lookup needs no constant time.
    """
    return hashlib.sha256(token.encode()).hexdigest()


class Client(ClientMixin):
    """An `OAuthClient` row as Authlib sees it: client credentials only."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scopes asked for (all the client's if none), or None if the client lacks any.

        Authlib's token generator answers None with `invalid_scope` (RFC 6749 §5.2), no token made.
        """
        held = self.row.scope.split()
        requested = set((scope or "").split())
        if not requested:
            return " ".join(held)
        if not requested <= set(held):
            return None
        return " ".join(s for s in held if s in requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        # scrypt of the guess with the stored salt, then hmac.compare_digest: constant time
        return check_password_hash(self.row.client_secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ClientCredentials.TOKEN_ENDPOINT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


@dataclass(frozen=True)
class AccessToken(TokenMixin):
    """A stored token and whether its client is revoked, as Authlib's bearer validator sees it."""

    client_id: str
    scope: str
    issued_at: datetime
    expires_in: int
    revoked: bool
    client_revoked: bool

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return clock.now() >= self.issued_at + timedelta(seconds=self.expires_in)

    def is_revoked(self) -> bool:
        return self.revoked or self.client_revoked


class ClientCredentials(ClientCredentialsGrant):
    """The client-credentials grant, accepting the secret as HTTP Basic or in the form."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012


def _problem_json(status: int, body: dict, headers: list | dict) -> Response:
    detail = body.get("error_description") or body.get("error", "")
    payload = {"type": "about:blank", "title": _ERROR_TITLES.get(status, "Error")}
    errors = [{"field": name, "message": detail} for name in g.pop("token_error_fields", ())]
    payload.update(status=status, detail=detail, errors=errors, **body)
    response = Response(f"{json.dumps(payload)}\n", status=status, mimetype=PROBLEM_TYPE)
    for key, value in dict(headers).items():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


CLIENT_AUTHENTICATION_FAILED = "Client authentication failed."


class Server(AuthorizationServer):
    """Authlib's authorization server whose errors are problem+json with the OAuth error fields.

    Every failed client authentication (unknown client id, wrong secret, none sent, either way of
    sending it) gets one answer, 401 `invalid_client` (RFC 6749 §5.2), so nothing in it tells
    which client ids exist.
    """

    def handle_error_response(self, request: OAuth2Request, error: OAuth2Error) -> Response:
        if isinstance(error, InvalidClientError):
            error = InvalidClientError(status_code=401, description=CLIENT_AUTHENTICATION_FAILED)
        elif isinstance(error, UnsupportedGrantTypeError):
            g.token_error_fields = ["grant_type"]
            if not request.payload.grant_type:  # RFC 6749 §5.2: a missing one is invalid_request
                error = InvalidRequestError(description=f"grant_type is required: {GRANT}")
            else:  # its own description would echo the parameter, which may not be ASCII
                error.description = f"grant_type must be {GRANT}"
        elif isinstance(error, InvalidScopeError):
            g.token_error_fields = ["scope"]
        return super().handle_error_response(request, error)

    def handle_response(self, status_code: int, payload: object, headers: list) -> Response:
        if status_code >= 400 and isinstance(payload, dict):
            return _problem_json(status_code, payload, headers)
        return super().handle_response(status_code, payload, headers)


class Validator(BearerTokenValidator):
    """Looks bearer tokens up by their hash; a revoked client's tokens stop working at once."""

    def authenticate_token(self, token_string: str) -> AccessToken | None:
        return find_token(services().db, token_string)


def find_token(db: Database, token_string: str) -> AccessToken | None:
    """The stored token `token_string` names, and whether its client is revoked; None if none."""
    found = clients.find_token(db, token_hash(token_string))
    if found is None:
        return None
    *token, client_revoked_at = found
    return AccessToken(*token, client_revoked=client_revoked_at is not None)


#: The realm of the bearer challenges (RFC 6750 §3).
REALM = "credential-gateway"


class Protector(ResourceProtector):
    """Authlib's resource protector answering problem+json (401 with WWW-Authenticate, 403)."""

    def parse_request_authorization(self, request: object) -> tuple[BearerTokenValidator, str]:
        """Authlib's reading of the `Authorization` header, except that the bearer scheme with no
        token after it is a token sent and refused (`invalid_token`), not a missing one."""
        scheme, _, token_string = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.strip().lower() == "bearer" and not token_string.strip():
            raise InvalidTokenError(realm=REALM)
        return super().parse_request_authorization(request)

    def raise_error_response(self, error: OAuth2Error) -> None:
        status = error.status_code
        headers = dict(error.get_headers())
        headers.pop("Content-Type", None)
        detail = error.description or {
            401: "A valid bearer token is required.",
            403: "The token lacks the scope this endpoint needs.",
        }.get(status, error.error)
        if status == 401 and isinstance(
            error, MissingAuthorizationError | UnsupportedTokenTypeError
        ):
            # RFC 6750 §3.1: no bearer token sent, so the challenge names no error
            headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
        elif status == 401:
            challenge = headers.get("WWW-Authenticate", f'bearer realm="{REALM}"')
            headers["WWW-Authenticate"] = "Bearer" + challenge[len("bearer") :]
        elif status == 403:
            view = current_app.view_functions.get(request.endpoint or "")
            rule = scope_rule(view) if view else None
            scopes = rule.scopes if rule else ()
            headers["WWW-Authenticate"] = _insufficient_scope(scopes)
            if scopes:
                detail = f"This endpoint needs a token {_scopes_wording(scopes)}."
        raise Problem(status, _ERROR_TITLES.get(status, "Error"), detail, headers=headers)


def _insufficient_scope(scopes: tuple[str, ...]) -> str:
    """The `WWW-Authenticate` challenge of a 403 (RFC 6750 §3). Its `scope` attribute lists the
    scopes a token needs all of, so it names one only when one is needed; when any one of several
    will do, they are named in `error_description` instead."""
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
    if len(scopes) == 1:
        return f'{challenge}, scope="{scopes[0]}"'
    if scopes:
        return f'{challenge}, error_description="needs a token {_scopes_wording(scopes)}"'
    return challenge


def _scopes_wording(scopes: tuple[str, ...]) -> str:
    if len(scopes) == 1:
        return f"with the scope {scopes[0]}"
    return f"with any one of the scopes {', '.join(scopes[:-1])} or {scopes[-1]}"


require_oauth = Protector()
require_oauth.register_token_validator(Validator(realm=REALM))


def bearer_client_id(db: Database, authorization: str, scopes: list[str]) -> str | None:
    """The client id of the bearer token in an `Authorization` header, if Authlib would let it
    through to a view protected with `scopes`; None for anything else (Authlib answers it).

    For requests answered in front of Flask (`gateway.web.plain_events`): the same token, expiry,
    revocation and scope checks as `require_scope`, without a Flask request."""
    token_type, _, token_string = authorization.partition(" ")
    if token_type.lower() != "bearer" or not token_string or " " in token_string:
        return None
    token = find_token(db, token_string)
    try:
        require_oauth.get_token_validator("bearer").validate_token(token, scopes, None)
    except OAuth2Error:
        return None
    assert token is not None
    return token.client_id


@dataclass(frozen=True)
class ScopeRule:
    """The scopes a view asks of a token, recorded by `require_scope`/`allow_scope` on the view:
    what the OpenAPI document's `security` of the route is made from (`gateway.web.openapi`)."""

    scopes: tuple[str, ...]
    optional: bool  # allow_scope: no token needed at all

    def security(self) -> list[dict[str, list[str]]]:
        """OpenAPI security requirements: a token with any one of the scopes (or none)."""
        return [{"oauth2": [scope]} for scope in self.scopes] + ([{}] if self.optional else [])


def _recorded(view: Callable, scopes: tuple[str, ...], *, optional: bool) -> Callable:
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"{view.__name__}: unknown scope(s) {unknown or '(none given)'}")
    view.scope_rule = ScopeRule(scopes, optional)  # type: ignore[attr-defined]
    return view


def scope_rule(view: Callable) -> ScopeRule | None:
    """The scopes `view` was protected with, or None for a public view."""
    return getattr(view, "scope_rule", None)


def require_scope(*scopes: str) -> Callable[[Callable], Callable]:
    """Protect a view: a valid bearer token carrying any one of `scopes` (also documented).

    The token is checked once the body is in: a request whose body is still arriving when its
    client is revoked is refused, however slowly it was sent."""

    def decorate(view: Callable) -> Callable:
        protected = require_oauth(list(scopes))(view)

        @functools.wraps(view)
        def run(*args: object, **kwargs: object) -> ResponseReturnValue:
            request.get_data(cache=True)  # within the request's size limit
            return protected(*args, **kwargs)

        return _recorded(run, scopes, optional=False)

    return decorate


def refuse_revoked_client() -> NoReturn:
    """Answer the request of a client revoked while it was under way as a revoked token is."""
    require_oauth.raise_error_response(InvalidTokenError(realm=REALM))


def allow_scope(*scopes: str) -> Callable[[Callable], Callable]:
    """Open a view to all, but refuse a bad token or one without any of `scopes` (also documented).

    Authlib only runs when a bearer token is sent: an anonymous request costs nothing more.
    """

    def decorate(view: Callable) -> Callable:
        protected = require_oauth(list(scopes), optional=True)(view)

        @functools.wraps(view)
        def run(*args: object, **kwargs: object) -> ResponseReturnValue:
            return (protected if bearer_sent() else view)(*args, **kwargs)

        return _recorded(run, scopes, optional=True)

    return decorate


def bearer_sent() -> bool:
    """Whether the request carries a bearer token (valid or not); other credentials, such as a
    proxy's Basic ones, are not for the gateway and leave the request anonymous."""
    scheme, _, _ = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer"


def current_client_id() -> str | None:
    """The client id of the request's token, if any."""
    token = current_token
    return token.client_id if token else None


@functools.cache
def _decoy_hash() -> str:
    """A hash of no client's secret, checked in vain when the client is unknown."""
    return generate_password_hash(secrets.token_urlsafe(32))


def _query_client(client_id: str) -> Client | None:
    row = None
    if "\x00" not in client_id:  # PostgreSQL cannot store NUL: no client has such an id
        # The first read of a token request: on a pooled connection the database closed, it is
        # read again on a new one.
        row = retry_disconnect(functools.partial(clients.active_client, services().db, client_id))
    if row is None:
        # As slow as a wrong secret, so the answer time does not tell which client ids exist.
        check_password_hash(_decoy_hash(), client_id)
        return None
    return Client(row)


def _client_secret_basic(query_client: Callable, request: OAuth2Request) -> ClientMixin | None:
    """Authlib's `client_secret_basic`, for credentials that are not UTF-8 too: they name no
    client, and are answered as an unknown one (after the same decoy check)."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        check_password_hash(_decoy_hash(), "")
        return None


def _save_token(token: dict, request: OAuth2Request) -> None:
    """Store the token, unless the client's secret changed, or the client was revoked, since it
    was checked (`gateway clients new-secret` then holds the row's lock, or has committed). The
    secret's check takes a while, in which the database may close the pooled connection this
    write gets (a restart, a failover): it is then run again on a new one."""
    retry_disconnect(functools.partial(_store_token, token, request.client))


def _store_token(token: dict, client: Client) -> None:
    try:
        clients.store_token(
            services().db,
            client.row,
            token_hash(token["access_token"]),
            token.get("scope", ""),
            int(token["expires_in"]),
        )
    except clients.SecretChanged as exc:
        raise InvalidClientError(status_code=401) from exc


bp = Blueprint("oauth", __name__)


@bp.post("/oauth/token")
@operation(
    "An access token (OAuth 2.0 client credentials)",
    tags=["oauth"],
    description="Authenticate the client with HTTP Basic (`client_secret_basic`) or with "
    "`client_id` and `client_secret` form fields (`client_secret_post`).",
    security=[{"clientBasic": []}, {}],
    request=TokenRequestSchema,
    request_media=FORM,
    request_example={"grant_type": "client_credentials", "scope": "verifications:read"},
    responses={200: json_answer(TokenSchema, "The token.")},
    errors=("BadRequest", "Unauthorized", "PayloadTooLarge", "TooManyRequests", "Unavailable"),
)
def issue_token() -> ResponseReturnValue:
    """Issue an access token for the client-credentials grant."""
    server = current_app.extensions["oauth_server"]
    malformed = _malformed_token_request()
    if malformed:
        return server.handle_error_response(None, InvalidRequestError(description=malformed))
    if not is_secure_transport(request.url):  # RFC 6749 §3.2: the token endpoint needs TLS
        return server.handle_error_response(None, InsecureTransportError(description=PLAIN_HTTP))
    return server.create_token_response()


PLAIN_HTTP = (
    "OAuth 2.0 needs HTTPS for tokens: serve the gateway over TLS; behind a proxy that ends TLS, "
    "set TRUSTED_PROXIES so that its X-Forwarded-Proto is believed."
)


#: The one grant type the token endpoint serves.
GRANT = "client_credentials"

#: The parameters of a client-credentials token request (RFC 6749 §4.4.2, §2.3.1).
TOKEN_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret")


def _is_utf8_form(body: bytes) -> bool:
    """Whether a form body is UTF-8 (as HTML forms send it): Werkzeug otherwise parses it into no
    fields at all, or keeps a `%`-escape of a byte that is not UTF-8 as it was sent."""
    try:
        unquote_to_bytes(body.replace(b"+", b" ")).decode()
    except UnicodeDecodeError:
        return False
    return True


def _malformed_token_request() -> str | None:
    """Why the request breaks RFC 6749's rules for its parameters, if it does (§3.2, §2.3, §4.4.2:
    in a form body, each once, one way of authenticating the client)."""
    if request.args:
        g.token_error_fields = ["query"]
        return "Send the parameters in the form body, not in the URL's query."
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        g.token_error_fields = ["Content-Encoding"]  # read as it is, it is another body
        return "Send the form body without a content coding."
    if request.mimetype != FORM and request.get_data(cache=True):
        g.token_error_fields = ["body"]
        sent = request.mimetype or "no Content-Type"
        return f"Send the parameters as an {FORM} body, not as {sent}."
    if request.mimetype == FORM and not _is_utf8_form(request.get_data(cache=True)):
        g.token_error_fields = ["body"]
        return "The form body is not UTF-8 once its %-escapes are decoded."
    repeated = sorted(name for name, values in request.form.lists() if len(values) > 1)
    if repeated:  # named when it is one of the grant's (an OAuth error says ASCII only)
        named = [name for name in repeated if name in TOKEN_PARAMETERS]
        g.token_error_fields = named
        return f"Send each parameter once: {', '.join(named) or 'one'} was repeated."
    if "Authorization" in request.headers and "client_secret" in request.form:
        g.token_error_fields = ["client_secret"]
        return "Authenticate the client one way: HTTP Basic or the form fields, not both."
    return None


def init_app(app: Flask) -> None:
    """Set up the token endpoint of `app` (its route `bp` is registered with the others)."""
    settings = app.extensions["gateway"].settings
    app.config.update(
        OAUTH2_TOKEN_EXPIRES_IN={"client_credentials": settings.token_expires_in},
        OAUTH2_SCOPES_SUPPORTED=list(SCOPES),
    )
    server = Server(app, query_client=_query_client, save_token=_save_token)
    server.register_client_auth_method("client_secret_basic", _client_secret_basic)
    server.register_grant(ClientCredentials)
    app.extensions["oauth_server"] = server
