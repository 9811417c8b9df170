"""The two kinds of failure every connector reports, so jobs retry without knowing the connector.

A connector's own errors subclass these (e.g. `credly.TransientError(CredlyError, TransientError)`);
the outbox job retries a `TransientError` with back-off and fails a `PermanentError` at once.
"""

from __future__ import annotations


class TransientError(Exception):
    """Worth retrying later (timeout, no connection, 429, 5xx); `retry_after`: seconds, if asked."""

    retry_after: float | None = None


class PermanentError(Exception):
    """Refused by the other side; retrying the same request cannot help. `body`: its answer."""

    body: object = None
