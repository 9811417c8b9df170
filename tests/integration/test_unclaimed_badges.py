"""`gateway badges unclaimed`: badges still pending after N days, as a table or JSON; only those a
member should still claim, at the address their claim e-mail went to."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.platform import clock
from gateway.store.models import Badge
from gateway.usecases import intake, queries
from tests.support.events import granted, revoked
from tests.support.verification import days_ago

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today


def certified_on() -> str:
    """The day the certifications were granted: 30 days before the gateway's today (read when
    a test runs, after --clock has moved that today)."""
    return days_ago(30)


@pytest.fixture
def svc(database_url, make_app):
    """Jobs left to a server (none runs): the badges are the test's. The database is set up
    before the apps, so that the apps end before its tables are emptied."""
    return make_app(database_url=database_url, jobs="IN_SERVER").extensions["gateway"]


def add_badge(svc, cert: str, state: str, days: int, **fields: object) -> None:
    """A badge of `cert`'s current period (unless `period_start` says otherwise), in `state`
    since `days` days ago."""
    since = clock.now() - timedelta(days=days)
    fields = {"period_start": date.fromisoformat(certified_on()), "issued_at": since, **fields}
    with svc.db.transaction() as session:
        session.add(
            Badge(
                certification_id=cert,
                state=state,
                credly_badge_id=f"b-{cert}",
                state_changed_at=since,
                **fields,
            )
        )


@pytest.fixture
def env(svc, database_url, tmp_path) -> dict[str, str]:
    """Three certifications: CERT-OLD pending 20 days, CERT-NEW pending 3, CERT-TAKEN accepted."""
    badges = {
        "CERT-OLD": ("pending", 20),
        "CERT-NEW": ("pending", 3),
        "CERT-TAKEN": ("accepted", 30),
    }
    for cert in badges:
        intake.submit_event(svc, granted(certified_on(), cert=cert))
    for cert, (state, days) in badges.items():
        add_badge(svc, cert, state, days)
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
    assert "CERTIFICATION" in table and "ISSUE DATE ON BADGE" in table
    line = next(line for line in table.splitlines() if line.startswith("CERT-OLD"))
    assert "Ada Lovelace" in line and "ada@example.org" in line
    assert "CERT-NEW" not in table and "CERT-TAKEN" not in table


def test_the_table_shows_every_name_and_address_whole_in_aligned_columns(svc, env):
    """A name past 28 characters and an address past 32 were cut short (an address the team
    would copy to write to the member, and not theirs), and a long certification id pushed its
    row's cells out from under their headings."""
    cert = "CERT-LONG-NUMBER-OF-A-CERTIFICATION"
    name = "Maria-Konstantina Papadopoulou-Ellinikou"
    address = "maria-konstantina.papadopoulou@members.example.org"
    grant = granted(certified_on(), cert=cert)
    grant["data"]["member"] |= dict(zip(("first_name", "last_name"), name.split(), strict=True))
    intake.submit_event(svc, grant)
    add_badge(svc, cert, "pending", 20, recipient_email=address)
    header, *lines = unclaimed(env).splitlines()
    rows = {line.split()[0]: line for line in lines}
    for row, cells in ((rows[cert], (name, address)), (rows["CERT-OLD"], ("Ada", "ada@"))):
        assert [row.index(cell) for cell in cells] == [header.index("NAME"), header.index("EMAIL")]
        assert row.rindex(" 20") + 1 == header.index("DAYS PENDING"), (header, row)


PARIS = ZoneInfo("Europe/Paris")


def late_badge(svc) -> datetime:
    """CERT-LATE, certified 200 days ago, whose badge was issued 20 days ago (its grant recorded
    late), dated as the gateway dates it: the start of the certification's day in TIME_ZONE
    (Paris here), the evening before in UTC. That start."""
    day = date.fromisoformat(days_ago(200))
    intake.submit_event(svc, granted(day.isoformat(), cert="CERT-LATE"))
    dated = datetime.combine(day, time(0), PARIS)
    add_badge(svc, "CERT-LATE", "pending", 20, period_start=day, issued_at=dated)
    return dated


