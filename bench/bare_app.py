"""The benchmarks' ceilings: a bare Flask app served by `gateway.gunicorn_conf`.

`/bare/<id>` answers a constant JSON object; `/bare-lookup/<id>` does the least a rate-limited
lookup can do — one Redis script counting the caller, one prepared read of the record from
PostgreSQL (psycopg alone, a connection per thread) — and answers it. `POST /bare-event` does the
least an accepted event can do and keep the gateway's promises: a fresh read of the bearer token
(its expiry, revocation, scope and client), then one transaction writing the event, the
certification's standing and an outbox item, committed before the 202 (no validation, rules,
idempotency answer or wake-up; tables of its own, made at start). `POST /bare-event-one` writes
the same rows in one statement, to show what a statement costs the web server.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from flask import Flask, request
from flask.typing import ResponseReturnValue
from psycopg.types.json import Jsonb

app = Flask(__name__)

ANSWER = {"certification_id": "C00000000", "status": "active", "valid_through": "2027-03-31"}
RECORD = (
    "SELECT certification_id, name, credential, credential_name, status, certified_since,"
    " valid_through FROM verification_records WHERE certification_id = %s"
)
FIELDS = ("certification_id", "name", "credential", "credential_name", "status")
_local = threading.local()
TOKEN = (
    "SELECT t.client_id, t.scope, t.issued_at, t.expires_in FROM oauth_tokens t"
    " JOIN oauth_clients c ON c.client_id = t.client_id"
    " WHERE t.token_hash = %s AND NOT t.revoked AND c.revoked_at IS NULL"
)
TABLES = (
    "CREATE TABLE IF NOT EXISTS bare_events (id bigserial PRIMARY KEY, event_id text UNIQUE,"
    " certification_id text, client_id text, body jsonb, received_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS bare_standings (certification_id text PRIMARY KEY, standing jsonb,"
    " updated_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS bare_outbox (id bigserial PRIMARY KEY, event_pk bigint"
    " REFERENCES bare_events, certification_id text, kind text, created_at timestamptz)",
)
WRITES = (
    "INSERT INTO bare_events (event_id, certification_id, client_id, body, received_at)"
    " VALUES (%s, %s, %s, %s, %s) RETURNING id",
    "INSERT INTO bare_standings VALUES (%s, %s, %s) ON CONFLICT (certification_id)"
    " DO UPDATE SET standing = excluded.standing, updated_at = excluded.updated_at",
    "INSERT INTO bare_outbox (event_pk, certification_id, kind, created_at)"
    " SELECT id, certification_id, 'issue_badge', received_at FROM bare_events"
    " WHERE event_id = %s",
)
ONE_WRITE = (
    f"WITH e AS ({WRITES[0].replace('RETURNING id', 'RETURNING *')}),"
    f" s AS ({WRITES[1]})"
    " INSERT INTO bare_outbox (event_pk, certification_id, kind, created_at)"
    " SELECT id, certification_id, 'issue_badge', received_at FROM e"
)
_count = redis.Redis.from_url(os.environ["REDIS_URL"]).register_script(
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[1], 60) end return n"
)


@app.get("/bare/<item_id>")
def bare_get(item_id: str) -> ResponseReturnValue:
    """A constant JSON object: what serving any GET costs in this stack."""
    return ANSWER


@app.get("/bare-lookup/<item_id>")
def bare_lookup(item_id: str) -> ResponseReturnValue:
    """Count the caller, read the record: what any rate-limited lookup in PostgreSQL costs."""
    _count(keys=[f"bare-lookup:{request.remote_addr}"])
    row = _connection().execute(RECORD, (item_id,), prepare=True).fetchone()
    if row is None:
        return {"status": "not_found"}, 404
    since, through = row[5], row[6]
    return {
        **dict(zip(FIELDS, row[:5], strict=True)),
        "certified_since": since.isoformat(),
        "valid_through": through.isoformat() if through else None,
    }


@app.post("/bare")
def bare_post() -> ResponseReturnValue:
    """Parse the JSON body and answer 202 with a constant: what accepting any POST costs."""
    request.get_json()
    return ANSWER, 202


@app.post("/bare-event")
def bare_event() -> ResponseReturnValue:
    """Check the token afresh; in one transaction record the event, its certification's
    standing and an outbox item (three statements sent together, then the commit); say so."""
    accepted = _accepted()
    if isinstance(accepted, int):
        return {"status": accepted}, accepted
    db, event, standing = accepted
    with db.transaction(), db.pipeline():
        db.execute(WRITES[0], event, prepare=True)
        db.execute(WRITES[1], standing, prepare=True)
        db.execute(WRITES[2], event[:1], prepare=True)
    return {"event_id": event[0], "status": "accepted"}, 202


@app.post("/bare-event-one")
def bare_event_one() -> ResponseReturnValue:
    """`/bare-event` with its three writes in one statement, committed on its own."""
    accepted = _accepted()
    if isinstance(accepted, int):
        return {"status": accepted}, accepted
    db, event, standing = accepted
    db.execute(ONE_WRITE, (*event, *standing), prepare=True)
    return {"event_id": event[0], "status": "accepted"}, 202


def _accepted() -> tuple[psycopg.Connection, tuple, tuple] | int:
    """The connection and the rows to write of an event whose bearer token is live and holds
    `events:write` (a fresh read); else the status to answer."""
    body = request.get_json()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    db = _connection()
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = db.execute(TOKEN, (digest,), prepare=True).fetchone() if scheme == "Bearer" else None
    now = datetime.now(UTC)
    if found is None or found[2] + timedelta(seconds=found[3]) < now:
        return 401
    if "events:write" not in found[1].split():
        return 403
    certification_id = body["certification_id"]
    event = (body["event_id"], certification_id, found[0], Jsonb(body), now)
    standing = Jsonb({"status": "active", "as_of": now.date().isoformat()})
    return db, event, (certification_id, standing, now)


def _connection() -> psycopg.Connection:
    """This thread's connection (autocommit: a statement alone needs no transaction)."""
    if not hasattr(_local, "db"):
        _local.db = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _local.db


def _tables() -> None:
    with psycopg.connect(os.environ["DATABASE_URL"]) as db:
        db.execute("SELECT pg_advisory_xact_lock(4242)")  # one process of several makes them
        for statement in TABLES:
            db.execute(statement)


_tables()
