"""Annual renewal fee rules: FEE-DUE, FEE-OVERDUE, FEE-LAPSED, FEE-YEAR-RANGE, FEE-DUPLICATE."""

from datetime import date

from gateway.rules import Fees, kept, validate
from tests.support.rules_factories import (
    NOW,
    POLICY,
    accepted,
    activity,
    audit,
    exam_recert,
    fee,
    fees,
    granted,
    reasons,
    rules_broken,
    standing,
)

# Certified before 2006: no CCP requirement, so only the fee rules decide.
GRANDFATHERED = date(2005, 6, 3)


def test_fee_due_grant_covers_through_anniversary_month_of_next_year():
    history = [granted(GRANDFATHERED)]
    on_due_day = standing(history, date(2006, 6, 30))
    assert on_due_day.status == "active"
    assert on_due_day.fees.paid_through == date(2006, 6, 30)
    assert on_due_day.fees.next_due == "2006-06"
    assert on_due_day.fees.unpaid_years == 0


def test_fee_due_paying_year_covers_through_anniversary_month_of_following_year():
    history = [granted(GRANDFATHERED), fee(2006, date(2006, 6, 10))]
    assert standing(history, date(2006, 7, 1)).fees.paid_through == date(2007, 6, 30)
    assert standing(history, date(2006, 7, 1)).fees.next_due == "2007-06"


def test_fee_due_paid_through_is_end_of_unbroken_run():
    gap = [granted(GRANDFATHERED), fee(2006, date(2006, 6, 1)), fee(2008, date(2007, 6, 1))]
    assert standing(gap, date(2007, 6, 1)).fees.paid_through == date(2007, 6, 30)
    filled = [*gap, fee(2007, date(2007, 6, 2))]
    assert standing(filled, date(2007, 6, 2)).fees.paid_through == date(2009, 6, 30)


def test_fee_due_payment_counts_only_from_its_paid_on():
    history = [granted(GRANDFATHERED), fee(2006, date(2006, 8, 1))]
    assert standing(history, date(2006, 7, 31)).fees.paid_through == date(2006, 6, 30)
    assert standing(history, date(2006, 8, 1)).fees.paid_through == date(2007, 6, 30)


def test_fee_overdue_from_day_after_paid_through():
    history = [granted(GRANDFATHERED), fee(2006, date(2006, 6, 1))]
    assert standing(history, date(2007, 6, 30)).status == "active"
    overdue = standing(history, date(2007, 7, 1))
    assert overdue.status == "inactive"
    assert [(r.rule, r.message) for r in overdue.reasons] == [
        (
            "FEE-OVERDUE",
            "the renewal fee for membership year 2007 was due by 2007-06-30 and is unpaid",
        )
    ]


def test_fee_overdue_cured_by_paying_missing_years_in_any_order():
    base = [granted(GRANDFATHERED)]
    late = [fee(2008, date(2008, 3, 1)), fee(2007, date(2008, 3, 2)), fee(2006, date(2008, 3, 3))]
    assert standing([*base, *late[:2]], date(2008, 3, 10)).status == "inactive"
    cured = standing([*base, *late], date(2008, 3, 10))
    assert cured.status == "active"
    assert cured.fees.paid_through == date(2009, 6, 30)


def test_fee_overdue_unpaid_years_counts_due_months_that_ended():
    history = [granted(GRANDFATHERED)]
    assert standing(history, date(2008, 6, 30)).fees.unpaid_years == 2
    assert standing(history, date(2008, 7, 1)).fees.unpaid_years == 3


def test_fee_lapsed_day_after_p_plus_3_years():
    history = [granted(GRANDFATHERED)]  # paid through 2006-06-30
    assert standing(history, date(2009, 6, 30)).status == "inactive"
    lapsed = standing(history, date(2009, 7, 1))
    assert lapsed.status == "lapsed"
    assert lapsed.lapsed_on == date(2009, 7, 1)
    assert [r.rule for r in lapsed.reasons] == ["FEE-LAPSED"]
    assert lapsed.recertification.required
    assert lapsed.recertification.methods == ("ccp", "exam")


def test_fee_lapsed_applies_to_certifications_with_ccp_too():
    start = date(2015, 6, 3)
    history = [granted(start), activity(date(2016, 1, 1), 30)]
    assert standing(history, date(2019, 6, 30)).status == "inactive"
    assert reasons(history, date(2019, 7, 1)) == ["FEE-LAPSED"]


def test_fee_lapsed_is_not_cured_by_a_payment_after_the_lapse():
    history = [granted(GRANDFATHERED)]
    late_payment = fee(2009, date(2009, 7, 1))
    assert rules_broken(history, late_payment) == ["CERT-LAPSED"]
    assert standing([*history, late_payment], date(2010, 1, 1)).status == "lapsed"


