"""The embedded default's daily cron: a serving process without Redis runs the daily sweep itself,
once a day across the processes that share its database, catching up at start."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import click
import pytest
from sqlalchemy.exc import OperationalError

from gateway.cli.group import command_app
from gateway.platform import clock
from gateway.store.models import Badge, Certification, DailyRun, VerificationRecord
from gateway.usecases import intake
from jobs import cron
from jobs import reconcile as reconcile_module
from jobs.cron import InProcessCron
from jobs.engine import outbox
from tests.support.credly_standin import CredlyStandIn
from tests.support.events import granted

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for

#: The day LAPSE-1 lapses, its fees unpaid since it was certified on 2022-12-10.
LAPSES_ON = date(2027, 1, 2)


@pytest.fixture(autouse=True)
def at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A serving process runs the daily run it finds due at once, not CATCH_UP_SECONDS after."""
    monkeypatch.setattr(cron, "CATCH_UP_SECONDS", 0)


def _until(done: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.05)


def _claims(svc) -> list[tuple[str, date]]:
    with svc.db.sessions() as session:
        return sorted((run.name, run.day) for run in session.query(DailyRun))


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "jobs.cron" and r.getMessage().startswith(text)]


def _crons(svc) -> list[InProcessCron]:
    return [t for t in threading.enumerate() if isinstance(t, InProcessCron) and t.svc is svc]


def _granted_lapse_1(make_app, database_url: str) -> None:
    """LAPSE-1, certified on 2022-12-10 with no fee paid since, recorded today (inactive), its
    badge issued on the dry-run backend and its verification record synced."""
    svc = make_app(database_url=database_url, jobs_synchronous=True).extensions["gateway"]
    answer = intake.submit_event(svc, granted("2022-12-10", cert="LAPSE-1"))
    assert answer.status == 202, answer.body
    svc.dispatcher.dispatch(answer.outbox_ids)
    assert _recorded(svc) == ("inactive", "pending", "inactive")


def _recorded(svc) -> tuple[str, str, str]:
    with svc.db.sessions() as session:
        return (
            session.get(Certification, "LAPSE-1").status,
            session.query(Badge).filter_by(certification_id="LAPSE-1").one().state,
            session.get(VerificationRecord, "LAPSE-1").status,
        )


def test_a_serving_process_started_after_sweep_time_records_the_days_changes(
    make_app, database_url, caplog
):
    """Without Redis nothing ran the daily sweep: a member lapsed only in standings computed on
    read, their badge, verification record and webhooks unchanged until `gateway sweep`."""
    caplog.set_level(logging.INFO, logger="jobs.cron")
    _granted_lapse_1(make_app, database_url)
    clock.set_now(datetime(2027, 1, 2, 3, 0, tzinfo=UTC))  # after SWEEP_TIME (02:30)
    svc = make_app(database_url=database_url, jobs="POLLING").extensions["gateway"]
    _until(lambda: _recorded(svc) == ("lapsed", "revoked", "lapsed"))  # no one ran `gateway sweep`
    _until(lambda: _said(caplog, "records pruned"))  # after the sweep
    assert _claims(svc) == [("daily", LAPSES_ON)]
    [done] = _said(caplog, "sweep done")
    assert done.levelname == "INFO"
    assert done.summary["as_of"] == "2027-01-02"
    assert done.summary["transitions"] == {"inactive->lapsed": 1}


def test_two_serving_processes_on_one_database_run_the_day_once(
    make_app, database_url, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="jobs.cron")
    _granted_lapse_1(make_app, database_url)
    clock.set_now(datetime(2027, 1, 2, 12, tzinfo=UTC))
    together = threading.Barrier(2, timeout=20)
    claim_day = cron.claim_day

    def at_the_same_moment(*args: object) -> bool:
        together.wait()  # both processes' crons claim the day at once
        return claim_day(*args)

    monkeypatch.setattr(cron, "claim_day", at_the_same_moment)
    first = make_app(database_url=database_url, jobs="POLLING").extensions["gateway"]
    make_app(database_url=database_url, jobs="POLLING")
    _until(lambda: _said(caplog, "sweep done") and _said(caplog, "daily run of 2027-01-02 skipped"))
    _until(lambda: _recorded(first) == ("lapsed", "revoked", "lapsed"))
    assert _claims(first) == [("daily", LAPSES_ON)]
    [done] = _said(caplog, "sweep done")
    assert done.summary["transitions"] == {"inactive->lapsed": 1}
    [skipped] = _said(caplog, "daily run of 2027-01-02 skipped")
    assert skipped.getMessage() == "daily run of 2027-01-02 skipped: another process claimed it"


