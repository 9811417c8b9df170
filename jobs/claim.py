"""The outbox item a job has claimed: what its handler reads, and how its outcome is recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, update

from gateway.store.models import OutboxItem, utcnow

#: States after which an item is never run again (a failed one may be requeued).
TERMINAL = ("done", "failed")

# Built once (building a statement costs more than running it): an item's row by `outbox_id`,
# setting the columns named by the other parameters it is executed with.
BY_ID = update(OutboxItem).where(OutboxItem.id == bindparam("outbox_id"))
UNSETTLED_BY_ID = BY_ID.where(OutboxItem.state.not_in(TERMINAL))


def record(
    connection: Connection,
    outbox_id: int,
    state: str,
    error: str | None,
    *,
    unless_settled: bool = False,
) -> None:
    """Record how an attempt of an item ended (`state`, with its error), in `connection`.

    With `unless_settled`, an item already done or failed is left as it is.
    """
    values: dict[str, Any] = {"outbox_id": outbox_id, "state": state, "last_error": error}
    if state in TERMINAL:
        values["finished_at"] = utcnow()
    connection.execute(UNSETTLED_BY_ID if unless_settled else BY_ID, values)


@dataclass
class ClaimedItem:
    """An outbox item its job has recorded `running` (committed before the handler runs)."""

    id: int
    kind: str
    certification_id: str | None
    payload: dict[str, Any]
    request_id: str | None
    attempts: int
    #: Whether the handler recorded the item done itself, with the outcome.
    done: bool = False

    def finish(self, connection: Connection) -> None:
        """Record the item done in the transaction of `connection`, the one recording its outcome.

        A handler calls this last in its last transaction: a crash before that commit leaves the
        item `running` (and its job retried), never `done` without its outcome.
        """
        record(connection, self.id, "done", None)
        self.done = True
