"""The daily sweep: lapses without events, idempotence, ranges, the due-only shortcut, the lock,
certifications not yet granted on the sweep's day, the worker's cron."""

from __future__ import annotations

import json
import random
import time as time_module
from datetime import UTC, date, datetime, time, timedelta

import pytest
from click.testing import CliRunner
from rq import Queue

from gateway.cli.main import cli
from gateway.platform import clock
from gateway.store.models import Badge, Certification, OutboxItem, VerificationRecord
from gateway.usecases import intake, lookup
from gateway.usecases.queries import standing_on
from gateway.usecases.sweep import Scope, sweep
from jobs import cron
from jobs.cron import (
    SweepRunning,
    check_credly_token,
    cron_expression,
    locked_sweep,
    make_cron,
    run_daily_sweep,
)
from tests.support.database import truncate
from tests.support.events import ccp, event, fee, granted, revoked
from tests.support.queue import killed_while_running

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def svc(database_url, make_app):
    return make_app(database_url=database_url, jobs_synchronous=True).extensions["gateway"]


def accept(svc, body, received_on: date | None = None) -> None:
    """Accept `body`, received at noon UTC of `received_on` (default: now)."""
    received_at = None if received_on is None else datetime.combine(received_on, time(12), UTC)
    answer = intake.submit_event(svc, body, received_at=received_at)
    assert answer.status == 202, answer.body
    svc.dispatcher.dispatch(answer.outbox_ids)


def status(svc, cert="CERT-1") -> str:
    with svc.db.sessions() as session:
        return session.get(Certification, cert).status


def test_a_member_who_stops_paying_goes_inactive_then_lapses_without_any_event(svc):
    accept(svc, granted("2026-03-01"))
    assert sweep(svc, Scope(as_of=date(2027, 3, 31))).evaluated == 0  # nothing due yet
    summary = sweep(svc, Scope(as_of=date(2027, 4, 1)))
    assert summary.transitions == {"active->inactive": 1}
    assert summary.actions == {"sync_verification": 1}
    with svc.db.sessions() as session:
        assert session.get(VerificationRecord, "CERT-1").status == "inactive"
    summary = sweep(svc, Scope(as_of=date(2030, 4, 1)))
    assert summary.transitions["inactive->lapsed"] == 1
    assert summary.actions["revoke_badge"] == 1
    assert status(svc) == "lapsed"
    with svc.db.sessions() as session:
        assert session.query(Badge).one().state == "revoked"
        assert session.get(VerificationRecord, "CERT-1").status == "lapsed"


def test_running_twice_on_the_same_day_changes_nothing_the_second_time(svc):
    accept(svc, granted("2026-03-01"))
    day = Scope(as_of=date(2027, 4, 1))
    assert sweep(svc, day).changed == 1
    again = sweep(svc, day)
    assert (again.evaluated, again.changed, dict(again.actions)) == (0, 0, {})
    full = sweep(svc, Scope(as_of=date(2027, 4, 1), full=True))
    assert (full.evaluated, full.changed, dict(full.actions)) == (1, 0, {})


def test_dry_run_reports_but_records_nothing(svc):
    accept(svc, granted("2026-03-01"))
    summary = sweep(svc, Scope(as_of=date(2030, 4, 1), dry_run=True))
    assert summary.transitions == {"active->lapsed": 1}
    assert summary.actions["revoke_badge"] == 1
    assert status(svc) == "active"


def test_an_id_range_visits_only_its_certifications(svc):
    for cert in ("A-1", "B-1", "C-1"):
        accept(svc, granted("2026-03-01", cert=cert))
    summary = sweep(svc, Scope(as_of=date(2027, 4, 1), first_id="B", last_id="B~"))
    assert summary.evaluated == 1
    assert [status(svc, c) for c in ("A-1", "B-1", "C-1")] == ["active", "inactive", "active"]


def test_small_batches_visit_everything_once(svc):
    for n in range(7):
        accept(svc, granted("2026-03-01", cert=f"K-{n}"))
    summary = sweep(svc, Scope(as_of=date(2027, 4, 1), batch_size=2))
    assert summary.evaluated == 7 and summary.changed == 7


