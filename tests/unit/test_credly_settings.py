"""The Credly settings the webhook endpoint and the token pause read."""

import pytest

from gateway.platform.config import ConfigError, Settings


def test_webhook_limits_and_the_pause_have_sane_defaults_and_are_read_from_the_environment():
    defaults = Settings.from_env({})
    assert defaults.credly_webhook_rate_limit == "120/minute"
    assert defaults.credly_webhook_checks == "600/hour"
    assert (defaults.credly_webhook_forged_checks, defaults.credly_webhook_refused) == (
        "5/hour",
        "10/hour",
    )
    assert defaults.credly_pause_seconds == 300
    given = Settings.from_env(
        {
            "CREDLY_WEBHOOK_RATE_LIMIT": "10/second",
            "CREDLY_WEBHOOK_CHECKS": "100/hour",
            "CREDLY_PAUSE_SECONDS": "60",
            "CREDLY_WEBHOOK_FORGED_CHECKS": "2/hour",
            "CREDLY_WEBHOOK_REFUSED": "1/minute;20/day",
        }
    )
    assert (given.credly_webhook_rate_limit, given.credly_webhook_checks) == (
        "10/second",
        "100/hour",
    )
    assert given.credly_pause_seconds == 60
    assert (given.credly_webhook_forged_checks, given.credly_webhook_refused) == (
        "2/hour",
        "1/minute;20/day",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CREDLY_WEBHOOK_RATE_LIMIT", "lots"),
        ("CREDLY_WEBHOOK_CHECKS", "a few"),
        ("CREDLY_WEBHOOK_FORGED_CHECKS", "0/hour"),
        ("CREDLY_WEBHOOK_REFUSED", "some"),
        ("CREDLY_PAUSE_SECONDS", "0"),
        ("CREDLY_PAUSE_SECONDS", "soon"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
