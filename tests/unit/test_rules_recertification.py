"""Audit and recertification rules: AUDIT-FAILED, RECERT-NOT-LAPSED, RECERT-EXAM-ONLY,
RECERT-EXAM-RESULT, RECERT-CCP-POINTS, RECERT-ELIGIBILITY, RECERT-RESET."""

from dataclasses import replace
from datetime import date

from gateway.rules import validate
from tests.support.rules_factories import (
    NOW,
    POLICY,
    accepted,
    activity,
    audit,
    ccp_recert,
    exam_recert,
    fee,
    fees,
    granted,
    noon,
    reasons,
    rules_broken,
    standing,
)

# Grandfathered, never paid: paid through 2006-06-30, lapsed 2009-07-01, exam only from 2019-07-01.
LAPSING = date(2005, 6, 3)
LAPSED_ON = date(2009, 7, 1)
EXAM_ONLY_FROM = date(2019, 7, 1)


def in_good_standing() -> list:
    """Certified 2015-06-03, fees paid for years, 30 points in each of the first cycles."""
    return [
        granted(date(2015, 6, 3)),
        *fees(2016, 2030, 6),
        activity(date(2016, 1, 1), 30),
        activity(date(2019, 1, 1), 30),
        activity(date(2022, 1, 1), 30),
    ]


def test_audit_failed_lapses_from_audited_on():
    history = [*in_good_standing(), audit(date(2019, 3, 1), "failed", date(2018, 7, 1))]
    assert standing(history, date(2019, 2, 28)).status == "active"
    lapsed = standing(history, date(2019, 3, 1))
    assert lapsed.status == "lapsed"
    assert lapsed.lapsed_on == date(2019, 3, 1)
    assert [(r.rule, r.message) for r in lapsed.reasons] == [
        ("AUDIT-FAILED", "the CCP audit of 2019-03-01 (cycle from 2018-07-01) failed")
    ]


def test_audit_failed_is_not_undone_by_a_later_pass_for_the_same_cycle():
    history = [
        *in_good_standing(),
        audit(date(2019, 3, 1), "failed", date(2018, 7, 1)),
        audit(date(2019, 9, 1), "passed", date(2018, 7, 1)),
    ]
    assert standing(history, date(2020, 1, 1)).status == "lapsed"


def test_audit_passed_changes_nothing():
    history = [*in_good_standing(), audit(date(2019, 3, 1), "passed")]
    assert standing(history, date(2019, 3, 1)).status == "active"


def test_audit_failed_is_undone_by_recertification():
    history = accepted(*in_good_standing()[:1], audit(date(2019, 3, 1), "failed"))
    history = accepted(*history, exam_recert(date(2019, 5, 1)))
    assert standing(history, date(2019, 5, 1)).status == "active"


def test_a_recertification_on_the_day_of_the_failed_audit_undoes_it():
    history = [*in_good_standing(), audit(date(2019, 3, 1), "failed", date(2018, 7, 1))]
    recertified = exam_recert(date(2019, 3, 1))
    assert rules_broken(history, recertified) == []
    history.append(recertified)
    renewed = standing(history, date(2020, 1, 1))
    assert (renewed.status, renewed.certified_on, renewed.reasons) == (
        "active",
        date(2019, 3, 1),
        (),
    )
    assert standing(history, date(2019, 2, 28)).status == "active"


def test_a_failed_audit_of_a_cycle_before_the_recertification_does_not_lapse_the_new_period():
    history = accepted(granted(LAPSING), exam_recert(date(2016, 1, 10)))
    late_result = audit(date(2016, 5, 1), "failed", LAPSING)
    assert rules_broken(history, late_result) == []
    assert standing([*history, late_result], date(2016, 5, 1)).status == "active"
    of_the_new_period = audit(date(2016, 5, 1), "failed", date(2016, 1, 10))
    assert standing([*history, of_the_new_period], date(2016, 5, 1)).status == "lapsed"


def test_a_recertification_undoes_a_failed_audit_of_a_cycle_that_began_that_same_day():
    """The audit's cycle (the period before's, begun on the recertification day) and the new
    period start on one day: the audit was of the period before, which the recertification
    ended, in any order of arrival."""
    audited = audit(date(2020, 1, 10), "failed", date(2020, 1, 10))
    history = accepted(granted(date(2020, 1, 10)), audited)
    recertified = exam_recert(date(2020, 1, 10))
    assert rules_broken(history, recertified) == []
    for order in ([*history, recertified], [granted(date(2020, 1, 10)), recertified, audited]):
        renewed = standing(order, date(2020, 1, 10))
        assert (renewed.status, renewed.certified_on, renewed.reasons) == (
            "active",
            date(2020, 1, 10),
            (),
        )
    a_day_later = audit(date(2020, 1, 11), "failed", date(2020, 1, 10))  # of the new period
    assert standing([*history, recertified, a_day_later], date(2020, 1, 11)).status == "lapsed"