def _random_history(rng: random.Random, cert: str) -> list[dict]:
    start = date(2019, 1, 1) + timedelta(days=rng.randrange(0, 2500))
    bodies = [granted(start.isoformat(), cert=cert)]
    for year in range(start.year + 1, 2027):
        if rng.random() < 0.8:
            paid = date(year, start.month, 1)
            if paid <= date(2026, 11, 20):
                bodies.append(fee(year, paid.isoformat(), cert=cert))
    for n in range(rng.randrange(0, 6)):
        done = start + timedelta(days=rng.randrange(1, 2000))
        if done <= date(2026, 11, 20):
            bodies.append(
                ccp(f"{cert}-a{n}", done.isoformat(), points=rng.choice([5, 10, 15]), cert=cert)
            )
    if rng.random() < 0.1:
        audited = start + timedelta(days=400)
        if audited <= date(2026, 11, 20):
            data = {
                "result": "failed",
                "audited_on": audited.isoformat(),
                "cycle_start": start.isoformat(),
            }
            bodies.append(event("audit.completed", data, cert=cert))
    return bodies


def test_due_only_sweeps_find_exactly_what_full_sweeps_find(make_app, tmp_path):
    apps = [
        make_app(database_url=f"sqlite:///{tmp_path / name}.sqlite3", jobs_synchronous=True)
        for name in ("due", "full")
    ]
    due, full = (app.extensions["gateway"] for app in apps)
    rng = random.Random(7)
    histories = [_random_history(rng, f"R-{n:03d}") for n in range(40)]
    for svc in (due, full):
        for history in histories:
            for body in history:
                intake.submit_event(svc, body)  # some are rejected by the rules: that is fine
    day = date(2026, 12, 1)
    while day < date(2037, 1, 1):
        a = sweep(due, Scope(as_of=day))
        b = sweep(full, Scope(as_of=day, full=True))
        assert (a.transitions, a.actions) == (b.transitions, b.actions), day
        assert a.evaluated <= b.evaluated
        day += timedelta(days=rng.randrange(1, 60))
    with due.db.sessions() as s1, full.db.sessions() as s2:
        left = {
            c.certification_id: (c.status, c.standing["reasons"]) for c in s1.query(Certification)
        }
        right = {
            c.certification_id: (c.status, c.standing["reasons"]) for c in s2.query(Certification)
        }
    assert left == right


def test_the_sweep_command_reports_transitions_and_queued_jobs_as_json_or_text(
    svc, database_url, tmp_path
):
    accept(svc, granted("2025-03-01"), received_on=date(2025, 3, 1))  # its change: 2026-04-01
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    result = CliRunner().invoke(cli, ["sweep", "--as-of", "2026-04-01", "--json"], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["transitions"] == {"active->inactive": 1}
    assert summary["actions_queued"] == {"sync_verification": 1}
    text = CliRunner().invoke(cli, ["sweep", "--as-of", "2030-04-01", "--dry-run"], env=env)
    assert "(dry run)" in text.output and "would queue revoke_badge: 1" in text.output


def test_a_full_sweep_before_a_grant_skips_that_certification(svc, database_url, tmp_path):
    accept(svc, granted("2026-01-05", cert="A-1"))
    accept(svc, granted("2026-03-01", cert="B-1"))

    def stored() -> tuple:
        with svc.db.sessions() as session:
            cert = session.get(Certification, "B-1")
            return cert.status, cert.evaluated_on, cert.standing

    before = stored()
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    # a dry run evaluates that day; a recording one leaves standings recorded for a later day
    for dry_run, visited in (["--dry-run"], (1, 1, 0)), ([], (0, 0, 0)):
        args = ["sweep", "--as-of", "2026-02-01", "--full", "--json", *dry_run]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["evaluated"], summary["not_yet_granted"], summary["changed"]) == visited
    text = CliRunner().invoke(
        cli, ["sweep", "--as-of", "2026-02-01", "--full", "--dry-run"], env=env
    )
    assert "evaluated 1 (skipped 1 granted after it), changed 0" in text.output
    assert stored() == before


