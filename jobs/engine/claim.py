"""Outbox items as a work queue: claiming the next due items, and recording how an attempt ended."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.platform import clock
from gateway.store.db import Database
from gateway.store.models import (
    FINISHED,
    OUTCOME_SHARDS,
    SUPERSEDED,
    JobOutcome,
    OutboxItem,
    UTCDateTime,
)
from gateway.usecases.services import Services

_now = bindparam("now", type_=UTCDateTime())
_lease_end = bindparam("lease_end", type_=UTCDateTime())

#: Built once (building a statement costs more than running it): how an attempt of the item
#: `outbox_id` ended; `finished_at` is set for a done or failed one, kept otherwise.
ENDED = (
    update(OutboxItem)
    .where(OutboxItem.id == bindparam("outbox_id"))
    .values(
        state=bindparam("state"),
        last_error=bindparam("last_error"),
        due_at=bindparam("due_at", type_=UTCDateTime()),
        finished_at=func.coalesce(
            bindparam("finished_at", type_=UTCDateTime()), OutboxItem.finished_at
        ),
    )
)

#: Built once: the failed items of `ids` marked superseded.
SUPERSEDE = (
    update(OutboxItem)
    .where(OutboxItem.id.in_(bindparam("ids", expanding=True)), OutboxItem.state == "failed")
    .values(state=SUPERSEDED)
)

#: One more item of `kind` ended in `outcome` (done, failed), by dialect: the counts `/metrics`
#: shows of every worker's jobs.
COUNT_OUTCOME = {
    name: dialect.insert(JobOutcome)
    .values(kind=bindparam("kind"), outcome=bindparam("outcome"), shard=bindparam("shard"), total=1)
    .on_conflict_do_update(
        index_elements=[JobOutcome.kind, JobOutcome.outcome, JobOutcome.shard],
        set_={"total": JobOutcome.total + 1},
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}

#: The most items one claim takes (a thread claims more at once while its claims come back full).
CLAIM_BATCH = 8

#: The next `batch` due items, running from now on under a lease until `lease_end`, one more
#: attempt each. Due items are read on the index of (`due_at`, id), in the order taken (`due_at`
#: is NULL once settled), so a claim reads the items it takes, however many are due at the same
#: moment; SKIP LOCKED lets concurrent workers each take others (SQLite, the embedded default,
#: has a single job thread).
#: The locking read is a MATERIALIZED CTE, run once: as a subquery of the UPDATE the planner may
#: run it again for each row it scans, and each run then skips the rows this statement has just
#: updated and locks the next ones, claiming every due item whatever the batch.
_DUE = (
    select(OutboxItem.id)
    .where(OutboxItem.due_at <= _now)
    .order_by(OutboxItem.due_at, OutboxItem.id)  # items due at once in queued order
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True)
    .cte("due")
    .prefix_with("MATERIALIZED", dialect="postgresql")
)
CLAIM_DUE = (
    update(OutboxItem)
    .where(OutboxItem.id.in_(select(_DUE.c.id)))
    .values(state="running", attempts=OutboxItem.attempts + 1, due_at=_lease_end)
    .returning(
        OutboxItem.id,
        OutboxItem.kind,
        OutboxItem.certification_id,
        OutboxItem.payload,
        OutboxItem.request_id,
        OutboxItem.attempts,
        OutboxItem.due_at,
        OutboxItem.event_pk,
    )
)

#: Claimed items given back unstarted, unless their lease has ended and another worker took
#: them: due again at once, pending (retrying when an earlier attempt failed), the attempt not
#: counted.
GIVE_BACK = (
    update(OutboxItem)
    .where(
        OutboxItem.id.in_(bindparam("outbox_ids", expanding=True)),
        OutboxItem.state == "running",
        OutboxItem.due_at == _lease_end,
    )
    .values(
        state=case((OutboxItem.last_error.is_(None), "pending"), else_="retrying"),
        attempts=OutboxItem.attempts - 1,
        due_at=_now,
    )
)


def ended(
    outbox_id: int, state: str, error: str | None, *, due_at: datetime | None = None
) -> dict[str, Any]:
    """The parameters of ENDED for an attempt that ended in `state`, with its error.

    A retrying item is due again at `due_at`; a done or failed one never.
    """
    return {
        "outbox_id": outbox_id,
        "state": state,
        "last_error": error,
        "due_at": due_at,
        "finished_at": clock.now() if state in FINISHED else None,
    }


def record_end(
    db: Database,
    connection: Connection,
    kind: str,
    values: dict[str, Any],
    supersedes: Sequence[int] = (),
) -> None:
    """Record how an attempt of an item of `kind` ended (ENDED with `values`, from `ended`) in the
    transaction of `connection`, counting a done or failed end (COUNT_OUTCOME) with it; a done
    one marks the failed items of `supersedes` (its payload's: the failures it repairs)
    superseded."""
    statements = [(ENDED, values)]
    if values["state"] == "done" and supersedes:
        statements.append((SUPERSEDE, {"ids": list(supersedes)}))
    if values["state"] in FINISHED:
        shard = random.randrange(OUTCOME_SHARDS)
        outcome = {"kind": kind, "outcome": values["state"], "shard": shard}
        statements.append((COUNT_OUTCOME[connection.dialect.name], outcome))
    db.execute_all(connection, statements)


@dataclass
class ClaimedItem:
    """An outbox item a worker has recorded `running` (committed before the handler runs)."""

    id: int
    kind: str
    certification_id: str | None
    payload: dict[str, Any]
    request_id: str | None
    attempts: int
    #: When the lease of this attempt ends: another worker may claim the item from then on.
    lease_end: datetime
    #: The event that caused the item (None: the day, or no event, did): the jobs it queues in
    #: turn are that event's too.
    event_pk: int | None = None
    #: Whether the handler recorded the item done itself, with the outcome.
    done: bool = False

    def finish(self, db: Database, connection: Connection) -> None:
        """Record the item done in the transaction of `connection`, the one recording its outcome.

        A handler calls this last in its last transaction: a crash before that commit leaves the
        item `running` (claimed again when its lease ends), never `done` without its outcome.
        """
        done = ended(self.id, "done", None)
        record_end(db, connection, self.kind, done, self.payload.get("supersedes", ()))
        self.done = True


#: A job: what runs a claimed item of its kind.
Handler = Callable[[Services, ClaimedItem], None]
