"""Certification-wide rules: CERT-LAPSED, CERT-REVOKED, CERT-UNKNOWN, CERT-EXISTS,
CREDENTIAL-UNKNOWN, EVENT-FUTURE."""

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.rules import NotCertified, evaluate, kept, validate
from tests.support.rules_factories import (
    NOW,
    POLICY,
    accepted,
    activity,
    audit,
    exam_recert,
    fee,
    granted,
    noon,
    revoked,
    rules_broken,
    standing,
    updated,
)

LAPSING = date(2005, 6, 3)  # grandfathered, never paid: lapsed on 2009-07-01
LAPSED_ON = date(2009, 7, 1)


def test_cert_lapsed_rejects_payment_dated_on_the_lapse():
    history = accepted(granted(LAPSING))
    assert rules_broken(history, fee(2009, LAPSED_ON)) == ["CERT-LAPSED"]


def test_cert_lapsed_accepts_late_payment_dated_before_the_lapse():
    history = accepted(granted(LAPSING))
    late = fee(2006, LAPSED_ON - timedelta(days=1), occurred_at=noon(date(2011, 1, 1)))
    assert rules_broken(history, late) == []
    assert standing([*history, late], LAPSED_ON).status == "inactive"


def test_cert_lapsed_rejects_activity_dated_after_the_lapse():
    history = accepted(granted(date(2015, 6, 3)), fee(2016, date(2016, 6, 1)))
    assert standing(history, date(2020, 7, 1)).status == "lapsed"
    assert rules_broken(history, activity(date(2020, 7, 1))) == ["CERT-LAPSED"]
    assert rules_broken(history, activity(date(2018, 1, 1))) == []


def test_cert_lapsed_message_names_the_lapse():
    history = accepted(granted(LAPSING))
    [violation] = validate(history, fee(2009, LAPSED_ON), policy=POLICY, received_at=NOW)
    assert violation.message == (
        "the certification lapsed on 2009-07-01: a fee payment dated 2009-07-01 is not accepted "
        "before a recertification"
    )


def test_cert_revoked_is_revoked_for_good():
    history = accepted(granted(date(2015, 6, 3)), revoked(date(2016, 2, 1), "fraud"))
    assert standing(history, date(2016, 1, 31)).status == "active"
    on_day = standing(history, date(2016, 2, 1))
    assert on_day.status == "revoked"
    assert [(r.rule, r.message) for r in on_day.reasons] == [
        ("CERT-REVOKED", "the certification was revoked on 2016-02-01: fraud")
    ]
    assert on_day.revoked_on == date(2016, 2, 1)
    assert on_day.next_change_on is None
    assert on_day.recertification.required is False


def test_cert_revoked_outranks_lapsed():
    history = accepted(granted(LAPSING), revoked(date(2012, 1, 1)))
    assert standing(history, date(2011, 12, 31)).status == "lapsed"
    revoked_standing = standing(history, date(2030, 1, 1))
    assert revoked_standing.status == "revoked"
    # A revocation is the only reason left: not the lapse, nor the unpaid fees of the day.
    assert [r.rule for r in revoked_standing.reasons] == ["CERT-REVOKED"]
    assert revoked_standing.lapsed_on is None


def test_cert_revoked_rejects_every_later_event_but_member_updated():
    """Whatever its date; one dated before the revocation is kept, as the standing counts it
    in date order (below)."""
    history = accepted(granted(LAPSING), revoked(date(2012, 1, 1)))
    for later in (
        fee(2012, date(2012, 1, 1)),
        activity(date(2012, 1, 1)),
        exam_recert(date(2012, 3, 1)),
        revoked(date(2013, 1, 1)),
        granted(LAPSING),
    ):
        violations = validate(history, later, policy=POLICY, received_at=NOW)
        assert violations[0].rule == "CERT-REVOKED", later
        assert not kept(violations), later
    for earlier in (fee(2006, date(2006, 1, 1)), activity(date(2011, 12, 31))):
        violations = validate(history, earlier, policy=POLICY, received_at=NOW)
        assert violations[0].rule == "CERT-REVOKED", earlier
        assert kept(violations), earlier
    assert rules_broken(history, updated(date(2013, 1, 1), email="new@example.org")) == []


def test_cert_revoked_an_event_dated_before_the_revocation_counts_whichever_arrived_first():
    """A payment that arrives after the revocation it precedes is refused and kept: the
    standing of a day before the revocation counts it as if it had arrived first."""
    grant = granted(date(2015, 6, 10))
    revocation = revoked(date(2017, 1, 1))
    payment = fee(2016, date(2016, 5, 1))
    in_date_order = accepted(grant, payment)
    assert validate(in_date_order, revocation, policy=POLICY, received_at=NOW) == []
    late = validate(accepted(grant, revocation), payment, policy=POLICY, received_at=NOW)
    assert [v.rule for v in late] == ["CERT-REVOKED"] and kept(late)
    history = [grant, revocation, payment]  # the kept payment is part of the history
    for day in (date(2016, 7, 1), date(2016, 12, 31), date(2017, 1, 1)):
        assert standing(history, day) == standing([grant, payment, revocation], day)
    assert standing(history, date(2016, 12, 31)) != standing(
        [grant, revocation], date(2016, 12, 31)
    )


