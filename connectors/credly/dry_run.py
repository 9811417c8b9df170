"""`DryRunCredly`: the embedded default's Credly, which logs each request it would send and
answers as Credly would, its badges kept in an SQLite file of the instance folder."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.credly.errors import DUPLICATE_STATUS, AlreadyReplaced, NotFound, PermanentError
from connectors.credly.service import OnTransient
from connectors.credly.wire import (
    BADGE,
    BADGES,
    ENDED_STATES,
    EVENT,
    PENDING,
    REPLACE,
    REPLACED,
    REVOKE,
    REVOKED,
    Badge,
    BadgeRequest,
    filter_param,
    parse_credly_datetime,
)

#: The dry run's store: one row per badge, with the fields it searches on (the e-mail casefolded,
#: as Credly compares it) and the badge object as JSON; rows in issue order.
DRY_RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS badges (
    id TEXT PRIMARY KEY,
    issuer_earner_id TEXT,
    badge_template_id TEXT,
    state TEXT NOT NULL,
    email_key TEXT NOT NULL,
    badge TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS badges_earner ON badges (badge_template_id, issuer_earner_id);
CREATE INDEX IF NOT EXISTS badges_email ON badges (badge_template_id, email_key);
"""
#: How long a call waits for another process's call on the same store.
DRY_RUN_LOCK_SECONDS = 30.0
#: Filters the store answers itself (`_matches` checks every filter on what it finds).
DRY_RUN_COLUMNS = {
    "issuer_earner_id": "issuer_earner_id = ?",
    "badge_template_id": "badge_template_id = ?",
    "state": "state = ?",
    "recipient_email": "email_key = ?",
}