def test_a_past_day_never_takes_back_a_standing_recorded_for_a_later_day(svc):
    accept(svc, granted("2020-01-15"), received_on=date(2020, 1, 15))
    accept(svc, revoked("2023-12-01"), received_on=date(2023, 12, 1))
    assert status(svc) == "revoked"
    summary = sweep(svc, Scope(as_of=date(2020, 6, 1), full=True))
    assert (summary.evaluated, summary.changed) == (0, 0)
    assert status(svc) == "revoked"
    with svc.db.sessions() as session:
        assert session.get(VerificationRecord, "CERT-1").status == "revoked"
    caught_up = sweep(svc, Scope(as_of=date(2023, 12, 2), full=True))  # not evaluated since
    assert caught_up.evaluated == 1 and status(svc) == "revoked"


def test_a_future_day_is_recorded_with_a_warning_and_stands_until_an_event_or_that_day(
    svc, database_url, tmp_path, caplog
):
    accept(svc, granted("2022-12-10"))  # fees unpaid since: inactive today, lapsed on 2027-01-02
    assert status(svc) == "inactive"
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    caplog.set_level("WARNING", logger="gateway.usecases.sweep")
    swept = CliRunner().invoke(cli, ["sweep", "--as-of", "2027-01-02", "--json"], env=env)
    assert swept.exit_code == 0, swept.output
    summary = json.loads(swept.stdout)
    assert summary["transitions"] == {"inactive->lapsed": 1}
    assert summary["actions_queued"] == {"revoke_badge": 1, "sync_verification": 1}
    [warning] = [r for r in caplog.records if r.name == "gateway.usecases.sweep"]
    assert warning.levelname == "WARNING"
    assert "after today (2026-12-04, UTC): the standings are recorded" in warning.getMessage()
    with svc.db.sessions() as session:
        cert = session.get(Certification, "CERT-1")
        assert (cert.status, cert.evaluated_on) == ("lapsed", date(2027, 1, 2))
        queued = [i.id for i in session.query(OutboxItem).filter_by(state="pending")]
    svc.dispatcher.dispatch(queued)
    assert lookup.record_of(svc.db, svc.policy, "CERT-1").status == "lapsed"  # the stored record
    today = clock.now().date()
    assert standing_on(svc, "CERT-1", today)["status"] == "inactive"  # today's, evaluated
    with svc.db.sessions() as session:
        assert session.query(Badge).one().state == "revoked"
    # the daily sweep of a day before never takes the recorded standing back
    assert run_daily_sweep()["evaluated"] == 0
    assert sweep(svc, Scope(as_of=date(2026, 12, 3), full=True)).evaluated == 0
    assert status(svc) == "lapsed"
    # an event records its standing as of its own day
    accept(svc, fee(2026, "2026-12-04"))
    with svc.db.sessions() as session:
        cert = session.get(Certification, "CERT-1")
        assert (cert.status, cert.evaluated_on) == ("inactive", date(2026, 12, 4))


def test_a_full_sweep_takes_back_the_standings_a_sweep_ahead_recorded(svc, database_url, tmp_path):
    """A day ahead typed by mistake revokes badges; `gateway sweep --full` puts every standing
    recorded ahead of today back to today's, queueing the jobs that calls for."""
    accept(svc, granted("2022-12-10"))  # inactive today, lapsed on 2027-01-02
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    ahead = CliRunner().invoke(cli, ["sweep", "--as-of", "2062-01-02", "--json"], env=env)
    assert json.loads(ahead.stdout)["transitions"] == {"inactive->lapsed": 1}
    assert status(svc) == "lapsed"
    back = CliRunner().invoke(cli, ["sweep", "--full", "--json"], env=env)
    assert back.exit_code == 0, back.output
    summary = json.loads(back.stdout)
    assert summary["transitions"] == {"lapsed->inactive": 1}
    assert "issue_badge" in summary["actions_queued"]
    with svc.db.sessions() as session:
        cert = session.get(Certification, "CERT-1")
        assert (cert.status, cert.evaluated_on) == ("inactive", clock.now().date())


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("2026-02-30", "2026-02-30 is not a real date"),
        ("2026-13-01", "2026-13-01 is not a real date"),
        ("2026/02/01", "'2026/02/01' is not a day written YYYY-MM-DD"),
        ("20260201", "'20260201' is not a day written YYYY-MM-DD"),
    ],
)
def test_a_sweep_day_that_is_not_a_day_says_why(tmp_path, as_of, says):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    refused = CliRunner().invoke(cli, ["sweep", "--as-of", as_of], env=env)
    assert refused.exit_code == 2
    assert refused.output.splitlines()[-1] == f"Error: Invalid value for '--as-of': {says}"
    shown = CliRunner().invoke(cli, ["sweep", "--help"], env=env).output
    assert "--as-of YYYY-MM-DD" in shown and "%Y" not in shown


