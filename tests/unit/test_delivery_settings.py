"""Delivery settings (directory, retry window, private and plain http targets) and the delivery
retry policy."""

from __future__ import annotations

import pytest

from gateway.platform.config import ConfigError, Settings
from jobs.deliveries import CAP_SECONDS, retry_policy
from jobs.engine.retry import MAX_RETRY_AFTER_SECONDS, RetryPolicy, within

DIRECTORY = {
    "DIRECTORY_BASE_URL": "https://directory.example/v2/",
    "DIRECTORY_TOKEN_URL": "https://directory.example/oauth/token",
    "DIRECTORY_CLIENT_ID": "gateway",
    "DIRECTORY_CLIENT_SECRET": "dir-secret",
}


def test_the_directory_is_read_from_four_settings_and_its_secret_kept_out_of_repr():
    settings = Settings.from_env(DIRECTORY)
    assert settings.directory_base_url == "https://directory.example/v2"
    assert settings.directory_client_id == "gateway"
    assert "dir-secret" not in repr(settings)


@pytest.mark.parametrize("missing", sorted(DIRECTORY))
def test_a_partly_configured_directory_is_refused_naming_what_is_missing(missing):
    env = {k: v for k, v in DIRECTORY.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_a_delivery_retry_base_below_one_second_is_refused():
    with pytest.raises(ConfigError, match="DELIVERY_RETRY_BASE_SECONDS"):
        Settings.from_env({"DELIVERY_RETRY_BASE_SECONDS": "0"})


def test_private_webhook_targets_are_refused_unless_the_operator_allows_them():
    assert not Settings.from_env({}).webhook_allow_private_targets
    allowed = Settings.from_env({"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"})
    assert allowed.webhook_allow_private_targets


def test_plain_http_webhook_targets_are_refused_unless_the_operator_allows_them():
    assert not Settings.from_env({}).webhook_allow_plain_http
    assert not Settings.from_env({"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}).webhook_allow_plain_http
    assert Settings.from_env({"WEBHOOK_ALLOW_PLAIN_HTTP": "true"}).webhook_allow_plain_http


def test_by_default_a_delivery_is_retried_for_most_of_a_day_but_not_longer():
    policy = retry_policy(Settings())
    longest = sum(min(CAP_SECONDS, 30 * 2**n) for n in range(policy.max_attempts - 1))
    assert 20 * 3600 <= longest <= 24 * 3600
    assert policy.max_attempts >= 10


def test_the_retry_window_bounds_the_attempts():
    assert within(0, 1, 60) == RetryPolicy(max_attempts=1, base=1, cap=60)
    assert within(3, 1, 60).max_attempts == 3  # waits of 1 s and 2 s fit in 3 s
    assert within(3.5, 1, 60).max_attempts == 3  # a third wait of 4 s would not


@pytest.mark.parametrize("asked", [86_401, 1e12, 1e20, float("inf")])
def test_a_retry_after_beyond_a_day_waits_a_day(asked):
    policy = RetryPolicy(max_attempts=30, base=1, cap=60)
    assert policy.delay(1, retry_after=asked) == MAX_RETRY_AFTER_SECONDS == 86_400


@pytest.mark.parametrize("asked", [float("nan"), -5.0, 0.0])
def test_a_retry_after_that_is_no_wait_leaves_the_back_off(asked):
    assert 1 <= RetryPolicy(max_attempts=30, base=2, cap=60).delay(1, retry_after=asked) <= 2


def test_waits_grow_up_to_the_cap_and_a_retry_after_is_honoured():
    policy = RetryPolicy(max_attempts=30, base=1, cap=60)
    assert 30 <= policy.delay(20) <= 60
    assert policy.delay(1, retry_after=90) == 90
