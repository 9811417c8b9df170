"""Standing of a certification on a day: a pure function of its recorded history (docs/rules.md)."""

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

from . import ids
from .events import (
    EMPLOYMENT,
    EVENT_TYPES,
    FAILED,
    METHOD_CCP,
    METHOD_EXAM,
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    Member,
    MemberUpdated,
    Recertified,
    Revoked,
    chronological,
)
from .periods import (
    ONE_DAY,
    add_years,
    cycle_end,
    cycle_index,
    cycle_start,
    first_membership_year,
    month_end,
    month_end_after,
)
from .points import ZERO, json_number, plain
from .policy import CredentialPolicy, Policy

ACTIVE = "active"
INACTIVE = "inactive"
LAPSED = "lapsed"
REVOKED = "revoked"

_points = attrgetter("points")
_completed_on = attrgetter("completed_on")
_paid_on = attrgetter("paid_on")


class NotCertified(ValueError):
    """No certification.granted counts on the day asked for."""


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule that holds on the day, in plain words."""

    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Fees:
    """Renewal fees: covered through `paid_through`; the next fee is due in `next_due` (YYYY-MM)."""

    paid_through: date
    next_due: str
    unpaid_years: int


@dataclass(frozen=True, slots=True)
class Ccp:
    """The CCP cycle of the day and its points; no cycle, hence no points (None), when CCP is not
    required."""

    required: bool
    cycle_start: date | None
    cycle_end: date | None
    points_required: Decimal | None
    points_earned: Decimal | None
    points_by_category: dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class Recertification:
    """Whether the member must recertify, and by which methods."""

    required: bool
    methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a certification stands on `as_of`, and the next day that would change it."""

    credential: str
    member: Member
    certified_on: date
    as_of: date
    status: str
    reasons: tuple[Reason, ...]
    fees: Fees
    ccp: Ccp
    recertification: Recertification
    lapsed_on: date | None
    revoked_on: date | None
    next_change_on: date | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready standing of `GET /v1/certifications/{id}` (without the API's own keys)."""
        member, fees, ccp = self.member, self.fees, self.ccp
        return {
            "credential": self.credential,
            "member": {
                "member_id": member.member_id,
                "first_name": member.first_name,
                "last_name": member.last_name,
                "email": member.email,
            },
            "certified_on": self.certified_on.isoformat(),
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "reasons": [{"rule": r.rule, "message": r.message} for r in self.reasons],
            "fees": {
                "paid_through": fees.paid_through.isoformat(),
                "next_due": fees.next_due,
                "unpaid_years": fees.unpaid_years,
            },
            "ccp": {
                "required": ccp.required,
                "cycle_start": _iso(ccp.cycle_start),
                "cycle_end": _iso(ccp.cycle_end),
                "points_required": _number(ccp.points_required),
                "points_earned": _number(ccp.points_earned),
                "points_by_category": {
                    category: json_number(points)
                    for category, points in ccp.points_by_category.items()
                },
            },
            "recertification": {
                "required": self.recertification.required,
                "methods": list(self.recertification.methods),
            },
            "lapsed_on": _iso(self.lapsed_on),
            "next_change_on": _iso(self.next_change_on),
        }


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _number(points: Decimal | None) -> int | float | None:
    return None if points is None else json_number(points)


def evaluate(
    history: Iterable[Event], as_of: date, policy: Policy, *, forecast: bool = True
) -> Standing:
    """The standing on `as_of` from the events that count then (own date on or before `as_of`).

    With `forecast=False`, for a caller that does not read `next_change_on`, it is None when
    events dated after `as_of` are recorded, instead of assessing the days they may change.
    Raises NotCertified when no certification.granted counts on `as_of`.
    """
    events = _History(history, policy)
    standing, later_events = _assess(events, as_of, policy)
    if later_events:
        next_change = _next_change(events, standing, policy) if forecast else None
        standing = replace(standing, next_change_on=next_change)
    return standing


class _History:
    """The events of one certification, grouped by kind and put in order once."""

    __slots__ = (
        "activities",
        "activity_days",
        "audits",
        "employed",
        "fees",
        "grants",
        "recerts",
        "records",
        "revocations",
        "updates",
    )

    def __init__(self, events: Iterable[Event], policy: Policy) -> None:
        groups: dict[type, list[Any]] = {cls: [] for cls in EVENT_TYPES.values()}
        add = {cls: group.append for cls, group in groups.items()}
        try:
            for event in events:
                add[type(event)](event)
        except KeyError as exc:
            raise TypeError(f"not a certification event: {exc.args[0]!r}") from None
        self.grants: list[Granted] = sorted(groups[Granted], key=chronological)
        self.revocations: list[Revoked] = sorted(groups[Revoked], key=chronological)
        if self.revocations:
            # CERT-REVOKED; decision: a revocation comes first on its day, and nothing dated on
            # or after it counts but member updates, whichever arrived first (docs/rules.md)
            revoked_on = self.revocations[0].revoked_on
            for kind in (FeePaid, CcpActivity, AuditCompleted, Recertified):
                groups[kind] = [e for e in groups[kind] if e.effective_on < revoked_on]
        self.fees: list[FeePaid] = sorted(groups[FeePaid], key=_paid_on)
        #: Every record of a CCP activity, in `chronological` order.
        self.records: list[CcpActivity] = sorted(groups[CcpActivity], key=chronological)
        self._count_once(self.records)
        self.audits: list[AuditCompleted] = groups[AuditCompleted]
        self.recerts: list[Recertified] = sorted(groups[Recertified], key=chronological)
        self.updates: list[MemberUpdated] = sorted(groups[MemberUpdated], key=chronological)
        if self.recerts and self.grants:
            self._leave_out_lapses(policy)

    def _count_once(self, records: list[CcpActivity]) -> None:
        """The activities that count, from `records`: an activity recorded twice (an accepted
        record and a kept one) counts once, as its earliest record."""
        seen: set[str] = set()
        self.activities: list[CcpActivity] = []
        for activity in records:
            if activity.activity_id not in seen:
                seen.add(activity.activity_id)
                self.activities.append(activity)
        self.activity_days: list[date] = list(map(_completed_on, self.activities))
        self.employed = any(a.category == EMPLOYMENT for a in self.activities)

    def _leave_out_lapses(self, policy: Policy) -> None:
        """Leave out the activities dated in a lapse that a recertification ended (from the lapse
        to the day before the recertification, refused CERT-LAPSED and kept): they count in no
        period, and left in, as an activity's earliest record, one would hide a later record of
        it that counts (accepted, as a refused record is no duplicate). A lapse comes before the
        days it leaves out, so leaving them out moves no lapse; the next period's lapse is found
        without them."""
        grant = self.grants[0]
        credential = policy.credentials.get(grant.credential)
        if credential is None:
            return
        for recert, lapse in _counted_recertifications(self, grant, date.max, credential, policy):
            kept = [a for a in self.records if not lapse <= a.completed_on < recert.completed_on]
            if len(kept) < len(self.records):
                self.records = kept
                self._count_once(kept)

    def any_after(self, day: date) -> bool:
        """Whether an event of the ordered kinds (fees too) is dated after `day`."""
        return any(
            group and group[-1].effective_on > day
            for group in (self.grants, self.fees, self.recerts, self.revocations, self.updates)
        )

    def days_after(self, day: date) -> list[date]:
        """The distinct event dates after `day`, earliest first."""
        groups = (
            self.grants,
            self.fees,
            self.activities,
            self.audits,
            self.recerts,
            self.revocations,
            self.updates,
        )
        return sorted({e.effective_on for group in groups for e in group if e.effective_on > day})


def _employed_inside(activities: list[CcpActivity], first: date, last: date) -> list[CcpActivity]:
    """CCP-EMPLOYMENT-2021: the activities of the cycle from `first` to `last` that count in it,
    employment only for a period inside it (the cycle that the whole history gives the activity,
    which may not be the one it was checked against on arrival)."""
    return [
        a
        for a in activities
        if a.category != EMPLOYMENT
        or (
            a.employment_start is not None
            and a.employment_end is not None
            and first <= a.employment_start
            and a.employment_end <= last
        )
    ]


def _assess(events: _History, as_of: date, policy: Policy) -> tuple[Standing, bool]:
    """The standing on `as_of`, forecasting from the events up to then; and whether later-dated
    events exist (then the forecast `next_change_on` still has to account for them)."""
    if not events.grants or events.grants[0].certified_on > as_of:
        raise NotCertified(f"no certification granted on or before {as_of}")
    grant = events.grants[0]
    credential = policy.credentials.get(grant.credential)
    if credential is None:
        # Only when the operator removed a credential in use (validate() rejects unknown ones).
        raise ValueError(f"credential {grant.credential} is not in the policy table")
    revocation = events.revocations[0] if events.revocations else None
    if revocation is not None and revocation.revoked_on > as_of:
        revocation = None
    recert = _counted_recertification(events, grant, as_of, credential, policy)
    period = _period(events, grant, recert, as_of, credential, policy)
    lapsed = period.lapse <= as_of
    at = period.lapse if lapsed else as_of  # decision: a lapse freezes the rules' view on its day
    methods: tuple[str, ...] = ()
    if revocation is not None:  # decision: a revocation is the only reason left, for good
        status = REVOKED
        reasons: tuple[Reason, ...] = (
            Reason(
                ids.CERT_REVOKED,
                f"the certification was revoked on {revocation.revoked_on}: {revocation.reason}",
            ),
        )
        next_change = None
    elif lapsed:
        status = LAPSED
        reasons = period.reasons(at)
        exam_only_on = add_years(period.lapse, policy.exam_only_years)
        methods = (METHOD_EXAM,) if as_of >= exam_only_on else (METHOD_CCP, METHOD_EXAM)
        next_change = exam_only_on if exam_only_on > as_of else None
    else:
        reasons = period.reasons(at)
        status = INACTIVE if reasons else ACTIVE
        next_change = period.next_change(as_of)
    standing = Standing(
        credential=grant.credential,
        member=_member_on(grant, events.updates, as_of),
        certified_on=period.start,
        as_of=as_of,
        status=status,
        reasons=reasons,
        fees=period.fees(as_of),
        ccp=period.ccp(at, lapsed),
        recertification=Recertification(required=status == LAPSED, methods=methods),
        lapsed_on=period.lapse if status == LAPSED else None,
        revoked_on=None if revocation is None else revocation.revoked_on,
        next_change_on=next_change,
    )
    return standing, period.later_events or events.any_after(as_of)


def _period(
    events: _History,
    grant: Granted,
    recert: Recertified | None,
    as_of: date,
    credential: CredentialPolicy,
    policy: Policy,
) -> "_Period":
    """The certification period that `recert` (None: the grant) started, as seen on `as_of`."""
    # RECERT-RESET; decision: what is dated on the recertification day belongs to the new period.
    start = grant.certified_on if recert is None else recert.completed_on
    # CCP-GRANDFATHERED: certified before the cutoff and never recertified.
    ccp_required = recert is not None or grant.certified_on >= policy.grandfather_cutoff
    return _Period(events, start, as_of, credential, ccp_required, policy, first=recert is None)


def _counted_recertification(
    events: _History, grant: Granted, as_of: date, credential: CredentialPolicy, policy: Policy
) -> Recertified | None:
    """The latest recertification counting on `as_of`, the recorded ones judged in date order:
    none dated before the grant or on or after a revocation counts, and one counts only when the
    period before it had lapsed by its day (RECERT-NOT-LAPSED), by exam after 10 years of lapse
    (RECERT-EXAM-ONLY), an exam passed on or after the lapse (RECERT-EXAM-RESULT). Those the
    intake accepted pass; a recertification refused for these alone is kept, and counts once the
    history shows it."""
    counted = [r for r, _ in _counted_recertifications(events, grant, as_of, credential, policy)]
    return counted[-1] if counted else None


def _counted_recertifications(
    events: _History, grant: Granted, as_of: date, credential: CredentialPolicy, policy: Policy
) -> Iterator[tuple[Recertified, date]]:
    """The recertifications counting on `as_of` (see `_counted_recertification`), in date order,
    each with the day the period before it lapsed."""
    current = None
    # CERT-REVOKED: nothing dated on or after a revocation recertifies (as the intake refuses it)
    until = min(as_of, events.revocations[0].revoked_on - ONE_DAY) if events.revocations else as_of
    for recert in events.recerts:
        done = recert.completed_on
        if done > until:
            break
        start = grant.certified_on if current is None else current.completed_on
        if done < start:
            continue
        lapse = _period(events, grant, current, done, credential, policy).lapse
        if lapse > done:
            continue
        if recert.method == METHOD_EXAM:
            passed = recert.exam_passed_on
            if passed is None or passed < lapse or passed > done:
                continue
        elif done >= add_years(lapse, policy.exam_only_years):
            continue
        current = recert
        yield recert, lapse


def period_start(history: Iterable[Event], policy: Policy) -> date | None:
    """The first day of the certification's latest period (its grant's, or that of the latest
    recertification that counts); None without a grant."""
    events = _History(history, policy)
    if not events.grants:
        return None
    grant = events.grants[0]
    credential = policy.credentials.get(grant.credential)
    if credential is None:
        return grant.certified_on
    recert = _counted_recertification(events, grant, date.max, credential, policy)
    return grant.certified_on if recert is None else recert.completed_on


def _member_on(grant: Granted, updates: list[MemberUpdated], as_of: date) -> Member:
    """The grant's member block overlaid by the updates counting on `as_of` (`chronological`
    order: by `occurred_at`, then `event_id`; the later one wins). An update that occurred before
    the grant's `occurred_at` changes nothing: the grant's block is the newer news; one that
    occurred at the same moment applies over it."""
    member = grant.member
    for update in updates:
        if update.effective_on > as_of:
            break
        if update.occurred_at < grant.occurred_at:
            continue
        member = Member(
            member_id=member.member_id,
            first_name=member.first_name if update.first_name is None else update.first_name,
            last_name=member.last_name if update.last_name is None else update.last_name,
            email=member.email if update.email is None else update.email,
        )
    return member


def _earned(activities: list[CcpActivity], caps: dict[str, Decimal]) -> Decimal:
    """CCP-POINTS: points that count in one cycle, each category held to its cap if it has one."""
    if not caps:
        return sum(map(_points, activities), ZERO)
    return sum(
        (
            min(total, caps[category]) if category in caps else total
            for category, total in _category_totals(activities).items()
        ),
        ZERO,
    )


def _category_totals(activities: list[CcpActivity]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for activity in activities:
        totals[activity.category] = totals.get(activity.category, ZERO) + activity.points
    return totals


class _Period:
    """One certification period from `start` as seen on `as_of`: fee coverage, CCP cycles, the
    failed audit, and the day it lapses (a forecast when after `as_of`)."""

    __slots__ = (
        "ccp_lapse",
        "ccp_required",
        "credential",
        "cycle_activities",
        "cycle_ends",
        "earned",
        "failed_audit",
        "fee_lapse",
        "first_short",
        "lapse",
        "later_events",
        "next_year",
        "paid_through",
        "paid_years",
        "policy",
        "start",
    )

    def __init__(
        self,
        events: _History,
        start: date,
        as_of: date,
        credential: CredentialPolicy,
        ccp_required: bool,
        policy: Policy,
        *,
        first: bool,
    ) -> None:
        self.start = start
        self.policy = policy
        self.credential = credential
        self.ccp_required = ccp_required
        self._count_activities(events, as_of)
        self._find_failed_audit(events.audits, as_of, first)
        audit_lapse = None if self.failed_audit is None else self.failed_audit.audited_on
        limit = as_of  # CERT-LAPSED: a payment dated on or after a lapse does not count
        for lapse in (self.ccp_lapse, audit_lapse):
            if lapse is not None and lapse <= limit:
                limit = lapse - ONE_DAY
        self._run_fees(events.fees, limit)
        self.lapse = min(d for d in (self.fee_lapse, self.ccp_lapse, audit_lapse) if d is not None)

    def _count_activities(self, events: _History, as_of: date) -> None:
        """CCP-CYCLE, CCP-POINTS: cut the activities (in date order) into cycles; find the first
        short cycle."""
        activities, days = events.activities, events.activity_days
        start, years = self.start, self.policy.cycle_years
        last = cycle_index(start, as_of, years)
        ends = [cycle_end(start, k, years) for k in range(last + 1)]
        first, counted = bisect_left(days, start), bisect_right(days, as_of)
        self.later_events = counted < len(days)
        groups = []
        begin = start
        for end in ends:
            cut = bisect_right(days, end, first, counted)
            group = activities[first:cut]
            groups.append(_employed_inside(group, begin, end) if events.employed else group)
            first, begin = cut, end + ONE_DAY
        self.cycle_ends = ends
        self.cycle_activities = groups
        caps = self.credential.category_caps
        self.earned = [_earned(group, caps) for group in groups]
        required = self.credential.points_per_cycle
        self.first_short = self.ccp_lapse = None
        if self.ccp_required and required > 0:
            # With no further event, the cycle after the last one holds no points: it ends short.
            shorts = (k for k, points in enumerate(self.earned) if points < required)
            self.first_short = next(shorts, last + 1)
            self.ccp_lapse = (
                month_end_after(self._end(self.first_short), self.policy.ccp_lapse_years) + ONE_DAY
            )

    def _find_failed_audit(self, audits: list[AuditCompleted], as_of: date, first: bool) -> None:
        """AUDIT-FAILED: the earliest failed audit of this period. After a recertification, an
        audit of a cycle that began before it (even one dated on or after the recertification
        day), or dated on the recertification day (a cycle of the period before that began that
        day), was undone by it."""
        failed = None
        for audit in audits:
            if audit.audited_on > as_of:
                self.later_events = True
            elif (
                audit.result == FAILED
                and audit.audited_on >= self.start
                and (first or (audit.cycle_start >= self.start and audit.audited_on > self.start))
                and (failed is None or chronological(audit) < chronological(failed))
            ):
                failed = audit
        self.failed_audit = failed

    def _run_fees(self, fees: list[FeePaid], limit: date) -> None:
        """FEE-DUE: the unbroken run of covered years from the start; FEE-LAPSED: the lapse that
        ends it, after which no payment counts (fees are in payment-date order)."""
        start, lapse_years = self.start, self.policy.fee_lapse_years
        next_year = first_membership_year(start)
        paid: set[int] = set()
        for fee in fees:
            day = fee.paid_on
            if day < start:
                continue
            if day > limit:
                break
            # The grace after paid_through ends in year next_year + lapse_years: only a payment
            # dated that year or later can come after it.
            if day.year >= next_year + lapse_years and day > self._fee_grace_end(next_year):
                break
            paid.add(fee.membership_year)
            while next_year in paid:
                next_year += 1
        self.next_year = next_year
        self.paid_years = paid
        self.paid_through = month_end(next_year, start.month)
        self.fee_lapse = self._fee_grace_end(next_year) + ONE_DAY

    def _fee_grace_end(self, unpaid_year: int) -> date:
        """Last day before FEE-LAPSED when `unpaid_year` is the first unpaid membership year."""
        return month_end(unpaid_year + self.policy.fee_lapse_years, self.start.month)

    def _end(self, cycle: int) -> date:
        if cycle < len(self.cycle_ends):
            return self.cycle_ends[cycle]
        return cycle_end(self.start, cycle, self.policy.cycle_years)

    def _cycle_words(self, cycle: int) -> tuple[str, str]:
        start = cycle_start(self.start, cycle, self.policy.cycle_years)
        required = plain(self.credential.points_per_cycle)
        points = f"{plain(self.earned[cycle])} of {required} points"
        return f"CCP cycle {start} to {self._end(cycle)}", points

    def reasons(self, at: date) -> tuple[Reason, ...]:
        """The rules that hold on `at`: lapse reasons first, then the inactive ones."""
        policy = self.policy
        found = []
        if self.fee_lapse <= at:
            found.append(
                Reason(
                    ids.FEE_LAPSED,
                    f"renewal fees are paid through {self.paid_through} and went unpaid "
                    f"for more than {policy.fee_lapse_years} years",
                )
            )
        if self.ccp_lapse is not None and self.ccp_lapse <= at:
            cycle, points = self._cycle_words(self.first_short)
            found.append(
                Reason(
                    ids.CCP_LAPSED,
                    f"{cycle} is still short {policy.ccp_lapse_years} years after it ended: "
                    f"{points}",
                )
            )
        if self.failed_audit is not None and self.failed_audit.audited_on <= at:
            audit = self.failed_audit
            found.append(
                Reason(
                    ids.AUDIT_FAILED,
                    f"the CCP audit of {audit.audited_on} (cycle from {audit.cycle_start}) failed",
                )
            )
        if self.paid_through < at < self.fee_lapse:
            found.append(
                Reason(
                    ids.FEE_OVERDUE,
                    f"the renewal fee for membership year {self.next_year} was due by "
                    f"{self.paid_through} and is unpaid",
                )
            )
        if self.first_short is not None:
            required = self.credential.points_per_cycle
            for cycle in range(self.first_short, cycle_index(self.start, at, policy.cycle_years)):
                grace_end = month_end_after(self.cycle_ends[cycle], policy.ccp_lapse_years)
                if self.earned[cycle] < required and at <= grace_end:
                    words, points = self._cycle_words(cycle)
                    found.append(Reason(ids.CCP_SHORT, f"{words} ended with {points}"))
        return tuple(found)

    def next_change(self, as_of: date) -> date:
        """The first day after `as_of` (not lapsed) whose reasons differ, with no new event."""
        days = [self.lapse]
        if self.paid_through >= as_of:
            days.append(self.paid_through + ONE_DAY)
        if self.first_short is not None:
            current = len(self.cycle_ends) - 1
            if self.first_short >= current:
                days.append(self._end(self.first_short) + ONE_DAY)
            elif self.earned[current] < self.credential.points_per_cycle:
                # a later cycle that ends short before the lapse adds its CCP-SHORT reason
                days.append(self._end(current) + ONE_DAY)
        return min(days)

    def fees(self, at: date) -> Fees:
        """Fee coverage on `at`; unpaid years are those whose due month ended before `at`."""
        month = self.start.month
        last_due_year = at.year if month < at.month else at.year - 1
        unpaid = sum(
            1 for year in range(self.next_year, last_due_year + 1) if year not in self.paid_years
        )
        return Fees(
            paid_through=self.paid_through,
            next_due=f"{self.paid_through.year:04d}-{self.paid_through.month:02d}",
            unpaid_years=unpaid,
        )

    def ccp(self, at: date, lapsed: bool) -> Ccp:
        """The cycle holding `at` with its points (only those dated before a lapse on `at`)."""
        if not self.ccp_required:
            return Ccp(False, None, None, None, None, {})  # CCP-GRANDFATHERED: no cycle
        years = self.policy.cycle_years
        cycle = cycle_index(self.start, at, years)
        activities = self.cycle_activities[cycle]
        if lapsed:
            activities = [a for a in activities if a.completed_on < at]
        caps = self.credential.category_caps
        totals = _category_totals(activities)
        ordered = [c for c in self.policy.categories if c in totals]
        ordered += sorted(set(totals) - set(ordered))
        return Ccp(
            required=True,
            cycle_start=cycle_start(self.start, cycle, years),
            cycle_end=self.cycle_ends[cycle],
            points_required=self.credential.points_per_cycle,
            points_earned=_earned(activities, caps),
            # decision: the points that count (capped), so that they add up to points_earned
            points_by_category={c: min(totals[c], caps.get(c, totals[c])) for c in ordered},
        )


def _key(standing: Standing) -> tuple[Any, ...]:
    """What a change of standing means for the sweep: status, reasons, methods, public fields."""
    return (
        standing.status,
        standing.reasons,
        standing.recertification.methods,
        standing.certified_on,
        standing.member,
        standing.fees.paid_through,
    )


def _next_change(events: _History, standing: Standing, policy: Policy) -> date | None:
    """`next_change_on` when events dated after `standing.as_of` are recorded: each such date may
    change the standing, or only move the forecast."""
    forecast = standing.next_change_on
    key = _key(standing)
    for day in events.days_after(standing.as_of):
        if forecast is not None and forecast < day:
            break
        later, _ = _assess(events, day, policy)
        if _key(later) != key:
            return day
        forecast = later.next_change_on
    return forecast