def test_a_sweep_batch_of_no_certification_is_refused(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    refused = CliRunner().invoke(cli, ["sweep", "--batch-size", "0"], env=env)
    assert refused.exit_code == 2 and "--batch-size" in refused.output


def test_only_one_sweep_runs_at_a_time(make_app, postgres_url, redis_url, redis_client):
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    scope = Scope(as_of=date(2026, 4, 1))
    held = svc.redis.lock("gateway:sweep::", timeout=60)
    assert held.acquire(blocking=False)
    try:
        with pytest.raises(SweepRunning):
            locked_sweep(svc, scope)
        assert run_daily_sweep("2026-04-01") == {"skipped": True}
    finally:
        held.release()
    assert run_daily_sweep("2026-04-01")["evaluated"] == 0
    assert run_daily_sweep("2026-04-01") == {"skipped": True}  # another worker's, after it: once
    assert run_daily_sweep("2026-04-02")["evaluated"] == 0
    truncate(postgres_url)


def test_a_sweep_that_outlives_its_lock_keeps_what_it_recorded_and_warns(
    make_app, postgres_url, redis_url, redis_client, monkeypatch
):
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    sweep_itself = cron._sweep_and_notices

    def outliving(*args, **kwargs):
        summary = sweep_itself(*args, **kwargs)
        svc.redis.delete("gateway:sweep::")  # as when the lock's time ran out
        return summary

    monkeypatch.setattr(cron, "_sweep_and_notices", outliving)
    warned: list[tuple] = []
    monkeypatch.setattr(cron.log, "warning", lambda *args: warned.append(args))
    summary = locked_sweep(svc, Scope(as_of=date(2026, 4, 1)))
    assert summary.as_dict()["evaluated"] == 0
    assert warned == [
        (
            "%s lost its lock (not renewed for %d s): another may have run meanwhile",
            "the sweep",
            cron.LOCK_SECONDS,
        )
    ]
    truncate(postgres_url)


def test_a_sweep_longer_than_its_lock_expiry_keeps_its_lock(
    make_app, postgres_url, redis_url, redis_client, monkeypatch
):
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    monkeypatch.setattr(cron, "LOCK_SECONDS", 1.5)  # renewed every 0.5 s
    scope, sweep_itself = Scope(as_of=date(2026, 4, 1)), cron._sweep_and_notices

    def slow(*args, **kwargs):
        time_module.sleep(2)  # longer than the lock's expiry: renewed meanwhile
        with pytest.raises(SweepRunning):
            locked_sweep(svc, scope)
        return sweep_itself(*args, **kwargs)

    monkeypatch.setattr(cron, "_sweep_and_notices", slow)
    warned: list[tuple] = []
    monkeypatch.setattr(cron.log, "warning", lambda *args: warned.append(args))
    assert locked_sweep(svc, scope).as_dict()["evaluated"] == 0
    assert warned == [] and not svc.redis.exists("gateway:sweep::")
    truncate(postgres_url)


def test_the_days_sweep_runs_that_day_after_its_sweeper_was_killed(
    make_app, postgres_url, redis_url, redis_client, monkeypatch
):
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    monkeypatch.setattr(cron, "LOCK_SECONDS", 3)  # outlives the kill by 2 s at least
    killed_while_running(run_daily_sweep, cron, "_sweep_and_notices")
    assert run_daily_sweep() == {"skipped": True}  # another worker's, while the lock lasts
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    [job_id] = queue.scheduled_job_registry.get_job_ids()
    again = queue.fetch_job(job_id)  # RQ's scheduler queues it SWEEP_RECHECK_SECONDS later
    assert again.func is run_daily_sweep and again.args == (clock.now().date().isoformat(),)
    lock = cron.sweep_lock(svc, Scope(as_of=clock.now().date())).name
    deadline = time_module.monotonic() + 30
    while svc.redis.exists(lock):  # no longer renewed, the killed sweeper's lock expires
        assert time_module.monotonic() < deadline, "the killed sweeper's lock outlived it"
        time_module.sleep(0.1)
    assert run_daily_sweep(*again.args)["evaluated"] == 0
    assert run_daily_sweep() == {"skipped": True}  # done
    assert len(queue.scheduled_job_registry) == 1  # no more looks
    truncate(postgres_url)


def test_the_worker_schedules_the_sweep_daily_at_the_configured_utc_time(
    make_app, postgres_url, redis_url
):
    svc = make_app(database_url=postgres_url, redis_url=redis_url, sweep_time="04:05").extensions[
        "gateway"
    ]
    jobs = make_cron(svc).get_jobs()
    assert [job.func for job in jobs] == [run_daily_sweep, check_credly_token]
    for job in jobs:
        assert job.cron == "5 4 * * *" == cron_expression("04:05")
        nxt = job.get_next_enqueue_time()
        assert (nxt.hour, nxt.minute) == (4, 5)


@pytest.mark.parametrize(
    ("now", "due"),
    [(time(4, 6), date(2026, 12, 4)), (time(4, 4), date(2026, 12, 3))],
    ids=["after-sweep-time", "before-it"],
)
def test_a_worker_starting_queues_the_sweep_of_the_day_due_unless_it_is_done(
    make_app, postgres_url, redis_url, redis_client, now, due
):
    """A deploy at SWEEP_TIME leaves no worker for the cron: the next one to start sweeps."""
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url, sweep_time="04:05").extensions[
        "gateway"
    ]
    clock.set_now(datetime.combine(date(2026, 12, 4), now, UTC))
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    assert cron.catch_up(svc) == due
    [job] = queue.get_jobs()
    assert job.func is run_daily_sweep and job.args == (due.isoformat(),)
    job.perform()  # as a worker runs it: the day swept and marked done
    assert cron.catch_up(svc) is None  # done: no other sweep queued
    assert [j.func for j in queue.get_jobs()].count(run_daily_sweep) == 1
    truncate(postgres_url)


