"""The settings of the verification lookup: rate limits and trusted proxies."""

import pytest

from gateway.platform.config import ConfigError, Settings


def test_rate_limits_default_to_60_anonymous_and_600_per_client_a_minute():
    settings = Settings.from_env({})
    assert settings.verify_rate_limit == "60/minute"
    assert settings.verify_rate_limit_authenticated == "600/minute"
    assert settings.trusted_proxies == 0


def test_rate_limits_and_trusted_proxies_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "VERIFY_RATE_LIMIT": "10 per minute;100/hour",
            "VERIFY_RATE_LIMIT_AUTHENTICATED": "50/second;200/1 minute",  # a window of 1: taken
            "TRUSTED_PROXIES": "2",
        }
    )
    assert settings.verify_rate_limit == "10 per minute;100/hour"
    assert settings.verify_rate_limit_authenticated == "50/second;200/1 minute"
    assert settings.trusted_proxies == 2


@pytest.mark.parametrize("name", ["VERIFY_RATE_LIMIT", "VERIFY_RATE_LIMIT_AUTHENTICATED"])
def test_a_rate_limit_that_cannot_be_parsed_is_refused_naming_the_setting(name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "sixty a minute"})
