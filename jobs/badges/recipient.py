"""What a badge is issued from: the certification and its member's details read, the badge request
they call for (template, issue day, expiry), and whether a badge of Credly's says the same."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, func, or_, select

from connectors.credly.errors import PermanentError
from connectors.credly.wire import Badge as CredlyBadge
from connectors.credly.wire import BadgeRequest
from gateway.platform import clock
from gateway.rules import BADGE_KEPT
from gateway.store.models import Badge, Certification
from gateway.usecases import badge_wording
from gateway.usecases.services import Services
from jobs.badges.states import LIVE


def _midnight(svc: Services, day: date) -> datetime:
    """The start of `day` in the certifying body's time zone (TIME_ZONE); while that is still
    ahead (a day begun in UTC but not yet west of it: a grant dated today), the start of `day`
    in UTC, never after now. Credly may refuse an issue time in the future."""
    start = datetime.combine(day, time(0), ZoneInfo(svc.settings.time_zone))
    now = clock.now()
    if start <= now:
        return start
    return min(datetime.combine(day, time(0), UTC), now)


def template_for(svc: Services, credential: str) -> str:
    """The Credly badge template of a credential (a placeholder on the dry-run backend)."""
    template = svc.settings.credly_badge_templates.get(credential)
    if template:
        return template
    if svc.settings.credly_dry_run:
        return f"dry-run-{credential}"
    raise PermanentError(f"no Credly badge template configured for credential {credential}")


# Built once (building a statement costs about what running it does).
#: What a badge is issued from: the certification and its standing, whose `member` names the
#: member as the certification's own events do (another certification of the member may name
#: them otherwise until it is told too), with how many of its badges are recorded live.
_CERTIFICATION = select(
    Certification.certification_id,
    Certification.credential,
    Certification.status,
    Certification.standing,
    select(func.count(Badge.id))
    .where(
        Badge.certification_id == Certification.certification_id,
        Badge.credly_badge_id.is_not(None),
        or_(*(Badge.state == state for state in LIVE)),  # not IN: its list expands each time
    )
    .scalar_subquery(),
).where(Certification.certification_id == bindparam("certification_id"))


class Recipient(NamedTuple):
    """A certification and the member its standing names."""

    certification_id: str
    credential: str
    status: str
    standing: dict[str, Any]
    live_badges: int  # recorded live, of any period
    email: str
    first_name: str
    last_name: str


def certification(
    svc: Services, certification_id: str, connection: Connection | None = None
) -> Recipient:
    """A certification with its member's details, in one query (in `connection`'s transaction)."""
    key = {"certification_id": certification_id}
    if connection is None:
        [row] = svc.db.read(_CERTIFICATION, key)
    else:
        [row] = svc.db.execute(connection, _CERTIFICATION, key)
    member = row[3]["member"]  # the standing's
    return Recipient(*row, member["email"], member["first_name"], member["last_name"])


def recipient_of(svc: Services, cert: Recipient) -> BadgeRequest:
    """The badge of the certification's current period, read before calling Credly."""
    standing = cert.standing
    return BadgeRequest(
        recipient_email=cert.email,
        first_name=cert.first_name,
        last_name=cert.last_name,
        badge_template_id=template_for(svc, cert.credential),
        issued_at=_midnight(svc, date.fromisoformat(standing["certified_on"])),
        issuer_earner_id=cert.certification_id,
        expires_at=expiry(svc, standing),
        evidence=badge_wording.evidence(svc, cert.certification_id),
    )


def expiry(svc: Services, standing: dict[str, Any]) -> datetime | None:
    """When the badge of `standing` expires: none, or with BADGE_EXPIRES at the end of its
    paid-through day (the last second, in TIME_ZONE: Credly shows that day)."""
    if not svc.settings.badge_expires:
        return None
    last_day = date.fromisoformat(standing["fees"]["paid_through"])
    return datetime.combine(last_day, time(23, 59, 59), ZoneInfo(svc.settings.time_zone))


def expired_on_arrival(expires_at: datetime | None) -> bool:
    """Whether a badge expiring at `expires_at` (BADGE_EXPIRES) would be expired when issued."""
    return expires_at is not None and expires_at <= clock.now()


def renews(badge: CredlyBadge, expires_at: datetime | None) -> bool:
    """Whether `badge`, pending or accepted but expired, would show again with `expires_at` (a
    renewal paid late): replacing it is what renews it."""
    return badge.state in LIVE and (expires_at is None or expires_at > clock.now())


def recipient_now(svc: Services, certification_id: str, period_start: date) -> BadgeRequest | None:
    """The badge the certification's period calls for now; None when it keeps none any more
    or another period began."""
    cert = certification(svc, certification_id)
    if cert.status not in BADGE_KEPT or cert.standing["certified_on"] != period_start.isoformat():
        return None
    return recipient_of(svc, cert)


def names_member(
    svc: Services, certification_id: str, badge: CredlyBadge, connection: Connection
) -> bool:
    """Whether `badge` names the certification's member as their details now say, e-mail and
    expiry included (read in `connection`'s transaction)."""
    return says(badge, recipient_of(svc, certification(svc, certification_id, connection)))


def named_otherwise(
    svc: Services,
    certification_id: str,
    period_start: date,
    badge: CredlyBadge,
    connection: Connection,
) -> bool:
    """Whether `badge`, live for the certification's current period (`period_start`) while its
    status keeps a badge, names the member (or expires) otherwise than their details now say;
    its e-mail address aside, which an accepted badge's earner owns."""
    cert = certification(svc, certification_id, connection)
    if cert.status not in BADGE_KEPT or cert.standing["certified_on"] != period_start.isoformat():
        return False
    try:
        return not recipient_of(svc, cert).names_as(badge)
    except PermanentError:  # no badge template configured: no replace job could send one
        return False


def says(badge: CredlyBadge, recipient: BadgeRequest) -> bool:
    """Whether `badge` names the member as `recipient` would, e-mail and expiry included (a
    badge issued by hand keeps its own issue day)."""
    same_email = (badge.recipient_email or "").casefold() == recipient.recipient_email.casefold()
    return same_email and recipient.names_as(badge)