def test_fee_due_leap_day_certification_anniversary_month_ends_on_28_or_29():
    history = [granted(date(2020, 2, 29)), activity(date(2020, 3, 1), 30)]
    assert standing(history, date(2021, 2, 28)).status == "active"
    assert standing(history, date(2021, 3, 1)).status == "inactive"
    paid = [*history, *fees(2021, 2023, 2)]
    assert standing(paid, date(2024, 2, 29)).fees.paid_through == date(2024, 2, 29)
    assert standing(paid, date(2024, 2, 29)).status == "active"
    assert reasons(paid, date(2024, 3, 1)) == ["FEE-OVERDUE"]


def test_fee_lapsed_the_day_after_the_end_of_february_three_years_on_in_a_leap_year():
    # decision: P + 3 years is the same month's last day, so 2021-02-28 + 3 years = 2024-02-29,
    # the 2024 fee's due day; a February anniversary lapses as a March one does, the day after.
    history = [granted(date(2020, 2, 29)), activity(date(2020, 3, 1), 30)]
    assert standing(history, date(2024, 2, 29)).status == "inactive"
    assert standing(history, date(2024, 3, 1)).lapsed_on == date(2024, 3, 1)


def test_fee_lapsed_unpaid_years_keep_counting_after_the_lapse():
    history = [granted(GRANDFATHERED)]  # paid through 2006-06-30, lapsed on 2009-07-01
    assert standing(history, date(2009, 7, 1)).fees.unpaid_years == 4
    later = standing(history, date(2020, 7, 1))
    assert (later.status, later.fees.unpaid_years, later.fees.next_due) == ("lapsed", 15, "2006-06")


def test_fee_due_certified_on_31_january():
    for certified_on in (date(2019, 1, 31), date(2019, 1, 1)):
        history = [granted(certified_on)]
        assert standing(history, date(2020, 1, 31)).fees.paid_through == date(2020, 1, 31)
        assert standing(history, date(2020, 2, 1)).status == "inactive"


def test_fee_year_range_rejects_year_before_first_payable_year():
    history = accepted(granted(date(2020, 3, 10)))
    broken = fee(2019, date(2020, 4, 1))
    assert rules_broken(history, broken) == ["FEE-YEAR-RANGE"]
    assert rules_broken(history, fee(2020, date(2020, 4, 1))) == ["FEE-YEAR-RANGE"]
    assert rules_broken(history, fee(2021, date(2020, 4, 1))) == []


def test_fee_year_range_message_names_the_years():
    from gateway.rules import validate
    from tests.support.rules_factories import NOW, POLICY

    history = accepted(granted(date(2020, 3, 10)))
    [violation] = validate(history, fee(2019, date(2020, 4, 1)), policy=POLICY, received_at=NOW)
    assert violation.message == "membership year 2019 is before the first payable year 2021"


def test_fee_year_range_rejects_year_more_than_one_ahead_of_payment():
    history = accepted(granted(date(2020, 3, 10)))
    assert rules_broken(history, fee(2022, date(2021, 12, 31))) == []
    assert rules_broken(history, fee(2023, date(2021, 12, 31))) == ["FEE-YEAR-RANGE"]


def test_fee_year_range_rejects_payment_before_the_period():
    history = accepted(granted(date(2020, 3, 10)))
    assert rules_broken(history, fee(2021, date(2020, 3, 9))) == ["FEE-YEAR-RANGE"]


def test_fee_duplicate_rejects_second_payment_of_a_year():
    first = fee(2021, date(2021, 3, 1), event_id="pay-1")
    history = accepted(granted(date(2020, 3, 10)), first)
    assert rules_broken(history, fee(2021, date(2021, 3, 5))) == ["FEE-DUPLICATE"]


def test_fee_duplicate_same_event_id_is_not_a_second_payment():
    first = fee(2021, date(2021, 3, 1), event_id="pay-1")
    history = accepted(granted(date(2020, 3, 10)), first)
    assert rules_broken(history, first) == []


def lapsed_then_recertified() -> list:
    """Fees paid ahead up to 2022, CCP short: lapsed 2021-07-01, recertified 2021-08-01."""
    return accepted(
        granted(date(2015, 6, 3)),
        *fees(2016, 2021, 6),
        fee(2022, date(2021, 6, 2)),
        exam_recert(date(2021, 8, 1)),
    )


def test_fee_year_range_after_recertification_counts_from_new_period():
    history = lapsed_then_recertified()
    assert rules_broken(history, fee(2021, date(2021, 9, 1))) == ["FEE-YEAR-RANGE"]
    assert rules_broken(history, fee(2022, date(2021, 9, 1))) == []


