"""scheduled_change: the next change of status that happens without any event."""

from __future__ import annotations

from datetime import date

from gateway import rules
from gateway.store.history import decode_event
from tests.support.events import fee, granted, revoked

POLICY = rules.load_policy(None)
#: Fees paid through 2020-03-31: inactive from 2020-04-01, lapsed from 2023-04-01.
HISTORY = [decode_event(b) for b in (granted("2018-03-10"), fee(2019, "2019-03-01"))]


def test_fees_overdue_turn_active_to_inactive_on_a_known_day():
    change = rules.scheduled_change(HISTORY, date(2020, 3, 15), date(2020, 4, 14), POLICY)
    assert change == rules.ScheduledChange(date(2020, 4, 1), "active", "inactive")


def test_days_when_only_the_reasons_change_are_stepped_over_to_the_lapse():
    change = rules.scheduled_change(HISTORY, date(2020, 5, 1), date(2023, 12, 31), POLICY)
    assert change == rules.ScheduledChange(date(2023, 4, 1), "inactive", "lapsed")


def test_nothing_is_scheduled_within_a_window_that_ends_before_the_change():
    assert rules.scheduled_change(HISTORY, date(2020, 3, 1), date(2020, 3, 31), POLICY) is None


def test_a_revoked_certification_has_nothing_scheduled():
    history = [*HISTORY, decode_event(revoked("2019-06-01"))]
    assert rules.scheduled_change(history, date(2020, 3, 15), date(2030, 1, 1), POLICY) is None
