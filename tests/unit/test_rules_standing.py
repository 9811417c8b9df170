"""evaluate(): order independence, member details, the JSON shape, next_change_on, periods."""

import random
from dataclasses import replace
from datetime import date, timedelta

import pytest

from gateway.rules import Standing
from gateway.rules.periods import add_years, cycle_end, cycle_index, cycle_start, month_end
from tests.support.rules_factories import (
    MEMBER,
    POLICY,
    activity,
    audit,
    exam_recert,
    fee,
    fees,
    granted,
    noon,
    reasons,
    revoked,
    standing,
    updated,
)

START = date(2015, 6, 3)


def typical() -> list:
    return [
        granted(START),
        *fees(2016, 2025, 6),
        *(activity(START + timedelta(days=90 * i), 2.5) for i in range(40)),
        audit(date(2020, 3, 1), "passed"),
    ]


def test_standing_does_not_depend_on_order_of_arrival():
    history = typical()
    expected = standing(history, date(2026, 1, 15))
    shuffled = list(history)
    random.Random(7).shuffle(shuffled)
    assert standing(shuffled, date(2026, 1, 15)) == expected
    assert standing(list(reversed(history)), date(2026, 1, 15)) == expected


def test_standing_counts_only_events_dated_on_or_before_as_of():
    history = [granted(START), fee(2016, date(2016, 7, 15))]
    assert standing(history, date(2016, 7, 14)).status == "inactive"
    assert standing(history, date(2016, 7, 15)).status == "active"


def test_standing_member_details_overlaid_by_updates_in_date_order():
    history = [
        updated(date(2017, 1, 1), last_name="Lovelace"),
        granted(START),
        updated(date(2018, 1, 1), email="ada@lovelace.org"),
        updated(date(2019, 1, 1), last_name="King"),
    ]
    assert standing(history, date(2016, 1, 1)).member.last_name == "Byron"
    member = standing(history, date(2018, 6, 1)).member
    assert (member.last_name, member.email) == ("Lovelace", "ada@lovelace.org")
    assert standing(history, date(2019, 1, 1)).member.last_name == "King"


def test_standing_member_update_older_than_the_grant_changes_nothing():
    # The grant's member block is what the sender knew at its occurred_at (a back-dated grant sent
    # on 2026-11-01): an update that occurred before it is older news, whenever it arrives.
    sent = noon(date(2026, 11, 1))
    history = [
        granted(START, occurred_at=sent),
        updated(date(2019, 5, 1), last_name="Maiden", email="old@example.org"),
        updated(date(2026, 11, 1), occurred_at=sent - timedelta(hours=1), first_name="Augusta"),
        updated(date(2026, 11, 1), email="ada@lovelace.org"),  # the grant's moment: it applies
        updated(date(2027, 1, 1), last_name="King"),
    ]
    assert standing(history, date(2020, 1, 1)).member == MEMBER
    assert standing(history, date(2026, 11, 1)).member == replace(MEMBER, email="ada@lovelace.org")
    member = standing(history, date(2027, 1, 1)).member
    assert member == replace(MEMBER, email="ada@lovelace.org", last_name="King")
    assert standing(list(reversed(history)), date(2027, 1, 1)).member == member


def test_standing_lapsed_outranks_inactive_and_reasons_list_all():
    history = [granted(START), audit(date(2017, 1, 10))]  # fees overdue since 2016-07-01
    on_day = standing(history, date(2017, 1, 10))
    assert on_day.status == "lapsed"
    assert [r.rule for r in on_day.reasons] == ["AUDIT-FAILED", "FEE-OVERDUE"]


def test_standing_lapse_freezes_the_reasons_of_its_day():
    # decision: after the lapse the rules stop; the reasons stay those of the lapse day.
    history = [granted(START), audit(date(2017, 1, 10))]
    assert reasons(history, date(2040, 1, 1)) == ["AUDIT-FAILED", "FEE-OVERDUE"]


def test_standing_to_dict_is_json_ready():
    as_dict = standing(typical(), date(2026, 1, 15)).to_dict()
    assert as_dict == {
        "credential": "RMA",
        "member": {
            "member_id": "M-1",
            "first_name": "Ada",
            "last_name": "Byron",
            "email": "ada@example.org",
        },
        "certified_on": "2015-06-03",
        "as_of": "2026-01-15",
        "status": "active",
        "reasons": [],
        "fees": {"paid_through": "2026-06-30", "next_due": "2026-06", "unpaid_years": 0},
        "ccp": {
            "required": True,
            "cycle_start": "2024-07-01",
            "cycle_end": "2027-06-30",
            "points_required": 30,
            "points_earned": 7.5,
            "points_by_category": {"professional_education": 7.5},
        },
        "recertification": {"required": False, "methods": []},
        "lapsed_on": None,
        "next_change_on": "2026-07-01",
    }