def test_recert_not_lapsed_rejected_while_inactive():
    history = accepted(granted(LAPSING))
    assert standing(history, date(2008, 1, 1)).status == "inactive"
    [violation] = validate(history, exam_recert(date(2008, 1, 1)), policy=POLICY, received_at=NOW)
    assert (violation.rule, violation.message) == (
        "RECERT-NOT-LAPSED",
        "on 2008-01-01 the certification is inactive, not lapsed",
    )


def test_recert_not_lapsed_accepted_on_first_lapsed_day():
    history = accepted(granted(LAPSING))
    assert rules_broken(history, exam_recert(LAPSED_ON)) == []
    assert rules_broken(history, exam_recert(date(2009, 6, 30))) == ["RECERT-NOT-LAPSED"]


def test_recert_not_lapsed_rejects_recertification_dated_before_the_current_period():
    history = accepted(granted(LAPSING), exam_recert(date(2012, 3, 1)))
    assert rules_broken(history, exam_recert(date(2011, 1, 1))) == ["RECERT-NOT-LAPSED"]


def test_recert_exam_only_the_day_before_ten_years_ccp_still_accepted():
    history = accepted(granted(LAPSING))
    assert rules_broken(history, ccp_recert(date(2019, 6, 30))) == []
    assert standing(history, date(2019, 6, 30)).recertification.methods == ("ccp", "exam")


def test_recert_exam_only_ten_years_after_lapse():
    history = accepted(granted(LAPSING))
    assert rules_broken(history, ccp_recert(EXAM_ONLY_FROM)) == ["RECERT-EXAM-ONLY"]
    assert rules_broken(history, exam_recert(EXAM_ONLY_FROM)) == []
    assert standing(history, EXAM_ONLY_FROM).recertification.methods == ("exam",)


def test_recert_exam_only_switch_is_the_next_change_of_a_lapsed_standing():
    history = accepted(granted(LAPSING))
    assert standing(history, date(2015, 1, 1)).next_change_on == EXAM_ONLY_FROM
    assert standing(history, EXAM_ONLY_FROM).next_change_on is None


def test_recert_exam_result_needs_exam_passed_on_not_after_completion():
    history = accepted(granted(LAPSING))
    after = exam_recert(date(2012, 3, 1), exam_passed_on=date(2012, 3, 2))
    assert rules_broken(history, after) == ["EVENT-FUTURE", "RECERT-EXAM-RESULT"]
    on_day = exam_recert(date(2012, 3, 1), exam_passed_on=date(2012, 3, 1))
    assert rules_broken(history, on_day) == []


def test_recert_exam_result_not_before_the_lapse():
    history = accepted(granted(LAPSING))
    before = exam_recert(date(2012, 3, 1), exam_passed_on=date(2009, 6, 30))
    assert rules_broken(history, before) == ["RECERT-EXAM-RESULT"]
    on_lapse = exam_recert(date(2012, 3, 1), exam_passed_on=LAPSED_ON)
    assert rules_broken(history, on_lapse) == []


def test_an_accepted_ccp_recertification_stops_counting_when_a_later_audit_makes_it_exam_only():
    """A failed audit sent after it moves the lapse 10 years or more before it, as though the
    events had arrived in date order, where it is refused RECERT-EXAM-ONLY."""
    history = accepted(granted(LAPSING), ccp_recert(date(2019, 6, 30)))
    failed = audit(date(2009, 6, 1), "failed", LAPSING)
    assert rules_broken(history, failed) == []
    late = standing([*history, failed], date(2019, 7, 1))
    assert (late.status, late.certified_on, late.lapsed_on) == ("lapsed", LAPSING, date(2009, 6, 1))
    assert late.recertification.methods == ("exam",)
    in_date_order = accepted(granted(LAPSING), failed)
    assert rules_broken(in_date_order, ccp_recert(date(2019, 6, 30))) == ["RECERT-EXAM-ONLY"]


def test_an_accepted_exam_recertification_stops_counting_when_a_later_payment_moves_the_lapse():
    """A payment sent after it, dated before the lapse, moves the lapse after the exam, as though
    the events had arrived in date order, where it is refused RECERT-EXAM-RESULT."""
    recertified = exam_recert(date(2014, 1, 1), exam_passed_on=date(2010, 1, 1))
    history = accepted(granted(LAPSING), recertified)
    payment = fee(2006, date(2009, 6, 1))  # of the closed period: kept, counting there
    assert rules_broken(history, payment) == ["FEE-YEAR-RANGE"]
    late = standing([*history, payment], date(2014, 1, 2))
    assert (late.status, late.certified_on, late.lapsed_on) == ("lapsed", LAPSING, date(2010, 7, 1))
    in_date_order = accepted(granted(LAPSING), payment)
    assert rules_broken(in_date_order, recertified) == ["RECERT-EXAM-RESULT"]


