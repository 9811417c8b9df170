"""Many credentials in the status lists at once, written with COPY (tests and bench)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import psycopg

from gateway.store.db import normalize_url
from gateway.usecases.status_lists import LIST_SIZE

STANDING = json.dumps({"certified_on": "2024-01-01"})


def seed_entries(url: str, count: int, revoked_every: int, suspended_every: int) -> None:
    """`count` certifications with a credential each, filling the lists one after the other
    (index by index); every `revoked_every`-th revoked, every `suspended_every`-th suspended
    (counting from the first)."""
    now = datetime.now(UTC)
    day = date(2024, 1, 1)
    conninfo = normalize_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        ids = [f"BULK-{n:07d}" for n in range(count)]
        with cur.copy(
            "COPY members (member_id, first_name, last_name, email, updated_at) FROM STDIN"
        ) as copy:
            for cert in ids:
                copy.write_row((f"M-{cert}", "Ada", "Lovelace", "ada@example.org", now))
        with cur.copy(
            "COPY certifications (certification_id, credential, member_id, status, standing, "
            "evaluated_on, created_at, updated_at) FROM STDIN"
        ) as copy:
            for cert in ids:
                copy.write_row((cert, "RMA", f"M-{cert}", "active", STANDING, day, now, now))
        with cur.copy(
            "COPY credential_status_entries (certification_id, period_start, credential_id, salt, "
            "list_id, status_index, revoked, suspended, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n, cert in enumerate(ids):
                list_id, index = divmod(n, LIST_SIZE)
                revoked, suspended = n % revoked_every == 0, n % suspended_every == 0
                row = (cert, day, str(uuid.uuid4()), "salt", list_id, index, revoked, suspended)
                copy.write_row((*row, now, now))