def test_a_full_sweep_after_a_rule_changed_acts_on_the_recorded_status(svc):
    accept(svc, granted("2026-03-01"))
    with svc.db.transaction() as session:  # as recorded by a release that read a rule otherwise
        cert = session.get(Certification, "CERT-1")
        cert.status, cert.standing = "lapsed", {**cert.standing, "status": "lapsed"}
        session.get(VerificationRecord, "CERT-1").status = "lapsed"
    summary = sweep(svc, Scope(as_of=clock.now().date(), full=True))
    assert summary.transitions == {"lapsed->active": 1}
    assert summary.actions == {"issue_badge": 1, "sync_verification": 1}
    with svc.db.sessions() as session:
        assert session.get(VerificationRecord, "CERT-1").status == "active"


def test_a_full_sweep_after_a_rule_changed_brings_the_member_details_up_to_date(svc):
    accept(svc, granted("2026-03-01"))
    with (
        svc.db.transaction() as session
    ):  # as recorded by a release that read the details otherwise
        cert = session.get(Certification, "CERT-1")
        named = {**cert.standing["member"], "last_name": "Byron"}
        cert.standing = {**cert.standing, "member": named}
        session.get(VerificationRecord, "CERT-1").name = "Ada Byron"
    summary = sweep(svc, Scope(as_of=clock.now().date(), full=True))
    assert summary.transitions == {}
    assert summary.actions == {"replace_badge": 1, "sync_verification": 1}
    with svc.db.sessions() as session:
        assert session.get(Certification, "CERT-1").standing["member"]["last_name"] == "Lovelace"
        assert session.get(VerificationRecord, "CERT-1").name == "Ada Lovelace"
    again = sweep(svc, Scope(as_of=clock.now().date(), full=True))
    assert (again.changed, dict(again.actions)) == (0, {})