def test_cert_revoked_a_revocation_dated_on_or_before_the_recorded_one_is_kept_and_counts():
    """The first revocation in date order counts, whichever arrived first (docs/rules.md)."""
    history = accepted(granted(date(2015, 6, 3)), revoked(date(2017, 1, 1), "fraud"))
    for earlier in (revoked(date(2016, 1, 1), "misconduct"), revoked(date(2017, 1, 1))):
        violations = validate(history, earlier, policy=POLICY, received_at=NOW)
        assert [(v.rule, v.provisional) for v in violations] == [("CERT-REVOKED", True)]
    earlier = revoked(date(2016, 1, 1), "misconduct")
    on_day = standing([*history, earlier], date(2016, 1, 1))
    assert (on_day.status, on_day.revoked_on) == ("revoked", date(2016, 1, 1))
    assert on_day == standing(accepted(granted(date(2015, 6, 3)), earlier), date(2016, 1, 1))


def test_cert_revoked_is_named_first_then_the_events_own_rules():
    history = accepted(granted(LAPSING), revoked(date(2012, 1, 1)))
    assert rules_broken(history, fee(2006, date(2006, 1, 1))) == ["CERT-REVOKED"]
    assert rules_broken(history, fee(2008, date(2006, 1, 1))) == ["CERT-REVOKED", "FEE-YEAR-RANGE"]
    assert rules_broken(history, granted(LAPSING, "XYZ")) == [
        "CERT-REVOKED",
        "CERT-EXISTS",
        "CREDENTIAL-UNKNOWN",
    ]
    ahead = fee(2006, date(2006, 1, 1), occurred_at=NOW + timedelta(hours=1))
    assert rules_broken(history, ahead) == ["CERT-REVOKED", "EVENT-FUTURE"]


def test_cert_revoked_with_the_checks_that_read_the_standing():
    """Dated while lapsed, before the revocation: CERT-LAPSED too (kept, as it would be had it
    arrived before the revocation); dated on or after it: no lapse is named, the certification
    being revoked then."""
    history = accepted(granted(LAPSING), revoked(date(2012, 1, 1)))
    while_lapsed = validate(history, activity(date(2011, 1, 1)), policy=POLICY, received_at=NOW)
    assert [(v.rule, v.provisional) for v in while_lapsed] == [
        ("CERT-REVOKED", True),
        ("CERT-LAPSED", True),
    ]
    assert kept(while_lapsed)
    assert rules_broken(history, activity(date(2012, 1, 1))) == ["CERT-REVOKED"]
    assert rules_broken(history, fee(2012, date(2012, 2, 1))) == ["CERT-REVOKED"]
    recert = validate(history, exam_recert(date(2012, 3, 1)), policy=POLICY, received_at=NOW)
    assert [(v.rule, v.message) for v in recert] == [
        (
            "CERT-REVOKED",
            "the certification was revoked on 2012-01-01; "
            "only member.updated is accepted after a revocation",
        ),
        ("RECERT-NOT-LAPSED", "on 2012-03-01 the certification is revoked, not lapsed"),
    ]
    assert not kept(recert)


def test_cert_unknown_is_left_to_the_caller():
    assert rules_broken([], fee(2006, date(2006, 1, 1))) == []
    with pytest.raises(NotCertified):
        evaluate([], date(2020, 1, 1), POLICY)


def test_cert_unknown_before_certified_on_is_not_certified():
    history = [granted(date(2015, 6, 3))]
    with pytest.raises(NotCertified):
        standing(history, date(2015, 6, 2))
    assert standing(history, date(2015, 6, 3)).status == "active"


def test_cert_exists_rejects_second_grant_with_another_event_id():
    first = granted(date(2015, 6, 3), event_id="grant-a")
    history = accepted(first)
    assert rules_broken(history, granted(date(2016, 1, 1), event_id="grant-b")) == ["CERT-EXISTS"]
    assert rules_broken(history, first) == []


def test_credential_unknown_rejects_code_not_in_policy():
    assert rules_broken([], granted(date(2015, 6, 3), "XYZ")) == ["CREDENTIAL-UNKNOWN"]
    assert rules_broken([], granted(date(2015, 6, 3), "MDT")) == []


