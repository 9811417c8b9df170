"""The embedded default's in-process jobs: a retry waits for its time, not on the job thread."""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import threading
import time

import click
import pytest
import responses
from sqlalchemy.exc import OperationalError

from gateway.cli.group import command_app
from gateway.platform import clock
from gateway.store.models import Badge, OutboxItem
from gateway.usecases import intake
from jobs.engine import dispatch, outbox
from jobs.engine.dispatch import InProcessDispatcher, LeftToServer
from tests.support.badge_jobs import BADGES, CREDLY, EMPTY_LIST, ORG, badge_json
from tests.support.credly_standin import CredlyStandIn
from tests.support.database import truncate
from tests.support.events import event, granted, revoked
from tests.support.serving import free_port, serve_env, start_serve
from tests.support.verification import days_ago

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today


@responses.activate
def test_a_retrying_job_does_not_hold_up_the_others(make_app, tmp_path):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=503, json={})
    responses.post(BADGES, status=201, json=badge_json("b-second"))
    responses.post(BADGES, status=201, json=badge_json("b-first-retried"))
    app = make_app(
        database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}",
        credly_api_base=CREDLY,
        credly_organization_id=ORG,
        credly_auth_token="tok",
        credly_badge_templates={"RMA": "tmpl-rma"},
        job_retry_base_seconds=1,
    )
    svc = app.extensions["gateway"]
    # Both grants in one transaction: B-1's jobs are due before A-1's retry however slow the
    # machine (submitted one by one, a second's stall before B-1 let the retry go first).
    grants = [granted(days_ago(60), cert=cert) for cert in ("A-1", "B-1")]
    for answer in intake.submit_events(svc, grants):
        svc.dispatcher.dispatch(answer.outbox_ids)
    worker = svc.dispatcher._thread
    deadline = time.monotonic() + 20
    while True:
        with svc.db.sessions() as session:
            states = [i.state for i in session.query(OutboxItem)]
            badges = {b.certification_id: b.credly_badge_id for b in session.query(Badge)}
        if states and all(s == "done" for s in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)
    assert badges == {"B-1": "b-second", "A-1": "b-first-retried"}
    worker.join(timeout=10)  # nothing unsettled is left: the jobs thread stops until woken again
    assert not worker.is_alive()


def _states(svc) -> list[str]:
    with svc.db.sessions() as session:
        return sorted(i.state for i in session.query(OutboxItem))


def _until(svc, states: list[str], deadline: float) -> None:
    while _states(svc) != states:
        assert time.monotonic() < deadline, _states(svc)
        time.sleep(0.1)


def test_a_command_leaves_its_jobs_to_the_server_which_polls_for_them(make_app, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    command = make_app(database_url=database_url, jobs="IN_SERVER").extensions["gateway"]
    answer = intake.submit_event(command, granted(days_ago(60)))
    command.dispatcher.dispatch(answer.outbox_ids)
    time.sleep(0.5)
    assert _states(command) == ["pending", "pending"]  # none half-done when the command ends
    server = make_app(database_url=database_url, jobs="POLLING", relay_interval_seconds=1)
    svc = server.extensions["gateway"]
    deadline = time.monotonic() + 20
    _until(svc, ["done", "done"], deadline)
    answer = intake.submit_event(command, revoked(days_ago(30)))  # another command's event
    command.dispatcher.dispatch(answer.outbox_ids)
    _until(svc, ["done"] * 4, deadline)  # found with no wake-up, within the relay interval
    with svc.db.sessions() as session:
        [badge] = session.query(Badge).all()
    assert badge.state == "revoked"  # the server's dry-run Credly revoked the badge it issued


def test_only_gateway_run_works_jobs_on_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'g.sqlite3'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)

    def dispatcher(command: str, **params: object) -> object:
        with click.Context(click.Command(command), info_name=command) as context:
            context.params.update(params)
            svc = command_app().extensions["gateway"]
        if isinstance(svc.dispatcher, InProcessDispatcher):
            svc.dispatcher.close()
        svc.db.engine.dispose()
        return svc.dispatcher

    served = dispatcher("run")  # the server: a jobs thread for its life, polling
    assert isinstance(served, InProcessDispatcher) and served.polling
    for command in ("sweep", "requeue"):
        assert isinstance(dispatcher(command), LeftToServer), command
    assert isinstance(dispatcher("run", reload=True), LeftToServer)  # the reloader's watcher
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")  # the reloader's child, which serves
    reloaded = dispatcher("run", reload=True)
    assert isinstance(reloaded, InProcessDispatcher) and reloaded.polling


def test_the_dry_run_credly_keeps_its_badges_when_the_embedded_default_restarts(make_app, tmp_path):
    settings = {"instance_path": str(tmp_path / "instance"), "jobs_synchronous": True}
    first = make_app(**settings).extensions["gateway"]
    assert intake.submit_event(first, granted(days_ago(30))).status == 202
    restarted = make_app(**settings).extensions["gateway"]
    renamed = event("member.updated", {"last_name": "King"}, occurred_at=f"{days_ago(1)}T12:00:00Z")
    assert intake.submit_event(restarted, renamed).status == 202
    with restarted.db.sessions() as session:
        [badge] = session.query(Badge).all()
    assert badge.state == "pending"  # replaced in the name of Ada King, not taken as deleted
    assert restarted.credly.get_badge(badge.credly_badge_id).raw["issued_to_last_name"] == "King"


