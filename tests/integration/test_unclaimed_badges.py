"""`gateway badges unclaimed`: badges still pending after N days, as a table or JSON."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.store.models import Badge, utcnow
from gateway.usecases import intake
from tests.support.events import granted
from tests.support.verification import days_ago

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today


@pytest.fixture
def env(database_url, make_app, tmp_path) -> dict[str, str]:
    """Three certifications: CERT-OLD pending 20 days, CERT-NEW pending 3, CERT-TAKEN accepted.

    The database is set up before the apps, so that the apps (and their job threads) end before
    its tables are emptied."""
    svc = make_app(database_url=database_url).extensions["gateway"]
    now = utcnow()
    badges = {
        "CERT-OLD": ("pending", 20),
        "CERT-NEW": ("pending", 3),
        "CERT-TAKEN": ("accepted", 30),
    }
    for cert in badges:
        intake.submit_event(svc, granted(days_ago(30), cert=cert))
    with svc.db.transaction() as session:
        for cert, (state, days) in badges.items():
            since = now - timedelta(days=days)
            session.add(
                Badge(
                    certification_id=cert,
                    period_start=date(2026, 3, 1),
                    state=state,
                    credly_badge_id=f"b-{cert}",
                    issued_at=since,
                    state_changed_at=since,
                )
            )
    return {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path / "cli")}


def unclaimed(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["badges", "unclaimed", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_lists_badges_pending_14_days_or_more_by_default(env):
    [row] = json.loads(unclaimed(env, "--json"))
    assert row["certification_id"] == "CERT-OLD"
    assert (row["name"], row["email"]) == ("Ada Lovelace", "ada@example.org")
    assert row["credly_badge_id"] == "b-CERT-OLD" and row["days_pending"] == 20
    assert row["issued_at"] is not None


def test_days_option_widens_the_list_oldest_first_and_never_shows_claimed_badges(env):
    rows = json.loads(unclaimed(env, "--days", "2", "--json"))
    assert [r["certification_id"] for r in rows] == ["CERT-OLD", "CERT-NEW"]


def test_the_table_shows_certification_name_email_and_issue_time(env):
    table = unclaimed(env)
    assert "CERTIFICATION" in table and "ISSUED AT" in table
    line = next(line for line in table.splitlines() if line.startswith("CERT-OLD"))
    assert "Ada Lovelace" in line and "ada@example.org" in line
    assert "CERT-NEW" not in table and "CERT-TAKEN" not in table


def test_nothing_pending_that_long_says_so(env):
    assert "no badge pending for 60 days" in unclaimed(env, "--days", "60")
