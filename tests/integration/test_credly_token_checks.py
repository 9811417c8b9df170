"""The Credly token expiry in `/readyz`, and the warning when the app or `gateway worker` starts
and daily from the workers' cron."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.platform import clock, logs
from jobs.cron import make_cron
from jobs.engine.worker import run_worker
from tests.support.badge_jobs import LIVE_CREDLY
from tests.support.credly_standin import CredlyStandIn

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today


@pytest.fixture
def json_logs() -> None:
    """Install the gateway's log handler before the test, so `caplog` keeps capturing."""
    logs.configure("INFO")


def token_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.credly"]


def test_readyz_reports_the_token_expiry_and_stays_ready_after_it(database_url, make_app):
    expired = clock.now().date() - timedelta(days=2)
    app = make_app(database_url=database_url, credly_token_expires_on=expired, **LIVE_CREDLY)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["credly"] == {
        "mode": "live",
        "token_expires_on": expired.isoformat(),
        "days_left": -2,
        "paused": None,
    }


def test_readyz_on_the_dry_run_reports_the_mode_without_an_expiry(database_url, make_app):
    response = make_app(database_url=database_url).test_client().get("/readyz")
    assert response.get_json()["credly"] == {
        "mode": "dry-run",
        "token_expires_on": None,
        "days_left": None,
        "paused": None,
    }


def test_app_start_warns_when_the_token_expires_within_14_days(
    json_logs, make_app, database_url, caplog
):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    make_app(database_url=database_url, credly_token_expires_on=clock.now().date(), **LIVE_CREDLY)
    make_app(
        database_url=database_url,
        credly_token_expires_on=clock.now().date() + timedelta(days=30),
        **LIVE_CREDLY,
    )
    assert len(token_warnings(caplog)) == 1


def test_gateway_worker_start_warns_when_the_token_expires_soon(
    json_logs, database_url, redis_client, redis_url, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INSTANCE_PATH": str(tmp_path),
        "CREDLY_API_BASE": LIVE_CREDLY["credly_api_base"],
        "CREDLY_ORGANIZATION_ID": LIVE_CREDLY["credly_organization_id"],
        "CREDLY_AUTH_TOKEN": LIVE_CREDLY["credly_auth_token"],
        "CREDLY_TOKEN_EXPIRES_ON": (clock.now().date() + timedelta(days=5)).isoformat(),
    }
    result = CliRunner().invoke(cli, ["worker", "--burst", "--no-scheduler"], env=env)
    assert result.exit_code == 0, result.output
    [warning] = token_warnings(caplog)
    assert "in 5 days" in warning


def test_gateway_worker_warns_of_the_expiry_it_reads_from_credly_at_start(
    json_logs, database_url, redis_client, redis_url, tmp_path, caplog
):
    """No CREDLY_TOKEN_EXPIRES_ON: the app's start knows no expiry; the worker learns it."""
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    expires = clock.now() + timedelta(days=6)
    with CredlyStandIn(token_expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")) as standin:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "INSTANCE_PATH": str(tmp_path),
            "CREDLY_API_BASE": standin.url,
            "CREDLY_ORGANIZATION_ID": standin.organization_id,
            "CREDLY_AUTH_TOKEN": standin.token,
        }
        result = CliRunner().invoke(cli, ["worker", "--burst", "--no-scheduler"], env=env)
        asked = [r["operation"] for r in standin.requests_seen()]
    assert result.exit_code == 0, result.output
    [warning] = token_warnings(caplog)
    assert "in 6 days" in warning
    assert asked == ["tokens"]  # no call more than the expiry's


@pytest.mark.parametrize("wrong", ["organization", "tokens"])
def test_gateway_worker_start_says_when_credly_does_not_know_the_organisation(
    json_logs, database_url, redis_client, redis_url, tmp_path, caplog, wrong
):
    """A wrong CREDLY_ORGANIZATION_ID: Credly answers 404 for everything under it, which the
    badge jobs would take for deletions. Only the organisation's 404 is said so, and pauses the
    Credly jobs; a token list that Credly does not serve alone is not."""
    caplog.set_level(logging.INFO, logger="gateway.credly")
    with CredlyStandIn() as standin:
        organization = "0f0f0f0f-wrong" if wrong == "organization" else standin.organization_id
        if wrong == "tokens":
            standin.queue_faults([{"status": 404}], operation="tokens")
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "INSTANCE_PATH": str(tmp_path),
            "CREDLY_API_BASE": standin.url,
            "CREDLY_ORGANIZATION_ID": organization,
            "CREDLY_AUTH_TOKEN": standin.token,
            "CREDLY_TOKEN_EXPIRES_ON": (clock.now().date() + timedelta(days=90)).isoformat(),
        }
        result = CliRunner().invoke(cli, ["worker", "--burst", "--no-scheduler"], env=env)
        asked = [r["operation"] for r in standin.requests_seen()]
    assert result.exit_code == 0, result.output
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    said = [m for m in errors if "CREDLY_ORGANIZATION_ID" in m]
    paused = redis_client.keys("gateway:credly-token:*:paused")
    if wrong == "organization":  # the Credly jobs wait until the id is right
        assert len(said) == 1 and "0f0f0f0f-wrong" in said[0]
        assert len(paused) == 1
    else:
        assert said == [] and paused == []
    assert asked == ["tokens", "list"]  # the badge list read only once the token list was a 404


@pytest.mark.parametrize(("days_left", "warnings"), [(14, 1), (0, 1), (15, 0), (30, 0)])
def test_the_daily_cron_warns_once_a_day_when_the_token_expires_within_14_days(
    json_logs, make_app, postgres_url, redis_client, redis_url, caplog, days_left, warnings
):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    expires = clock.now().date() + timedelta(days=days_left)
    app = make_app(
        database_url=postgres_url,
        redis_url=redis_url,
        credly_token_expires_on=expires,
        **LIVE_CREDLY,
    )
    svc = app.extensions["gateway"]
    [check] = [job for job in make_cron(svc).get_jobs() if job.name == "credly-token-check"]
    caplog.clear()  # the warning at start
    for _ in range(2):  # two workers' crons queue it on the same day
        check.enqueue(svc.redis)
    run_worker(svc, burst=True, with_scheduler=False, with_cron=False)
    assert len(token_warnings(caplog)) == warnings


def test_app_start_with_redis_unreachable_says_once_that_the_token_state_is_unreadable(
    json_logs, make_app, database_url, caplog
):
    caplog.set_level(logging.WARNING, logger="gateway.credly")
    make_app(database_url=database_url, redis_url="redis://127.0.0.1:1/0", **LIVE_CREDLY)
    unreadable = [w for w in token_warnings(caplog) if "token state unreadable" in w]
    assert len(unreadable) == 1