def test_stopping_the_server_gives_back_the_claims_its_jobs_thread_has_not_started(
    make_app, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="jobs.engine.dispatch")
    monkeypatch.setattr(outbox, "STOPPING", threading.Event())  # this test's stop only
    app = make_app(database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}", jobs="IN_SERVER")
    svc = app.extensions["gateway"]
    for cert in ("A-1", "B-1", "C-1"):
        intake.submit_event(svc, granted(days_ago(60), cert=cert))
    started, release, calls = threading.Event(), threading.Event(), []

    def handler(svc: object, item: object) -> None:
        calls.append(item)
        if len(calls) == 2:  # the first of the second claim, two items: it runs on and on
            started.set()
            release.wait(20)

    monkeypatch.setattr(outbox, "HANDLERS", dict.fromkeys(outbox.HANDLERS, handler))
    dispatcher = InProcessDispatcher(svc)
    dispatcher.wake()
    assert started.wait(20)

    dispatcher.stop(grace=0.1)

    with svc.db.sessions() as session:
        items = {i.id: (i.state, i.attempts) for i in session.query(OutboxItem)}
    done, running = calls[0].id, calls[1].id
    assert items.pop(done) == ("done", 1) and items.pop(running) == ("running", 1)
    assert set(items.values()) == {("pending", 0)}  # the unstarted one given back, due at once
    assert "jobs stopped: 1 claimed items given back unstarted" in caplog.text
    release.set()
    dispatcher._thread.join(20)
    assert len(calls) == 2  # nothing more was taken


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_gateway_serve_gives_back_the_claims_its_jobs_thread_has_not_started(
    make_app, tmp_path, postgres_url, stop
):
    clock.set_now(None)  # the server's clock is the real one: its items are due by it
    truncate(postgres_url)
    with CredlyStandIn() as standin:
        svc = make_app(
            database_url=postgres_url,
            jobs="IN_SERVER",
            credly_badge_templates={"RMA": "tmpl-rma"},
            **standin.settings,
        ).extensions["gateway"]
        for n in range(4):  # an issue_badge and a sync_verification item each
            body = granted(days_ago(60), cert=f"C-{n}")
            body["data"]["member"]["email"] = f"ada{n}@example.org"
            intake.submit_event(svc, body)
        # Claims of 1, 2 and 4 items: the issue of the last claim's second item hangs.
        standin.queue_faults([{"delay": 0}, {"delay": 0}, {"delay": 60}])
        env = serve_env(
            tmp_path,
            postgres_url,
            free_port(),
            WEB_WORKERS="1",
            CREDLY_BADGE_TEMPLATES="RMA=tmpl-rma",
            **{name.upper(): value for name, value in standin.settings.items()},
        )
        log = tmp_path / "serve.log"
        server = start_serve(env, log)
        try:
            _until(svc, ["done"] * 4 + ["pending"] + ["running"] * 3, time.monotonic() + 30)
            server.send_signal(stop)
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    with svc.db.sessions() as session:
        items = sorted((i.state, i.attempts, i.kind) for i in session.query(OutboxItem))
    truncate(postgres_url)
    assert items == [("done", 1, "issue_badge")] * 2 + [("done", 1, "sync_verification")] * 2 + [
        ("pending", 0, "issue_badge"),  # claimed and given back, due at once
        ("pending", 0, "sync_verification"),  # given back too
        ("pending", 0, "sync_verification"),  # never claimed
        ("running", 1, "issue_badge"),  # under way at the stop: left to its lease
    ]
    stopped = [
        line["msg"]
        for line in map(json.loads, log.read_text().splitlines())
        if str(line["msg"]).startswith("jobs stopped")
    ]
    assert stopped == [
        "jobs stopped: 2 claimed items given back unstarted; an item under way is left to its lease"
    ]


def test_a_pass_meeting_a_locked_database_says_so_in_one_warning_line(
    make_app, tmp_path, monkeypatch, caplog
):
    """It logged an ERROR with a traceback each pass while another process held SQLite's lock."""
    caplog.set_level(logging.INFO, logger="jobs.engine.dispatch")
    locked = OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    passes = []

    def work_due(svc):
        passes.append(time.monotonic())
        raise locked

    monkeypatch.setattr(dispatch, "work_due", work_due)
    database_url = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    svc = make_app(database_url=database_url, jobs="POLLING", relay_interval_seconds=1).extensions[
        "gateway"
    ]
    deadline = time.monotonic() + 20
    while len(passes) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    svc.dispatcher.close()
    assert len(passes) >= 2  # the thread outlives it and tries again
    said = [r for r in caplog.records if r.name == "jobs.engine.dispatch"]
    assert said and {(r.levelname, r.getMessage(), r.exc_info) for r in said} == {
        ("WARNING", "in-process jobs pass: database unavailable: database is locked", None)
    }