class DryRunCredly:
    """Credly for the embedded default: logs each request it would send and answers as Credly would.

    Nothing leaves the process and no token exists here. Its badges are kept in `state_file`, an
    SQLite database (WAL mode; each call one transaction begun with the write lock, so restarts
    and every process of the machine share them, and a call costs the same however many badges
    there are), or in this process's memory without one. The JSON file that earlier releases
    kept beside it (same name, `.json`) is moved into it at first use and renamed `.json.migrated`.
    """

    def __init__(
        self,
        organization_id: str = "dry-run",
        logger: logging.Logger | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.organization_id = organization_id
        self._log = logger or logging.getLogger(__name__)
        self._thread_lock = threading.Lock()
        self._file = state_file
        # One connection per process: a forked child never uses or closes its parent's (SQLite
        # forbids it), it opens its own.
        self._connections: dict[int, sqlite3.Connection] = {}
        self._log.warning(
            "Credly DRY RUN backend for organization %s: requests are logged, never sent",
            organization_id,
        )

    def __repr__(self) -> str:
        return f"DryRunCredly(organization_id={self.organization_id!r})"

    def _would_send(
        self, method: str, template: str, body: object = None, query: str = "", **path_params: str
    ) -> None:
        path = template.format(org=self.organization_id, **path_params) + query
        shown = "" if body is None else " " + json.dumps(body, sort_keys=True, default=str)
        self._log.info("DRY RUN: would send %s %s%s", method, path, shown)

    def issue_badge(self, request: BadgeRequest, *, locale: str = "en") -> Badge:
        """Record a new pending badge, refusing a duplicate of a live one as Credly does."""
        body = request.body()
        body["locale"] = locale
        self._would_send("POST", BADGES, body)
        with self._state() as db:
            _refuse_duplicate(db, body)
            return _store_new(db, body)

    def replace_badge(self, badge_id: str, request: BadgeRequest) -> Badge:
        """Mark the badge `replaced` and record its pending successor (keeping its recipient)."""
        body = request.replace_body()
        self._would_send("POST", REPLACE, body, badge_id=badge_id)
        with self._state() as db:
            old = _existing(db, badge_id)
            if old["state"] == REPLACED:
                raise AlreadyReplaced(
                    f"dry run: badge {badge_id} was replaced",
                    successor=old["current_badge_id"],
                    status=422,
                    body={"metadata": {"current_badge_id": old["current_badge_id"]}},
                )
            if old["state"] == REVOKED:
                raise PermanentError(
                    f"dry run: badge {badge_id} is revoked and cannot be replaced",
                    status=422,
                    body={"data": {"message": "Badge is revoked"}},
                )
            kept = {"recipient_email": old["recipient_email"]}
            kept["issuer_earner_id"] = old["issuer_earner_id"]
            new = _store_new(db, {**kept, **body}, replaces=badge_id)
            old.update(state=REPLACED, state_updated_at=_now_iso(), current_badge_id=new.id)
            _save(db, old)
            return new

    def successor_by_replacing(self, badge: Badge) -> Badge:
        """The recorded badge that replaced `badge`."""
        with self._state() as db:
            return Badge.from_json(_existing(db, _existing(db, badge.id)["current_badge_id"]))

    def revoke_badge(
        self, badge_id: str, *, reason: str, suppress_revoke_notification_email: bool = False
    ) -> Badge:
        """Mark the badge revoked; revoking it again changes nothing, and a replaced one is
        answered as it is (as Credly's client answers it)."""
        body = {
            "reason": reason,
            "suppress_revoke_notification_email": suppress_revoke_notification_email,
        }
        self._would_send("PUT", REVOKE, body, badge_id=badge_id)
        with self._state() as db:
            badge = _existing(db, badge_id)
            if badge["state"] not in (REVOKED, REPLACED):
                badge.update(
                    state=REVOKED,
                    state_updated_at=_now_iso(),
                    revoked_at=_now_iso(),
                    revocation_reason=reason,
                )
                _save(db, badge)
            return Badge.from_json(badge)

    def get_badge(self, badge_id: str) -> Badge:
        """The recorded badge; NotFound if none."""
        self._would_send("GET", BADGE, badge_id=badge_id)
        with self._state() as db:
            return Badge.from_json(_existing(db, badge_id))

    def list_badges(
        self,
        filters: dict[str, str],
        on_total: Callable[[int], None] | None = None,
        on_transient: OnTransient | None = None,
    ) -> Iterator[Badge]:
        """Recorded badges whose fields equal every filter value, in issue order (nothing here
        fails transiently: `on_transient` is never called)."""
        self._would_send("GET", BADGES, query=f"?filter={filter_param(filters)}" if filters else "")
        searched = {key: value for key, value in filters.items() if key in DRY_RUN_COLUMNS}
        where = " AND ".join(DRY_RUN_COLUMNS[key] for key in searched) or "1"
        values = [v.casefold() if k == "recipient_email" else v for k, v in searched.items()]
        with self._state() as db:
            rows = db.execute(f"SELECT badge FROM badges WHERE {where} ORDER BY rowid", values)
            badges = [Badge.from_json(json.loads(raw)) for (raw,) in rows]
        found = [b for b in badges if _matches(b, filters)]
        if on_total is not None:
            on_total(len(found))
        return iter(found)

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Always NotFound: the dry-run organisation has no events, so no webhook is believed."""
        self._would_send("GET", EVENT, event_id=event_id)
        raise NotFound(
            f"dry run: no Credly event {event_id}",
            status=404,
            body={"data": {"message": "Not found"}},
        )

    def token_expiry(self) -> datetime | None:
        """None: the dry run has no token."""
        return None

    # -- the store

    @contextmanager
    def _state(self) -> Iterator[sqlite3.Connection]:
        """One call's transaction on the badges: this process's lock, then the store's write
        lock (BEGIN IMMEDIATE), committed when the call succeeds, else rolled back."""
        with self._thread_lock:
            db = self._connections.get(os.getpid()) or self._connect()
            with _transaction(db):
                yield db

    def _connect(self) -> sqlite3.Connection:
        """This process's connection to the store, which is created (and the old JSON file moved
        into it) if need be."""
        if self._file is None:
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            # It holds members' names and addresses: readable by its owner only (SQLite gives
            # its WAL files the database file's mode).
            os.close(os.open(self._file, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(
                self._file,
                timeout=DRY_RUN_LOCK_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a dry run's badges need no fsync per call
        db.executescript(DRY_RUN_SCHEMA)
        if self._file is not None:
            _take_over_json(db, self._file.with_suffix(".json"))
        self._connections[os.getpid()] = db
        return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A transaction holding the store's write lock from its start."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _take_over_json(db: sqlite3.Connection, old: Path) -> None:
    """Move the badges of the JSON file earlier releases kept into the store, once: the file
    is renamed `.json.migrated` in the same transaction (another process finds it gone)."""
    if not old.exists():
        return
    with _transaction(db):
        if not old.exists():
            return
        for raw in json.loads(old.read_text()).values():
            _save(db, raw)
        os.replace(old, old.with_name(old.name + ".migrated"))
    with suppress(FileNotFoundError):
        old.with_suffix(".lock").unlink()  # the old file's lock file


def _existing(db: sqlite3.Connection, badge_id: str) -> dict[str, Any]:
    row = db.execute("SELECT badge FROM badges WHERE id = ?", (badge_id,)).fetchone()
    if row is None:
        raise NotFound(
            f"dry run: no Credly badge {badge_id}",
            status=404,
            body={"data": {"message": "Not found"}},
        )
    return json.loads(row[0])


def _save(db: sqlite3.Connection, raw: Mapping[str, Any]) -> None:
    """Write a badge object with the fields the dry run searches on (in place: its row keeps
    its issue order)."""
    badge = Badge.from_json(raw)
    email_key = str(badge.recipient_email).casefold()
    db.execute(
        "INSERT INTO badges (id, issuer_earner_id, badge_template_id, state, email_key, badge)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
        " issuer_earner_id = excluded.issuer_earner_id, email_key = excluded.email_key,"
        " badge_template_id = excluded.badge_template_id, badge = excluded.badge",
        (
            badge.id,
            badge.issuer_earner_id,
            badge.badge_template_id,
            badge.state,
            email_key,
            json.dumps(raw),
        ),
    )


def _refuse_duplicate(db: sqlite3.Connection, body: Mapping[str, Any]) -> None:
    """A 422 as Credly answers when a badge of the template that has not ended has the same
    `issuer_earner_id` or e-mail (compared casefolded)."""
    earner = body["issuer_earner_id"]
    searched = {
        "issuer_earner_id": None if earner is None else str(earner),
        "email_key": str(body["recipient_email"]).casefold(),
    }
    found = any(
        db.execute(
            f"SELECT 1 FROM badges WHERE badge_template_id IS ? AND {column} IS ?"
            " AND state NOT IN (?, ?) LIMIT 1",
            (body["badge_template_id"], value, *sorted(ENDED_STATES)),
        ).fetchone()
        for column, value in searched.items()
    )
    if found:
        raise PermanentError(
            "dry run: duplicate badge",
            status=DUPLICATE_STATUS,
            body={"data": {"message": "User already has this badge"}},
        )


def _store_new(
    db: sqlite3.Connection, body: Mapping[str, Any], replaces: str | None = None
) -> Badge:
    raw = credly_badge_object(body, badge_id=str(uuid.uuid4()))
    if replaces:
        raw["replaces_badge_id"] = replaces
    _save(db, raw)
    return Badge.from_json(raw)


def credly_badge_object(body: Mapping[str, Any], *, badge_id: str) -> dict[str, Any]:
    """A pending badge object shaped like Credly's answer, from issue/replace request fields."""
    now = _now_iso()
    return {
        "id": badge_id,
        "state": PENDING,
        "issuer_earner_id": body.get("issuer_earner_id"),
        "recipient_email": body.get("recipient_email"),
        "issued_to_first_name": body.get("issued_to_first_name"),
        "issued_to_last_name": body.get("issued_to_last_name"),
        "issued_to": f"{body.get('issued_to_first_name')} {body.get('issued_to_last_name')}",
        "issued_at": _iso(parse_credly_datetime(body.get("issued_at"))),
        "expires_at": _iso(parse_credly_datetime(body.get("expires_at"))),
        "locale": body.get("locale", "en"),
        "badge_template": {"id": body.get("badge_template_id")},
        "created_at": now,
        "updated_at": now,
        "state_updated_at": now,
    }


def _matches(badge: Badge, filters: Mapping[str, str]) -> bool:
    """True if each filtered field of the badge (typed field, else raw key) equals the value."""
    typed = {"issuer_earner_id", "badge_template_id", "recipient_email", "state"}
    return all(
        (getattr(badge, key) if key in typed else badge.raw.get(key)) == value
        for key, value in filters.items()
    )


def _iso(value: datetime | None) -> str | None:
    """Credly's answer form of a timestamp, `2014-04-01T14:41:00.000Z`."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _now_iso() -> str:
    return _iso(datetime.now(UTC)) or ""