def test_fee_duplicate_year_paid_in_an_earlier_period_is_paid_again():
    history = lapsed_then_recertified()
    assert standing(history, date(2022, 9, 1)).fees.paid_through == date(2022, 8, 31)
    again = fee(2022, date(2022, 8, 1))
    assert rules_broken(history, again) == []
    assert standing([*history, again], date(2022, 9, 1)).fees.paid_through == date(2023, 8, 31)


def test_fee_duplicate_of_another_day_is_kept_and_counts_where_a_recertification_splits_them():
    """Paid twice for 2025, the second time after a recertification that arrives last: in date
    order the second payment is the new period's; in this arrival order it is refused, but kept,
    so the history gives the standing of date order."""
    first, second = fee(2025, date(2024, 2, 1)), fee(2025, date(2024, 7, 1))
    history = accepted(granted(date(2023, 1, 15)), fee(2024, date(2024, 1, 10)), first)
    violations = validate(history, second, policy=POLICY, received_at=NOW)
    assert [v.rule for v in violations] == ["FEE-DUPLICATE"]
    assert kept(violations)
    lapsed = audit(date(2024, 3, 1), cycle_start=date(2023, 1, 15))
    recertified = exam_recert(date(2024, 6, 1), date(2024, 5, 20))
    late = [*history, second, fee(2026, date(2026, 6, 1)), lapsed, recertified]
    in_order = accepted(*history, lapsed, recertified, second, fee(2026, date(2026, 6, 1)))
    for day in (date(2024, 7, 1), date(2025, 7, 1), date(2026, 12, 6), date(2027, 7, 1)):
        assert standing(late, day) == standing(in_order, day), day
    assert standing(late, date(2026, 12, 6)).fees.paid_through == date(2027, 6, 30)


def test_fee_duplicate_of_another_day_changes_nothing_within_one_period():
    first, second = fee(2021, date(2021, 3, 5)), fee(2021, date(2021, 3, 1))
    history = accepted(granted(date(2020, 3, 10)), first)
    assert kept(validate(history, second, policy=POLICY, received_at=NOW))
    both = [*history, second]
    for day in (date(2021, 3, 2), date(2021, 6, 1), date(2022, 4, 1)):
        assert standing(both, day) == standing(accepted(granted(date(2020, 3, 10)), second), day)


def test_fee_duplicate_of_the_same_day_is_refused_for_good():
    history = accepted(granted(date(2020, 3, 10)), fee(2021, date(2021, 3, 1)))
    violations = validate(history, fee(2021, date(2021, 3, 1)), policy=POLICY, received_at=NOW)
    assert [v.rule for v in violations] == ["FEE-DUPLICATE"]
    assert not kept(violations)


def test_fee_year_range_accepts_a_payment_dated_on_the_certification_day():
    history = accepted(granted(date(2020, 3, 10)))
    on_the_day = fee(2021, date(2020, 3, 10))
    assert rules_broken(history, on_the_day) == []
    paid = standing([*history, on_the_day], date(2020, 3, 10))
    assert paid.fees == Fees(paid_through=date(2022, 3, 31), next_due="2022-03", unpaid_years=0)


def test_fee_due_and_fee_lapsed_in_a_recertified_period_count_from_its_day():
    """Recertified on 2015-02-10 (a February anniversary now): the period covers fees to the end
    of February 2016, then is overdue, and lapses after the end of February 2019."""
    history = accepted(granted(date(2010, 5, 10)), exam_recert(date(2015, 2, 10), date(2015, 2, 1)))
    assert standing(history, date(2015, 2, 9)).certified_on == date(2010, 5, 10)
    on_day = standing(history, date(2016, 2, 29))
    assert (on_day.status, on_day.fees.paid_through, on_day.fees.next_due) == (
        "active",
        date(2016, 2, 29),
        "2016-02",
    )
    after = standing(history, date(2016, 3, 1))
    assert (after.status, after.fees.unpaid_years, reasons(history, date(2016, 3, 1))) == (
        "inactive",
        1,
        ["FEE-OVERDUE"],
    )
    assert standing(history, date(2019, 2, 28)).status == "inactive"
    lapsed = standing(history, date(2019, 3, 1))
    assert (lapsed.status, lapsed.lapsed_on, lapsed.fees.unpaid_years) == (
        "lapsed",
        date(2019, 3, 1),
        4,
    )
    assert [r.rule for r in lapsed.reasons] == ["FEE-LAPSED", "CCP-SHORT"]
    paid = accepted(*history, fee(2016, date(2016, 2, 1)))
    assert standing(paid, date(2017, 2, 28)).status == "active"
    assert reasons(paid, date(2017, 3, 1)) == ["FEE-OVERDUE"]