def test_standing_to_dict_of_lapsed_certification():
    as_dict = standing([granted(date(2005, 6, 3))], date(2010, 1, 1)).to_dict()
    assert as_dict["status"] == "lapsed"
    assert as_dict["lapsed_on"] == "2009-07-01"
    assert as_dict["recertification"] == {"required": True, "methods": ["ccp", "exam"]}
    assert as_dict["ccp"]["cycle_start"] is None
    assert as_dict["ccp"]["points_required"] is as_dict["ccp"]["points_earned"] is None
    assert as_dict["reasons"][0]["rule"] == "FEE-LAPSED"


@pytest.mark.parametrize(
    ("history", "as_of", "expected"),
    [
        ([granted(START)], date(2016, 1, 1), date(2016, 7, 1)),  # P + 1 day
        ([granted(date(2005, 6, 3))], date(2007, 1, 1), date(2009, 7, 1)),  # P + 3 years + 1 day
        ([granted(START), *fees(2016, 2018, 6)], date(2018, 6, 2), date(2018, 7, 1)),  # cycle end
        ([granted(date(2005, 6, 3))], date(2009, 7, 1), date(2019, 7, 1)),  # exam only
        ([granted(date(2005, 6, 3))], date(2019, 7, 1), None),
        ([granted(START), revoked(date(2016, 1, 1))], date(2016, 1, 1), None),
    ],
)
def test_next_change_on_is_the_next_day_the_standing_can_change_without_an_event(
    history: list, as_of: date, expected: date | None
):
    assert standing(history, as_of).next_change_on == expected


def test_next_change_on_counts_events_dated_after_as_of():
    history = [granted(START), fee(2016, date(2016, 7, 15))]
    assert standing(history, date(2016, 7, 5)).next_change_on == date(2016, 7, 15)
    early = [granted(START), fee(2016, date(2016, 6, 10))]
    assert standing(early, date(2016, 6, 1)).next_change_on == date(2016, 6, 10)


def test_next_change_on_skips_later_events_that_change_nothing():
    history = [granted(START), *fees(2016, 2030, 6), activity(date(2016, 3, 1), 40)]
    assert standing(history, date(2016, 1, 1)).next_change_on == date(2016, 6, 1)
    quiet = [granted(START), activity(date(2016, 3, 1), 40)]
    assert standing(quiet, date(2016, 1, 1)).next_change_on == date(2016, 7, 1)


def test_next_change_on_is_the_end_of_a_later_short_cycle_before_a_late_ccp_lapse():
    """With CCP lapsing 5 years after a short cycle (a policy table may say so), the next
    cycle that also ends short adds its CCP-SHORT reason before the lapse."""
    late = replace(POLICY, ccp_lapse_years=5)
    history = [granted(date(2010, 3, 15)), *fees(2011, 2026, 1)]
    before = standing(history, date(2016, 3, 31), late)
    assert before.next_change_on == date(2016, 4, 1)
    after = standing(history, date(2016, 4, 1), late)
    assert len(after.reasons) == len(before.reasons) + 1


def test_a_recertification_dated_on_or_after_the_revocation_does_not_count():
    """Recorded before the revocation that came after it, as if they had arrived in date order
    (when it is refused CERT-REVOKED): the certification stays revoked in its first period."""
    recertified = exam_recert(date(2020, 6, 1), date(2020, 6, 1))
    for recert_day in (date(2020, 6, 1), date(2018, 1, 15)):
        recert = replace(recertified, completed_on=recert_day, exam_passed_on=recert_day)
        history = [granted(date(2010, 5, 10)), recert, revoked(date(2018, 1, 15))]
        on_day = standing(history, date(2026, 12, 6))
        assert (on_day.status, on_day.certified_on) == ("revoked", date(2010, 5, 10))


def test_next_change_on_recertification_dated_after_as_of():
    history = [granted(date(2005, 6, 3)), exam_recert(date(2012, 3, 1))]
    assert standing(history, date(2010, 1, 1)).next_change_on == date(2012, 3, 1)


def test_standing_is_a_frozen_value():
    on_day: Standing = standing([granted(START)], date(2016, 1, 1))
    with pytest.raises(AttributeError):
        on_day.status = "lapsed"  # type: ignore[misc]


def test_periods_month_end_and_add_years_on_leap_days():
    assert month_end(2024, 2) == date(2024, 2, 29)
    assert month_end(2100, 2) == date(2100, 2, 28)
    assert month_end(2023, 12) == date(2023, 12, 31)
    assert add_years(date(2024, 2, 29), 3) == date(2027, 2, 28)
    assert add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)


def test_periods_cycle_index_matches_cycle_bounds():
    for start in (date(2015, 6, 3), date(2020, 2, 29), date(2019, 1, 31), date(2011, 12, 1)):
        for index in range(6):
            first, last = cycle_start(start, index, 3), cycle_end(start, index, 3)
            assert cycle_index(start, first, 3) == index
            assert cycle_index(start, last, 3) == index
            assert cycle_index(start, last + timedelta(days=1), 3) == index + 1


def test_event_needs_a_time_zone():
    with pytest.raises(ValueError, match="time zone"):
        fee(2016, date(2016, 1, 1), occurred_at=noon(date(2016, 1, 1)).replace(tzinfo=None))
