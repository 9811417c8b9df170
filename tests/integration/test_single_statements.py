"""`Database.read`, `Database.write` and `Database.execute` on PostgreSQL: a statement on the
psycopg connection itself, behaving as the same statement through SQLAlchemy does."""

from __future__ import annotations

import select as select_module
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from sqlalchemy import bindparam, column, insert, literal, select, table, text, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from gateway.platform import clock
from gateway.store.db import Database
from gateway.store.models import Member, OutboxItem, UTCDateTime
from tests.support.database import truncate


@pytest.fixture
def db(postgres_url):
    truncate(postgres_url)
    db = Database(postgres_url)
    yield db
    db.engine.dispose()
    truncate(postgres_url)


def test_a_read_converts_parameters_and_columns_as_the_column_types_say(db):
    at = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    statement = select(bindparam("at", type_=UTCDateTime()))
    [(read,)] = db.read(statement, {"at": at})
    with db.engine.connect() as connection:
        [(through_sqlalchemy,)] = connection.execute(statement, {"at": at}).all()
    assert read == through_sqlalchemy == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert read.tzinfo is UTC  # UTCDateTime's conversion of the column, not psycopg's zone


def test_a_statement_keeps_its_own_values_beside_the_ones_given(db):
    statement = select(literal("own"), bindparam("given")).limit(1)
    assert db.read(statement, {"given": "given"}) == [("own", "given")]
    with pytest.raises(SQLAlchemyError, match="A value is required for bind parameter 'given'"):
        db.read(statement)


def test_a_write_is_committed_on_its_own_and_returns_its_rows(db):
    statement = insert(Member).values(
        member_id=bindparam("member_id"), first_name="Ada", last_name="L", email="a@example.org"
    )
    before = clock.now()
    assert db.write(statement.returning(Member.member_id), {"member_id": "M-1"}) == [("M-1",)]
    assert db.write(statement, {"member_id": "M-2"}) == []
    renamed = update(Member).values(first_name=bindparam("name")).returning(Member.first_name)
    assert db.write(renamed.where(Member.member_id == "M-2"), {"name": "Grace"}) == [("Grace",)]
    other = Database(db.url)  # another pool: sees only what was committed
    rows = other.read(select(Member.member_id, Member.first_name, Member.updated_at))
    other.engine.dispose()
    assert sorted(rows)[0][:2] == ("M-1", "Ada") and sorted(rows)[1][:2] == ("M-2", "Grace")
    assert all(updated >= before for *_, updated in rows)  # the columns' Python defaults applied


