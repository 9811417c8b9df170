"""How a call to Credly fails: `CredlyError` and its kinds, each a connector-neutral
`connectors.errors.TransientError` or `PermanentError` as well, so the jobs retry it or not."""

from __future__ import annotations

from collections.abc import Mapping

from connectors import errors

#: The status of Credly's refusal to issue a duplicate (docs/credly.md, "Duplicates"), the one
#: 4xx after which Credly holds a badge of the recipient.
DUPLICATE_STATUS = 422


class CredlyError(Exception):
    """A call to Credly failed; `status` is the HTTP status (None without an answer)."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def made_nothing(self) -> bool:
        """Whether Credly's answer says it made nothing of the request: any 4xx (a 429, a
        refused token, a request refused as invalid) but its refusal of a duplicate."""
        status = self.status
        return status is not None and 400 <= status < 500 and status != DUPLICATE_STATUS

    @property
    def duplicate_refusal(self) -> bool:
        """Whether Credly refused the request as it refuses to issue a duplicate: after that,
        it may hold the badge already."""
        return isinstance(self, PermanentError) and self.status == DUPLICATE_STATUS


class TransientError(CredlyError, errors.TransientError):
    """Worth retrying: timeout, connection error, 429 or 5xx; `retry_after` in seconds if given."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class PermanentError(CredlyError, errors.PermanentError):
    """Credly refused the request (4xx but 429); retrying the same request cannot help."""


class NotFound(PermanentError):
    """Credly answered 404: no such badge or event in this organisation."""


class Unauthorized(TransientError):
    """Credly answered 401 or 403: the token is expired, revoked or lacks the permission. Not the
    job's fault: the jobs wait until a working token is configured."""


class UnknownOrganization(Unauthorized):
    """Credly answered 404 under the configured organisation, and for its badge list too: the
    organisation id is wrong, so the 404 says nothing of a badge. The jobs wait as they do for a
    refused token, rather than take every badge for deleted."""


class NoConnection(errors.TransientError):
    """A call not made: no connection came free by the time `holding_a_connection` set. Credly
    was not asked, so this is no failure of Credly's."""


class AlreadyReplaced(PermanentError):
    """Credly refused to replace a badge that was replaced already; `successor` is its
    `metadata.current_badge_id`."""

    def __init__(self, message: str, *, successor: str, status: int | None, body: object) -> None:
        super().__init__(message, status=status, body=body)
        self.successor = successor


def current_badge_id(body: object) -> str | None:
    """The successor Credly names in an error body's `metadata.current_badge_id`, if any."""
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    found = metadata.get("current_badge_id") if isinstance(metadata, Mapping) else None
    return str(found) if found else None
