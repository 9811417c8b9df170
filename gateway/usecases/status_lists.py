"""Bitstring status lists (W3C Bitstring Status List v1.0) of the Open Badges credentials.

Every credential (one per certification period) holds one index of one list; the list has a
revocation and a suspension bitstring at that index. The bits live on `CredentialStatusEntry`
rows and follow the certification's stored standing: the sync job sets them in the same
transaction that writes the public verification record.
"""

from __future__ import annotations

import base64
import gzip
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import Connection, Date, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.platform import clock
from gateway.rules import LAPSED, REVOKED
from gateway.store.models import Certification
from gateway.store.models import CredentialStatusEntry as Entry

#: Bits in every list: the specification's minimum (16 KB uncompressed), for herd privacy.
LIST_SIZE = 131_072
#: A list takes new credentials until it holds this many (half its entries), then the next list
#: starts: a random index of the current list is free at least half the time.
LIST_FILL = LIST_SIZE // 2
PURPOSES = ("revocation", "suspension")
#: Random indexes tried before giving up: with a list at most about half full, all of them are
#: taken less than once in 2**64 allocations.
_ALLOCATION_TRIES = 64


class NoFreeIndex(RuntimeError):
    """No free status list index was found (the request may be tried again)."""


@dataclass(frozen=True)
class StatusEntry:
    """A credential's identity and place in the status lists."""

    credential_id: str
    salt: str
    list_id: int
    status_index: int
    revoked: bool
    suspended: bool


_COLUMNS = (
    Entry.credential_id,
    Entry.salt,
    Entry.list_id,
    Entry.status_index,
    Entry.revoked,
    Entry.suspended,
)
_OF_PERIOD = select(*_COLUMNS).where(
    Entry.certification_id == bindparam("certification_id"),
    Entry.period_start == bindparam("period_start"),
)
_IN_LIST = select(func.count()).select_from(Entry).where(Entry.list_id == bindparam("list_id"))
_INSERTS = {
    name: dialect.insert(Entry.__table__).on_conflict_do_nothing()
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_SET_BITS = {
    purpose: select(Entry.status_index).where(
        Entry.list_id == bindparam("list_id"), getattr(Entry, flag)
    )
    for purpose, flag in (("revocation", "revoked"), ("suspension", "suspended"))
}
_AT = (
    select(Entry.revoked, Entry.suspended, Entry.certification_id, Certification.next_change_on)
    .join(Certification, Certification.certification_id == Entry.certification_id)
    .where(Entry.list_id == bindparam("list_id"), Entry.status_index == bindparam("status_index"))
)
_LISTS = select(func.max(Entry.list_id))
#: Revoked: both bits, for good; lapsed: suspended; any other standing lifts a suspension
#: (never a revocation, which keeps its credential suspended too). The credential of a period
#: before the current one stays suspended: that period ended in a lapse, and a recertification
#: vouches for its own period only. Rows already so are left alone.
_REVOKED = Entry.revoked | bindparam("revoke")
_SUSPENDED = (
    _REVOKED
    | bindparam("suspend")
    | (Entry.period_start < bindparam("current_period", type_=Date()))
)
_FOLLOW = (
    update(Entry)
    .where(
        Entry.certification_id == bindparam("of_certification"),
        (Entry.revoked != _REVOKED) | (Entry.suspended != _SUSPENDED),
    )
    .values(revoked=_REVOKED, suspended=_SUSPENDED, updated_at=bindparam("now"))
)


def _current_list(connection: Connection) -> int:
    """The list new credentials go to: the last one, or the next once the last holds LIST_FILL."""
    last = list_count(connection) - 1
    held = connection.execute(_IN_LIST, {"list_id": last}).scalar_one()
    return last + 1 if held >= LIST_FILL else last


def entry_for(connection: Connection, certification_id: str, period_start: date) -> StatusEntry:
    """The status entry of a certification period, allocated on first use at a random free
    index of the current list (W3C: the index reveals neither its order nor the list's size).

    The caller holds the certification's row lock, so only other certifications compete for an
    index; a taken one is found by the unique constraint and another random one is tried.
    Raises NoFreeIndex when _ALLOCATION_TRIES of them are all taken.
    """
    key = {"certification_id": certification_id, "period_start": period_start}
    found = connection.execute(_OF_PERIOD, key).first()
    if found is not None:
        return StatusEntry(*found)
    insert_entry = _INSERTS[connection.dialect.name]
    list_id = _current_list(connection)
    for _ in range(_ALLOCATION_TRIES):
        entry = StatusEntry(
            credential_id=str(uuid.uuid4()),
            salt=secrets.token_hex(16),
            list_id=list_id,
            status_index=secrets.randbelow(LIST_SIZE),
            revoked=False,
            suspended=False,
        )
        now = clock.now()
        inserted = connection.execute(
            insert_entry, {**key, **asdict(entry), "created_at": now, "updated_at": now}
        )
        if inserted.rowcount == 1:
            return entry
        found = connection.execute(_OF_PERIOD, key).first()
        if found is not None:  # made meanwhile, by a caller without the row lock
            return StatusEntry(*found)
    raise NoFreeIndex(f"no free index in status list {list_id} after {_ALLOCATION_TRIES} tries")


def follow_standing(
    connection: Connection, certification_id: str, standing: dict[str, Any]
) -> None:
    """Set the status bits of every credential of a certification from its stored standing."""
    connection.execute(
        _FOLLOW,
        {
            "of_certification": certification_id,
            "revoke": standing["status"] == REVOKED,
            "suspend": standing["status"] == LAPSED,
            "current_period": date.fromisoformat(standing["certified_on"]),
            "now": clock.now(),
        },
    )


def list_count(connection: Connection) -> int:
    """How many lists hold credentials (at least one, served even while empty)."""
    highest = connection.execute(_LISTS).scalar_one()
    return 1 if highest is None else highest + 1


def bitstring(connection: Connection, list_id: int, purpose: str) -> bytes:
    """The list's uncompressed bitstring for `purpose`: index 0 is the first byte's leftmost bit."""
    bits = bytearray(LIST_SIZE // 8)
    for (index,) in connection.execute(_SET_BITS[purpose], {"list_id": list_id}):
        bits[index >> 3] |= 0x80 >> (index & 7)
    return bytes(bits)


def encode(bits: bytes) -> str:
    """GZIP, then base64url without padding behind the multibase prefix `u`."""
    compressed = gzip.compress(bits, mtime=0)  # no timestamp: the same bits, the same text
    return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()


class Bits(NamedTuple):
    """A credential's bits as the lists say, and whose they are: its certification, and the first
    day that changes the certification's standing with no event (the daily sweep's)."""

    revoked: bool
    suspended: bool
    certification_id: str
    next_change_on: date | None


def status_at(connection: Connection, list_id: int, index: int) -> Bits | None:
    """The bits of the credential at a list's index; None when none is there."""
    found = connection.execute(_AT, {"list_id": list_id, "status_index": index}).first()
    return None if found is None else Bits(*found)
