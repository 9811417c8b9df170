"""The Credly token's expiry as `/readyz` reports it and the warning 14 days ahead (no I/O)."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest

from gateway.platform.config import Settings
from gateway.usecases.credly_token import credly_status, warn_if_token_expiring

TODAY = date(2026, 11, 24)


def live(expires_on: date | None) -> Settings:
    return Settings(
        credly_api_base="https://api.credly.test/v1",
        credly_organization_id="org-1",
        credly_auth_token="tok",
        credly_token_expires_on=expires_on,
    )


def test_status_reports_live_mode_the_expiry_and_the_days_left():
    status = credly_status(live(date(2026, 12, 4)), TODAY)
    assert status == {
        "mode": "live",
        "token_expires_on": "2026-12-04",
        "days_left": 10,
        "paused": None,
    }


def test_status_on_the_dry_run_without_an_expiry_says_so():
    assert credly_status(Settings(), TODAY) == {
        "mode": "dry-run",
        "token_expires_on": None,
        "days_left": None,
        "paused": None,
    }


@pytest.mark.parametrize(
    ("days_left", "warned", "words"),
    [
        (15, False, None),
        (14, True, "token expires in 14 days"),
        (1, True, "token expires in 1 day "),
        (0, True, "token expires today"),
        (-1, True, "token expired 1 day ago"),
        (-3, True, "token expired 3 days ago"),
    ],
)
def test_a_warning_is_logged_from_14_days_before_the_expiry(caplog, days_left, warned, words):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    assert warn_if_token_expiring(live(TODAY + timedelta(days=days_left)), TODAY) is warned
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(messages) is warned
    if warned:
        assert words in messages[0] and "CREDLY_TOKEN_EXPIRES_ON" in messages[0]


@pytest.mark.parametrize(
    "settings",
    [live(None), Settings(credly_token_expires_on=TODAY)],
    ids=["live-without-expiry", "dry-run"],
)
def test_no_warning_without_a_configured_expiry_or_on_the_dry_run(caplog, settings):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    assert warn_if_token_expiring(settings, TODAY) is False
    assert not caplog.records
