"""What the jobs need from Credly (`BadgeService`, which `CredlyClient` and `DryRunCredly`
implement), and the reads built on it: a holder's badges, a read retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from connectors.credly.errors import TransientError
from connectors.credly.wire import Badge, BadgeRequest, filterable, of_another_earner

#: Called with a read's transient error and its failed tries so far: returns to read again (after
#: waiting), raises to give up.
OnTransient = Callable[[TransientError, int], None]
T = TypeVar("T")


@runtime_checkable
class BadgeService(Protocol):
    """What the jobs need from Credly; implemented by `CredlyClient` and `DryRunCredly`."""

    def issue_badge(self, request: BadgeRequest, *, locale: str = "en") -> Badge: ...

    def replace_badge(self, badge_id: str, request: BadgeRequest) -> Badge: ...

    def revoke_badge(
        self, badge_id: str, *, reason: str, suppress_revoke_notification_email: bool = False
    ) -> Badge: ...

    def get_badge(self, badge_id: str) -> Badge: ...

    def list_badges(
        self,
        filters: dict[str, str],
        on_total: Callable[[int], None] | None = None,
        on_transient: OnTransient | None = None,
    ) -> Iterator[Badge]: ...

    def successor_by_replacing(self, badge: Badge) -> Badge: ...

    def get_event(self, event_id: str) -> dict[str, Any]: ...

    def token_expiry(self) -> datetime | None: ...


def holder_badges(
    service: BadgeService,
    *,
    badge_template_id: str,
    issuer_earner_id: str | None = None,
    recipient_email: str | None = None,
    others: bool = False,
) -> list[Badge]:
    """Every badge of the template Credly counts as the same earner's (docs/credly.md,
    "Duplicates"): the same `issuer_earner_id` or the same e-mail, one paged search each. A
    badge found by e-mail that names another earner id is that earner's, not this one's: left
    out unless `others` (Credly compares a new badge with it too when it refuses duplicates). An
    e-mail that a filter cannot hold (a `|` is valid in one) is not searched for."""
    found: dict[str, Badge] = {}
    searches = (("issuer_earner_id", issuer_earner_id), ("recipient_email", recipient_email))
    for key, value in searches:
        if not value or not filterable(value):
            continue
        for badge in service.list_badges({key: value, "badge_template_id": badge_template_id}):
            if (
                badge.badge_template_id == badge_template_id
                and _same(key, badge, value)
                and (others or not of_another_earner(badge, issuer_earner_id))
            ):
                found[badge.id] = badge
    return list(found.values())


def _same(key: str, badge: Badge, value: str) -> bool:
    if key == "recipient_email":  # e-mail addresses compare without case
        return (badge.recipient_email or "").casefold() == value.casefold()
    return badge.issuer_earner_id == value


def retried(read: Callable[[], T], on_transient: OnTransient | None) -> T:
    """What `read` answers, read again after each transient failure once `on_transient` returns
    (it raises to give up); without `on_transient`, the first failure is raised."""
    tries = 0
    while True:
        try:
            return read()
        except TransientError as exc:
            tries += 1
            if on_transient is None:
                raise
            on_transient(exc, tries)
