"""The unit of work: the outbox items a transaction queues wake the workers once it commits."""

import pytest
from sqlalchemy import text

from gateway.store.db import Database, wake_after_commit


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    woken: list[list[int]] = []
    database.on_commit = woken.append
    database.woken = woken
    yield database
    database.engine.dispose()


def test_a_committed_transaction_wakes_the_workers_for_what_it_queued_once(db):
    with db.transaction() as session:
        session.execute(text("SELECT 1"))
        wake_after_commit([1, 2])
        wake_after_commit([3])
        assert db.woken == []  # nothing before the commit
    assert db.woken == [[1, 2, 3]]
    with db.begin() as connection:
        connection.execute(text("SELECT 1"))
        wake_after_commit([4])
    assert db.woken == [[1, 2, 3], [4]]


def test_a_rolled_back_transaction_wakes_nothing(db):
    with pytest.raises(ZeroDivisionError), db.transaction():
        wake_after_commit([1])
        1 / 0  # noqa: B018
    with db.transaction():
        pass  # queued nothing
    assert db.woken == []


def test_queueing_outside_a_transaction_is_a_mistake_said_at_once():
    with pytest.raises(RuntimeError, match="inside"):
        wake_after_commit([1])
