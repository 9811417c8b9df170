"""Group commit: concurrent single events of one process recorded together, each answered as if
they had been sent one after another (real PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from gateway.platform import metrics
from gateway.store.models import Event, OutboxItem
from gateway.usecases import intake
from tests.support.clients import fetch_token
from tests.support.database import pg_conninfo, truncate
from tests.support.events import fee, granted
from tests.support.group_commit import event_transactions, in_one_group, lock_waits, refusing


@pytest.fixture
def pg_app(make_app, postgres_url):
    truncate(postgres_url)
    yield make_app(jobs="IN_SERVER", database_url=postgres_url)  # no job runs meanwhile
    truncate(postgres_url)


def _submit(svc, body, **request):
    return lambda: intake.submit_event(svc, body, **request)


def _seen(answer):
    """An answer as the client sees it, but for when its jobs were created (the time of day)."""
    return answer.status, _timeless(answer.body), answer.headers


def _groups() -> tuple[float, float]:
    """The group-size histogram's count of groups and sum of their events, so far."""
    samples = {
        s.name: s.value
        for s in metrics.EVENT_GROUPS.collect()[0].samples
        if s.labels.get("source") == "single"
    }
    count = samples.get("gateway_event_group_size_count", 0.0)  # none yet in this process
    return count, samples.get("gateway_event_group_size_sum", 0.0)


def _timeless(value):
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_concurrent_single_events_are_answered_as_one_after_another_in_one_transaction(
    pg_app, postgres_url
):
    svc = pg_app.extensions["gateway"]
    groups_before = _groups()
    twin = granted("2020-01-10", cert="B")
    bodies = [
        granted("2020-01-10", cert="A"),
        twin,
        fee(2021, "2021-01-05", cert="A"),  # sees A, granted just before in the same group
        twin,  # a replay of the twin
        {**granted("2020-01-10", cert="C"), "event_id": twin["event_id"]},  # 409
        fee(2021, "2021-01-05", cert="UNKNOWN"),  # 404
        granted("2020-01-10", cert="A"),  # 422: A exists
        fee(2021, "2021-01-06", cert="B"),
    ]
    grouped = in_one_group(svc, postgres_url, [_submit(svc, body) for body in bodies])
    assert event_transactions(postgres_url) == 2  # the first event's, then all of these
    assert [a.status for a in grouped] == [202, 202, 202, 202, 409, 404, 422, 202]
    assert grouped[3].headers == {"Idempotent-Replayed": "true"}
    assert _groups() == (groups_before[0] + 2, groups_before[1] + 1 + len(bodies))  # the metric

    truncate(postgres_url)
    alone = [intake.submit_event(svc, granted("2026-03-01", cert="FIRST-0"))]
    alone += [intake.submit_event(svc, body) for body in bodies]
    assert [_seen(a) for a in grouped] == [_seen(a) for a in alone[1:]]
    assert event_transactions(postgres_url) == 6  # the replay, the 409 and the 404: no row


def test_twins_in_one_group_are_one_event_and_one_replay(pg_app, postgres_url):
    svc = pg_app.extensions["gateway"]
    body = granted("2026-03-01", cert="TWIN")
    answers = in_one_group(svc, postgres_url, [_submit(svc, body), _submit(svc, body)])
    assert [a.status for a in answers] == [202, 202]
    assert answers[0].body == answers[1].body
    assert [a.headers for a in answers] == [{}, {"Idempotent-Replayed": "true"}]
    assert event_transactions(postgres_url) == 2
    with svc.db.sessions() as session:
        assert session.query(Event).filter_by(event_id=body["event_id"]).count() == 1


def test_one_event_id_with_two_bodies_in_one_group_is_a_conflict(pg_app, postgres_url):
    svc = pg_app.extensions["gateway"]
    body = granted("2026-03-01", cert="ONE")
    other = {**granted("2026-03-01", cert="OTHER"), "event_id": body["event_id"]}
    answers = in_one_group(svc, postgres_url, [_submit(svc, body), _submit(svc, other)])
    assert [a.status for a in answers] == [202, 409]
    assert answers[1].body["errors"] == [
        {"field": "event_id", "message": "Already used for another event."}
    ]


def test_an_event_failing_its_group_fails_alone_and_the_others_are_recorded(pg_app, postgres_url):
    svc = pg_app.extensions["gateway"]
    bodies = [granted("2026-03-01", cert=f"G-{n}") for n in range(4)]
    bodies[2]["event_id"] = "refused"
    with refusing(postgres_url, "refused"):
        outcomes = in_one_group(svc, postgres_url, [_submit(svc, body) for body in bodies])
    assert isinstance(outcomes[2], DBAPIError) and "refused" in str(outcomes[2])
    assert [outcomes[n].status for n in (0, 1, 3)] == [202, 202, 202]
    with svc.db.sessions() as session:
        recorded = set(session.scalars(select(Event.event_id)))
    assert len(recorded) == 4 and {bodies[n]["event_id"] for n in (0, 1, 3)} < recorded
    assert "refused" not in recorded
    assert event_transactions(postgres_url) == 4  # the first event's, then each one alone