def test_the_table_names_the_badges_issue_date_apart_from_when_it_became_pending(svc, env):
    """The issue date on a badge is its certification's day, however long after that day the
    badge was issued: the table says which date is which, each a day in TIME_ZONE, and counts
    the days pending from the second."""
    dated = late_badge(svc)
    header, *lines = unclaimed({**env, "TIME_ZONE": "Europe/Paris"}).splitlines()
    names = ("ISSUE DATE ON BADGE", "PENDING SINCE", "DAYS PENDING")
    columns = [header.index(name) for name in names]
    assert columns == sorted(columns) and "ISSUED AT" not in header
    [line] = [line for line in lines if line.startswith("CERT-LATE")]
    since = (clock.now() - timedelta(days=20)).astimezone(PARIS).date()
    assert line.split()[-3:] == [dated.date().isoformat(), since.isoformat(), "20"]


def test_json_adds_the_issue_date_on_the_badge_and_keeps_issued_at(svc, env):
    dated = late_badge(svc)
    rows = json.loads(unclaimed({**env, "TIME_ZONE": "Europe/Paris"}, "--json"))
    [row] = [r for r in rows if r["certification_id"] == "CERT-LATE"]
    assert row["issue_date_on_badge"] == dated.date().isoformat()
    assert datetime.fromisoformat(row["issued_at"]) == dated  # the instant, in UTC, as before
    assert row["days_pending"] == 20


def test_nothing_pending_that_long_says_so(env):
    assert "no badge pending for 60 days" in unclaimed(env, "--days", "60")


def test_only_badges_a_member_should_still_claim_are_listed(svc, env):
    """Not one whose certification was revoked (its revoke failed for good, or is on its way),
    nor one in error, nor one of an earlier period."""
    intake.submit_event(svc, granted(certified_on(), cert="CERT-REVOKED"))
    intake.submit_event(svc, revoked(days_ago(1), cert="CERT-REVOKED"))
    add_badge(svc, "CERT-REVOKED", "pending", 20, last_error="Credly refused the revoke")
    intake.submit_event(svc, granted(certified_on(), cert="CERT-ERROR"))
    add_badge(svc, "CERT-ERROR", "pending", 20, last_error="Credly refused the replace")
    intake.submit_event(svc, granted(certified_on(), cert="CERT-EARLIER"))
    add_badge(svc, "CERT-EARLIER", "pending", 20, period_start=date(2020, 1, 1))
    rows = json.loads(unclaimed(env, "--days", "0", "--json"))
    assert [r["certification_id"] for r in rows] == ["CERT-OLD", "CERT-NEW"]


def test_the_address_is_the_one_the_badge_was_issued_to(svc, env):
    """A badge kept at its first address when the member changed e-mail (with
    CREDLY_REVOKED_IS_DUPLICATE) is claimed there, not at the member's current address."""
    intake.submit_event(svc, granted(certified_on(), cert="CERT-KEPT"))
    add_badge(svc, "CERT-KEPT", "pending", 20, recipient_email="ada@old.example.org")
    rows = {r["certification_id"]: r for r in json.loads(unclaimed(env, "--json"))}
    assert rows["CERT-KEPT"]["email"] == "ada@old.example.org"
    assert rows["CERT-OLD"]["email"] == "ada@example.org"  # recorded before it was kept: current


def test_limit_lists_the_longest_pending_of_those_a_member_should_claim(svc, env, monkeypatch):
    """--limit counts only badges listed (not an earlier period's, read and passed over), the
    rows read a few at a time (2 here)."""
    monkeypatch.setattr(queries, "STREAM_ROWS", 2)
    intake.submit_event(svc, granted(certified_on(), cert="CERT-EARLIER"))
    add_badge(svc, "CERT-EARLIER", "pending", 40, period_start=date(2020, 1, 1))
    intake.submit_event(svc, granted(certified_on(), cert="CERT-OLDER"))
    add_badge(svc, "CERT-OLDER", "pending", 25)
    rows = json.loads(unclaimed(env, "--days", "0", "--limit", "2", "--json"))
    assert [r["certification_id"] for r in rows] == ["CERT-OLDER", "CERT-OLD"]
    every = json.loads(unclaimed(env, "--days", "0", "--json"))
    assert [r["certification_id"] for r in every] == ["CERT-OLDER", "CERT-OLD", "CERT-NEW"]
    refused = CliRunner().invoke(cli, ["badges", "unclaimed", "--limit", "0"], env=env)
    assert refused.exit_code == 2
