"""The two kinds of failure every connector reports, so jobs retry without knowing the connector.

A connector's own errors subclass these (e.g. `credly.errors.TransientError(CredlyError,
TransientError)`); the outbox job retries a `TransientError` with back-off and fails a
`PermanentError` at once. `parse_retry_after` reads how long an answer asks to wait.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class TransientError(Exception):
    """Worth retrying later (timeout, no connection, 429, 5xx); `retry_after`: seconds, if asked."""

    retry_after: float | None = None


class PermanentError(Exception):
    """Refused by the other side; retrying the same request cannot help. `body`: its answer."""

    body: object = None


def describe(exc: Exception) -> str:
    """`exc`'s message and the other side's answer, if it gave one: JSON as JSON text (as sent,
    not Python's repr of it), other text as it came."""
    body = getattr(exc, "body", None)
    if not body:
        return str(exc)
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    return f"{exc} {text}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
