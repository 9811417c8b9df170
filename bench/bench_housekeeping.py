"""Benchmark of the daily run's prunes and review of advance notices on a large PostgreSQL database.

    .venv/bin/python bench/bench_housekeeping.py --certifications 200000 --source ../before .

For each checkout (`--source`, default this one) a process of its own creates a fresh database,
migrated by that checkout's gateway, and fills it: the sweep bench's N certifications and their
events (about 10 each, with COPY), then in proportion to N 5 N outbox items (93 % done over the
last year, 4 % failed, 1 % superseded, 2 % unfinished), 1.5 N Credly notifications over 300 days
(5 % refused, forged or failed), 5 live subscriptions watching N / 20 certifications each (at
most 10,000) and 40 deleted ones, 3 N deliveries over 400 days and N advance notices (2.5 %
scheduled). It runs each step once (a first day, with the backlog such a database holds), then
VACUUM ANALYZE, then times each step on the days after: the best of --rounds, in ms. The
checkouts run one after the other, each on its database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from bench_sweep import drop, fresh_database, generate

#: Everything but the certifications and events, in proportion to their number `n`.
REST = """
CREATE TEMP TABLE ev AS SELECT id, certification_id, row_number() OVER (ORDER BY id) AS n
FROM events;
CREATE INDEX ON ev (n);

INSERT INTO outbox (event_pk, certification_id, kind, payload, state, attempts, last_error,
                    created_at, finished_at, due_at)
SELECT e.id, e.certification_id,
       (ARRAY['issue_badge', 'sync_verification', 'sync_verification', 'replace_badge',
              'revoke_badge', 'deliver_webhook', 'push_directory', 'review_notices'])[1 + g %% 8],
       CASE WHEN g %% 8 IN (5, 6) THEN jsonb_build_object('delivery_id', g) ELSE '{}' END,
       s.state, 1, CASE WHEN s.state IN ('failed', 'superseded') THEN 'refused' END,
       now() - make_interval(days => g %% 366) - interval '1 hour',
       CASE WHEN s.state IN ('done', 'failed', 'superseded')
            THEN now() - make_interval(days => g %% 366) END,
       CASE WHEN s.state = 'pending' THEN now() END
FROM generate_series(1, 5 * %(n)s) AS g
JOIN ev e ON e.n = 1 + (g::bigint * 7919) %% (SELECT count(*) FROM ev)
CROSS JOIN LATERAL (SELECT CASE WHEN g %% 100 < 93 THEN 'done' WHEN g %% 100 < 97 THEN 'failed'
                                WHEN g %% 100 < 98 THEN 'superseded' ELSE 'pending' END) s(state);

INSERT INTO credly_notifications (notification_id, organization_id, event_type, occurred_at,
                                  received_at, status, credly_badge_id, result, processed_at,
                                  address)
SELECT 'n-' || g, 'org', 'badge.state.changed', at, at,
       CASE WHEN g %% 20 = 0 THEN (ARRAY['refused', 'forged', 'failed'])[1 + (g / 20) %% 3]
            ELSE 'processed' END,
       md5(g::text), 'done', at, '198.51.100.' || g %% 200
FROM generate_series(1, 3 * %(n)s / 2) AS g,
     LATERAL (SELECT now() - make_interval(mins => (g * 432000.0 / (3 * %(n)s / 2))::int)) t(at);

INSERT INTO oauth_clients (client_id, client_secret_hash, name, scope, created_at)
VALUES ('employer', '-', 'Employer', 'verifications:read', now());
INSERT INTO subscriptions (id, client_id, url, secret, notice_days, created_at, deleted_at)
SELECT 'sub_' || g, 'employer', 'https://hooks.example.org/' || g, 'whsec_x',
       CASE WHEN g %% 2 = 0 THEN 30 END, now() - interval '300 days',
       CASE WHEN g > 5 THEN now() - make_interval(days => (g - 5) * 5) END
FROM generate_series(1, 45) g;
INSERT INTO subscription_certifications (subscription_id, certification_id)
SELECT DISTINCT 'sub_' || s, 'C' || lpad(((s * 20000 + g * 7) %% %(n)s)::text, 8, '0')
FROM generate_series(1, 5) s, generate_series(1, least(%(n)s / 20, 10000)) g;

