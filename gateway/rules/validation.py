"""Which rules of docs/rules.md a new event breaks, given its certification's recorded history."""

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime

from . import ids
from .events import (
    EMPLOYMENT,
    METHOD_CCP,
    METHOD_EXAM,
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    MemberUpdated,
    Recertified,
    Revoked,
    chronological,
)
from .periods import add_years, cycle_end, cycle_index, cycle_start, first_membership_year
from .points import plain
from .policy import Policy
from .standing import Standing, evaluate, period_start


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule the event breaks, in plain words with the values concerned."""

    rule: str
    message: str
    #: Broken only because of events dated after this one (a lapse, a recertification): the
    #: refused event is still `kept` in the history, where the standing sees it in date order.
    provisional: bool = False


def kept(violations: Sequence[Violation]) -> bool:
    """Whether an event refused for `violations` is kept in its certification's history: when
    each of them is `provisional`, which refusal depends only on the events that arrived before.

    A payment or activity refused CERT-LAPSED counts once events that arrive later show no lapse
    by its date; one dated in a period a recertification closed counts in that period (a standing
    ignores what is dated on or after a lapse, and what is dated before its period): as it would
    have counted had the events arrived in date order.
    """
    return bool(violations) and all(v.provisional for v in violations)


def validate(
    history: Sequence[Event],
    event: Event,
    *,
    policy: Policy,
    received_at: datetime,
    kept_ids: Collection[str] = (),
) -> list[Violation]:
    """The rules `event` breaks given the recorded `history`, the accepted and `kept` events
    (`kept_ids`: the latter's, which no event duplicates) (empty list: accept it).

    CERT-UNKNOWN is the caller's: without a certification.granted in `history`, any other event
    is not checked here. The same `event_id` replayed is the caller's too.
    """
    grant = min((e for e in history if isinstance(e, Granted)), key=chronological, default=None)
    if grant is None and not isinstance(event, Granted):
        return []
    if isinstance(event, MemberUpdated):
        return list(_future(event, policy, received_at))
    violations = list(_revoked(history, event))
    violations.extend(_future(event, policy, received_at))
    if isinstance(event, Granted):
        violations.extend(_check_grant(grant, event, policy))
    elif grant.credential not in policy.credentials:
        violations.append(
            Violation(
                ids.CREDENTIAL_UNKNOWN,
                f"credential {grant.credential} of this certification is not in the policy table",
            )
        )
    else:
        check = _CHECKS.get(type(event))
        if check is not None:
            violations.extend(check(_Context(history, grant, policy, kept_ids), event))
    return violations


def _revoked(history: Sequence[Event], event: Event) -> Iterator[Violation]:
    """CERT-REVOKED, named before what the event's own checks find. It depends only on arrival
    order (the event is kept) for an event dated before the revocation that counts, which the
    standing sees in date order as if it had arrived first, and for a revocation dated on or
    before it: the standing counts the first in date order."""
    revocations = [e for e in history if isinstance(e, Revoked)]
    if revocations:
        revoked_on = min(revocations, key=chronological).revoked_on
        if isinstance(event, Revoked):
            provisional = event.revoked_on <= revoked_on
        else:
            provisional = not isinstance(event, Granted) and event.effective_on < revoked_on
        yield Violation(
            ids.CERT_REVOKED,
            f"the certification was revoked on {revoked_on}; "
            "only member.updated is accepted after a revocation",
            provisional=provisional,
        )


class _Context:
    """The recorded history of a certification, with its current period start."""

    def __init__(
        self, history: Sequence[Event], grant: Granted, policy: Policy, kept_ids: Collection[str]
    ) -> None:
        self.history = history
        self.grant = grant
        self.policy = policy
        #: What a new event may duplicate: the accepted events (a kept one may never count; the
        #: standing counts one payment of a year, one record of an activity, the earliest).
        self.accepted = [e for e in history if e.event_id not in kept_ids] if kept_ids else history
        # decision: the current period is the one of the latest recertification that counts;
        # events dated before it belong to a closed period and are rejected (CCP-BEFORE-CYCLE,
        # FEE-YEAR-RANGE, RECERT-NOT-LAPSED).
        self.start = period_start(history, policy) or grant.certified_on

    def standing_on(self, day: date) -> Standing:
        """The standing on `day` of the recorded history (`lapsed_on` is set only while lapsed,
        not once revoked)."""
        return evaluate(self.history, day, self.policy, forecast=False)

    def lapsed_on(self, day: date) -> date | None:
        """The day the certification lapsed if it is lapsed on `day`, else None."""
        return self.standing_on(day).lapsed_on

    def cert_lapsed(self, day: date, what: str) -> Iterator[Violation]:
        """CERT-LAPSED: nothing dated on or after a lapse but a recertification."""
        lapsed_on = self.lapsed_on(day)
        if lapsed_on is not None:
            yield Violation(
                ids.CERT_LAPSED,
                f"the certification lapsed on {lapsed_on}: {what} dated {day} is not accepted "
                "before a recertification",
                provisional=True,
            )


def _future(event: Event, policy: Policy, received_at: datetime) -> Iterator[Violation]:
    """EVENT-FUTURE (and CCP-FUTURE's date, which `_check_activity` reports under its own id)."""
    if event.occurred_at > received_at + policy.future_tolerance:
        minutes = int(policy.future_tolerance.total_seconds() // 60)
        yield Violation(
            ids.EVENT_FUTURE,
            f"occurred_at {event.occurred_at.isoformat()} is more than {minutes} minutes ahead "
            f"of the server clock ({received_at.isoformat()})",
        )
    # decision: a date is after occurred_at when it is later than the day occurred_at falls on
    # in its own offset, the sender's calendar (01:00+05:00 on 2 June is 2 June, not 1 June).
    occurred_on = event.occurred_at.date()
    for field in fields(event):
        value = getattr(event, field.name)
        if type(value) is not date or value <= occurred_on:
            continue
        if isinstance(event, CcpActivity) and field.name == "completed_on":
            continue
        yield Violation(
            ids.EVENT_FUTURE, f"{field.name} {value} is after occurred_at ({occurred_on})"
        )


def _check_grant(grant: Granted | None, event: Granted, policy: Policy) -> Iterator[Violation]:
    if grant is not None and grant.event_id != event.event_id:
        yield Violation(
            ids.CERT_EXISTS,
            f"this certification was already granted on {grant.certified_on} "
            f"(event {grant.event_id})",
        )
    if event.credential not in policy.credentials:
        yield Violation(
            ids.CREDENTIAL_UNKNOWN,
            f"credential {event.credential} is not in the policy table "
            f"({', '.join(policy.credentials)})",
        )


def _check_fee(ctx: _Context, fee: FeePaid) -> Iterator[Violation]:
    year, paid_on = fee.membership_year, fee.paid_on
    first_year = first_membership_year(ctx.start)
    last_year = paid_on.year + ctx.policy.fee_years_ahead
    # Payable in the grant's period: a refusal that only a recertification's period makes is
    # provisional (the recertification may not count once the whole history is known).
    granted_on = ctx.grant.certified_on
    payable = paid_on >= granted_on and first_membership_year(granted_on) <= year <= last_year
    if paid_on < ctx.start:
        yield Violation(
            ids.FEE_YEAR_RANGE,
            f"paid on {paid_on}, before the current certification period began on {ctx.start}",
            provisional=payable,  # in a closed period
        )
    elif year < first_year:
        yield Violation(
            ids.FEE_YEAR_RANGE,
            f"membership year {year} is before the first payable year {first_year}",
            provisional=payable,
        )
    elif year > last_year:
        yield Violation(
            ids.FEE_YEAR_RANGE,
            f"membership year {year} is after {last_year}, the last year payable on {paid_on}",
        )
    for other in ctx.accepted:
        if (
            isinstance(other, FeePaid)
            and other.event_id != fee.event_id
            and other.membership_year == year
            and other.paid_on >= ctx.start  # decision: a year paid in a closed period is due again
        ):
            yield Violation(
                ids.FEE_DUPLICATE,
                f"membership year {year} is already paid (event {other.event_id}, "
                f"paid on {other.paid_on})",
                # Paid on another day, it counts where a recertification that arrives later
                # puts the two payments in two periods, or where it is the earlier one.
                provisional=other.paid_on != paid_on,
            )
            break
    if paid_on >= ctx.start:
        yield from ctx.cert_lapsed(paid_on, "a fee payment")


def _check_activity(ctx: _Context, activity: CcpActivity) -> Iterator[Violation]:
    done = activity.completed_on
    if done < ctx.start:
        yield Violation(
            ids.CCP_BEFORE_CYCLE,
            f"activity completed on {done}, before the current certification period "
            f"began on {ctx.start}",
            # in a closed period (employment is checked against its cycle in that period)
            provisional=done >= ctx.grant.certified_on,
        )
    occurred_on = activity.occurred_at.date()  # in its own offset, as EVENT-FUTURE reads it
    if done > occurred_on:
        yield Violation(
            ids.CCP_FUTURE, f"activity completed on {done}, after occurred_at ({occurred_on})"
        )
    if activity.category == EMPLOYMENT:
        yield from _check_employment(ctx, activity)
    for other in ctx.accepted:
        if (
            isinstance(other, CcpActivity)
            and other.event_id != activity.event_id
            and other.activity_id == activity.activity_id
        ):
            yield Violation(
                ids.CCP_DUPLICATE,
                f"activity {activity.activity_id} is already recorded (event {other.event_id})",
            )
            break
    if done >= ctx.start:
        yield from ctx.cert_lapsed(done, "a CCP activity")


def _check_employment(ctx: _Context, activity: CcpActivity) -> Iterator[Violation]:
    """CCP-EMPLOYMENT-2021: employment inside the activity's cycle, ending by the cutoff."""
    begin, end = activity.employment_start, activity.employment_end
    cutoff = ctx.policy.employment_cutoff
    if begin is None or end is None:
        yield Violation(
            ids.CCP_EMPLOYMENT_2021,
            "an employment activity needs employment_start and employment_end",
        )
        return
    if begin > end:
        yield Violation(
            ids.CCP_EMPLOYMENT_2021, f"employment_start {begin} is after employment_end {end}"
        )
        return
    if end > cutoff:
        yield Violation(
            ids.CCP_EMPLOYMENT_2021,
            f"employment ending {end} reaches past {cutoff}: later employment cannot be claimed",
        )
    # decision: "the cycle" is the one holding the activity's completed_on, in the period that
    # holds that day; a period without the CCP requirement (CCP-GRANDFATHERED) has no cycle.
    done = activity.completed_on
    if done < ctx.grant.certified_on:
        return
    on_day = ctx.standing_on(done)
    if on_day.ccp.required:
        start, years = on_day.certified_on, ctx.policy.cycle_years
        cycle = cycle_index(start, done, years)
        first, last = cycle_start(start, cycle, years), cycle_end(start, cycle, years)
        if begin < first or end > last:
            yield Violation(
                ids.CCP_EMPLOYMENT_2021,
                f"employment {begin} to {end} is not inside the CCP cycle {first} to {last}",
            )


def _check_recertification(ctx: _Context, recert: Recertified) -> Iterator[Violation]:
    done = recert.completed_on
    lapsed_on = None
    # Whether it recertifies depends on the lapse the history shows before it: these refusals
    # are provisional, the standing judging the recertification in date order.
    if done < ctx.start:
        yield Violation(
            ids.RECERT_NOT_LAPSED,
            f"completed on {done}, before the current certification period began on {ctx.start}",
            provisional=done >= ctx.grant.certified_on,
        )
    else:
        standing = ctx.standing_on(done)
        lapsed_on = standing.lapsed_on
        if lapsed_on is None:
            yield Violation(
                ids.RECERT_NOT_LAPSED,
                f"on {done} the certification is {standing.status}, not lapsed",
                provisional=True,
            )
        elif recert.method != METHOD_EXAM and done >= add_years(
            lapsed_on, ctx.policy.exam_only_years
        ):
            yield Violation(
                ids.RECERT_EXAM_ONLY,
                f"lapsed since {lapsed_on}, {ctx.policy.exam_only_years} years or more by {done}: "
                "only recertification by exam is accepted",
                provisional=True,
            )
    if recert.method == METHOD_EXAM:
        yield from _check_exam(recert, lapsed_on)
    elif recert.method == METHOD_CCP:
        yield from _check_ccp_recertification(ctx, recert)
    credential = ctx.policy.credentials[ctx.grant.credential]
    if recert.eligibility_criteria != credential.eligibility_criteria:
        yield Violation(
            ids.RECERT_ELIGIBILITY,
            f"judged under eligibility criteria {recert.eligibility_criteria}, but the current "
            f"criteria of {credential.code} are {credential.eligibility_criteria}",
        )


def _check_exam(recert: Recertified, lapsed_on: date | None) -> Iterator[Violation]:
    passed = recert.exam_passed_on
    if passed is None:
        yield Violation(ids.RECERT_EXAM_RESULT, "a recertification by exam needs exam_passed_on")
    elif passed > recert.completed_on:
        yield Violation(
            ids.RECERT_EXAM_RESULT,
            f"exam passed on {passed}, after the recertification completed on "
            f"{recert.completed_on}",
        )
    elif lapsed_on is not None and passed < lapsed_on:
        yield Violation(
            ids.RECERT_EXAM_RESULT,
            f"exam passed on {passed}, before the lapse on {lapsed_on}",
            provisional=True,
        )


def _check_ccp_recertification(ctx: _Context, recert: Recertified) -> Iterator[Violation]:
    required = ctx.policy.credentials[ctx.grant.credential].points_per_cycle
    if recert.ccp_points is None or recert.ccp_points < required:
        yield Violation(
            ids.RECERT_CCP_POINTS,
            f"a recertification by CCP needs {plain(required)} points, not "
            f"{'none' if recert.ccp_points is None else plain(recert.ccp_points)}",
        )
    window = ctx.policy.recert_ccp_window_years
    earliest = recert.earliest_activity_on
    if earliest is None:
        yield Violation(
            ids.RECERT_CCP_POINTS, "a recertification by CCP needs earliest_activity_on"
        )
    elif earliest > recert.completed_on:
        yield Violation(
            ids.RECERT_CCP_POINTS,
            f"earliest activity on {earliest} is after the recertification completed on "
            f"{recert.completed_on}",
        )
    elif earliest < add_years(recert.completed_on, -window):
        yield Violation(
            ids.RECERT_CCP_POINTS,
            f"earliest activity on {earliest} is more than {window} years before the "
            f"recertification completed on {recert.completed_on}",
        )


def _check_audit(ctx: _Context, audit: AuditCompleted) -> Iterator[Violation]:
    yield from _before_grant(ctx, audited_on=audit.audited_on, cycle_start=audit.cycle_start)


def _check_revocation(ctx: _Context, revocation: Revoked) -> Iterator[Violation]:
    yield from _before_grant(ctx, revoked_on=revocation.revoked_on)


def _before_grant(ctx: _Context, **days: date) -> Iterator[Violation]:
    """EVENT-BEFORE-GRANT: an audit or a revocation dated before the certification existed
    (payments, activities and recertifications have rules of their own for it)."""
    granted_on = ctx.grant.certified_on
    for name, day in days.items():
        if day < granted_on:
            yield Violation(
                ids.EVENT_BEFORE_GRANT,
                f"{name} {day} is before the certification was granted on {granted_on}",
            )


_CHECKS: dict[type, Callable[[_Context, Event], Iterator[Violation]]] = {
    FeePaid: _check_fee,
    CcpActivity: _check_activity,
    Recertified: _check_recertification,
    AuditCompleted: _check_audit,
    Revoked: _check_revocation,
}
