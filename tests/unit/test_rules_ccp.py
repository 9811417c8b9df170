"""CCP rules: GRANDFATHERED, CYCLE, POINTS, BEFORE-CYCLE, FUTURE, EMPLOYMENT-2021, DUPLICATE,
SHORT, LAPSED."""

import dataclasses
from datetime import date, datetime, timedelta, timezone

from gateway.rules import CredentialPolicy, evaluate, to_points, validate
from tests.support.rules_factories import (
    NOW,
    POLICY,
    accepted,
    activity,
    audit,
    exam_recert,
    fees,
    granted,
    noon,
    reasons,
    rules_broken,
    standing,
)

START = date(2015, 6, 3)  # cycles: 2015-06-03..2018-06-30, 2018-07-01..2021-06-30, ...


def paid_up(start: date = START, until: int = 2040) -> list:
    return [granted(start), *fees(start.year + 1, until, start.month)]


def test_ccp_grandfathered_certified_before_2006_has_no_requirement():
    history = [granted(date(2005, 12, 31)), *fees(2006, 2030, 12)]
    on_day = standing(history, date(2020, 1, 1))
    assert on_day.status == "active"
    assert on_day.ccp.required is False
    assert on_day.ccp.cycle_start is None


def test_ccp_grandfathered_ends_on_2006_01_01():
    history = [granted(date(2006, 1, 1)), *fees(2007, 2030, 1)]
    assert standing(history, date(2009, 1, 31)).ccp.required is True
    assert standing(history, date(2009, 1, 31)).status == "active"
    assert reasons(history, date(2009, 2, 1)) == ["CCP-SHORT"]


def test_ccp_cycle_first_ends_last_day_of_anniversary_month_three_years_later():
    on_day = standing(paid_up(), date(2018, 6, 30))
    assert (on_day.ccp.cycle_start, on_day.ccp.cycle_end) == (START, date(2018, 6, 30))
    assert on_day.ccp.points_required == 30


def test_ccp_cycle_next_starts_day_after_and_lasts_three_years():
    on_day = standing(paid_up(), date(2018, 7, 1))
    assert (on_day.ccp.cycle_start, on_day.ccp.cycle_end) == (date(2018, 7, 1), date(2021, 6, 30))
    later = standing(paid_up(), date(2021, 7, 1))
    assert (later.ccp.cycle_start, later.ccp.cycle_end) == (date(2021, 7, 1), date(2024, 6, 30))


def test_ccp_cycle_of_leap_day_certification_ends_28_february():
    on_day = standing(paid_up(date(2020, 2, 29)), date(2020, 3, 1))
    assert on_day.ccp.cycle_end == date(2023, 2, 28)


def test_ccp_points_enough_points_in_cycle_keep_it_active():
    history = [*paid_up(), activity(date(2016, 1, 1), 12.5), activity(date(2018, 6, 30), 17.5)]
    on_day = standing(history, date(2018, 7, 1))
    assert on_day.status == "active"


def test_ccp_points_shows_points_by_category_of_current_cycle():
    history = [
        *paid_up(),
        activity(date(2016, 1, 1), 10, "amt_online_ce"),
        activity(date(2016, 2, 1), 2.5, "authorship"),
        activity(date(2016, 3, 1), 2.5, "amt_online_ce"),
    ]
    ccp = standing(history, date(2017, 1, 1)).ccp
    assert ccp.points_earned == 15
    assert ccp.points_by_category == {"amt_online_ce": 12.5, "authorship": 2.5}
    assert list(ccp.points_by_category) == ["amt_online_ce", "authorship"]


def test_ccp_points_do_not_roll_into_the_next_cycle():
    history = [*paid_up(), activity(date(2016, 1, 1), 60)]
    assert standing(history, date(2018, 7, 1)).status == "active"
    assert standing(history, date(2018, 7, 1)).ccp.points_earned == 0
    assert reasons(history, date(2021, 7, 1)) == ["CCP-SHORT"]