def test_credential_unknown_points_per_cycle_come_from_the_credential_row():
    history = [granted(date(2015, 6, 3), "MT")]
    assert standing(history, date(2015, 6, 3)).ccp.points_required == 45


def test_event_future_occurred_at_up_to_five_minutes_ahead_of_clock():
    history = accepted(granted(date(2015, 6, 3)))
    received = noon(date(2016, 6, 1))
    on_limit = fee(2016, date(2016, 6, 1), occurred_at=received + timedelta(minutes=5))
    assert rules_broken(history, on_limit, received) == []
    beyond = fee(2016, date(2016, 6, 1), occurred_at=received + timedelta(minutes=5, seconds=1))
    assert rules_broken(history, beyond, received) == ["EVENT-FUTURE"]


@pytest.mark.parametrize(
    ("occurred_at", "broken"),
    [
        ("2016-06-02T01:00:00+05:00", []),  # 2 June where it occurred (1 June in UTC)
        ("2016-06-01T22:00:00-05:00", ["EVENT-FUTURE"]),  # still 1 June there (2 June in UTC)
    ],
)
def test_event_future_reads_occurred_at_in_its_own_offset(occurred_at, broken):
    history = accepted(granted(date(2015, 6, 3)))
    at = datetime.fromisoformat(occurred_at)
    received = at.astimezone(UTC) + timedelta(hours=1)
    assert rules_broken(history, fee(2016, date(2016, 6, 2), occurred_at=at), received) == broken


def test_event_future_rejects_data_date_after_occurred_at():
    history = accepted(granted(date(2015, 6, 3)))
    assert rules_broken(
        history, fee(2016, date(2016, 6, 2), occurred_at=noon(date(2016, 6, 1)))
    ) == ["EVENT-FUTURE"]
    assert rules_broken([], granted(date(2015, 6, 3), occurred_at=noon(date(2015, 6, 2)))) == [
        "EVENT-FUTURE"
    ]


def test_an_activity_of_a_closed_period_is_kept_employment_when_inside_its_cycle_there():
    """Dated before the recertification recorded before it: kept, it counts in its own period,
    as in date order; employment is checked against the cycle of that period."""
    grant, recert = granted(date(2012, 1, 10)), exam_recert(date(2018, 6, 1), date(2018, 5, 1))
    history = accepted(grant, recert)
    closed = activity(date(2014, 6, 1), 10)
    assert rules_broken(history, closed) == ["CCP-BEFORE-CYCLE"]
    assert kept(validate(history, closed, policy=POLICY, received_at=NOW))
    employed = activity(
        date(2014, 6, 1), 30, "employment", employment=(date(2012, 2, 1), date(2014, 5, 31))
    )
    violations = validate(history, employed, policy=POLICY, received_at=NOW)
    assert [v.rule for v in violations] == ["CCP-BEFORE-CYCLE"] and kept(violations)
    in_date_order = accepted(grant, employed, recert)
    for day in (date(2014, 6, 1), date(2015, 2, 1), date(2016, 1, 1)):
        assert standing([*history, employed], day) == standing(in_date_order, day), day
    assert standing([*history, employed], date(2015, 1, 31)).ccp.points_earned == 30
    outside = activity(
        date(2014, 6, 1), 30, "employment", employment=(date(2011, 1, 1), date(2014, 5, 31))
    )
    violations = validate(history, outside, policy=POLICY, received_at=NOW)
    assert [v.rule for v in violations] == ["CCP-BEFORE-CYCLE", "CCP-EMPLOYMENT-2021"]
    assert not kept(violations)


def test_event_before_grant_refuses_a_revocation_dated_before_the_certification():
    history = accepted(granted(date(2024, 6, 3)))
    assert rules_broken(history, revoked(date(2024, 6, 2))) == ["EVENT-BEFORE-GRANT"]
    assert rules_broken(history, revoked(date(2024, 6, 3))) == []


def test_event_before_grant_refuses_an_audit_of_days_before_the_certification():
    history = accepted(granted(date(2024, 6, 3)))
    before = audit(date(2024, 6, 1), cycle_start=date(2024, 6, 1))
    assert rules_broken(history, before) == ["EVENT-BEFORE-GRANT"] * 2
    [violation, _] = validate(history, before, policy=POLICY, received_at=NOW)
    assert (
        violation.message
        == "audited_on 2024-06-01 is before the certification was granted on 2024-06-03"
    )
    assert not kept(validate(history, before, policy=POLICY, received_at=NOW))
    cycle_before = audit(date(2025, 1, 10), cycle_start=date(1900, 1, 1))
    assert rules_broken(history, cycle_before) == ["EVENT-BEFORE-GRANT"]
    assert rules_broken(history, audit(date(2025, 1, 10), cycle_start=date(2024, 6, 3))) == []
