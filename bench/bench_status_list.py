"""Benchmark of the Open Badges status lists on PostgreSQL: one list of N credentials served.

    .venv/bin/python bench/bench_status_list.py --counts 100000

For each N it creates a fresh database with N credentials (10 % revoked, 1 in 7 suspended; COPY),
then serves `GET /credentials/status/0/revocation` through the app: the first answer (the bits read,
compressed and signed), later answers of the same bits (signed once, kept), and a conditional
request answered 304. Peak memory is the Python heap's growth while answering (tracemalloc) and
the process's maximum resident size.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, run from anywhere

from bench_sweep import scratch_database

from gateway.bootstrap import create_app
from gateway.platform.config import Settings
from tests.support.status_lists import seed_entries

PATH = "/credentials/status/0/revocation"


def _timed(call: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(url: str, repeat: int) -> str:
    """One table row: the list of the credentials at `url` served through the app."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(Settings(database_url=url, instance_path=folder))
        client = app.test_client()
        tracemalloc.start()
        started = time.perf_counter()
        first = client.get(PATH)
        first_ms = (time.perf_counter() - started) * 1000
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert first.status_code == 200, first.status_code
        conditional = {"If-None-Match": first.headers["ETag"]}
        same = _timed(lambda: client.get(PATH), repeat)
        unchanged = _timed(lambda: client.get(PATH, headers=conditional), repeat)
        app.extensions["gateway"].db.engine.dispose()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"{first_ms:.0f} | {statistics.median(same):.0f} | {statistics.median(unchanged):.0f} "
        f"| {len(first.data):,} | {peak / 2**20:.1f} | {rss:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("| credentials | first ms | same bits ms | 304 ms | bytes | heap peak MB | max RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for count in args.counts:
        with scratch_database(f"gw_bench_status_{count}") as url:
            seed_entries(url, count, revoked_every=10, suspended_every=7)
            print(f"| {count:,} | {measure(url, args.repeat)}")


if __name__ == "__main__":
    main()
