"""Benchmark of the rules engine: evaluate() on typical certification histories.

Reproduce with `.venv/bin/python bench/bench_rules.py` (figures go to docs/benchmarks.md).
A typical history: a member in good standing with the grant, 10 years of renewal fees, 40 CCP
activities (3 points each, spread over the years) and one audit, in shuffled arrival order,
evaluated some months after the last fee.
"""

import argparse
import gc
import os
import platform
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from gateway.rules import (
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    Member,
    Policy,
    evaluate,
    load_policy,
)

YEARS_OF_FEES = 10
ACTIVITIES = 40
THREE = Decimal(3)  # points of each activity


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def typical_history(rng: random.Random, start: date) -> tuple[list[Event], date]:
    """A typical history from `start`, and the day to evaluate it on."""
    member = Member("M-1", "Ada", "Byron", "ada@example.org")
    history: list[Event] = [Granted("g", _at(start), member, "RMA", start)]
    for year in range(start.year + 1, start.year + 1 + YEARS_OF_FEES):
        paid_on = date(year, start.month, 1)
        history.append(FeePaid(f"f{year}", _at(paid_on), year, paid_on))
    span = YEARS_OF_FEES * 365
    spacing = span // ACTIVITIES
    for n in range(ACTIVITIES):
        done = start + timedelta(days=n * spacing + rng.randrange(spacing))
        category = rng.choice(("professional_education", "amt_online_ce", "formal_education"))
        history.append(CcpActivity(f"c{n}", _at(done), f"A{n}", category, done, THREE))
    audited = start + timedelta(days=rng.randrange(span))
    history.append(AuditCompleted("a", _at(audited), "passed", audited, audited))
    rng.shuffle(history)
    return history, start + timedelta(days=span + rng.randrange(30, 200))


def per_call(policy: Policy, rng: random.Random, calls: int) -> list[int]:
    """Nanoseconds of each evaluate() of one typical history."""
    history, as_of = typical_history(rng, date(2015, 6, 3))
    for _ in range(1000):
        evaluate(history, as_of, policy)
    samples = []
    for _ in range(calls):
        began = time.perf_counter_ns()
        evaluate(history, as_of, policy)
        samples.append(time.perf_counter_ns() - began)
    return samples


def many_histories(policy: Policy, rng: random.Random, count: int, batch: int) -> float:
    """Seconds to evaluate `count` distinct typical histories (building them is not timed)."""
    total = 0.0
    for done in range(0, count, batch):
        starts = [date(2006, 1, 1) + timedelta(days=rng.randrange(3650)) for _ in range(batch)]
        cases = [typical_history(rng, start) for start in starts[: min(batch, count - done)]]
        gc.collect()
        began = time.perf_counter()
        for history, as_of in cases:
            evaluate(history, as_of, policy)
        total += time.perf_counter() - began
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls on one history")
    parser.add_argument("--histories", type=int, default=100_000, help="distinct histories")
    args = parser.parse_args()
    policy = load_policy()
    rng = random.Random(2026)
    samples = sorted(per_call(policy, rng, args.calls))
    median = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99) - 1] / 1000
    total = many_histories(policy, rng, args.histories, batch=10_000)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"history: grant + {YEARS_OF_FEES} fees + {ACTIVITIES} CCP activities + 1 audit")
    print(f"evaluate, one history x {args.calls}: median {median:.1f} us, p99 {p99:.1f} us")
    print(
        f"evaluate, {args.histories} distinct histories: {total:.2f} s total, "
        f"{total / args.histories * 1e6:.1f} us each"
    )


if __name__ == "__main__":
    main()