def test_with_a_real_credly_the_daily_run_checks_the_token_and_reconciles_after_a_failure(
    make_app, database_url, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="jobs")
    monkeypatch.setattr(cron, "RETRY_SECONDS", 0.1)
    monkeypatch.setattr(reconcile_module, "sleep", lambda _seconds: None)  # between Credly reads
    with CredlyStandIn() as standin:
        settings = {
            "database_url": database_url,
            "credly_badge_templates": {"RMA": "tmpl-rma"},
            **standin.settings,
        }
        first = make_app(jobs_synchronous=True, **settings).extensions["gateway"]
        answer = intake.submit_event(first, granted("2026-03-01"))
        first.dispatcher.dispatch(answer.outbox_ids)
        [badge] = standin.badges()
        standin.revoke(badge["id"], {"reason": "by hand"})  # drift the gateway has not seen
        standin.queue_faults([{"status": 503}] * reconcile_module.READ_TRIES, operation="list")
        svc = make_app(jobs="POLLING", **settings).extensions["gateway"]
        _until(lambda: any(r.getMessage() == "reconciled" for r in caplog.records))
        operations = [r["operation"] for r in standin.requests_seen()]
    assert operations.count("tokens") == 2  # checked before each reconciliation
    [reconciled] = [r for r in caplog.records if r.getMessage() == "reconciled"]
    assert reconciled.summary["repaired"]["taken_from_credly"] == 1  # the badge revoked by hand
    [failed] = [r for r in caplog.records if r.name == "jobs.cron" and r.levelname == "WARNING"]
    assert failed.getMessage().startswith("daily run of 2026-12-04 failed: Credly ")
    assert failed.getMessage().endswith("; tried again in 0.1 s") and failed.exc_info is None
    assert _claims(svc) == [("daily", date(2026, 12, 4))]


def test_only_the_serving_process_runs_the_daily_cron(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'g.sqlite3'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    clock.set_now(datetime(2027, 1, 2, 12, tzinfo=UTC))

    def crons(command: str) -> int:
        with click.Context(click.Command(command), info_name=command):
            svc = command_app().extensions["gateway"]
        try:
            return len(_crons(svc))
        finally:
            if hasattr(svc.dispatcher, "close"):
                svc.dispatcher.close()
            svc.db.engine.dispose()

    assert crons("sweep") == crons("requeue") == 0  # their jobs are left to the server too
    assert crons("run") == 1


def test_a_failed_daily_run_says_so_in_one_line_and_runs_again_on_its_claim(
    make_app, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="jobs.cron")
    monkeypatch.setattr(cron, "RETRY_SECONDS", 0.1)
    locked = OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    runs: list[date] = []

    def daily_run(svc, day, on_batch):
        runs.append(day)
        if len(runs) == 1:
            raise locked
        return {}

    monkeypatch.setattr(cron, "daily_run", daily_run)
    clock.set_now(datetime(2027, 1, 2, 12, tzinfo=UTC))
    svc = make_app(database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}", jobs="POLLING").extensions[
        "gateway"
    ]
    _until(lambda: len(runs) == 2)
    assert runs == [LAPSES_ON, LAPSES_ON] and _claims(svc) == [("daily", LAPSES_ON)]
    [said] = [r for r in caplog.records if r.name == "jobs.cron"]  # not "skipped" on its claim
    assert (said.levelname, said.getMessage(), said.exc_info) == (
        "WARNING",
        "daily run of 2027-01-02: database unavailable: database is locked; tried again in 0.1 s",
        None,
    )


def test_a_process_started_before_sweep_time_runs_yesterdays_run_then_todays_at_sweep_time(
    make_app, tmp_path, monkeypatch
):
    started = datetime(2027, 1, 2, 2, 29, 54, tzinfo=UTC)  # 6 s to catch up
    run = InProcessCron.run

    def run_from_start(thread: InProcessCron) -> None:
        # The clock is set again as the cron begins: the app's start (migrating a new SQLite
        # file, seconds on a slow machine) does not use up the catch-up's 6 s.
        clock.set_now(started)
        run(thread)

    monkeypatch.setattr(InProcessCron, "run", run_from_start)
    clock.set_now(started)
    svc = make_app(
        database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}", jobs="POLLING", sweep_time="02:30"
    ).extensions["gateway"]
    _until(lambda: _claims(svc) == [("daily", date(2027, 1, 1))])  # not yet today's
    _until(lambda: len(_claims(svc)) == 2)
    assert _claims(svc)[-1] == ("daily", LAPSES_ON)
    assert clock.now() >= datetime(2027, 1, 2, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize("ending", ["stop", "close"])
def test_the_daily_cron_ends_with_its_dispatcher(make_app, tmp_path, monkeypatch, ending):
    monkeypatch.setattr(outbox, "STOPPING", threading.Event())  # this test's stop only
    sweeping = threading.Event()

    def endless(svc, day, on_batch):  # a sweep of batch after batch
        sweeping.set()
        while True:
            on_batch(1)
            time.sleep(0.01)

    monkeypatch.setattr(cron, "daily_run", endless)
    clock.set_now(datetime(2027, 1, 2, 12, tzinfo=UTC))
    svc = make_app(database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}", jobs="POLLING").extensions[
        "gateway"
    ]
    [thread] = _crons(svc)
    assert sweeping.wait(20)
    started = time.monotonic()
    getattr(svc.dispatcher, ending)()
    assert not thread.is_alive() and time.monotonic() - started < 2  # after the batch under way
