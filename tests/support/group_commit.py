"""Single events made to meet in one group commit, and the transactions that recorded events."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg

from gateway.usecases import intake
from gateway.usecases.services import Services
from tests.support.database import pg_conninfo
from tests.support.events import granted

WAIT_SECONDS = 10
_firsts = itertools.count(1)


def event_transactions(url: str) -> int:
    """How many transactions wrote the rows of `events` (each row's `xmin`: the transaction that
    inserted it, or that last updated it, as the intake does with its answer)."""
    with psycopg.connect(pg_conninfo(url)) as conn:
        [(count,)] = conn.execute("SELECT count(DISTINCT xmin::text) FROM events").fetchall()
    return count


@contextmanager
def refusing(url: str, event_id: str) -> Iterator[None]:
    """A trigger that fails (RAISE EXCEPTION, not a retried error) any transaction inserting
    the event `event_id`, while the block runs."""
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.event_id = '{event_id}' THEN RAISE EXCEPTION 'refused'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON events"
            " FOR EACH ROW EXECUTE FUNCTION refuse_event()"
        )
        try:
            yield
        finally:
            conn.execute("DROP TRIGGER refuse_event ON events")
            conn.execute("DROP FUNCTION refuse_event()")


def in_one_group(
    svc: Services, url: str, calls: list[Callable[[], intake.Answer]]
) -> list[intake.Answer | Exception]:
    """Each call's answer (or what it raised), the calls made concurrently from threads of their
    own so that they are recorded in one group, in this order: a first event (a new grant) is
    held in its transaction by a lock on `events`, each call is started once the one before it
    waits for that transaction, then the lock is released."""
    outcomes: list[Any] = [None] * len(calls)

    def run(position: int, call: Callable[[], intake.Answer]) -> None:
        try:
            outcomes[position] = call()
        except Exception as exc:
            outcomes[position] = exc

    first = granted("2026-03-01", cert=f"FIRST-{next(_firsts)}")
    outcomes.append(None)  # the first event's answer, last
    threads = [
        threading.Thread(target=run, args=(len(calls), partial(intake.submit_event, svc, first)))
    ]
    with psycopg.connect(pg_conninfo(url)) as holder:
        holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        threads[0].start()
        _wait(lambda: _blocked_on_events(url) == 1, "the first event to wait for the lock")
        for position, call in enumerate(calls):
            threads.append(threading.Thread(target=run, args=(position, call)))
            threads[-1].start()
            _wait(lambda n=position: _waiting(svc) == n + 1, f"call {position} to wait")
        holder.rollback()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    *answers, first_answer = outcomes
    assert getattr(first_answer, "status", first_answer) == 202
    return answers


def _waiting(svc: Services) -> int:
    """How many callers wait for the single events' next group (the combiner's own list)."""
    with svc.single_events._lock:
        return len(svc.single_events._waiting)


def _blocked_on_events(url: str) -> int:
    return _count(
        url,
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )


def lock_waits(url: str) -> int:
    """How many sessions of the database wait for a lock (a row's, a table's)."""
    return _count(
        url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )


def _count(url: str, query: str) -> int:
    with psycopg.connect(pg_conninfo(url)) as conn:
        [(count,)] = conn.execute(query).fetchall()
    return count


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT_SECONDS} s for {what}")
        time.sleep(0.005)
