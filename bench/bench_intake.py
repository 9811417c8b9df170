"""CPU an event costs the intake itself, in one process: no web server, no HTTP.

    .venv/bin/python bench/bench_intake.py [--events 2000] [--rounds 4] [--group 1] [--source DIR]

`gateway.usecases.intake.submit_event` on PostgreSQL (a fresh database, dropped at the end) with
Redis for the workers' wake-up (database 13, held as bench_service.py holds it; no worker runs),
for two kinds of single events: a new grant, and a renewal fee on a certification granted
before (the common event: its history and what the jobs made of it are read first). Each round
measures `--events` of each kind after 200 unmeasured ones; rounds of every `--source` (a checkout
of the gateway, this one by default) alternate, so that the machine's speed moves them alike.
Prints, per source and kind, the median over the rounds of: this process's CPU an event, the
whole machine's busy CPU an event (PostgreSQL and Redis included, from /proc/stat) and the wall
time an event. `--group N` records the events N to a transaction, as the group commit records N
single events posted at the same moment (`intake.submit_events`, which it calls).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O)."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def grant(run: str, n: int) -> dict:
    member = {"member_id": f"M-{run}-{n}", "first_name": "Ada", "last_name": "Lovelace"}
    return {
        "event_id": f"grant-{run}-{n}",
        "type": "certification.granted",
        "occurred_at": "2024-05-01T12:00:00Z",
        "certification_id": f"C-{run}-{n}",
        "data": {
            "member": {**member, "email": "ada@example.org"},
            "credential": "RMA",
            "certified_on": "2024-05-01",
        },
    }


def fee(run: str, n: int) -> dict:
    return {
        "event_id": f"fee-{run}-{n}",
        "type": "renewal.fee_paid",
        "occurred_at": "2025-05-02T12:00:00Z",
        "certification_id": f"C-{run}-{n}",
        "data": {"membership_year": 2025, "paid_on": "2025-05-02"},
    }


def measure_round(
    database_url: str, redis_url: str, events: int, group: int
) -> dict[str, list[float]]:
    """One round in this process (started by `main` with the source on its path)."""
    from gateway.bootstrap import create_app
    from gateway.platform.config import Settings
    from gateway.usecases import intake

    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        queue_name="bench-intake",
        instance_path=str(Path("/tmp") / f"bench-intake-{uuid.uuid4().hex[:8]}"),
    )
    svc = create_app(settings, jobs="ON_DEMAND").extensions["gateway"]
    run = uuid.uuid4().hex[:8]

    def submit(bodies: list[dict]) -> None:
        if len(bodies) == 1:
            answers = [intake.submit_event(svc, bodies[0], client_id="bench")]
        else:
            answers = intake.submit_events(svc, bodies, client_id="bench")
        for answer in answers:
            if answer.status != 202:
                sys.exit(f"the bench's event was refused: {answer.status} {answer.body}")

    def submit_all(build: Callable[[str, int], dict], numbers: range) -> None:
        for start in range(numbers.start, numbers.stop, group):
            submit([build(run, n) for n in range(start, min(start + group, numbers.stop))])

    results = {}
    for kind, build in (("grant", grant), ("fee", fee)):
        submit_all(build, range(-200, 0))  # unmeasured: connections made, statements prepared
        cpu, busy, wall = time.process_time(), busy_seconds(), time.perf_counter()
        submit_all(build, range(events))
        results[kind] = [
            (time.process_time() - cpu) / events * 1000,
            (busy_seconds() - busy) / events * 1000,
            (time.perf_counter() - wall) / events * 1000,
        ]
    svc.db.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="Events of each kind a round.")
    parser.add_argument("--rounds", type=int, default=4, help="Rounds of each source.")
    parser.add_argument("--group", type=int, default=1, help="Events a transaction.")
    parser.add_argument(
        "--source", nargs="+", default=[str(ROOT)], help="Checkouts of the gateway to measure."
    )
    parser.add_argument(
        "--round", nargs=3, metavar=("SOURCE", "DATABASE", "REDIS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.round:  # a round, in a process of its own with that source first on the path
        source, database_url, redis_url = args.round
        sys.path.insert(0, source)
        print(json.dumps(measure_round(database_url, redis_url, args.events, args.group)))
        return

    sys.path.insert(0, str(BENCH))
    from bench_service import REDIS_URL
    from bench_sweep import drop, fresh_database
    from redis_db import HeldDatabase

    name = "gw_bench_intake"
    figures: dict[tuple[str, str], list[list[float]]] = {}
    with HeldDatabase(REDIS_URL, "BENCH_SERVICE_REDIS_URL"):
        try:
            url = fresh_database(name)
            for _ in range(args.rounds):
                for source in args.source:
                    command = [sys.executable, __file__, "--events", str(args.events)]
                    command += ["--group", str(args.group)]
                    command += ["--round", source, url, REDIS_URL]
                    out = subprocess.run(command, check=True, capture_output=True, text=True)
                    for kind, values in json.loads(out.stdout.splitlines()[-1]).items():
                        figures.setdefault((source, kind), []).append(values)
        finally:
            drop(name)
    print("| source | event | CPU ms an event (this process) | machine CPU ms | wall ms |")
    print("|---|---|---|---|---|")
    for (source, kind), rounds in figures.items():
        medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
        print(f"| {source} | {kind} | " + " | ".join(f"{m:.2f}" for m in medians) + " |")


if __name__ == "__main__":
    main()
