"""actions(): what a change of standing calls for (the status table of docs/rules.md)."""

from datetime import date

from gateway.rules import (
    IssueBadge,
    ReplaceBadge,
    RevokeBadge,
    SyncVerification,
    actions,
)
from tests.support.rules_factories import (
    audit,
    exam_recert,
    fee,
    fees,
    granted,
    noon,
    revoked,
    standing,
    updated,
)

START = date(2005, 6, 3)  # grandfathered: fees alone decide; lapsed on 2009-07-01 unless paid
GRANT = granted(START)


def kinds(before, after, **options) -> list[str]:
    return [action.kind for action in actions(before, after, **options)]


def test_actions_grant_issues_badge_and_syncs():
    assert actions(None, standing([GRANT], START)) == [IssueBadge(), SyncVerification()]


def test_actions_a_new_certification_already_lapsed_only_syncs_it_had_no_badge():
    after = standing([GRANT], date(2010, 1, 1))
    assert after.status == "lapsed"
    assert actions(None, after) == [SyncVerification()]


def test_actions_active_to_inactive_keeps_badge_and_syncs():
    before = standing([GRANT], date(2006, 6, 30))
    after = standing([GRANT], date(2006, 7, 1))
    assert kinds(before, after) == ["sync_verification"]


def test_actions_inactive_to_active_keeps_the_badge_and_syncs():
    history = [GRANT, fee(2006, date(2006, 8, 1))]
    before = standing(history, date(2006, 7, 31))
    after = standing(history, date(2006, 8, 1))
    assert (before.status, after.status) == ("inactive", "active")
    assert kinds(before, after) == ["sync_verification"]


def test_actions_grant_recorded_when_already_inactive_issues_the_kept_badge():
    after = standing([GRANT], date(2006, 7, 1))  # FEE-OVERDUE: inactive, the badge is kept
    assert after.status == "inactive"
    assert kinds(None, after) == ["issue_badge", "sync_verification"]


def test_actions_recertification_already_inactive_issues_the_new_period_badge():
    history = [GRANT, exam_recert(date(2012, 3, 1))]  # RECERT-RESET: the badge is issued again
    before = standing(history, date(2012, 2, 29))
    after = standing(history, date(2013, 5, 1))  # the new period's first fee is overdue
    assert (before.status, after.status) == ("lapsed", "inactive")
    assert kinds(before, after) == ["issue_badge", "sync_verification"]


def test_actions_late_fee_curing_a_lapse_into_inactive_issues_the_badge_again():
    late = fee(2006, date(2009, 6, 30))  # paid on the last day of grace, recorded after the lapse
    before = standing([GRANT], date(2009, 7, 5))
    after = standing([GRANT, late], date(2009, 7, 5))
    assert (before.status, after.status) == ("lapsed", "inactive"), after.reasons
    assert kinds(before, after) == ["issue_badge", "sync_verification"]


def test_actions_lapse_revokes_with_the_deciding_rule():
    before = standing([GRANT], date(2009, 6, 30))
    after = standing([GRANT], date(2009, 7, 1))
    [revoke, sync] = actions(before, after)
    assert revoke == RevokeBadge(
        reason_rule="FEE-LAPSED",
        reason="renewal fees are paid through 2006-06-30 and went unpaid for more than 3 years",
    )
    assert sync == SyncVerification()


def test_actions_nothing_changed_nothing_to_do():
    before = standing([GRANT], date(2010, 1, 1))
    assert actions(before, standing([GRANT], date(2011, 1, 1))) == []
    active = standing([GRANT], date(2005, 7, 1))
    assert actions(active, standing([GRANT], date(2005, 8, 1))) == []


def test_actions_recertification_issues_the_new_period_badge():
    history = [GRANT, exam_recert(date(2012, 3, 1))]
    before = standing(history, date(2012, 2, 29))
    after = standing(history, date(2012, 3, 1))
    assert kinds(before, after) == ["issue_badge", "sync_verification"]


def test_actions_a_kept_recertification_coming_to_count_issues_the_new_period_badge():
    """Recertified while active (kept, RECERT-NOT-LAPSED), then a failed audit dated before it
    arrives: active to active in a new period, whose badge is issued (the issue job makes the
    kept badge the new period's: docs/rules.md, RECERT-RESET)."""
    grant = granted(date(2026, 3, 1))
    recert = exam_recert(date(2026, 9, 1), date(2026, 8, 20))
    failed = audit(date(2026, 6, 1), cycle_start=date(2026, 3, 1))
    before = standing([grant, recert], date(2026, 12, 4))
    after = standing([grant, recert, failed], date(2026, 12, 4))
    assert (before.status, before.certified_on) == ("active", date(2026, 3, 1))
    assert (after.status, after.certified_on) == ("active", date(2026, 9, 1))
    assert actions(before, after) == [IssueBadge(), SyncVerification()]


