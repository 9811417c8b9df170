"""Where the web server's CPU goes: lookups and single events under wrk, sampled with py-spy.

    .venv/bin/python bench/profile_web.py [--count 10000] [--seconds 10] [--modes get post]

The production set-up of bench_service.py (`gateway serve` on PostgreSQL and Redis, N synthetic
certifications with their public records), loaded by wrk: GET /v1/verifications/{id} ("get") or
POST /v1/events of one new grant a request ("post"). For each, py-spy samples every gunicorn
process while it holds the GIL (its CPU in Python) and each sample is put under the first of
`PARTS` found from the innermost frame out; what no part claims goes to the framework it was in.
Prints per mode the rate, the web CPU a request (from /proc, measured apart from the sampled run)
and a markdown table of the parts' shares; with `--ceiling`, first the same load on the bare app's
counterparts (`bench/bare_app.py`: the read-and-count lookup; the parsing POST and the least
event that keeps the promises, `/bare-event`) and the ratios.
Needs wrk and py-spy (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench_service import (
    BIN,
    REDIS_URL,
    Load,
    environment,
    events_token,
    fill_verification_records,
    mean_group,
    vacuum,
    web,
    wrk,
)
from bench_sweep import drop, fresh_database, generate
from redis_db import HeldDatabase

PATHS = {"get": "/v1/verifications/", "post": "/v1/events"}
BARE_PATHS = {"get": ["/bare-lookup/"], "post": ["/bare", "/bare-event", "/bare-event-one"]}
#: (part, substrings of a py-spy frame "function (file:line)"): the first part whose substring
#: is in a sample's innermost matching frame takes the sample.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("commit", ("SessionTransaction.commit", "Connection.commit (")),
    ("wake-up of the workers (Redis)", ("Services._wake",)),
    ("bearer token check (a PostgreSQL read)", ("acquire_token", "bearer_client_id")),
    ("rate limit (a Redis script)", ("Counter.hit (",)),
    (
        "JSON parsing and event validation",
        ("load_envelope", "json_body", "get_json", "SafeJSONProvider.loads", "body_hash"),
    ),
    ("rules (validate, evaluate)", ("gateway/rules/",)),
    (
        "answer body (schema dump, JSON)",
        ("record_answer", "jsonify", "standing_view", "JSONProvider.dumps"),
    ),
    ("ETag, conditional answer", ("make_conditional", "set_etag")),
    ("intake statements (SQLAlchemy, psycopg)", ("_Submission.run",)),
    ("intake transaction's start and end (pool, BEGIN)", ("Database.begin", "_transaction (")),
    ("group commit (waiting, handing over)", ("Combiner.submit", "_run_group")),
    ("record read (SQLAlchemy, psycopg)", ("verify (gateway/usecases/lookup.py",)),
    ("access log line", ("AccessLog.access",)),
    ("request id, metrics", ("observability.py",)),
    ("security headers", ("SecurityHeaders.__call__.<locals>.start",)),
    (
        "plain path's own work (request id, headers, metrics)",
        ("plain_lookup.py", "plain_events.py"),
    ),
]
FRAMEWORKS: list[tuple[str, tuple[str, ...]]] = [
    ("Flask, Werkzeug (routing, request, response)", ("flask/", "werkzeug/")),
    ("gunicorn (HTTP parsing, sockets)", ("gunicorn/",)),
]


def part_of(frames: list[str]) -> str:
    """The part a sample's stack (outermost frame first) counts under."""
    for parts in (PARTS, FRAMEWORKS):
        for frame in reversed(frames):
            for name, needles in parts:
                if any(needle in frame for needle in needles):
                    return name
    return "other"


def shares(raw: Path) -> Counter[str]:
    """Samples per part of a py-spy `--format raw` file (one `stack count` line each), counting
    only request threads."""
    found: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and any("ThreadWorker.handle" in frame for frame in frames):
            found[part_of(frames)] += int(count)
    return found


