"""Benchmark of the daily housekeeping's delivery prune on PostgreSQL.

    .venv/bin/python bench/bench_prune.py --counts 100000 1000000

For each N it creates a fresh database with N deliveries finished two years ago (20 targets, ten
messages of each certification to each, one in seven superseded, the rest delivered; written by
one INSERT ... SELECT), then times `housekeeping.prune_deliveries` with the gateway's settings
(the statement timeout included), and checks that it deleted all but what a ranking in SQL keeps.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import psycopg
from bench_sweep import table_on_fresh_databases

from gateway.bootstrap import create_app
from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.usecases import housekeeping

TARGETS = 20
PER_GROUP = 10  # messages of each certification to each target


def seed(url: str, count: int) -> int:
    """`count` finished deliveries; how many of them the prune must leave, ranked in SQL: of each
    target, certification and type of message the last delivered and the last tried."""
    certifications = max(count // (TARGETS * PER_GROUP), 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO deliveries (target, certification_id, sequence, event_id, event_type,
                                    state, attempts, created_at, last_attempt_at, finished_at)
            SELECT 'sub_' || mod(g, %(targets)s), 'CERT-' || mod(g / %(targets)s, %(certs)s), g,
                   'msg_' || g, 'certification.status_changed',
                   CASE WHEN mod(g, 7) = 0 THEN 'superseded' ELSE 'delivered' END, 1, at, at, at
            FROM generate_series(1, %(count)s) AS g,
                 LATERAL (SELECT now() - interval '800 days' + g * interval '1 second') AS t(at)
            """,
            {"targets": TARGETS, "certs": certifications, "count": count},
        )
        conn.execute("ANALYZE deliveries")
        [(kept,)] = conn.execute(
            """
            SELECT count(*) FROM (
                SELECT row_number() OVER (PARTITION BY target, certification_id, event_type
                                          ORDER BY state = 'delivered' DESC, sequence DESC) AS d,
                       row_number() OVER (PARTITION BY target, certification_id, event_type
                                          ORDER BY last_attempt_at DESC NULLS LAST, id) AS t
                FROM deliveries) AS ranked
            WHERE d = 1 OR t = 1
            """
        ).fetchall()
    return kept


def measure(url: str, count: int) -> str:
    """One table row: the prune of `count` deliveries at `url`."""
    kept = seed(url, count)
    app = create_app(replace(Settings.from_env(), database_url=url))
    svc = app.extensions["gateway"]
    started = time.perf_counter()
    pruned = housekeeping.prune_deliveries(svc, clock.now())
    seconds = time.perf_counter() - started
    svc.db.engine.dispose()
    assert pruned == count - kept, (pruned, count, kept)
    return f"| {count:,} | {pruned:,} | {seconds:.1f} | {pruned / seconds:,.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000])
    args = parser.parse_args()
    columns = ["deliveries", "deleted", "seconds", "deleted/s"]
    table_on_fresh_databases(columns, args.counts, "gw_bench_prune", measure)


if __name__ == "__main__":
    main()