def test_a_failing_statement_raises_sqlalchemys_error_and_the_connection_serves_on(db):
    missing = select(column("x")).select_from(table("no_such_table"))
    with pytest.raises(ProgrammingError, match="no_such_table"):
        db.read(missing)
    assert db.read(select(bindparam("n", type_=UTCDateTime())), {"n": None}) == [(None,)]
    with db.transaction() as session:  # the pooled connection is back in transaction mode
        assert session.connection().connection.driver_connection.autocommit is False
    down = Database("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(OperationalError):
        down.read(missing)


def test_statements_executed_in_a_transaction_commit_or_roll_back_with_it(db):
    statement = insert(Member).values(
        member_id=bindparam("member_id"), first_name="Ada", last_name="L", email="a@example.org"
    )
    named = select(Member.first_name).where(Member.member_id == bindparam("member_id"))
    at = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with pytest.raises(RuntimeError), db.engine.begin() as connection:
        db.execute(connection, statement, {"member_id": "M-1"})
        assert db.execute(connection, named, {"member_id": "M-1"}) == [("Ada",)]  # its own work
        raise RuntimeError("the transaction fails after the statement")
    assert db.read(named, {"member_id": "M-1"}) == []  # rolled back with the transaction
    with db.engine.begin() as connection:
        db.execute(connection, statement, {"member_id": "M-1"})
        [(read,)] = db.execute(connection, select(bindparam("at", type_=UTCDateTime())), {"at": at})
        assert read == at and read.tzinfo is UTC  # converted as the column type says
        other = Database(db.url)  # another pool: sees only what was committed
        assert other.read(named, {"member_id": "M-1"}) == []
        other.engine.dispose()
    assert db.read(named, {"member_id": "M-1"}) == [("Ada",)]


def test_a_statement_failing_in_a_transaction_raises_sqlalchemys_error_and_rolls_it_back(db):
    statement = insert(Member).values(
        member_id=bindparam("member_id"), first_name="Ada", last_name="L", email="a@example.org"
    )
    with pytest.raises(ProgrammingError, match="no_such_table"), db.engine.begin() as connection:
        db.execute(connection, statement, {"member_id": "M-1"})
        db.execute(connection, select(column("x")).select_from(table("no_such_table")))
    assert db.read(select(Member.member_id)) == []
    with db.engine.begin() as connection:  # the pool serves on
        db.execute(connection, statement, {"member_id": "M-2"})
    assert db.read(select(Member.member_id)) == [("M-2",)]


def test_execute_all_answers_each_statement_in_order_from_one_round_trip(db):
    add = insert(Member).values(
        member_id=bindparam("member_id"), first_name=bindparam("name"), last_name="L", email="e"
    )
    named = select(Member.first_name).where(Member.member_id == bindparam("member_id"))
    with db.engine.begin() as connection:
        answers = db.execute_all(
            connection,
            [
                (add, {"member_id": "M-1", "name": "Ada"}),
                (named, {"member_id": "M-1"}),  # sees the statement before it
                (add.returning(Member.member_id), {"member_id": "M-2", "name": "Bo"}),
                (named, {"member_id": "M-9"}),
            ],
        )
        assert answers == [[], [("Ada",)], [("M-2",)], []]
        driver = connection.connection.driver_connection
        assert driver.pgconn.pipeline_status == 0  # out of pipeline mode again
        assert db.execute(connection, named, {"member_id": "M-2"}) == [("Bo",)]
    assert db.read(select(Member.member_id).order_by(Member.member_id)) == [("M-1",), ("M-2",)]


def test_a_statement_of_execute_all_failing_raises_sqlalchemys_error_and_rolls_back(db):
    add = insert(Member).values(
        member_id=bindparam("member_id"), first_name="Ada", last_name="L", email="a@example.org"
    )
    missing = select(column("x")).select_from(table("no_such_table"))
    with pytest.raises(ProgrammingError, match="no_such_table"), db.engine.begin() as connection:
        db.execute_all(connection, [(add, {"member_id": "M-1"}), (missing, {})])
    assert db.read(select(Member.member_id)) == []
    with db.engine.begin() as connection:  # the connection serves on
        assert db.execute_all(connection, [(add, {"member_id": "M-2"})]) == [[]]
    assert db.read(select(Member.member_id)) == [("M-2",)]


def test_an_in_list_is_one_array_parameter_and_reads_as_through_sqlalchemy(db):
    add = insert(Member).values(
        member_id=bindparam("member_id"), first_name="Ada", last_name="L", email="a@example.org"
    )
    with db.engine.begin() as connection:
        db.execute_each(connection, add, [{"member_id": f"M-{n}"} for n in range(3)])
    ids = bindparam("ids", expanding=True)
    among = select(Member.member_id).where(Member.member_id.in_(ids)).order_by(Member.member_id)
    outside = select(Member.member_id).where(Member.member_id.not_in(ids))
    assert db.read(among, {"ids": ["M-2", "M-0", "M-9"]}) == [("M-0",), ("M-2",)]
    assert db.read(among, {"ids": []}) == []
    assert "= ANY(%(ids)s)" in db._compile(among).sql  # one statement text whatever the list
    assert db._compile(outside) is None  # NOT IN: SQLAlchemy expands it
    assert db.read(outside, {"ids": ["M-0", "M-1"]}) == [("M-2",)]
    pairs = select(Member.member_id).where(
        tuple_(Member.member_id, Member.first_name).in_(bindparam("pairs", expanding=True))
    )
    assert db._compile(pairs) is None  # a tuple's list too
    assert db.read(pairs, {"pairs": [("M-1", "Ada")]}) == [("M-1",)]
    at = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    when = select(Member.member_id).where(
        Member.updated_at.in_(bindparam("at", expanding=True, type_=UTCDateTime()))
    )
    assert db.read(when, {"at": (at,)}) == []  # a tuple, its values converted as the type says
    assert db.read(among, {"ids": ("M-1",)}) == [("M-1",)]


def test_in_lists_of_one_value_each_send_that_value_alone(db):
    add = insert(Member).values(
        member_id=bindparam("member_id"), first_name=bindparam("name"), last_name="L", email="e"
    )
    with db.engine.begin() as connection:
        db.execute_each(
            connection, add, [{"member_id": f"M-{n}", "name": f"N{n}"} for n in range(3)]
        )
    both = select(Member.member_id).where(
        Member.member_id.in_(bindparam("ids", expanding=True)),
        Member.first_name.in_(bindparam("names", expanding=True)),
    )
    compiled = db._compile(both)
    assert "= %(ids)s" in compiled.sql_of_one and "= %(names)s" in compiled.sql_of_one
    assert db.read(both, {"ids": ["M-1"], "names": ["N1"]}) == [("M-1",)]  # each alone
    assert db.read(both, {"ids": ["M-1"], "names": ["N0", "N1"]}) == [("M-1",)]  # arrays
    assert db.read(both, {"ids": ("M-2",), "names": ["N1"]}) == []


def test_a_statement_without_columns_of_its_own_goes_through_sqlalchemy(db):
    statement = text("SELECT 1 AS one")
    assert db._compile(statement) is None
    assert db.read(statement) == [(1,)]


def test_execute_each_runs_a_statement_per_row_in_order_and_none_for_no_rows(db):
    add = insert(Member).values(
        member_id=bindparam("member_id"), first_name=bindparam("name"), last_name="L", email="e"
    )
    returning = add.returning(Member.member_id, Member.first_name, sort_by_parameter_order=True)
    with db.engine.begin() as connection:
        assert db.execute_each(connection, returning, []) == []
        one = db.execute_each(connection, returning, [{"member_id": "M-1", "name": "Ada"}])
        rows = [{"member_id": f"M-{n}", "name": f"N{n}"} for n in (4, 2, 3)]
        many = db.execute_each(connection, returning, rows)
    assert one == [("M-1", "Ada")]
    assert many == [("M-4", "N4"), ("M-2", "N2"), ("M-3", "N3")]  # in the order of the rows
    assert len(db.read(select(Member.member_id))) == 4


#: Every defaulted column of an outbox item given: no value left for SQLAlchemy to work out.
_OUTBOX_DEFAULTS = {"state": "pending", "attempts": 0, "created_at": clock.now(), "due_at": None}


def test_execute_each_sends_a_few_rows_of_an_insert_as_one_statement_in_their_order(
    db, monkeypatch
):
    items = OutboxItem.__table__
    add = insert(items).values(
        certification_id=bindparam("cid"), kind=bindparam("kind"), payload=bindparam("payload"),
        **_OUTBOX_DEFAULTS,
    )  # fmt: skip
    returning = add.returning(items.c.id, sort_by_parameter_order=True)
    sent: list[str] = []
    execute = psycopg.Connection.execute
    monkeypatch.setattr(
        psycopg.Connection,
        "execute",
        lambda self, sql, *a, **k: sent.append(sql) or execute(self, sql, *a, **k),
    )
    rows = [{"cid": f"C-{n}", "kind": "issue_badge", "payload": {"n": n}} for n in (3, 1, 2)]
    with db.engine.begin() as connection:
        ids = db.execute_each(connection, returning, rows)
        db.execute_each(connection, add, rows[:2])  # no RETURNING
    assert [sql.count("), (") for sql in sent] == [2, 1]  # one statement of 3 rows, of 2
    stored = dict(db.read(select(items.c.id, items.c.payload)))
    assert [stored[pk] for (pk,) in ids] == [
        {"n": 3},
        {"n": 1},
        {"n": 2},
    ]  # in the order of the rows
    assert len(stored) == 5


def test_an_insert_with_values_outside_its_rows_or_other_returning_goes_a_row_a_statement(db):
    items = OutboxItem.__table__
    add = insert(items).values(
        certification_id=bindparam("cid"), kind="issue_badge", payload={}, **_OUTBOX_DEFAULTS
    )
    upsert = (
        postgresql.insert(Member)
        .values(member_id=bindparam("member_id"), first_name="A", last_name="L", email="e")
        .on_conflict_do_update(index_elements=["member_id"], set_={"first_name": bindparam("name")})
    )
    kind = add.returning(items.c.kind)  # made before `add` is compiled (SQLAlchemy memoizes)
    assert db._rows_for(add, 3) is not None
    assert db._rows_for(kind, 3) is None  # RETURNING other than the serial key: no order known
    assert db._rows_for(upsert, 3) is None  # `name` is outside the VALUES
    assert db._rows_for(update(items).values(kind=bindparam("kind")), 3) is None
    with db.engine.begin() as connection:
        db.execute_each(connection, upsert, [{"member_id": "M-1", "name": "A"}] * 2)
    assert db.read(select(Member.first_name)) == [("A",)]


def test_a_statement_of_execute_all_failing_while_the_rest_are_sent_raises_its_own_error(
    db, monkeypatch, caplog
):
    """As when a group of single events finds a certification locked: the error reaches psycopg
    before the statements after it are sent, and is raised as it is, with no warning logged."""
    add = insert(Member).values(member_id="M-1", first_name="Ada", last_name="L", email="e")
    db.write(add)
    locked = select(Member.member_id).with_for_update(nowait=True)
    send = psycopg.Connection.execute
    sent: list[str] = []

    def send_once_answered(self, query, *args, **kwargs):
        if self._pipeline is not None and sent:  # each next statement once an answer is there
            assert select_module.select([self.pgconn.socket], [], [], 10)[0], "no answer"
        sent.append(query)
        return send(self, query, *args, **kwargs)

    with db.engine.begin() as holder:
        db.execute(holder, select(Member.member_id).with_for_update())
        monkeypatch.setattr(psycopg.Connection, "execute", send_once_answered)
        with pytest.raises(OperationalError) as raised, db.engine.begin() as connection:
            db.execute_all(connection, [(locked, {}), (select(literal(1)), {})])
    assert raised.value.orig.sqlstate == "55P03"  # lock_not_available, as intake tells it
    assert len(sent) == 2
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
