"""The benchmarks' ceilings: a bare Flask app served by `gateway.platform.gunicorn_conf`.

`/bare/<id>` answers a constant JSON object; `/bare-lookup/<id>` does the least a rate-limited
lookup can do — one Redis script counting the caller, one prepared read of the record from
PostgreSQL (psycopg alone, a connection per thread) — and answers it.
"""

from __future__ import annotations

import os
import threading

import psycopg
import redis
from flask import Flask, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)

ANSWER = {"certification_id": "C00000000", "status": "active", "valid_through": "2027-03-31"}
RECORD = (
    "SELECT certification_id, name, credential, credential_name, status, certified_since,"
    " valid_through FROM verification_records WHERE certification_id = %s"
)
FIELDS = ("certification_id", "name", "credential", "credential_name", "status")
_local = threading.local()
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
    if not hasattr(_local, "db"):
        _local.db = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    row = _local.db.execute(RECORD, (item_id,), prepare=True).fetchone()
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
