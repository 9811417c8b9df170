"""Properties of the rules over histories built by accepting generated events through validate()."""

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules import (
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    MemberUpdated,
    NotCertified,
    Recertified,
    Revoked,
    Standing,
    evaluate,
    kept,
    validate,
)
from gateway.rules.periods import cycle_index, cycle_start
from tests.support.rules_factories import CRITERIA, MEMBER, NOW, POLICY, noon

SETTINGS = settings(max_examples=150, deadline=None)
SPAN = timedelta(days=25 * 366)  # how far after the grant generated events may be dated
DAY = timedelta(days=1)
POINTS = [Decimal(p) for p in ("0.5", "2.5", "10", "10", "15", "30", "1.13", "9.04")]


def view(standing: Standing) -> tuple:
    """What next_change_on promises stays the same until that day."""
    return (
        standing.status,
        standing.reasons,
        standing.recertification.methods,
        standing.certified_on,
        standing.member,
        standing.fees.paid_through,
    )


@st.composite
def candidates(draw, index: int, history: list[Event], clock: date) -> Event:
    """Any event a sender might send around `clock` (or, now and then, on any day): often
    plausible, sometimes late, sometimes against the rules."""
    granted_on = history[0].effective_on
    if draw(st.integers(0, 9)) < 8:
        day = clock - timedelta(days=draw(st.sampled_from([0, 0, 0, 20, 200, 500])))
    else:
        day = draw(st.dates(granted_on - timedelta(days=30), granted_on + SPAN))
    roll = draw(st.integers(0, 99))
    year = day.year
    if roll < 25:  # the fee that is due next, paid around its due date
        due = evaluate(history, max(day, granted_on), POLICY).fees.paid_through
        day, year = max(granted_on, due - timedelta(days=draw(st.integers(-60, 60)))), due.year
    delay = draw(st.sampled_from([0, 0, 0, 1, 40, 400]))
    envelope = (f"e{index}", noon(day) + timedelta(days=delay))
    if roll < 40:
        return FeePaid(*envelope, year + draw(st.sampled_from([0, 0, 0, -1, 1])), day)
    if roll < 75:
        category = draw(st.sampled_from(POLICY.categories))
        start = day - timedelta(days=draw(st.integers(0, 1200)))
        return CcpActivity(
            *envelope,
            f"A{draw(st.integers(0, 60))}",
            category,
            day,
            draw(st.sampled_from(POINTS)),
            *((start, day) if category == "employment" else (None, None)),
        )
    if roll < 82:
        result = draw(st.sampled_from(["passed", "passed", "passed", "passed", "failed"]))
        return AuditCompleted(*envelope, result, day, day - timedelta(days=400))
    if roll < 94:
        method = draw(st.sampled_from(["exam", "ccp"]))
        return Recertified(
            *envelope,
            method,
            day,
            f"APP{index}",
            draw(st.sampled_from([CRITERIA, CRITERIA, "EC-1999"])),
            exam_passed_on=day - timedelta(days=draw(st.integers(0, 400))),
            ccp_points=Decimal(draw(st.sampled_from([20, 30, 45]))),
            earliest_activity_on=day - timedelta(days=draw(st.integers(0, 1200))),
        )
    if roll < 99:
        return MemberUpdated(*envelope, last_name=draw(st.sampled_from(["Byron", "King"])))
    return Revoked(*envelope, "misconduct", day)


@st.composite
def histories(draw) -> list[Event]:
    """A certification's accepted events, in the order they arrived (mostly as time passed)."""
    granted_on = draw(st.dates(date(2000, 1, 1), date(2020, 12, 31)))
    credential = draw(st.sampled_from(["RMA", "RPT", "MT"]))
    history: list[Event] = [Granted("e0", noon(granted_on), MEMBER, credential, granted_on)]
    clock = granted_on
    for index in range(1, draw(st.integers(0, 40)) + 1):
        clock += timedelta(days=draw(st.integers(0, 200)))
        event = draw(candidates(index, history, clock))
        if not validate(history, event, policy=POLICY, received_at=NOW):
            history.append(event)
    return history