def test_recert_ccp_points_needs_points_per_cycle():
    history = accepted(granted(LAPSING))
    assert rules_broken(history, ccp_recert(date(2012, 3, 1), 29.5)) == ["RECERT-CCP-POINTS"]
    assert rules_broken(history, ccp_recert(date(2012, 3, 1), None)) == ["RECERT-CCP-POINTS"]
    assert rules_broken(history, ccp_recert(date(2012, 3, 1), 30)) == []


def test_recert_ccp_points_activities_within_three_years():
    history = accepted(granted(LAPSING))
    done = date(2012, 3, 1)
    assert rules_broken(history, ccp_recert(done, 30, date(2009, 3, 1))) == []
    assert rules_broken(history, ccp_recert(done, 30, date(2009, 2, 28))) == ["RECERT-CCP-POINTS"]


def test_recert_ccp_points_activities_not_after_the_recertification():
    history = accepted(granted(LAPSING))
    done = date(2012, 3, 1)
    assert rules_broken(history, ccp_recert(done, 30, done)) == []
    later = replace(ccp_recert(done, 30, date(2012, 3, 2)), occurred_at=noon(date(2012, 4, 1)))
    assert rules_broken(history, later) == ["RECERT-CCP-POINTS"]


def test_recert_eligibility_must_be_current_criteria():
    history = accepted(granted(LAPSING))
    stale = exam_recert(date(2012, 3, 1), criteria="EC-2005")
    assert rules_broken(history, stale) == ["RECERT-ELIGIBILITY"]


def test_recert_reset_starts_new_period_on_completed_on():
    history = accepted(granted(LAPSING), fee(2006, date(2006, 6, 1)), exam_recert(date(2012, 3, 1)))
    on_day = standing(history, date(2012, 3, 1))
    assert on_day.status == "active"
    assert on_day.certified_on == date(2012, 3, 1)
    assert on_day.fees.paid_through == date(2013, 3, 31)
    assert (on_day.ccp.cycle_start, on_day.ccp.cycle_end) == (date(2012, 3, 1), date(2015, 3, 31))
    assert on_day.recertification.required is False


def test_recert_reset_ends_grandfathering():
    history = accepted(granted(LAPSING), exam_recert(date(2012, 3, 1)), *fees(2013, 2017, 3))
    assert standing(history, date(2012, 3, 1)).ccp.required is True
    assert reasons(history, date(2015, 4, 1)) == ["CCP-SHORT"]


def test_recert_reset_earlier_fees_and_activities_do_not_count():
    start = date(2015, 6, 3)
    history = accepted(
        granted(start),
        fee(2016, date(2016, 6, 1)),
        fee(2017, date(2016, 7, 1)),
        activity(date(2016, 1, 1), 30),
        audit(date(2017, 1, 10), "failed"),
        exam_recert(date(2017, 2, 1)),
    )
    on_day = standing(history, date(2018, 3, 1))
    assert on_day.fees.paid_through == date(2018, 2, 28)
    assert on_day.ccp.points_earned == 0
    assert on_day.status == "inactive"


def test_recert_exam_only_counts_from_the_lapse_of_the_recertified_period():
    """Recertified 2015-02-10, no fee paid since: lapsed again on 2019-03-01, exam only from
    2029-03-01 (not ten years after the first lapse, 2014-06-01)."""
    history = accepted(granted(date(2010, 5, 10)), exam_recert(date(2015, 2, 10), date(2015, 2, 1)))
    assert standing(history, date(2014, 6, 1)).lapsed_on == date(2014, 6, 1)
    assert rules_broken(history, exam_recert(date(2019, 2, 28))) == ["RECERT-NOT-LAPSED"]
    assert rules_broken(history, exam_recert(date(2019, 3, 1))) == []
    assert rules_broken(history, ccp_recert(date(2024, 6, 1))) == []
    assert rules_broken(history, ccp_recert(date(2029, 2, 28))) == []
    assert standing(history, date(2029, 2, 28)).recertification.methods == ("ccp", "exam")
    assert rules_broken(history, ccp_recert(date(2029, 3, 1))) == ["RECERT-EXAM-ONLY"]
    assert standing(history, date(2029, 3, 1)).recertification.methods == ("exam",)


def test_audit_failed_in_a_recertified_period_lapses_it_from_audited_on():
    history = accepted(
        granted(date(2010, 5, 10)),
        exam_recert(date(2015, 2, 10), date(2015, 2, 1)),
        *fees(2016, 2020, 2),
        audit(date(2016, 9, 1), cycle_start=date(2015, 2, 10)),
    )
    assert standing(history, date(2016, 8, 31)).status == "active"
    lapsed = standing(history, date(2016, 9, 1))
    assert (lapsed.status, lapsed.lapsed_on, lapsed.certified_on) == (
        "lapsed",
        date(2016, 9, 1),
        date(2015, 2, 10),
    )
    assert [r.rule for r in lapsed.reasons] == ["AUDIT-FAILED"]