def test_ccp_points_activity_on_first_day_of_next_cycle_counts_for_that_cycle():
    history = [*paid_up(), activity(date(2018, 7, 1), 30)]
    assert reasons(history, date(2018, 7, 2)) == ["CCP-SHORT"]


def test_ccp_points_category_cap_limits_what_counts():
    capped = dataclasses.replace(
        POLICY,
        credentials={
            "RMA": CredentialPolicy(
                "RMA", "Registered Medical Assistant", 30, "EC-2026", {"employment": 10}
            )
        },
    )
    employment = (date(2016, 1, 1), date(2017, 1, 1))
    history = [
        *paid_up(),
        activity(date(2017, 1, 1), 25, "employment", employment=employment),
        activity(date(2017, 2, 1), 15),
    ]
    assert evaluate(history, date(2018, 7, 1), POLICY).status == "active"
    capped_standing = evaluate(history, date(2018, 6, 30), capped)
    assert capped_standing.ccp.points_earned == 25
    assert capped_standing.ccp.points_by_category == {
        "professional_education": 15,
        "employment": 10,
    }
    assert evaluate(history, date(2018, 7, 1), capped).status == "inactive"


def test_ccp_before_cycle_rejects_activity_completed_before_certification():
    history = accepted(granted(START))
    assert rules_broken(history, activity(START - timedelta(days=1))) == ["CCP-BEFORE-CYCLE"]
    assert rules_broken(history, activity(START)) == []


def test_ccp_future_rejects_activity_completed_after_occurred_at():
    history = accepted(granted(START))
    day = date(2016, 5, 2)
    assert rules_broken(history, activity(day, occurred_at=noon(day - timedelta(days=1)))) == [
        "CCP-FUTURE"
    ]
    assert rules_broken(history, activity(day, occurred_at=noon(day))) == []
    early = datetime(2016, 5, 2, 1, tzinfo=timezone(timedelta(hours=5)))  # 1 May in UTC
    assert rules_broken(history, activity(day, occurred_at=early), early) == []


def test_ccp_employment_2021_accepts_employment_inside_cycle_ending_2020_12_31():
    history = accepted(granted(date(2018, 1, 15)))  # cycle 2018-01-15..2021-01-31
    employment = (date(2018, 2, 1), date(2020, 12, 31))
    ok = activity(date(2020, 12, 31), 5, "employment", employment=employment)
    assert rules_broken(history, ok) == []


def test_ccp_employment_2021_rejects_employment_reaching_into_2021():
    history = accepted(granted(date(2018, 1, 15)))
    employment = (date(2018, 2, 1), date(2021, 1, 1))
    late = activity(date(2021, 1, 1), 5, "employment", employment=employment)
    assert rules_broken(history, late) == ["CCP-EMPLOYMENT-2021"]


def test_ccp_employment_2021_rejects_employment_starting_before_cycle():
    history = accepted(granted(date(2018, 1, 15)))
    employment = (date(2018, 1, 14), date(2019, 1, 1))
    early = activity(date(2019, 1, 1), 5, "employment", employment=employment)
    assert rules_broken(history, early) == ["CCP-EMPLOYMENT-2021"]


def test_ccp_employment_2021_counts_employment_only_inside_the_cycle_the_whole_history_gives():
    """Employment accepted inside the first period's cycle no longer counts once a
    recertification that arrives after it moves its completion day into a new period's cycle
    that the employment began before: the standing of the events in date order, where it is
    refused."""
    granted_on, recertified_on = date(2017, 3, 10), date(2019, 6, 1)
    employment = (date(2017, 4, 1), date(2020, 2, 28))
    claim = activity(date(2020, 3, 1), 30, "employment", employment=employment)
    lapsing = audit(date(2019, 1, 1), cycle_start=granted_on)
    recert = exam_recert(recertified_on, date(2019, 5, 20))
    before = [granted(granted_on), *fees(2018, 2018, 3), lapsing, recert]
    later = fees(2020, 2022, 3)
    assert rules_broken(accepted(*before, *later), claim) == ["CCP-EMPLOYMENT-2021"]
    arrived_first = accepted(granted(granted_on), *fees(2018, 2018, 3), claim, lapsing, recert)
    with_claim, in_date_order = [*arrived_first, *later], accepted(*before, *later)
    for day in (date(2021, 1, 1), date(2022, 7, 1), date(2026, 12, 6)):
        assert standing(with_claim, day) == standing(in_date_order, day), day
    assert standing(with_claim, date(2022, 7, 1)).status == "inactive"  # CCP-SHORT
    inside = activity(
        date(2020, 3, 1), 30, "employment", employment=(recertified_on, date(2020, 2, 28))
    )
    assert standing([*in_date_order, inside], date(2022, 7, 1)).status == "active"


