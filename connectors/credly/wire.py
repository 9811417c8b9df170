"""Credly's wire format: its API paths and timestamps, the badge object it answers (`Badge`),
what issuing and replacing a badge send (`BadgeRequest`), list filters, and choosing among a
holder's badges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: The form Credly documents for timestamps sent in requests.
CREDLY_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"
REVOKED = "revoked"
REPLACED = "replaced"
PENDING = "pending"
ACCEPTED = "accepted"
REJECTED = "rejected"
#: States of a badge that no longer stands for anything (the others: pending, accepted, rejected).
ENDED_STATES = frozenset({REVOKED, REPLACED})
#: States of a badge that shows (unless it has expired).
LIVE_STATES = frozenset({PENDING, ACCEPTED})

#: The API paths the gateway calls, under the configured base URL.
BADGES = "/organizations/{org}/badges"
BADGE = "/organizations/{org}/badges/{badge_id}"
REPLACE = "/organizations/{org}/badges/{badge_id}/replace"
REVOKE = "/organizations/{org}/badges/{badge_id}/revoke"
EVENT = "/organizations/{org}/events/{event_id}"
TOKENS = "/organizations/{org}/authorization_tokens"


def format_credly_datetime(value: datetime) -> str:
    """A datetime in the form Credly documents for requests (`2014-04-01 09:41:00 -0500`), in its
    own offset (so a day's midnight in the certifying body's zone stays that day).

    A naive datetime is taken to be UTC. An offset of seconds, as zones had before they kept
    standard time (Liberia's -00:44:30 until 1972), has no place in that form: such a moment is
    sent in UTC, the same instant.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        value = value.astimezone(UTC)
    return value.strftime(CREDLY_DATETIME_FORMAT)


def parse_credly_datetime(value: object) -> datetime | None:
    """An aware UTC datetime from Credly's ISO 8601 answer (or its request form); None if absent.

    A value in neither form, or one whose UTC time falls outside years 1 to 9999, gives None
    too; the original stays in `Badge.raw`.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.strptime(value, CREDLY_DATETIME_FORMAT)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def not_a_badge(data: object) -> str:
    """Why `data` is not a badge object, without quoting it: it may hold the earner's name and
    e-mail address (the answer that carried it is kept apart, for `errors.describe`)."""
    what = "an object without an id" if isinstance(data, Mapping) else type(data).__name__
    return f"not a Credly badge object: {what}"


@dataclass(frozen=True)
class Badge:
    """An issued Credly badge, as far as the gateway cares; `raw` keeps Credly's whole object."""

    id: str
    state: str
    issuer_earner_id: str | None
    badge_template_id: str | None
    recipient_email: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Badge:
        """Build from the `data` object of Credly's answer (template id nested or flat)."""
        if not isinstance(data, Mapping) or not data.get("id"):
            raise ValueError(not_a_badge(data))
        template = data.get("badge_template")
        template_id = template.get("id") if isinstance(template, Mapping) else None
        template_id = template_id or data.get("badge_template_id")
        earner = data.get("issuer_earner_id")
        return cls(
            id=str(data["id"]),
            state=str(data.get("state") or ""),
            issuer_earner_id=None if earner is None else str(earner),
            badge_template_id=None if template_id is None else str(template_id),
            recipient_email=data.get("recipient_email"),
            issued_at=parse_credly_datetime(data.get("issued_at")),
            expires_at=parse_credly_datetime(data.get("expires_at")),
            raw=dict(data),
        )

    @property
    def ended(self) -> bool:
        """True once revoked or replaced."""
        return self.state in ENDED_STATES

    def live(self, now: datetime | None = None) -> bool:
        """True while the badge shows: pending or accepted, and not past its expiry."""
        if self.state not in LIVE_STATES:
            return False
        return self.expires_at is None or self.expires_at > (now or datetime.now(UTC))


def id_evidence(title: str, number: str) -> dict[str, str]:
    """Credly's ID evidence: a number shown on the badge (`issuer_earner_id` is not shown)."""
    return {"type": "IdEvidence", "title": title, "description": number}


def url_evidence(title: str, url: str) -> dict[str, str]:
    """Credly's URL evidence: a link shown on the badge."""
    return {"type": "UrlEvidence", "title": title, "url": url}


#: The fields of a replace that the gateway sends, all of them documented by Credly (docs/credly.md,
#: "Replacing"; it documents `notification_message` too, which the gateway leaves out): no
#: recipient_email.
REPLACE_FIELDS = (
    "badge_template_id",
    "issued_at",
    "issued_to_first_name",
    "issued_to_last_name",
    "expires_at",
    "evidence",
)


@dataclass(frozen=True)
class BadgeRequest:
    """What a badge says and who it is for: the fields issuing and replacing both send.

    `expires_at` None means no expiry, sent as `false` (null would mean the template's default).
    """

    recipient_email: str
    first_name: str
    last_name: str
    badge_template_id: str
    issued_at: datetime
    issuer_earner_id: str
    expires_at: datetime | None = None
    evidence: tuple[dict[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        """Credly's JSON fields for issuing this badge."""
        return {
            "recipient_email": self.recipient_email,
            "issued_to_first_name": self.first_name,
            "issued_to_last_name": self.last_name,
            "badge_template_id": self.badge_template_id,
            "issued_at": format_credly_datetime(self.issued_at),
            "issuer_earner_id": self.issuer_earner_id,
            "expires_at": False
            if self.expires_at is None
            else format_credly_datetime(self.expires_at),
        } | ({"evidence": [dict(item) for item in self.evidence]} if self.evidence else {})

    def replace_body(self) -> dict[str, Any]:
        """Credly's JSON fields for replacing a badge by this one: documented ones only."""
        body = self.body()
        return {name: body[name] for name in REPLACE_FIELDS if name in body}

    def shows_as(self, badge: Badge) -> bool:
        """True when `badge` already says what this request would (e-mail aside)."""
        return (
            badge.badge_template_id == self.badge_template_id
            and badge.issued_at == self.issued_at.astimezone(UTC)
            and self.names_as(badge)
        )

    def names_as(self, badge: Badge) -> bool:
        """True when `badge` names the member and expires as this request would (e-mail aside)."""
        raw = badge.raw
        return (
            raw.get("issued_to_first_name") == self.first_name
            and raw.get("issued_to_last_name") == self.last_name
            and badge.expires_at == (self.expires_at and self.expires_at.astimezone(UTC))
        )


def filter_param(filters: Mapping[str, str]) -> str:
    """Credly's `filter` query value, `key::value|key::value`."""
    for part in (*filters.keys(), *filters.values()):
        if not filterable(part):
            raise ValueError(f"a Credly filter key or value may not contain '|' or '::': {part!r}")
    return "|".join(f"{key}::{value}" for key, value in filters.items())


def filterable(value: str) -> bool:
    """Whether `value` can be a filter's key or value: no `|`, no `::`."""
    return "|" not in value and "::" not in value


def pick_badge(badges: Iterable[Badge]) -> Badge | None:
    """The badge that stands: a live one before an ended one, then the newest by `issued_at`."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return max(badges, key=lambda b: (not b.ended, b.issued_at or oldest), default=None)


def of_another_earner(badge: Badge, issuer_earner_id: str | None) -> bool:
    """Whether `badge` names an earner id other than `issuer_earner_id` (one with none, issued in
    Credly's UI, is anyone's)."""
    return bool(badge.issuer_earner_id) and badge.issuer_earner_id != issuer_earner_id


def live_badge(badges: Iterable[Badge]) -> Badge | None:
    """The newest of the badges that still show, if any (a revoked or expired one never)."""
    now = datetime.now(UTC)
    return pick_badge(b for b in badges if b.live(now))