def profile(server: subprocess.Popen, seconds: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the server's processes for `seconds`, started now."""
    command = [str(BIN / "py-spy"), "record", "--pid", str(server.pid), "--subprocesses", "--gil"]
    command += ["--rate", "200", "--duration", str(seconds), "--format", "raw", "--nonblocking"]
    return subprocess.Popen(
        [*command, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="Certifications on record.")
    parser.add_argument("--seconds", type=int, default=10, help="Length of each wrk run.")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--modes", nargs="+", choices=sorted(PATHS), default=["get", "post"])
    parser.add_argument(
        "--ceiling", action="store_true", help="Measure the bare app's counterparts first."
    )
    parser.add_argument("--no-profile", action="store_true", help="Rates and CPU only.")
    args = parser.parse_args()
    for tool in ("wrk", str(BIN / "py-spy")):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install -y wrk; pip install py-spy)")
    workdir = Path(tempfile.mkdtemp(prefix="profile-web-"))
    name = "gw_profile_web"
    with HeldDatabase(REDIS_URL, "BENCH_SERVICE_REDIS_URL") as held:
        try:
            url = fresh_database(name)
            generate(url, args.count, as_of=datetime.now(UTC).date())  # as a daily sweep leaves it
            fill_verification_records(url)
            vacuum(url)
            held.flush()
            standin = {"url": "http://127.0.0.1:9/v1", "organization_id": "o", "token": "t"}
            env = environment(url, standin, workdir)  # no job runs: Credly is never called
            serve = [str(BIN / "gateway"), "serve"]
            with web(serve, env, workdir / "serve.log"):
                token = events_token(env)
            ceilings = measure_ceilings(args, env, workdir, token) if args.ceiling else {}
            with web(serve, env, workdir / "serve.log") as server:
                for mode in args.modes:
                    report(mode, args, server, token, workdir, ceilings.get(mode))
        finally:
            drop(name)


def measure_ceilings(
    args: argparse.Namespace, env: dict[str, str], workdir: Path, token: str
) -> dict[str, list[Load]]:
    """Each mode's load on the bare app (same gunicorn configuration): its rate and CPU; for
    events, also the least event that keeps the gateway's promises (`POST /bare-event`)."""
    command = [str(BIN / "gunicorn"), "-c", "python:gateway.gunicorn_conf", "bare_app:app"]
    found: dict[str, list[Load]] = {}
    with web(command, env, workdir / "bare.log") as server:
        for mode in args.modes:
            load = {"mode": mode, "ids": str(args.count), "token": token}
            for n, path in enumerate(BARE_PATHS[mode]):
                tag = f"b{n}-{time.time():.0f}"  # new event ids
                bare = wrk(path, args.seconds, args.connections, server, tag=tag, **load)
                if bare.non2xx or bare.socket_errors:
                    raise RuntimeError(f"{path}: {bare}; see {workdir / 'bare.log'}")
                found.setdefault(mode, []).append(bare)
                print(f"bare {path}: {bare.rate:,.0f} requests/s, web CPU {bare.cpu_ms:.2f} ms")
    return found


def report(
    mode: str,
    args: argparse.Namespace,
    server: subprocess.Popen,
    token: str,
    workdir: Path,
    ceilings: list[Load] | None,
) -> None:
    """One mode: a plain run for the rate and CPU, then a sampled one for the parts."""
    path, seconds, connections = PATHS[mode], args.seconds, args.connections
    load = {"mode": mode, "ids": str(args.count), "token": token}
    plain = wrk(path, seconds, connections, server, tag=f"p{time.time():.0f}", **load)
    grouped = f", {mean_group():.1f} events a transaction" if mode == "post" else ""
    line = f"{plain.rate:,.0f} requests/s, web CPU {plain.cpu_ms:.2f} ms a request{grouped}"
    print(f"\n{mode}: {line}")
    for bare_path, ceiling in zip(BARE_PATHS[mode], ceilings or [], strict=False):
        print(
            f"against the bare app's {bare_path}: rate {plain.rate / ceiling.rate:.2f},"
            f" web CPU {plain.cpu_ms / ceiling.cpu_ms:.2f}x"
        )
    if args.no_profile:
        return
    raw = workdir / f"{mode}.txt"
    spy = profile(server, seconds, raw)
    sampled = wrk(path, seconds, connections, server, tag=f"s{time.time():.0f}", **load)
    spy.wait(60)
    if sampled.non2xx or sampled.socket_errors:
        raise RuntimeError(f"{path}, sampled: {sampled}; see {workdir / 'serve.log'}")
    found = shares(raw)
    total = sum(found.values()) or 1
    print(
        f"\n{mode}: {plain.rate:,.0f} requests/s, web CPU {plain.cpu_ms:.2f} ms a request,"
        f" PostgreSQL and Redis {plain.stores_ms:.2f} ms; {total:,} samples\n"
    )
    print("| part | share of web CPU | ms a request |\n|---|---|---|")
    for part, samples in found.most_common():
        share = samples / total
        print(f"| {part} | {share:.0%} | {share * plain.cpu_ms:.2f} |")


if __name__ == "__main__":
    main()
