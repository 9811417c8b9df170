"""The tests judged against the gateway's today pass years from now: they are run again, in a
pytest of their own, with the gateway's clock five years ahead (`--clock`)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
YEARS_AHEAD = 5


def test_the_clock_sensitive_tests_pass_years_ahead(redis_url):
    ahead = date.today() + timedelta(days=round(YEARS_AHEAD * 365.25))
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run(
        [*pytest, "-m", "clock_sensitive", "--clock", ahead.isoformat(), "tests"],
        cwd=ROOT,
        # this session's Redis database, idle while it waits: no second one is taken
        env={**os.environ, "GATEWAY_TEST_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, f"on {ahead}:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
    assert " passed" in summary and "deselected" in summary, summary