def test_ccp_employment_2021_without_the_ccp_requirement_checks_only_the_cutoff():
    """A grandfathered certification has no cycle for the employment to lie inside."""
    history = accepted(granted(date(2005, 10, 30)), *fees(2006, 2021, 10))
    employment = (date(2011, 6, 2), date(2011, 10, 10))
    claim = activity(date(2011, 11, 1), 10, "employment", employment=employment)
    assert rules_broken(history, claim) == []
    late = activity(
        date(2021, 2, 1), 10, "employment", employment=(date(2020, 6, 1), date(2021, 1, 31))
    )
    assert rules_broken(history, late) == ["CCP-EMPLOYMENT-2021"]


def test_ccp_employment_2021_needs_employment_dates():
    history = accepted(granted(date(2018, 1, 15)))
    assert rules_broken(history, activity(date(2019, 1, 1), 5, "employment")) == [
        "CCP-EMPLOYMENT-2021"
    ]


def test_ccp_duplicate_rejects_same_activity_under_another_event_id():
    first = activity(date(2016, 1, 1), activity_id="ACT-7", event_id="ccp-a")
    history = accepted(granted(START), first)
    again = activity(date(2016, 1, 1), activity_id="ACT-7", event_id="ccp-b")
    assert rules_broken(history, again) == ["CCP-DUPLICATE"]
    assert rules_broken(history, first) == []


def test_ccp_duplicate_of_one_day_counts_the_record_that_occurred_first():
    """One day's events of one kind are ordered by occurred_at, then event_id (docs/rules.md)."""
    day = date(2016, 1, 1)
    earlier = activity(day, 5, activity_id="ACT-7", event_id="ccp-b", occurred_at=noon(day))
    later = activity(
        day, 30, activity_id="ACT-7", event_id="ccp-a", occurred_at=noon(day) + timedelta(hours=1)
    )
    for history in ([granted(START), earlier, later], [granted(START), later, earlier]):
        assert standing(history, day).ccp.points_earned == 5


def test_ccp_short_inactive_from_day_after_cycle_end():
    history = [*paid_up(), activity(date(2017, 1, 1), 29.5)]
    assert standing(history, date(2018, 6, 30)).status == "active"
    short = standing(history, date(2018, 7, 1))
    assert short.status == "inactive"
    assert [(r.rule, r.message) for r in short.reasons] == [
        ("CCP-SHORT", "CCP cycle 2015-06-03 to 2018-06-30 ended with 29.5 of 30 points")
    ]


def test_ccp_short_cured_by_late_documentation_of_in_cycle_activity():
    history = accepted(*paid_up(until=2019), activity(date(2017, 1, 1), 20))
    assert standing(history, date(2019, 1, 1)).status == "inactive"
    late = activity(date(2018, 6, 1), 10, occurred_at=noon(date(2019, 1, 2)))
    assert rules_broken(history, late) == []
    assert standing([*history, late], date(2019, 1, 2)).status == "active"


