"""Rate limits of the verification lookups (Flask-Limiter): per client address or per API client."""

from __future__ import annotations

import contextlib

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.auth import require_oauth
from gateway.config import Settings
from gateway.schemas.verifications import MAX_BATCH
from gateway.services import services

LOOKUP_SCOPE = "verifications:read"


def lookup_client() -> str | None:
    """The client id of a valid `verifications:read` token on this request, else None.

    Never raises: a missing or bad token counts against the address, and the view refuses a bad one.
    """
    if "lookup_client" not in g:
        g.lookup_client = None
        with contextlib.suppress(OAuth2Error):
            g.lookup_client = require_oauth.acquire_token([LOOKUP_SCOPE]).client_id
    return g.lookup_client


def _lookup_key() -> str:
    client = lookup_client()
    return f"client:{client}" if client else f"address:{get_remote_address()}"


def _lookup_limit() -> str:
    settings = services().settings
    if lookup_client():
        return settings.verify_rate_limit_authenticated
    return settings.verify_rate_limit


def _lookup_cost() -> int:
    """A batch costs one lookup per id it asks for (at most MAX_BATCH); anything else costs one."""
    body = request.get_json(silent=True) if request.method == "POST" else None
    ids = body.get("certification_ids") if isinstance(body, dict) else None
    return min(max(len(ids), 1), MAX_BATCH) if isinstance(ids, list) else 1


def _lookup_message() -> str:
    who = "this API client" if lookup_client() else "this address"
    return f"Too many lookups from {who}: the limit is {_lookup_limit()}."


def _is_bare_form() -> bool:
    return "certification_id" not in request.args


def init_app(app: Flask, settings: Settings, *, api: Blueprint, page: Blueprint) -> Limiter:
    """Limit the lookups of `api` (per address, or per client with a `verifications:read` token,
    batches counting each id) and of `page` (per address); counts live in Redis when it is
    configured, so every web process shares them, else in this process's memory."""
    if settings.trusted_proxies:
        n = settings.trusted_proxies  # X-Forwarded-Proto too: HSTS is sent when TLS is in front
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=settings.redis_url or "memory://",
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2},
        key_prefix="gateway-ratelimit",
        strategy="moving-window",  # a refused request (or batch) uses none of the allowance
        headers_enabled=True,
        in_memory_fallback_enabled=True,  # Redis down: count in memory rather than fail lookups
    )
    limiter.init_app(app)
    limiter.shared_limit(
        _lookup_limit,
        scope="verification-lookups",
        key_func=_lookup_key,
        cost=_lookup_cost,
        error_message=_lookup_message,
    )(api)
    limiter.limit(
        settings.verify_rate_limit,
        error_message=f"Too many lookups: the limit is {settings.verify_rate_limit} per address.",
        exempt_when=_is_bare_form,
    )(page)
    return limiter