INSERT INTO delivery_targets (name, last_sequence, updated_at)
SELECT id, 3 * %(n)s, now() FROM subscriptions;
INSERT INTO deliveries (target, certification_id, sequence, event_id, data, state, attempts,
                        created_at, last_attempt_at, finished_at)
SELECT 'sub_' || (1 + g %% 45), 'C' || lpad(((g * 13) %% %(n)s)::text, 8, '0'), g, 'msg_' || g,
       '{"status": "active"}', CASE WHEN g %% 50 = 0 THEN 'superseded' ELSE 'delivered' END,
       1, at, at, at
FROM generate_series(1, 3 * %(n)s) AS g,
     LATERAL (SELECT now() - make_interval(mins => (g * 576000.0 / (3 * %(n)s))::int)) t(at);

INSERT INTO advance_notices (subscription_id, certification_id, change_on, status, state,
                             created_at, updated_at)
SELECT 'sub_' || (1 + g %% 5), 'C' || lpad(((g * 11) %% %(n)s)::text, 8, '0'),
       current_date - 400 + g %% 430, 'inactive',
       CASE WHEN g %% 40 = 0 THEN 'scheduled' WHEN g %% 3 = 0 THEN 'cancelled' ELSE 'passed' END,
       now(), now()
FROM generate_series(1, %(n)s) AS g
ON CONFLICT DO NOTHING;
"""


def fill(url: str, certifications: int) -> None:
    """The sweep bench's certifications and events, then the rest (REST)."""
    generate(url, certifications)
    with psycopg.connect(url, autocommit=True) as conn:
        psycopg.ClientCursor(conn).execute(REST, {"n": certifications})  # many statements
        conn.execute("VACUUM ANALYZE")


def measure(url: str, rounds: int) -> dict[str, float]:
    """Each step once, VACUUM ANALYZE, then each step's best of `rounds` (ms)."""
    from gateway.bootstrap import create_app
    from gateway.platform import clock
    from gateway.platform.config import Settings
    from gateway.usecases import housekeeping, notices

    settings = Settings(database_url=url, instance_path="/tmp/bench-instance", log_level="WARNING")
    svc = create_app(settings, jobs="IN_SERVER").extensions["gateway"]
    now = clock.now()
    steps: dict[str, Callable[[], object]] = {
        "prune of jobs": lambda: housekeeping.prune_jobs(svc, now),
        "prune of notifications": lambda: housekeeping.prune_notifications(svc, now),
        "prune of deleted subscriptions": lambda: housekeeping.prune_subscriptions(svc, now),
        "review of advance notices": lambda: notices.review_due(svc, now.date()),
    }
    found = {f"first day: {name}": took(step) for name, step in steps.items()}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    for name, step in steps.items():
        found[name] = min(took(step) for _ in range(rounds))
    svc.db.engine.dispose()
    return found


def took(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return round((time.perf_counter() - started) * 1000, 1)


def one(certifications: int, rounds: int, name: str) -> None:
    """In a checkout's own process: fill a database and print what `measure` found, as JSON."""
    url = fresh_database(name)
    try:
        fill(url, certifications)
        print(json.dumps(measure(url, rounds)))
    finally:
        drop(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certifications", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", nargs="+", default=["."], help="checkouts to measure")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a checkout's own run, into this db
    args = parser.parse_args()
    if args.one:
        one(args.certifications, args.rounds, args.one)
        return
    here = Path(__file__).resolve().parent
    results = {}
    for number, source in enumerate(args.source):
        path = f"{Path(source).resolve()}{os.pathsep}{here}"
        command = [sys.executable, __file__, f"--certifications={args.certifications}"]
        command += [f"--rounds={args.rounds}", f"--one=gw_bench_housekeeping_{number}"]
        out = subprocess.run(
            command, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
        )
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        results[source] = json.loads(out.stdout.splitlines()[-1])
    print(f"| step ({args.certifications:,} certifications) | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for step in next(iter(results.values())):
        print(f"| {step} | " + " | ".join(f"{r[step]:,.1f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