def test_each_event_of_a_group_keeps_its_own_client_and_request_id(pg_app, postgres_url):
    svc = pg_app.extensions["gateway"]
    bodies = [granted("2026-03-01", cert=f"R-{n}") for n in range(3)]
    calls = [
        _submit(svc, body, client_id=f"client-{n}", request_id=f"request-{n}")
        for n, body in enumerate(bodies)
    ]
    assert [a.status for a in in_one_group(svc, postgres_url, calls)] == [202] * 3
    assert event_transactions(postgres_url) == 2
    with svc.db.sessions() as session:
        for n, body in enumerate(bodies):
            event = session.scalars(select(Event).filter_by(event_id=body["event_id"])).one()
            assert (event.client_id, event.request_id) == (f"client-{n}", f"request-{n}")
            jobs = session.scalars(select(OutboxItem).filter_by(event_pk=event.id)).all()
            assert jobs and {job.request_id for job in jobs} == {f"request-{n}"}


def test_concurrent_posts_to_the_api_share_transactions_and_keep_their_request_ids(
    pg_app, postgres_url
):
    count = 16
    headers = {"Authorization": f"Bearer {fetch_token(pg_app, 'events:write')}"}
    bodies = [granted("2026-03-01", cert=f"API-{n}") for n in range(count)]
    barrier = threading.Barrier(count)
    statuses: list[int | None] = [None] * count

    def post(n: int) -> None:
        client = pg_app.test_client()
        barrier.wait()
        response = client.post(
            "/v1/events", json=bodies[n], headers={**headers, "X-Request-ID": f"api-{n}"}
        )
        statuses[n] = response.status_code

    threads = [threading.Thread(target=post, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * count
    assert event_transactions(postgres_url) < count
    with pg_app.extensions["gateway"].db.sessions() as session:
        recorded = dict(session.execute(select(Event.event_id, Event.request_id)).all())
    assert recorded == {body["event_id"]: f"api-{n}" for n, body in enumerate(bodies)}


@contextmanager
def row_locked(url: str, certification_id: str) -> Iterator[Callable[[], None]]:
    """The certification's row locked by another transaction (a sweep's batch, an operator's
    session) until the block ends or the lock's release, which the block is given, is called."""
    with psycopg.connect(pg_conninfo(url)) as holder:
        holder.execute(
            "SELECT 1 FROM certifications WHERE certification_id = %s FOR UPDATE",
            (certification_id,),
        )
        yield holder.rollback
        holder.rollback()


def _in_thread(call: Callable[[], intake.Answer]) -> tuple[threading.Thread, list]:
    answered: list = []
    thread = threading.Thread(target=lambda: answered.append(call()))
    thread.start()
    return thread, answered


def test_an_event_waiting_for_its_locked_certification_holds_up_no_other(pg_app, postgres_url):
    """It held the process's group commit while it waited: every other single event of the
    process waited behind it, and failed 503 with it at the statement timeout."""
    svc = pg_app.extensions["gateway"]
    assert intake.submit_event(svc, granted("2026-03-01", cert="LOCKED")).status == 202
    with row_locked(postgres_url, "LOCKED") as release:
        waiting, waited = _in_thread(_submit(svc, fee(2027, "2026-06-01", cert="LOCKED")))
        deadline = time.monotonic() + 10
        while lock_waits(postgres_url) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock_waits(postgres_url) == 1  # it waits for the row, in its own transaction
        others = [_in_thread(_submit(svc, granted("2026-03-01", cert=f"FREE-{n}"))) for n in (1, 2)]
        for thread, _ in others:
            thread.join(10)
        assert [answered[0].status for _, answered in others] == [202, 202]
        assert waited == []  # recorded while the certification was still locked
        release()
        waiting.join(10)
    assert waited[0].status == 202


def test_a_group_with_a_locked_certification_records_the_others_without_waiting(
    pg_app, postgres_url
):
    svc = pg_app.extensions["gateway"]
    assert intake.submit_event(svc, granted("2026-03-01", cert="LOCKED")).status == 202
    done: dict[str, float] = {}

    def timed(name: str, body: dict) -> Callable[[], intake.Answer]:
        def call() -> intake.Answer:
            answer = intake.submit_event(svc, body)
            done[name] = time.monotonic()
            return answer

        return call

    with row_locked(postgres_url, "LOCKED") as release:
        released = threading.Timer(3, release)
        released.start()
        answers = in_one_group(
            svc,
            postgres_url,
            [
                timed("locked", fee(2027, "2026-06-01", cert="LOCKED")),
                timed("free", granted("2026-03-01", cert="FREE")),
            ],
        )
        released.join()
        released_at = time.monotonic()
    assert [a.status for a in answers] == [202, 202]
    assert done["free"] < done["locked"] and done["free"] < released_at - 1