def test_ccp_lapsed_day_after_cycle_end_plus_3_years():
    history = [*paid_up(), activity(date(2017, 1, 1), 10), activity(date(2019, 1, 1), 30)]
    assert reasons(history, date(2021, 6, 30)) == ["CCP-SHORT"]
    lapsed = standing(history, date(2021, 7, 1))
    assert lapsed.status == "lapsed"
    assert lapsed.lapsed_on == date(2021, 7, 1)
    assert [r.rule for r in lapsed.reasons] == ["CCP-LAPSED"]
    assert lapsed.reasons[0].message == (
        "CCP cycle 2015-06-03 to 2018-06-30 is still short 3 years after it ended: 10 of 30 points"
    )


def test_ccp_lapsed_three_years_after_a_february_cycle_end_counts_to_the_end_of_february():
    # A cycle ending 2021-02-28 is short until the end of February 2024 (the 29th), as one
    # ending in March is until the end of March.
    history = [granted(date(2018, 2, 15)), *fees(2019, 2025, 2)]
    assert reasons(history, date(2024, 2, 29)) == ["CCP-SHORT"]
    assert standing(history, date(2024, 3, 1)).lapsed_on == date(2024, 3, 1)


def test_ccp_lapsed_lists_next_short_cycle_too():
    history = [*paid_up(), activity(date(2017, 1, 1), 10)]
    assert reasons(history, date(2021, 7, 1)) == ["CCP-LAPSED", "CCP-SHORT"]


def test_ccp_employment_2021_rejects_employment_ending_after_cycle_end():
    history = accepted(granted(START))  # first cycle ends 2018-06-30
    employment = (date(2017, 1, 1), date(2018, 7, 31))
    recorded = noon(date(2018, 8, 1))
    across = activity(
        date(2018, 6, 30), 5, "employment", employment=employment, occurred_at=recorded
    )
    assert rules_broken(history, across) == ["CCP-EMPLOYMENT-2021"]


def test_ccp_before_cycle_after_recertification_rejects_activity_of_closed_period():
    history = accepted(granted(date(2005, 6, 3)), exam_recert(date(2012, 3, 1)))
    assert rules_broken(history, activity(date(2012, 2, 29))) == ["CCP-BEFORE-CYCLE"]
    assert rules_broken(history, activity(date(2012, 3, 1))) == []


def test_ccp_lapsed_in_cycle_activity_documented_after_the_lapse_is_history_and_lifts_it():
    # CCP-SHORT allows late documentation of in-cycle activities; CERT-LAPSED accepts an event
    # dated before the lapse that arrives after it: the whole history decides.
    history = accepted(*paid_up(until=2021), activity(date(2019, 1, 1), 30))
    assert reasons(history, date(2021, 7, 1)) == ["CCP-LAPSED"]  # first cycle short 3 years
    late = activity(date(2018, 6, 30), 30, occurred_at=noon(date(2021, 7, 5)))
    assert rules_broken(history, late) == []
    assert standing([*history, late], date(2021, 7, 5)).status == "active"
    too_late = activity(date(2018, 7, 1), 30, occurred_at=noon(date(2021, 7, 5)))
    assert standing([*history, too_late], date(2021, 7, 5)).status == "lapsed"  # next cycle's


def test_ccp_record_dated_in_a_lapse_hides_no_record_of_the_activity_after_recertification():
    """A record refused CERT-LAPSED is kept but counts in no period; the same activity recorded
    again after the recertification is accepted (a refused record is no duplicate) and counts."""
    history = [granted(date(2010, 1, 15))]  # no fee paid: lapsed in 2014
    in_lapse = activity(date(2015, 3, 1), activity_id="ACT-1")
    assert rules_broken(history, in_lapse) == ["CERT-LAPSED"]
    history += [in_lapse, exam_recert(date(2016, 1, 10), date(2016, 1, 5))]
    again = activity(date(2016, 6, 1), 10, activity_id="ACT-1")
    assert (
        validate(history, again, policy=POLICY, received_at=NOW, kept_ids=[in_lapse.event_id]) == []
    )
    history.append(again)
    assert standing(history, date(2016, 7, 1)).ccp.points_earned == 10
    assert standing(history, date(2015, 6, 1)).status == "lapsed"


