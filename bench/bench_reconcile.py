"""Benchmark of the reconciliation's pass over the certifications, on PostgreSQL.

    .venv/bin/python bench/bench_reconcile.py --counts 20000 100000

For each N it creates a fresh database with the sweep bench's N synthetic certifications (their
standings stored as of today, no badge recorded), then times a dry-run reconciliation against the
dry-run Credly backend, which holds no badge: every certification is checked, those whose status
keeps a badge are counted to be issued one, the others in step. Nothing is written or queued.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

from bench_sweep import generate, table_on_fresh_databases

from gateway.bootstrap import create_app
from gateway.platform.config import Settings
from jobs.reconcile import reconcile


def measure(url: str, count: int) -> str:
    """One table row: a dry-run reconciliation of `count` certifications at `url`."""
    generate(url, count)
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(replace(Settings.from_env(), database_url=url, instance_path=folder))
        svc = app.extensions["gateway"]
        started = time.perf_counter()
        summary = reconcile(svc, dry_run=True)
        seconds = time.perf_counter() - started
        svc.db.engine.dispose()
    assert summary.certifications_checked == count, summary
    issued = summary.repaired["issued"]
    return (
        f"| {count:,} | {summary.in_step:,} | {issued:,} | {seconds:.1f} | {count / seconds:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[20_000])
    args = parser.parse_args()
    columns = ["certifications", "in step", "to be issued a badge", "seconds", "certifications/s"]
    table_on_fresh_databases(columns, args.counts, "gw_bench_reconcile", measure)


if __name__ == "__main__":
    main()
