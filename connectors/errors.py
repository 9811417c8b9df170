"""The two kinds of failure every connector reports, so jobs retry without knowing the connector.

A connector's own errors subclass these (e.g. `credly.errors.TransientError(CredlyError,
TransientError)`); the outbox job retries a `TransientError` with back-off and fails a
`PermanentError` at once. `parse_retry_after` reads how long an answer asks to wait. What a job
records and logs of them names no e-mail address (`without_emails`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class TransientError(Exception):
    """Worth retrying later (timeout, no connection, 429, 5xx); `retry_after`: seconds, if asked."""

    retry_after: float | None = None


class PermanentError(Exception):
    """Refused by the other side; retrying the same request cannot help. `body`: its answer."""

    body: object = None


#: An e-mail address, as written or in a URL's query (`%40` for `@`; after another escape such as
#: `%3A`, the address starts there).
_EMAIL = re.compile(r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![\w.+%-]))[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
EMAIL_LEFT_OUT = "<email>"


def without_emails(text: str) -> str:
    """`text` with every e-mail address replaced by EMAIL_LEFT_OUT: the other side's answer may
    echo the member's address from the request, and what a job records of an error is logged."""
    return _EMAIL.sub(EMAIL_LEFT_OUT, text) if "@" in text or "%40" in text else text


def without_nul(text: str) -> str:
    """`text` with each NUL, which PostgreSQL's text cannot hold, shown as U+FFFD: an answer's
    text as the records of its failure keep it."""
    return text.replace("\x00", "\ufffd")


def describe(exc: Exception) -> str:
    """`exc`'s message and the other side's answer, if it gave one: JSON as JSON text (as sent,
    not Python's repr of it), other text as it came but for NUL, which PostgreSQL's text cannot
    hold, shown as U+FFFD; e-mail addresses left out (`without_emails`)."""
    body = getattr(exc, "body", None)
    if not body:
        return without_emails(str(exc))
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    return without_emails(without_nul(f"{exc} {text}"))


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