def days_between(first: date, last: date, count: int) -> list[date]:
    step = max(1, (last - first).days // count)
    return [first + timedelta(days=k * step) for k in range(count + 1)]


@SETTINGS
@given(histories(), st.data())
def test_property_any_permutation_gives_the_same_standing(history: list[Event], data):
    granted_on = history[0].effective_on
    as_of = data.draw(st.dates(granted_on, granted_on + SPAN + SPAN))
    shuffled = data.draw(st.permutations(history))
    assert evaluate(shuffled, as_of, POLICY) == evaluate(history, as_of, POLICY)


@SETTINGS
@given(histories(), st.lists(st.integers(-400, 40 * 366), min_size=1, max_size=12))
def test_property_evaluate_never_raises_on_accepted_history(history: list[Event], offsets):
    granted_on = history[0].effective_on
    for offset in offsets:
        as_of = granted_on + timedelta(days=offset)
        if as_of < granted_on:
            with pytest.raises(NotCertified):
                evaluate(history, as_of, POLICY)
        else:
            json.dumps(evaluate(history, as_of, POLICY).to_dict())


@SETTINGS
@given(histories())
def test_property_lapsed_never_becomes_active_without_recertification(history: list[Event]):
    granted_on = history[0].effective_on
    recertified = [e.completed_on for e in history if isinstance(e, Recertified)]
    lapsed_on = revoked_on = None
    for day in days_between(granted_on, granted_on + SPAN + SPAN, 150):
        status = evaluate(history, day, POLICY).status
        if revoked_on is not None:
            assert status == "revoked"
        if lapsed_on is not None and not any(lapsed_on < r <= day for r in recertified):
            assert status in ("lapsed", "revoked"), (lapsed_on, day)
        if status == "lapsed":
            lapsed_on = day
        if status == "revoked":
            revoked_on = day


@SETTINGS
@given(histories(), st.data())
def test_property_next_change_on_is_the_first_day_the_standing_changes(history, data):
    granted_on = history[0].effective_on
    as_of = data.draw(st.dates(granted_on, granted_on + SPAN))
    standing = evaluate(history, as_of, POLICY)
    change = standing.next_change_on
    if change is None:
        for days in (1, 400, 4000, 20000):
            assert view(evaluate(history, as_of + timedelta(days=days), POLICY)) == view(standing)
        return
    assert change > as_of
    gap = (change - as_of).days
    between = {1, gap - 1} | set(data.draw(st.lists(st.integers(1, max(1, gap - 1)), max_size=8)))
    for days in sorted(d for d in between if 0 < d < gap):
        assert view(evaluate(history, as_of + timedelta(days=days), POLICY)) == view(standing)
    assert view(evaluate(history, change, POLICY)) != view(standing)


@SETTINGS
@given(histories(), st.data())
def test_property_without_the_forecast_only_a_next_change_on_due_to_later_events_is_left_out(
    history, data
):
    granted_on = history[0].effective_on
    as_of = data.draw(st.dates(granted_on, granted_on + SPAN))
    standing = evaluate(history, as_of, POLICY)
    without = evaluate(history, as_of, POLICY, forecast=False)
    if any(event.effective_on > as_of for event in history):
        assert without == replace(standing, next_change_on=None)
    else:
        assert without == standing


def recorded(arrivals: list[Event]) -> list[Event]:
    """The history the intake records of events arriving in this order: each event accepted, or
    refused but kept (CERT-LAPSED alone)."""
    history: list[Event] = []
    kept_ids: set[str] = set()
    for event in arrivals:
        violations = validate(history, event, policy=POLICY, received_at=NOW, kept_ids=kept_ids)
        if not violations or kept(violations):
            history.append(event)
        if violations and kept(violations):
            kept_ids.add(event.event_id)
    return history


@st.composite
def late_histories(draw) -> list[Event]:
    """A grant with years of fees, CCP activities, now and then an audit and a recertification,
    each year and activity once: what a backfill sends after the grant, in any order."""
    granted_on = draw(st.dates(date(2000, 1, 1), date(2016, 12, 31)))
    events: list[Event] = [Granted("e0", noon(granted_on), MEMBER, "RMA", granted_on)]
    for year in range(granted_on.year + 1, granted_on.year + 14):
        if draw(st.integers(0, 9)) < 8:  # a year paid around its due month, or not at all
            day = max(granted_on, date(year, granted_on.month, 1)) + timedelta(
                days=draw(st.integers(-200, 500))
            )
            events.append(FeePaid(f"e{len(events)}", noon(day), year, day))
    for _ in range(draw(st.integers(0, 14))):
        day = granted_on + timedelta(days=draw(st.integers(0, 14 * 366)))
        points = draw(st.sampled_from(POINTS))
        index = len(events)
        events.append(
            CcpActivity(f"e{index}", noon(day), f"A{index}", "professional_education", day, points)
        )
    if draw(st.booleans()):
        day = granted_on + timedelta(days=draw(st.integers(0, 14 * 366)))
        result = draw(st.sampled_from(["passed", "failed"]))
        events.append(AuditCompleted(f"e{len(events)}", noon(day), result, day, day))
    if draw(st.booleans()):  # a recertification, valid or not, alone on its day
        day = granted_on + timedelta(days=draw(st.integers(1, 14 * 366)))
        while any(e.effective_on == day for e in events):
            day += DAY
        method = draw(st.sampled_from(["exam", "ccp"]))
        passed = day - timedelta(days=draw(st.integers(0, 900)))
        events.append(
            Recertified(
                f"e{len(events)}",
                noon(day),
                method,
                day,
                "APP-1",
                CRITERIA,
                exam_passed_on=passed if method == "exam" else None,
                ccp_points=Decimal(30) if method == "ccp" else None,
                earliest_activity_on=day - timedelta(days=300) if method == "ccp" else None,
            )
        )
    if draw(st.integers(0, 2)) == 0:  # a revocation, which may arrive before events dated earlier
        day = granted_on + timedelta(days=draw(st.integers(0, 14 * 366)))
        events.append(Revoked(f"e{len(events)}", noon(day), "misconduct", day))
    return events


@SETTINGS
@given(late_histories(), st.data())
def test_property_the_standing_does_not_depend_on_arrival_order(events: list[Event], data):
    """Events refused on arrival only for what arrived before them (CERT-LAPSED, CERT-REVOKED of
    a later revocation, ...) are kept: whatever order they arrive in, the standing is the one of
    the events accepted in date order."""
    in_date_order: list[Event] = []
    for event in sorted(events, key=lambda e: e.effective_on):
        if not validate(in_date_order, event, policy=POLICY, received_at=NOW):
            in_date_order.append(event)
    arrivals = recorded([events[0], *data.draw(st.permutations(events[1:]))])  # granted first
    granted_on = events[0].effective_on
    for years in (1, 3, 5, 8, 12, 16, 20):
        as_of = granted_on + timedelta(days=365 * years)
        assert evaluate(arrivals, as_of, POLICY) == evaluate(in_date_order, as_of, POLICY)


KINDS = ("fee", "activity", "audit", "recertification", "revocation", "update")


@st.composite
def on_day(draw, kind: str, event_id: str, day: date, granted_on: date) -> Event:
    """An event of `kind` dated `day`, often valid, sometimes not."""
    envelope = (event_id, noon(day) + timedelta(hours=draw(st.sampled_from([0, 0, 1, 30]))))
    if kind == "fee":
        return FeePaid(*envelope, day.year + draw(st.sampled_from([-1, 0, 1])), day)
    if kind == "activity":
        return CcpActivity(
            *envelope, f"A-{event_id}", "formal_education", day, draw(st.sampled_from(POINTS))
        )
    if kind == "audit":  # of the grant period's cycle holding the day (or of one begun that day)
        first = (
            day
            if draw(st.booleans())
            else cycle_start(granted_on, cycle_index(granted_on, day, 3), 3)
        )
        result = draw(st.sampled_from(["passed", "failed"]))
        return AuditCompleted(*envelope, result, day, first)
    if kind == "recertification":
        method = draw(st.sampled_from(["exam", "ccp"]))
        return Recertified(
            *envelope,
            method,
            day,
            f"APP-{event_id}",
            CRITERIA,
            exam_passed_on=day - timedelta(days=draw(st.integers(0, 900)))
            if method == "exam"
            else None,
            ccp_points=Decimal(30) if method == "ccp" else None,
            earliest_activity_on=day - timedelta(days=300) if method == "ccp" else None,
        )
    if kind == "revocation":
        return Revoked(*envelope, draw(st.sampled_from(["misconduct", "fraud"])), day)
    return MemberUpdated(*envelope, last_name=draw(st.sampled_from(["Byron", "King"])))


@st.composite
def same_day_pairs(draw) -> tuple[list[Event], Event, Event]:
    """A certification's history (a grant, some years paid, some activities, now and then a
    failed audit), and two events of any kinds dated on one day after the grant."""
    granted_on = draw(st.dates(date(2000, 1, 1), date(2016, 12, 31)))
    history: list[Event] = [Granted("e0", noon(granted_on), MEMBER, "RMA", granted_on)]
    for year in range(granted_on.year + 1, granted_on.year + 1 + draw(st.integers(0, 9))):
        day = date(year, granted_on.month, 1)
        history.append(FeePaid(f"e{len(history)}", noon(day), year, day))
    for _ in range(draw(st.integers(0, 6))):
        day = granted_on + timedelta(days=draw(st.integers(0, 10 * 366)))
        index = len(history)
        history.append(
            CcpActivity(f"e{index}", noon(day), f"A{index}", "formal_education", day, Decimal(10))
        )
    if draw(st.integers(0, 3)) == 0:
        day = granted_on + timedelta(days=draw(st.integers(0, 10 * 366)))
        history.append(AuditCompleted(f"e{len(history)}", noon(day), "failed", day, granted_on))
    day = granted_on + timedelta(days=draw(st.integers(0, 14 * 366)))
    first = draw(on_day(draw(st.sampled_from(KINDS)), "p1", day, granted_on))
    second = draw(on_day(draw(st.sampled_from(KINDS)), "p2", day, granted_on))
    return sorted(history, key=lambda e: e.effective_on), first, second


@settings(max_examples=600, deadline=None)
@given(same_day_pairs())
def test_property_two_events_of_one_day_give_one_standing_whichever_arrives_first(pair):
    """docs/rules.md, *One day's events*: whatever their kinds, the standing is the same."""
    history, first, second = pair
    one, other = recorded([*history, first, second]), recorded([*history, second, first])
    day = first.effective_on
    for as_of in (day, day + DAY, day + timedelta(days=400), day + timedelta(days=4000)):
        assert evaluate(one, as_of, POLICY) == evaluate(other, as_of, POLICY), as_of
