"""Side effects a change of standing calls for: issue, replace, revoke a badge; sync the lookup."""

from dataclasses import dataclass
from typing import ClassVar

from . import kinds
from .standing import ACTIVE, INACTIVE, LAPSED, REVOKED, Standing

#: The standings whose period has its badge (issued, or kept while inactive).
BADGE_KEPT = (ACTIVE, INACTIVE)
_BADGE_REVOKED = (LAPSED, REVOKED)


@dataclass(frozen=True, slots=True)
class IssueBadge:
    """Issue the badge of the current period (a no-op when it already has a live one)."""

    kind: ClassVar[str] = kinds.ISSUE_BADGE


@dataclass(frozen=True, slots=True)
class ReplaceBadge:
    """Replace the live badge: the member's name or e-mail (or the badge's expiry) changed."""

    kind: ClassVar[str] = kinds.REPLACE_BADGE


@dataclass(frozen=True, slots=True)
class RevokeBadge:
    """Revoke the badge, giving the deciding rule."""

    kind: ClassVar[str] = kinds.REVOKE_BADGE
    reason_rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncVerification:
    """Write the public verification record again."""

    kind: ClassVar[str] = kinds.SYNC_VERIFICATION


Action = IssueBadge | ReplaceBadge | RevokeBadge | SyncVerification


def actions(
    before: Standing | None, after: Standing, *, badge_expires: bool = False
) -> list[Action]:
    """What the change from `before` (None: a new certification) to `after` calls for, in the
    order to run it: badge jobs first, the verification sync last; empty when nothing changed.
    A new certification already lapsed has no badge to revoke: none was issued for it."""
    result: list[Action] = []
    if _issues_badge(before, after) or (
        badge_expires and before is not None and _current_again(before, after)
    ):
        result.append(IssueBadge())
    if before is not None and _replaces_badge(before, after, badge_expires):
        result.append(ReplaceBadge())
    if (
        before is not None
        and after.status in _BADGE_REVOKED
        and before.status not in _BADGE_REVOKED
    ):
        deciding = after.reasons[0]
        result.append(RevokeBadge(reason_rule=deciding.rule, reason=deciding.message))
    if before is None or _public(before) != _public(after):
        result.append(SyncVerification())
    return result


def _issues_badge(before: Standing | None, after: Standing) -> bool:
    """A period's badge is issued on grant and on recertification, and kept while inactive
    (RECERT-RESET, the status table): so when a period begins in good or kept standing, and when
    a late payment cures a lapse (whose badge was revoked). A period also begins while the one
    before keeps its badge, when a late event makes a kept recertification count (or an
    accepted one stop counting): the issue job then makes that badge the new period's. Turning
    active from inactive keeps the badge it has."""
    if after.status not in BADGE_KEPT:
        return False
    if before is None or before.certified_on != after.certified_on:
        return True
    return before.status not in BADGE_KEPT


def _current_again(before: Standing, after: Standing) -> bool:
    """With BADGE_EXPIRES, whether a kept period's paid-through day, past before (its badge
    expired, or none was issued: it would have been expired on arrival), is not past any more:
    the badge is issued if it has none (a no-op otherwise; the replace renews one it has)."""
    return (
        after.status in BADGE_KEPT
        and before.certified_on == after.certified_on
        and before.fees.paid_through < before.as_of
        and after.fees.paid_through >= after.as_of
    )


def _replaces_badge(before: Standing, after: Standing, badge_expires: bool) -> bool:
    """The same period keeps its badge, whose earner details (or expiry = paid_through) changed."""
    if before.status not in BADGE_KEPT or after.status not in BADGE_KEPT:
        return False
    if before.certified_on != after.certified_on:
        return False
    old, new = before.member, after.member
    earner_changed = (old.first_name, old.last_name, old.email) != (
        new.first_name,
        new.last_name,
        new.email,
    )
    expiry_changed = badge_expires and before.fees.paid_through != after.fees.paid_through
    return earner_changed or expiry_changed


def _public(standing: Standing) -> tuple[object, ...]:
    """What the employer verification lookup shows."""
    return (
        standing.status,
        standing.member.first_name,
        standing.member.last_name,
        standing.credential,
        standing.certified_on,
        standing.fees.paid_through,
    )