def test_ccp_employment_2021_may_fill_the_second_cycle_to_its_first_day_not_a_day_before():
    history = accepted(*paid_up(until=2021))  # second cycle 2018-07-01..2021-06-30
    recorded = noon(date(2021, 1, 5))
    inside = activity(
        date(2020, 12, 31),
        5,
        "employment",
        employment=(date(2018, 7, 1), date(2020, 12, 31)),
        occurred_at=recorded,
    )
    assert rules_broken(history, inside) == []
    from_the_cycle_before = activity(
        date(2020, 12, 31),
        5,
        "employment",
        employment=(date(2018, 6, 30), date(2020, 12, 31)),
        occurred_at=recorded,
    )
    assert rules_broken(history, from_the_cycle_before) == ["CCP-EMPLOYMENT-2021"]


def test_ccp_employment_2021_may_end_on_the_last_day_of_its_cycle():
    history = accepted(granted(START))  # first cycle 2015-06-03..2018-06-30
    whole_cycle = activity(
        date(2018, 6, 30), 5, "employment", employment=(START, date(2018, 6, 30))
    )
    assert rules_broken(history, whole_cycle) == []


def test_ccp_points_an_activity_counts_from_its_completed_on():
    history = [*paid_up(), activity(date(2016, 4, 2), 12.5)]
    assert standing(history, date(2016, 4, 1)).ccp.points_earned == 0
    assert standing(history, date(2016, 4, 2)).ccp.points_earned == 12.5


def test_ccp_cycle_after_recertification_starts_on_its_day_and_ends_three_years_on():
    """Recertified 2015-02-10: cycles 2015-02-10..2018-02-28, then 2018-03-01..2021-02-28."""
    history = accepted(
        granted(date(2010, 5, 10)),
        exam_recert(date(2015, 2, 10), date(2015, 2, 1)),
        *fees(2016, 2021, 2),
        activity(date(2018, 2, 28), 29.99),
    )
    last_day = standing(history, date(2018, 2, 28))
    assert (last_day.status, last_day.ccp.cycle_start, last_day.ccp.cycle_end) == (
        "active",
        date(2015, 2, 10),
        date(2018, 2, 28),
    )
    assert last_day.ccp.points_earned == to_points("29.99")
    next_day = standing(history, date(2018, 3, 1))
    assert (next_day.ccp.cycle_start, next_day.ccp.cycle_end) == (
        date(2018, 3, 1),
        date(2021, 2, 28),
    )
    assert [(r.rule, r.message) for r in next_day.reasons] == [
        ("CCP-SHORT", "CCP cycle 2015-02-10 to 2018-02-28 ended with 29.99 of 30 points")
    ]
    assert reasons(history, date(2021, 2, 28)) == ["CCP-SHORT"]
    lapsed = standing(history, date(2021, 3, 1))
    assert (lapsed.status, lapsed.lapsed_on) == ("lapsed", date(2021, 3, 1))
    assert [r.rule for r in lapsed.reasons] == ["CCP-LAPSED", "CCP-SHORT"]


def test_ccp_lapsed_standing_shows_the_cycle_and_points_of_the_lapse_day():
    """Lapsed by an audit on 2020-03-01: the cycle stops there, with the points completed before
    that day, however late the standing is asked for."""
    history = [
        *paid_up(),
        activity(date(2016, 1, 1), 30),
        activity(date(2019, 1, 1), 5),
        audit(date(2020, 3, 1), cycle_start=date(2018, 7, 1)),
        activity(date(2020, 3, 1), 5),
        activity(date(2020, 5, 1), 5),
    ]
    assert standing(history, date(2020, 2, 29)).ccp.points_earned == 5
    for day in (date(2020, 3, 1), date(2020, 5, 1), date(2021, 7, 1), date(2030, 1, 1)):
        on_day = standing(history, day)
        assert on_day.status == "lapsed", day
        assert (on_day.ccp.cycle_start, on_day.ccp.cycle_end, on_day.ccp.points_earned) == (
            date(2018, 7, 1),
            date(2021, 6, 30),
            5,
        ), day
