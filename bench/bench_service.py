"""Benchmark of the production set-up on this machine: lookups, event ingest and jobs, as ratios.

    .venv/bin/python bench/bench_service.py --counts 10000 100000 [--seconds 10]

For each N it creates a PostgreSQL database with N synthetic certifications (bench_sweep's
generator) and their verification records, then on 127.0.0.1 only:

1. the ceiling: `bench/bare_app.py` (constant JSON) under the same
`gateway.gunicorn_conf`, loaded
   by wrk (GET, and POST of an event-sized JSON body), its least possible lookup (a Redis
   count, a PostgreSQL read) and its least event that keeps the gateway's promises (a fresh
   token read, then the event, a standing and an outbox item committed together);
2. `gateway serve` (gunicorn, PostgreSQL, Redis, the Credly stand-in configured): GET
   /v1/verifications/{id} of random existing ids at full load and at about half that rate (wrk's
   `delay()` per connection: a closed-loop approximation of a fixed rate), then POST /v1/events of
   new `certification.granted` events for the same time, one per request and then `--batch` per
   request to POST /v1/events/batch (the bare app parses the same batch bodies);
3. the jobs those events queued, worked by `--workers` `gateway worker` processes (web server
   stopped; the workers are stopped once every outbox item is settled) against the Credly
   stand-in, and as the ceiling the same number of bare RQ jobs (`bench/bare_job.py`: the
   badge-issue HTTP call only) on as many plain `rq worker --burst`.

With `--badges N` only the jobs are measured: N granted events are posted in batches first (a
backlog of N badges), without wrk.

Each wrk run also gives the CPU a request cost the web server, PostgreSQL and Redis, and wrk.
Every wrk run lasts `--seconds`; every wait is bounded. Prints a markdown table; each gateway
figure is also given as a ratio to its ceiling measured in the same run, minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
import requests
from bench_sweep import POLICY, drop, fresh_database, generate
from redis_db import HeldDatabase
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.worker import Worker

from gateway.platform.config import Settings
from gateway.rules import kinds

BIN = Path(sys.executable).parent
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "wrk_load.lua"
REDIS_URL = os.environ.get("BENCH_SERVICE_REDIS_URL", "redis://127.0.0.1:6379/13")
WEB = "127.0.0.1:8000"
STANDIN_PORT = 8099
QUEUE = "gateway"
BARE_QUEUE = "bench-bare"
WAIT = 900  # longest wait for a drain of the jobs, seconds
UNLIMITED = "100000000/minute"
WRK_TIMEOUT = 10  # seconds before wrk gives a request up: above a batch request's p99 (~2 s)


@dataclass(frozen=True)
class Load:
    """One wrk run's summary."""

    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms: float = 0.0  # CPU of the server's processes per successful request
    stores_ms: float = 0.0  # CPU of PostgreSQL's and Redis's processes per successful request
    client_ms: float = 0.0  # wrk's CPU per successful request
    spread: tuple[int, ...] = ()  # wrk's connections on each web worker, a second into the run

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.non2xx) / self.seconds

    @property
    def all_cpu_ms(self) -> float:
        """CPU per successful request of every process taking part: server, stores and wrk."""
        return self.cpu_ms + self.stores_ms + self.client_ms

    @property
    def cores(self) -> float:
        """How many cores those processes kept busy on average."""
        return self.rate * self.all_cpu_ms / 1000


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A child in its own process group, stopped (TERM, then KILL) with its whole group."""
    with log.open("ab") as sink:
        child = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=sink, stderr=sink, start_new_session=True
        )
    try:
        yield child
    finally:
        stop(child)


def stop(child: subprocess.Popen) -> None:
    """Stop a child started by `process` and everything it started."""
    for signum, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            return
        try:
            child.wait(grace)
            os.killpg(child.pid, 0)  # the group may outlive its leader
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass


@contextmanager
def web(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A gunicorn server (`gateway.gunicorn_conf`), once every worker has loaded the app:
    each
    worker has its own listening socket, and one still loading would hold its connections up."""
    workers = Settings.from_env(env).web_workers
    start = log.stat().st_size if log.exists() else 0
    with process(command, env, log) as server:
        deadline = time.monotonic() + 60
        while log.read_bytes()[start:].count(b"Worker ready") < workers:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{command} did not get {workers} workers ready; see {log}")
            time.sleep(0.2)
        yield server