def test_actions_a_recertification_that_stops_counting_issues_the_first_period_badge():
    """Payments that arrive late show no lapse on the recertification's day: active in the new
    period to inactive in the first one, whose badge is issued again."""
    history = [granted(date(2021, 6, 3)), exam_recert(date(2026, 3, 1), date(2026, 2, 15))]
    paid = [fee(2023, date(2023, 5, 1)), fee(2022, date(2022, 5, 1))]
    before = standing(history + paid[:1], date(2026, 12, 4))
    after = standing(history + paid, date(2026, 12, 4))
    assert (before.status, before.certified_on) == ("active", date(2026, 3, 1))
    assert (after.status, after.certified_on) == ("inactive", date(2021, 6, 3))
    assert actions(before, after) == [IssueBadge(), SyncVerification()]


def test_actions_revocation_after_lapse_only_syncs():
    history = [GRANT, revoked(date(2012, 1, 1))]
    before = standing(history, date(2011, 12, 31))
    assert kinds(before, standing(history, date(2012, 1, 1))) == ["sync_verification"]
    active_before = standing([GRANT, revoked(date(2006, 1, 1))], date(2005, 12, 31))
    after = standing([GRANT, revoked(date(2006, 1, 1))], date(2006, 1, 1))
    assert kinds(active_before, after) == ["revoke_badge", "sync_verification"]
    assert actions(active_before, after)[0].reason_rule == "CERT-REVOKED"


def test_actions_name_change_replaces_badge_and_syncs():
    history = [GRANT, updated(date(2005, 9, 1), last_name="Lovelace")]
    before = standing(history, date(2005, 8, 31))
    after = standing(history, date(2005, 9, 1))
    assert actions(before, after) == [ReplaceBadge(), SyncVerification()]


def test_actions_a_late_update_older_than_the_grant_calls_for_nothing():
    grant = granted(START, occurred_at=noon(date(2005, 9, 1)))  # its member block is the newer
    older = updated(date(2005, 7, 1), last_name="Maiden", email="old@example.org")
    day = date(2005, 10, 1)
    assert actions(standing([grant], day), standing([grant, older], day)) == []


def test_actions_email_change_replaces_badge_without_sync():
    history = [GRANT, updated(date(2005, 9, 1), email="ada@lovelace.org")]
    before = standing(history, date(2005, 8, 31))
    assert kinds(before, standing(history, date(2005, 9, 1))) == ["replace_badge"]


def test_actions_name_change_while_lapsed_only_syncs():
    history = [GRANT, updated(date(2010, 9, 1), last_name="Lovelace")]
    before = standing(history, date(2010, 8, 31))
    assert kinds(before, standing(history, date(2010, 9, 1))) == ["sync_verification"]


def test_actions_name_change_as_inactive_turns_active_replaces_the_kept_badge():
    history = [GRANT, fee(2006, date(2006, 8, 1)), updated(date(2006, 8, 1), first_name="Augusta")]
    before = standing(history, date(2006, 7, 31))
    after = standing(history, date(2006, 8, 1))
    assert kinds(before, after) == ["replace_badge", "sync_verification"]


def test_actions_renewal_replaces_badge_only_when_badges_expire():
    history = [GRANT, *fees(2006, 2006, 6)]
    before = standing(history, date(2006, 5, 31))
    after = standing(history, date(2006, 6, 1))
    assert kinds(before, after) == ["sync_verification"]
    assert kinds(before, after, badge_expires=True) == ["replace_badge", "sync_verification"]


def test_actions_with_badges_expiring_a_late_payment_making_the_period_current_issues_its_badge():
    history = [GRANT, fee(2006, date(2006, 8, 1))]  # paid through 2006-05-31 until then
    before = standing(history, date(2006, 7, 31))
    after = standing(history, date(2006, 8, 1))
    assert (before.status, after.status) == ("inactive", "active")
    assert kinds(before, after) == ["sync_verification"]
    # a badge issued on grant would have been expired on arrival: none was; a no-op otherwise
    assert kinds(before, after, badge_expires=True) == [
        "issue_badge",
        "replace_badge",
        "sync_verification",
    ]


def test_actions_with_badges_expiring_a_payment_on_the_last_day_paid_for_keeps_the_badge_it_has():
    """Paid through today, the badge is still current: the payment renews it (a replace), and
    no second badge is issued."""
    day = date(2006, 6, 30)
    before, after = standing([GRANT], day), standing([GRANT, fee(2006, day)], day)
    assert before.fees.paid_through == day
    assert kinds(before, after, badge_expires=True) == ["replace_badge", "sync_verification"]


def test_actions_with_badges_expiring_a_late_payment_paying_through_today_issues_its_badge():
    day = date(2007, 6, 30)
    before, after = standing([GRANT], day), standing([GRANT, fee(2006, day)], day)
    assert (before.status, after.status, after.fees.paid_through) == ("inactive", "active", day)
    assert kinds(before, after, badge_expires=True) == [
        "issue_badge",
        "replace_badge",
        "sync_verification",
    ]
