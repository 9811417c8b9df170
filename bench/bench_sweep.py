"""Benchmark of the daily sweep on PostgreSQL: N synthetic certifications, time, rows/s, memory.

    .venv/bin/python bench/bench_sweep.py --counts 100000 1000000

For each N it creates a fresh database, generates N certifications with typical histories
(a grant, yearly fees with gaps, CCP activities) straight into the tables with COPY, stores each
one's standing as the gateway would, then runs `gateway sweep` in a subprocess (so its peak memory
is the sweep's own): --full (every certification evaluated) in one process and split over two,
and due-only (the daily run). Changes are enqueued on Redis (BENCH_REDIS_URL, database 13, which
no test session takes; held for the run and flushed) as in production; no worker runs, so the
figures are the sweep's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from redis_db import HeldDatabase

from gateway import rules
from gateway.store.db import Database
from gateway.store.history import decode_event

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TODAY = date(2026, 11, 30)  # the stored standings are as of the day before the sweep
SWEEP_DAY = date(2026, 12, 1)  # a month boundary: the busiest day of a month
POLICY = rules.load_policy()
CREDENTIALS = list(POLICY.credentials)


def _body(event_id: str, type_: str, cert: str, day: date, data: dict) -> dict:
    occurred = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": occurred.isoformat(),
        "certification_id": cert,
        "data": data,
    }


def history(rng: random.Random, n: int) -> tuple[str, list[dict]]:
    """One synthetic certification: its id and its event bodies."""
    cert = f"C{n:08d}"
    start = date(2012, 1, 1) + timedelta(days=rng.randrange(0, 13 * 365))
    member = {
        "member_id": f"M{n:08d}",
        "first_name": "Pat",
        "last_name": f"Member{n}",
        "email": f"m{n}@example.org",
    }
    data = {"member": member, "credential": rng.choice(CREDENTIALS), "certified_on": str(start)}
    bodies = [_body(f"{cert}-g", "certification.granted", cert, start, data)]
    stops = rng.random() < 0.15  # some members stop paying
    for year in range(start.year + 1, TODAY.year + 1):
        paid = date(year, start.month, 1)
        if paid > TODAY or (stops and year > start.year + 3):
            break
        if rng.random() < 0.95:
            fee = {"membership_year": year, "paid_on": str(paid)}
            bodies.append(_body(f"{cert}-f{year}", "renewal.fee_paid", cert, paid, fee))
    for k in range(rng.randrange(1, 5)):
        done = start + timedelta(days=rng.randrange(1, 3 * 365))
        if done <= TODAY:
            activity = {
                "activity_id": f"{cert}-a{k}",
                "category": "formal_education",
                "completed_on": str(done),
                "points": 10.0,
            }
            bodies.append(_body(f"{cert}-a{k}", "ccp.activity_recorded", cert, done, activity))
    return cert, bodies


def _histories(count: int, seed: int):
    rng = random.Random(seed)
    for n in range(count):
        yield history(rng, n)


def _copy(cur: psycopg.Cursor, table: str, columns: str, rows) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _member_rows(count: int, seed: int, now: str):
    for _, bodies in _histories(count, seed):
        m = bodies[0]["data"]["member"]
        yield (m["member_id"], m["first_name"], m["last_name"], m["email"], now)


def _event_rows(count: int, seed: int, now: str):
    for cert, bodies in _histories(count, seed):
        for body in bodies:
            text = json.dumps(body)
            digest = hashlib.sha256(text.encode()).hexdigest()
            yield (
                body["event_id"],
                body["type"],
                cert,
                body["occurred_at"],
                text,
                digest,
                "accepted",
                "[]",
                202,
                "{}",
                now,
            )


def _certification_rows(count: int, seed: int, now: str, as_of: date):
    for cert, bodies in _histories(count, seed):
        standing = rules.evaluate([decode_event(b) for b in bodies], as_of, POLICY)
        change = standing.next_change_on
        yield (
            cert,
            standing.credential,
            standing.member.member_id,
            standing.status,
            json.dumps(standing.to_dict()),
            str(as_of),
            str(change) if change else None,
            now,
            now,
        )


def generate(url: str, count: int, seed: int = 1, as_of: date = TODAY) -> int:
    """Fill an empty, migrated database with `count` certifications, their standings stored as
    of `as_of`; returns the event count."""
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        _copy(
            cur,
            "members",
            "member_id, first_name, last_name, email, updated_at",
            _member_rows(count, seed, now),
        )
        _copy(
            cur,
            "events",
            "event_id, type, certification_id, occurred_at, body, body_hash, status, reasons,"
            " response_status, response_body, received_at",
            _event_rows(count, seed, now),
        )
        _copy(
            cur,
            "certifications",
            "certification_id, credential, member_id, status, standing, evaluated_on,"
            " next_change_on, created_at, updated_at",
            _certification_rows(count, seed, now, as_of),
        )
        conn.commit()
        cur.execute("ANALYZE")
        return cur.execute("SELECT count(*) FROM events").fetchone()[0]


def run_sweep(url: str, *flags: str) -> dict:
    """`gateway sweep` in a subprocess; its JSON summary plus its peak memory (MB)."""
    gateway = Path(sys.executable).with_name("gateway")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "INSTANCE_PATH": "/tmp/bench-instance",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": REDIS_URL,  # changes are enqueued for workers, as in production
    }
    code = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "p.returncode and sys.exit(p.stderr[-3000:]);"
        "s = json.loads(p.stdout);"
        "s['peak_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024;"
        "print(json.dumps(s))"
    )
    command = [str(gateway), "sweep", "--as-of", str(SWEEP_DAY), "--json", *flags]
    out = subprocess.run(
        [sys.executable, "-c", code, *command], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def run_split(url: str, count: int, parts: int) -> dict:
    """A full sweep split by id range over `parts` processes at once; wall time and totals."""
    bounds = [round(count * k / parts) for k in range(parts + 1)]
    ranges = [(f"C{bounds[k]:08d}", f"C{bounds[k + 1] - 1:08d}") for k in range(parts)]
    started = time.perf_counter()
    with ThreadPoolExecutor(parts) as pool:
        results = list(
            pool.map(lambda r: run_sweep(url, "--full", "--from-id", r[0], "--to-id", r[1]), ranges)
        )
    return {
        "evaluated": sum(r["evaluated"] for r in results),
        "changed": sum(r["changed"] for r in results),
        "seconds": time.perf_counter() - started,
        "peak_mb": max(r["peak_mb"] for r in results),
    }


def clone(template: str, name: str) -> str:
    """A new database copied from `template` (PostgreSQL copies the files: fast)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop(*names: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(name: str) -> str:
    drop(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    db.upgrade()
    db.engine.dispose()
    return url


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """The URL of a fresh, migrated database `name`, dropped when the block ends."""
    url = fresh_database(name)
    try:
        yield url
    finally:
        drop(name)


def table_on_fresh_databases(
    columns: list[str], counts: list[int], prefix: str, measure: Callable[[str, int], str]
) -> None:
    """Print a markdown table of `columns`: one row `measure(url, count)` for each count, each
    measured on a fresh database (`prefix` and the count name it) dropped after."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for count in counts:
        with scratch_database(f"{prefix}_{count}") as url:
            print(measure(url, count), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print("| certifications | events | run | evaluated | changed | seconds | certs/s | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    with HeldDatabase(REDIS_URL, "BENCH_REDIS_URL") as broker:
        for count in args.counts:
            snapshot = f"gw_bench_{count}"
            started = time.perf_counter()
            events = generate(fresh_database(snapshot), count)
            took = time.perf_counter() - started
            print(f"<!-- generated {count} certifications, {events} events in {took:.0f} s -->")
            runs = {
                "full, 1 process": lambda url: run_sweep(url, "--full"),
                "full, 2 processes": lambda url: run_split(url, count, 2),  # noqa: B023
                "due-only (daily)": lambda url: run_sweep(url),
            }
            for label, run in runs.items():
                url = clone(snapshot, f"{snapshot}_run")
                broker.flush()
                s = run(url)
                rate = s["evaluated"] / s["seconds"] if s["seconds"] else 0
                print(
                    f"| {count:,} | {events:,} | {label} | {s['evaluated']:,} "
                    f"| {s['changed']:,} | {s['seconds']:.1f} | {rate:,.0f} | {s['peak_mb']:.0f} |",
                    flush=True,
                )
            drop(f"{snapshot}_run", snapshot)


if __name__ == "__main__":
    main()