def wait_http(url: str, timeout: float = 60) -> None:
    """Wait until `url` answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up in {timeout} s") from None
            time.sleep(0.2)


STORES = ("postgres", "redis-server")  # the process names of the machine's PostgreSQL and Redis


def _cpu(counted: Callable[[str, list[str]], bool]) -> float:
    """CPU seconds used so far by the processes `counted(name, stat fields after the name)`
    selects: live ones and the children they reaped."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = tail.split()
        if counted(head.split("(", 1)[1], fields):
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def group_cpu(leader: subprocess.Popen) -> float:
    """CPU seconds used so far by a process group: live members and the children they reaped."""
    return _cpu(lambda _, fields: int(fields[2]) == leader.pid)  # fields[2]: the process group


def stores_cpu() -> float:
    """CPU seconds used so far by the machine's PostgreSQL (postmaster, backends, background
    processes) and Redis."""
    return _cpu(lambda name, _: name in STORES)


def children_cpu() -> float:
    """CPU seconds of this process's finished children (and of theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(path: str, seconds: int, connections: int, server: subprocess.Popen, **env: str) -> Load:
    """One bounded wrk run (2 threads) against 127.0.0.1; its summary with the server's CPU."""
    before, stores_before, client_before = group_cpu(server), stores_cpu(), children_cpu()
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}s"]
    with subprocess.Popen(
        [*command, "-s", str(LUA), f"http://{WEB}{path}"],
        env={**os.environ, **{f"WRK_{k.upper()}": v for k, v in env.items()}},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:
        time.sleep(min(1, seconds / 2))
        spread = connections_per_process(WEB.rsplit(":", 1)[1])
        try:
            out, err = run.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            run.kill()  # bounded: a wrk that does not finish is stopped, not waited for
            raise
    if run.returncode:
        raise RuntimeError(f"wrk failed ({run.returncode}): {err}")
    load = Load(**json.loads(out.strip().splitlines()[-1]), spread=spread)
    served = (load.requests - load.non2xx) / 1000 or float("inf")  # per request, in ms
    return replace(
        load,
        cpu_ms=(group_cpu(server) - before) / served,
        stores_ms=(stores_cpu() - stores_before) / served,
        client_ms=(children_cpu() - client_before) / served,  # wrk (and one `ss`)
    )


def connections_per_process(port: str) -> tuple[int, ...]:
    """How many established connections to `port` each server process holds (`ss`), fewest
    first: the kernel spreads new connections over the workers' sockets by a hash, unevenly."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    pids = [
        line.split("pid=", 1)[1].split(",", 1)[0] for line in listed.splitlines() if "pid=" in line
    ]
    return tuple(sorted(Counter(pids).values()))


def half_rate(
    path: str, seconds: int, connections: int, server: subprocess.Popen, peak: Load, **env: str
) -> Load:
    """About half the peak rate: each connection pauses so that together they send peak/2."""
    interval_ms = 1000 * connections / (peak.rate / 2)
    pause = max(interval_ms - peak.p50_ms / 2, 0)
    return wrk(path, seconds, connections, server, delay_ms=f"{pause:.0f}", **env)


def fill_verification_records(url: str) -> None:
    """Write every certification's public record as the sync job would, in one statement."""
    names = [(code, c.name) for code, c in POLICY.credentials.items()]
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO verification_records (certification_id, name, credential,"
            " credential_name, status, certified_since, valid_through, synced_at)"
            " SELECT c.certification_id, (s->'member'->>'first_name') || ' '"
            " || (s->'member'->>'last_name'), c.credential, n.name, c.status,"
            " (s->>'certified_on')::date, CASE WHEN c.status = 'active'"
            " THEN (s->'fees'->>'paid_through')::date END, now()"
            " FROM certifications c CROSS JOIN LATERAL (SELECT c.standing::jsonb AS s) j"
            " JOIN (SELECT * FROM unnest(%s::text[], %s::text[])) n(code, name)"
            " ON n.code = c.credential",
            ([code for code, _ in names], [name for _, name in names]),
        )


def vacuum(url: str) -> None:
    """VACUUM (ANALYZE) the new data, as a database in service would be, so that autovacuum has
    no freshly loaded table to start on in the middle of a measurement."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def environment(url: str, standin: dict[str, str], workdir: Path) -> dict[str, str]:
    """The production settings of the run: PostgreSQL, Redis, the stand-in as Credly."""
    (workdir / "metrics").mkdir(exist_ok=True)  # web and worker processes share it
    templates = ",".join(
        f"{code}=00000000-0000-0000-0000-{n:012d}" for n, code in enumerate(POLICY.credentials)
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "QUEUE_NAME": QUEUE,
        "INSTANCE_PATH": str(workdir / "instance"),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "CREDLY_API_BASE": standin["url"],
        "CREDLY_ORGANIZATION_ID": standin["organization_id"],
        "CREDLY_AUTH_TOKEN": standin["token"],
        "CREDLY_BADGE_TEMPLATES": templates,
        "VERIFY_RATE_LIMIT": UNLIMITED,
        "VERIFY_RATE_LIMIT_AUTHENTICATED": UNLIMITED,
        "LOG_LEVEL": "WARNING",
        "WEB_BIND": WEB,
        "PYTHONPATH": f"{BENCH}{os.pathsep}{ROOT}",
    }


def events_token(env: dict[str, str]) -> str:
    """A new `events:write` API client's access token."""
    created = subprocess.run(
        [str(BIN / "gateway"), "clients", "create", "--name", "bench", "--scope", "events:write"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    client = json.loads(created.stdout.strip().splitlines()[-1])
    answer = requests.post(
        f"http://{WEB}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "events:write"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def start_all(commands: list[list[str]], env: dict[str, str], log: Path) -> list[subprocess.Popen]:
    """Start the commands side by side, each in its own process group, logging to `log`."""
    with log.open("ab") as sink:
        return [
            subprocess.Popen(c, env=env, cwd=ROOT, stdout=sink, stderr=sink, start_new_session=True)
            for c in commands
        ]


def drain(commands: list[list[str]], env: dict[str, str], log: Path) -> float:
    """Run burst workers side by side until they exit (queue empty), at most WAIT seconds;
    the CPU seconds they used."""
    before = children_cpu()
    started = start_all(commands, env, log)
    deadline = time.monotonic() + WAIT
    try:
        for child in started:
            child.wait(max(deadline - time.monotonic(), 1))
    finally:
        for child in started:
            stop(child)
    return children_cpu() - before


def work_off(
    commands: list[list[str]], env: dict[str, str], log: Path, broker: redis.Redis
) -> float:
    """Run gateway workers side by side until every one has started and no outbox item is left
    unsettled (at most WAIT seconds), then stop them; the CPU seconds they used."""
    before = children_cpu()
    url = env["DATABASE_URL"]
    started = start_all(commands, env, log)
    deadline = time.monotonic() + WAIT
    try:
        while Worker.count(connection=broker) < len(started) or unsettled(url):
            if time.monotonic() > deadline or any(c.poll() is not None for c in started):
                raise RuntimeError(f"the workers did not settle the outbox; see {log}")
            time.sleep(0.2)
    finally:
        for child in started:
            stop(child)
    return children_cpu() - before


def accepted(url: str) -> int:
    """Events of the wrk runs recorded as accepted (their certifications are N..., the generated
    ones C...)."""
    with psycopg.connect(url) as conn:
        query = (
            "SELECT count(*) FROM events WHERE status = 'accepted' AND certification_id LIKE 'N%'"
        )
        return conn.execute(query).fetchone()[0]


def unsettled(url: str) -> int:
    """Outbox items not yet done or failed."""
    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM outbox WHERE state NOT IN ('done', 'failed')"
        return conn.execute(query).fetchone()[0]


def job_span(connection: redis.Redis, queue: str) -> tuple[int, int, float]:
    """Finished and failed jobs of `queue`, and seconds from the first start to the last end."""
    queue_ = Queue(queue, connection=connection)
    finished = FinishedJobRegistry(queue=queue_).get_job_ids()
    failed = FailedJobRegistry(queue=queue_).get_job_ids()
    jobs = [j for j in queue_.job_class.fetch_many(finished + failed, connection=connection) if j]
    if not jobs:
        return 0, len(failed), 0.0
    first = min(j.started_at for j in jobs if j.started_at)
    last = max(j.ended_at for j in jobs if j.ended_at)
    return len(finished), len(failed), (last - first).total_seconds()


def outbox_span(url: str) -> tuple[int, int, float]:
    """Done and failed outbox items, and seconds from the first one's end to the last one's."""
    with psycopg.connect(url) as conn:
        done, failed, span = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'),"
            " count(*) FILTER (WHERE state = 'failed'),"
            " extract(epoch FROM max(finished_at) - min(finished_at)) FROM outbox"
        ).fetchone()
    return done, failed, float(span or 0)


def outbox_kinds(url: str) -> dict[str, dict[str, int]]:
    """Outbox items by kind and state."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT kind, state, count(*) FROM outbox GROUP BY 1, 2").fetchall()
    by_kind: dict[str, dict[str, int]] = {}
    for kind, state, n in rows:
        by_kind.setdefault(kind, {})[state] = n
    return by_kind


def load(count: int, args: argparse.Namespace, env: dict[str, str], log: Path) -> dict:
    """The wrk runs: the bare app's ceilings, then the gateway's lookups and events."""
    s, c, ids, b = args.seconds, args.connections, str(count), str(args.batch)
    out: dict = {}
    gunicorn = [
        str(BIN / "gunicorn"),
        "-c",
        "python:gateway.gunicorn_conf",
        "bare_app:app",
    ]
    with web([str(BIN / "gateway"), "serve"], env, log):
        token = events_token(env)  # for the bare app's least event too
    with web(gunicorn, env, log) as server:
        out["bare_get"] = peak = wrk("/bare/", s, c, server, mode="get", ids=ids)
        out["bare_get_half"] = half_rate("/bare/", s, c, server, peak, mode="get", ids=ids)
        out["bare_lookup"] = wrk("/bare-lookup/", s, c, server, mode="get", ids=ids)
        out["bare_post"] = wrk("/bare", s, c, server, mode="post", tag=f"b{count}")
        out["bare_batch"] = wrk("/bare", s, c, server, mode="batch", tag=f"bb{count}", batch=b)
        out["bare_event"] = wrk(
            "/bare-event", s, c, server, mode="post", tag=f"be{count}", token=token
        )
    with web([str(BIN / "gateway"), "serve"], env, log) as server:
        path = "/v1/verifications/"
        out["lookup"] = peak = wrk(path, s, c, server, mode="get", ids=ids)
        out["lookup_half"] = half_rate(path, s, c, server, peak, mode="get", ids=ids)
        out["events"] = wrk("/v1/events", s, c, server, mode="post", tag=f"e{count}", token=token)
        out["event_groups"] = mean_group()
        out["batches"] = wrk(
            "/v1/events/batch",
            s,
            c,
            server,
            mode="batch",
            tag=f"eb{count}",
            token=token,
            batch=b,
        )
    return out


def mean_group() -> float:
    """Single events a transaction so far, from the gateway's group-size metric."""
    values = {}
    for line in requests.get(f"http://{WEB}/metrics", timeout=10).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("gateway_event_group_size_") and '{source="single"}' in name:
            values[name.split("{")[0]] = float(value)
    count = values.get("gateway_event_group_size_count", 0)
    return values.get("gateway_event_group_size_sum", 0) / count if count else 0.0


def queue_badges(count: int, size: int, env: dict[str, str], log: Path) -> None:
    """Post `count` new granted events to `gateway serve` in batches of `size` (no load measured):
    a backlog of `count` badges for the workers."""
    with web([str(BIN / "gateway"), "serve"], env, log):
        token = events_token(env)
        for start in range(0, count, size):
            events = [granted(f"q{n}") for n in range(start, min(count, start + size))]
            answer = requests.post(
                f"http://{WEB}/v1/events/batch",
                json={"events": events},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            answer.raise_for_status()


def granted(key: str) -> dict:
    """A new certification's granted event, as wrk_load.lua makes them."""
    return {
        "event_id": f"E{key}",
        "type": "certification.granted",
        "occurred_at": "2026-11-01T12:00:00+00:00",
        "certification_id": f"N{key}",
        "data": {
            "member": {
                "member_id": f"M{key}",
                "first_name": "Pat",
                "last_name": "Bench",
                "email": f"{key}@example.org",
            },
            "credential": "RMA",
            "certified_on": "2026-11-01",
        },
    }


def measure(
    count: int, args: argparse.Namespace, standin: dict[str, str], workdir: Path, held: HeldDatabase
) -> dict:
    """Every figure for one database size (the database is dropped afterwards)."""
    name = f"gw_service_{count}"
    broker = held.client
    log = workdir / "processes.log"
    out: dict = {"batch": args.batch}
    worker = [str(BIN / "gateway"), "worker", "--no-cron"]
    bare = [str(BIN / "rq"), "worker", "--burst", "-q", "-u", REDIS_URL, "-w"]
    bare += ["rq.worker.SimpleWorker", BARE_QUEUE]
    try:
        started = time.perf_counter()
        url = fresh_database(name)
        generate(url, count, as_of=datetime.now(UTC).date())  # as the daily sweep leaves them
        fill_verification_records(url)
        vacuum(url)
        took = time.perf_counter() - started
        print(f"<!-- {count:,} certifications made and vacuumed in {took:.0f} s -->", flush=True)
        env = environment(url, standin, workdir)
        held.flush()
        # What starting and stopping the workers costs, on empty queues: taken off their CPU.
        idle = work_off([worker] * args.workers, env, log, broker)
        bare_idle = drain([bare] * args.workers, env, log)
        if args.badges:
            queue_badges(args.badges, args.batch, env, log)
        else:
            out.update(load(count, args, env, log))
        out["accepted"] = accepted(url)
        out["jobs_cpu"] = work_off([worker] * args.workers, env, log, broker) - idle
        out["jobs"] = outbox_span(url)
        out["outbox"] = outbox_kinds(url)
        badges = sum(out["outbox"].get(kinds.ISSUE_BADGE, {}).values())
        queue = Queue(BARE_QUEUE, connection=broker)
        queue.enqueue_many(
            [
                Queue.prepare_data("bare_job.issue", (f"{count}-{n}",), result_ttl=3600)
                for n in range(badges)
            ]
        )
        out["bare_jobs_cpu"] = drain([bare] * args.workers, env, log) - bare_idle
        out["bare_jobs"] = job_span(broker, BARE_QUEUE)
    finally:
        held.flush()
        drop(name)
    return out


def _figure(value: float) -> str:
    """A figure to one decimal, or two below 10 (CPU per request is a fraction of a ms)."""
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def rows(count: int, m: dict) -> list[str]:
    """The markdown rows of one database size (the jobs' alone with `--badges`)."""
    done, failed, span = m["jobs"]
    bare_done, bare_failed, bare_span = m["bare_jobs"]
    badges = m["outbox"].get(kinds.ISSUE_BADGE, {}).get("done", 0)
    mix = ", ".join(f"{k} {sum(v.values())}" for k, v in sorted(m["outbox"].items()))
    load, web_cpu = load_rows(m) if "lookup" in m else ([], [])
    jobs = [
        (
            "badge jobs/s (+ their other jobs)",
            badges / span if span else 0,
            bare_done / bare_span if bare_span else 0,
            "≥ 500/s",
        ),
        (
            "worker CPU ms per badge job (+ its other jobs)",
            1000 * m["jobs_cpu"] / badges if badges else 0,
            1000 * m["bare_jobs_cpu"] / bare_done if bare_done else 0,
            "",
        ),
    ]
    table = load + jobs + web_cpu
    lines = [
        f"| {count:,} | {label} | {_figure(ours)} | {_figure(ceiling)} | {_ratio(ours, ceiling)}"
        f" | {goal} |"
        for label, ours, ceiling, goal in table
    ]
    lines.append(
        f"<!-- {count:,}: outbox {mix}; jobs done {done}, failed {failed}; bare done {bare_done},"
        f" failed {bare_failed}; events accepted {m['accepted']:,}{load_summary(m)} -->"
    )
    return lines


Row = tuple[str, float, float, str]  # figure, gateway, ceiling, goal


def load_rows(m: dict) -> tuple[list[Row], list[Row]]:
    """The rows of the wrk runs: rates and latencies, and the web server's CPU."""
    lookup, lookup_half, events, batches = m["lookup"], m["lookup_half"], m["events"], m["batches"]
    bare_get, bare_half, bare_post = m["bare_get"], m["bare_get_half"], m["bare_post"]
    bare_batch, size = m["bare_batch"], m["batch"]
    rates = [
        ("lookups/s, peak", lookup.rate, bare_get.rate, "≥ 0.8 of ceiling"),
        (
            "lookups/s, peak (ceiling: the bare app counting the caller and reading the record)",
            lookup.rate,
            m["bare_lookup"].rate,
            "",
        ),
        ("lookup p50 ms, peak", lookup.p50_ms, bare_get.p50_ms, ""),
        ("lookup p99 ms, peak", lookup.p99_ms, bare_get.p99_ms, ""),
        (
            f"lookup p99 ms at {lookup_half.rate:,.0f}/s "
            f"({lookup_half.rate / lookup.rate:.0%} of peak; ceiling at {bare_half.rate:,.0f}/s)",
            lookup_half.p99_ms,
            bare_half.p99_ms,
            "≤ 20 ms",
        ),
        ("events accepted/s, one a request", events.rate, bare_post.rate, "≥ 1,000/s, ≥ 0.3"),
        (
            "events accepted/s, one a request (ceiling: the least event that keeps the promises)",
            events.rate,
            m["bare_event"].rate,
            "",
        ),
        ("event p99 ms, one a request", events.p99_ms, bare_post.p99_ms, ""),
        (
            f"events accepted/s, {size} a request (ceiling: one a request)",
            batches.rate * size,
            bare_post.rate,
            "≥ 1,000/s, ≥ 0.3",
        ),
        (
            f"events/s, {size} a request (ceiling: the bare app parsing the batches)",
            batches.rate * size,
            bare_batch.rate * size,
            "",
        ),
        (f"request p99 ms, {size} events a request", batches.p99_ms, bare_batch.p99_ms, ""),
    ]
    web_cpu = [
        ("web CPU ms per lookup, peak", lookup.cpu_ms, bare_get.cpu_ms, ""),
        (
            "web CPU ms per lookup, peak (ceiling: counting and reading)",
            lookup.cpu_ms,
            m["bare_lookup"].cpu_ms,
            "",
        ),
        (
            "PostgreSQL and Redis CPU ms per lookup, peak (ceiling: counting and reading)",
            lookup.stores_ms,
            m["bare_lookup"].stores_ms,
            "",
        ),
        (
            "CPU ms per lookup, peak: web, PostgreSQL, Redis and wrk",
            lookup.all_cpu_ms,
            bare_get.all_cpu_ms,
            "",
        ),
        ("web CPU ms per event, one a request", events.cpu_ms, bare_post.cpu_ms, ""),
        (
            "web CPU ms per event, one a request (ceiling: the least event)",
            events.cpu_ms,
            m["bare_event"].cpu_ms,
            "",
        ),
        (
            f"web CPU ms per event, {size} a request",
            batches.cpu_ms / size,
            bare_batch.cpu_ms / size,
            "",
        ),
    ]
    return rates, web_cpu


def load_summary(m: dict) -> str:
    """What the wrk runs answered, against the events recorded; empty without them."""
    if "lookup" not in m:
        return ""
    loads = (m["lookup"], m["lookup_half"], m["events"], m["batches"], m["bare_lookup"])
    loads += (m["bare_event"],)
    errors = sum(load.non2xx + load.socket_errors for load in loads)
    events, batches = m["events"], m["batches"]
    sent = events.requests - events.non2xx + (batches.requests - batches.non2xx) * m["batch"]
    spreads = ", ".join(
        f"{name} {'/'.join(map(str, m[key].spread)) or '?'}"
        for name, key in (("bare GET", "bare_get"), ("lookups", "lookup"), ("events", "events"))
    )
    least = m["bare_get"].all_cpu_ms + m["lookup"].stores_ms  # a lookup costs at least this
    return (
        f" of {sent:,} answered; non-2xx/socket errors {errors};"
        f" wrk's connections per web worker: {spreads}; a lookup with this one's PostgreSQL and"
        f" Redis CPU reaches at best {_ratio(m['bare_get'].all_cpu_ms, least)} of the bare GET's"
        " rate on the same cores; cores busy: bare GET"
        f" {m['bare_get'].cores:.2f}, bare lookup {m['bare_lookup'].cores:.2f},"
        f" lookups {m['lookup'].cores:.2f}; single events a transaction {m['event_groups']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seconds", type=int, default=10, help="Length of each wrk run.")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--workers", type=int, default=2, help="Job worker processes.")
    parser.add_argument("--batch", type=int, default=100, help="Events per batch request.")
    parser.add_argument(
        "--badges",
        type=int,
        default=0,
        help="Jobs only: queue this many badges (granted events in batches), no wrk runs.",
    )
    parser.add_argument(
        "--credly-latency-ms", type=float, default=0, help="The stand-in waits before each answer."
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # still tear everything down
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-service-"))
    env = {**os.environ, "PYTHONPATH": f"{BENCH}{os.pathsep}{ROOT}"}
    standin_log = workdir / "standin.log"
    standin_cmd = [
        sys.executable,
        "-m",
        "tests.support.credly_standin",
        "--port",
        str(STANDIN_PORT),
        "--latency-ms",
        str(args.credly_latency_ms),
    ]
    with process(standin_cmd, env, standin_log):
        wait_http(f"http://127.0.0.1:{STANDIN_PORT}/_control/badges")
        standin = json.loads(standin_log.read_text().splitlines()[0])
        print(f"<!-- Credly stand-in latency: {args.credly_latency_ms:g} ms a call -->")
        print("| certifications | figure | gateway | ceiling | ratio | goal |")
        print("|---|---|---|---|---|---|", flush=True)
        with HeldDatabase(REDIS_URL, "BENCH_SERVICE_REDIS_URL") as held:
            for count in args.counts:
                figures = measure(count, args, standin, workdir, held)
                print("\n".join(rows(count, figures)), flush=True)
    print(f"<!-- process logs: {workdir} -->")


if __name__ == "__main__":
    main()
