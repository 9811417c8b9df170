"""Chaos soak: the production set-up under a steady realistic load and overlapping faults, then
every promise the gateway makes checked at once.

It starts, on loopback only: `gateway serve` (gunicorn, 2 workers), a fresh PostgreSQL database
on the local server, its own redis-server, 2 `gateway worker` processes, the Credly stand-in and a
receiver of employers' webhooks. It grants a population of certifications, then posts a mix of
events one at a time and in batches while employers look certifications up and subscribe, runs
`gateway sweep` half way, and injects faults at random (Credly errors, slow and timed-out calls,
badges changed out of band, forged notifications, workers and Redis killed, PostgreSQL backends
terminated, a failing or hanging webhook receiver). After the queue drains it checks the
invariants of docs/benchmarks.md ("Soak"), prints the figures, and exits 1 on any violation.

    .venv/bin/python bench/soak.py                      # 30 minutes, 20,000 certifications
    .venv/bin/python bench/soak.py --minutes 2 --certifications 2000 [--json]

Everything it started is stopped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gateway import rules
from gateway.rules import kinds
from gateway.rules.policy import Policy, load_policy
from gateway.store.db import Database
from gateway.store.history import load_histories

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: The PostgreSQL server the soak makes its database on, as the tests reach it.
ADMIN_URL = make_url(
    os.environ.get("GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
).set(drivername="postgresql+psycopg")
ORGANIZATION = "5f1b6cf1-1d6a-4c55-9c5a-2f3f6c0e0001"
CREDLY_TOKEN = "soak-token"
#: Marks the permanent Credly errors the soak injects: only jobs failed with it are allowed.
PERMANENT_MARK = "soak-injected permanent error"
WAIT = 120.0  # seconds a started process may take to answer (the machine is shared)
OPEN_JOBS = ("pending", "running", "retrying")
OPEN_DELIVERIES = ("pending", "sending", "retrying")
LIVE = ("pending", "accepted")  # a badge's states on Credly that count as live
BADGE_JOBS = (kinds.ISSUE_BADGE, kinds.REPLACE_BADGE, kinds.REVOKE_BADGE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port} after {timeout:.0f} s")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- processes


@dataclass
class Fleet:
    """The processes the soak started, each in its own process group, by name and kind."""

    logdir: Path
    procs: dict[str, tuple[str, subprocess.Popen]] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str, kind: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        with self.lock:
            self.procs[name] = (kind, proc)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self.lock:
            _, proc = self.procs.pop(name)
        _signal_group(proc, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(30)

    def stop_all(self) -> None:
        with self.lock:
            names = list(self.procs)
        for name in names:
            self.kill(name, signal.SIGTERM)

    def sample_rss(self) -> None:
        """Record each kind's resident memory now (a process with its children), keep the peak."""
        children = _children()
        with self.lock:
            procs = list(self.procs.values())
        for kind, proc in procs:
            total = sum(_rss(pid) for pid in _tree(proc.pid, children))
            self.peak_rss[kind] = max(self.peak_rss[kind], total)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[ppid].append(int(entry.name))
    return out


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- webhook receiver


@dataclass
class Receiver:
    """Employers' webhook endpoint: records every delivery; can fail (500) or hang for a while."""

    port: int
    mode: str = "ok"  # ok, fail, hang
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.mode == "hang":
                    time.sleep(15)
                if receiver.mode != "ok":
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received.append(
                        {
                            "at": time.time(),
                            "id": self.headers.get("webhook-id"),
                            "timestamp": self.headers.get("webhook-timestamp"),
                            "signature": self.headers.get("webhook-signature"),
                            "body": body,
                        }
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def signature_valid(secret: str, delivery: dict[str, Any]) -> bool:
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">, key whsec_<b64>."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{delivery['id']}.{delivery['timestamp']}.".encode() + delivery["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.removeprefix("v1,") for part in (delivery["signature"] or "").split()]
    return any(hmac.compare_digest(expected, g) for g in given)


# --------------------------------------------------------------------------- the load


@dataclass
class Cert:
    """What the load generator knows of one certification, to send mostly valid events."""

    cid: str
    credential: str
    certified_on: date
    first_name: str
    last_name: str
    email: str
    paid: set[int] = field(default_factory=set)
    audited_failed: bool = False
    revoked: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Stats:
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)  # event id: (cert, time)
    answers: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    server_errors: list[str] = field(default_factory=list)
    lookups: list[tuple[float, bool]] = field(default_factory=list)  # (seconds, during a fault)
    events_posted: int = 0
    steady_events: int = 0  # posted during the steady load
    load_seconds: float = 0.0
    faults: list[str] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    resent: int = 0  # posts sent again after their connection broke before an answer
    lock: threading.Lock = field(default_factory=threading.Lock)


#: How many times a post whose connection broke before an answer is sent again.
RESENDS = 2


class Api:
    """An OAuth2 client of the gateway's API."""

    def __init__(self, base: str, client: dict[str, str], scope: str) -> None:
        self.base, self.client, self.scope = base, client, scope
        self.http = requests.Session()
        self.token, self.token_until = "", 0.0

    def _auth(self) -> dict[str, str]:
        if time.monotonic() > self.token_until:
            answer = self.http.post(
                f"{self.base}/oauth/token",
                data={"grant_type": "client_credentials", "scope": self.scope},
                auth=(self.client["client_id"], self.client["client_secret"]),
                timeout=60,
            )
            answer.raise_for_status()
            self.token = answer.json()["access_token"]
            self.token_until = time.monotonic() + answer.json()["expires_in"] / 2
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.base + path, headers=self._auth(), timeout=60, **kw)


class Load:
    """The population and the steady mix of events, lookups and subscriptions."""

    def __init__(self, api: Api, lookups: Api, stats: Stats, policy: Policy, receiver_port: int):
        self.api, self.lookups, self.stats, self.policy = api, lookups, stats, policy
        self.receiver_port = receiver_port
        self.certs: list[Cert] = []
        self.granting: dict[str, Cert] = {}  # new during the load, by their grant's event id
        self.stop = threading.Event()
        self.fault_active = 0
        self.credentials = sorted(policy.credentials)
        self.categories = [c for c in policy.categories if c != "employment"]

    # -- events

    def envelope(self, cert: Cert, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": f"soak-{uuid.uuid4().hex}",
            "type": type_,
            "occurred_at": now_iso(),
            "certification_id": cert.cid,
            "data": data,
        }

    def new_cert(self, rng: random.Random) -> Cert:
        today = date.today()
        start = date(2003, 1, 1) if rng.random() < 0.05 else date(2012, 1, 1)
        span = (today - timedelta(days=30) - start).days
        certified_on = start + timedelta(days=rng.randrange(span))
        cert = Cert(
            cid=f"SOAK-{uuid.uuid4().hex[:12].upper()}",
            credential=rng.choice(self.credentials),
            certified_on=certified_on,
            first_name=rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"]),
            last_name=rng.choice(["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov"]),
            email=f"m{uuid.uuid4().hex[:10]}@example.org",
        )
        return cert

    def granted(self, cert: Cert) -> dict[str, Any]:
        member = {
            "member_id": f"M-{cert.cid}",
            "first_name": cert.first_name,
            "last_name": cert.last_name,
            "email": cert.email,
        }
        data = {
            "member": member,
            "credential": cert.credential,
            "certified_on": cert.certified_on.isoformat(),
        }
        return self.envelope(cert, "certification.granted", data)

    def fee(
        self, cert: Cert, rng: random.Random, year: int | None = None, late: float = 0.3
    ) -> dict[str, Any]:
        """A fee: the next unpaid year, sometimes the one after (out of order), sometimes paid
        today rather than before its due date (late, or not at all: the `late` share)."""
        today = date.today()
        first = cert.certified_on.year + 1
        unpaid = [y for y in range(first, today.year + 2) if y not in cert.paid]
        if year is None:
            if not unpaid:
                year = rng.choice(sorted(cert.paid) or [first])  # a duplicate: FEE-DUPLICATE
            elif rng.random() < 0.2 and len(unpaid) > 1:
                year = unpaid[1]  # out of order: the next year before the missing one
            else:
                year = unpaid[0]
        due = _month_end(year, cert.certified_on.month)
        on_time = min(due - timedelta(days=rng.randrange(1, 60)), today)
        paid_on = today if rng.random() < late or on_time < date(year - 1, 1, 1) else on_time
        paid_on = max(paid_on, date(year - 1, 1, 1))  # FEE-YEAR-RANGE: year <= paid_on's + 1
        cert.paid.add(year)
        data = {"membership_year": year, "paid_on": min(paid_on, today).isoformat()}
        return self.envelope(cert, "renewal.fee_paid", data)

    def ccp(self, cert: Cert, rng: random.Random) -> dict[str, Any]:
        today = date.today()
        earliest = max(cert.certified_on, today - timedelta(days=3 * 365))
        completed = earliest + timedelta(days=rng.randrange(max(1, (today - earliest).days)))
        data = {
            "activity_id": f"A-{uuid.uuid4().hex[:12]}",
            "category": rng.choice(self.categories),
            "completed_on": completed.isoformat(),
            "points": rng.choice([5, 10, 15]),
        }
        return self.envelope(cert, "ccp.activity_recorded", data)

    def audit(self, cert: Cert, rng: random.Random) -> dict[str, Any]:
        failed = rng.random() < 0.25
        cert.audited_failed |= failed
        data = {
            "result": "failed" if failed else "passed",
            "audited_on": date.today().isoformat(),
            "cycle_start": cert.certified_on.isoformat(),
        }
        return self.envelope(cert, "audit.completed", data)

    def recertified(self, cert: Cert) -> dict[str, Any]:
        today = date.today()
        data = {
            "method": "exam",
            "completed_on": today.isoformat(),
            "application_id": f"APP-{uuid.uuid4().hex[:8]}",
            "eligibility_criteria": self.policy.credentials[cert.credential].eligibility_criteria,
            "exam_passed_on": today.isoformat(),
        }
        cert.certified_on, cert.paid, cert.audited_failed = today, set(), False
        return self.envelope(cert, "recertification.completed", data)

    def member_updated(self, cert: Cert, rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.5:
            cert.last_name = rng.choice(["Byron", "King", "Murray", "Brewster", "Hamilton"])
            data = {"last_name": cert.last_name}
        else:
            cert.email = f"m{uuid.uuid4().hex[:10]}@example.org"
            data = {"email": cert.email}
        return self.envelope(cert, "member.updated", data)

    def revoked(self, cert: Cert) -> dict[str, Any]:
        cert.revoked = True
        data = {"reason": "misconduct", "revoked_on": date.today().isoformat()}
        return self.envelope(cert, "certification.revoked", data)

    def next_event(self, rng: random.Random) -> dict[str, Any]:
        roll = rng.random()
        if roll < 0.05:  # a new certification, chosen for other events once its grant is 202
            cert = self.new_cert(rng)
            event = self.granted(cert)
            self.granting[event["event_id"]] = cert
            return event
        cert = rng.choice(self.certs)
        with cert.lock:
            lapsed_guess = cert.audited_failed or (
                not cert.paid and cert.certified_on < date.today() - timedelta(days=5 * 365)
            )
            if roll < 0.40:
                return self.fee(cert, rng)
            if roll < 0.60:
                return self.ccp(cert, rng)
            if roll < 0.67:
                return self.audit(cert, rng)
            if roll < 0.77 and lapsed_guess and not cert.revoked:
                return self.recertified(cert)
            if roll < 0.97:
                return self.member_updated(cert, rng)
            return self.revoked(cert)

    def post(self, events: list[dict[str, Any]]) -> None:
        """Post one event or a batch; record what was answered 202 (and any 5xx). A post whose
        connection broke before any answer (a kept-alive connection the server closed as it was
        used again) is sent again, as the API tells senders to: the events are idempotent."""
        sent = time.time()
        for resends in range(RESENDS + 1):
            try:
                if len(events) == 1:
                    answer = self.api.call("POST", "/v1/events", json=events[0])
                    statuses = [answer.status_code]
                else:
                    answer = self.api.call("POST", "/v1/events/batch", json={"events": events})
                    statuses = (
                        [r["status"] for r in answer.json()["results"]]
                        if answer.status_code == 200
                        else [answer.status_code] * len(events)
                    )
            except requests.ConnectionError as exc:
                if resends < RESENDS:
                    with self.stats.lock:
                        self.stats.resent += 1
                    continue
                statuses, answer, detail = [599] * len(events), None, str(exc)
            except requests.RequestException as exc:
                statuses, answer, detail = [599] * len(events), None, str(exc)
            else:
                detail = answer.text[:300]
            break
        with self.stats.lock:
            self.stats.events_posted += len(events)
            for event, status in zip(events, statuses, strict=True):
                self.stats.answers[status] += 1
                granted = self.granting.pop(event["event_id"], None)
                if granted is not None and status == 202:
                    self.certs.append(granted)
                if status == 202:
                    self.stats.accepted[event["event_id"]] = (event["certification_id"], sent)
                elif status >= 500:
                    self.stats.server_errors.append(
                        f"{status} for {event['type']} {event['event_id']} of "
                        f"{event['certification_id']}: {detail}"
                    )

    def populate(self, count: int) -> None:
        """Grant `count` certifications, with most of their fees paid, in batches of 100."""
        rng = random.Random(1)
        fresh = [self.new_cert(rng) for _ in range(count)]
        for start in range(0, count, 100):
            self.post([self.granted(cert) for cert in fresh[start : start + 100]])
        self.certs.extend(fresh)
        fees = []
        for cert in fresh:
            if rng.random() < 0.8:
                last = date.today().year - (0 if rng.random() < 0.85 else rng.randrange(1, 6))
                fees += [
                    self.fee(cert, rng, year, late=0)
                    for year in range(cert.certified_on.year + 1, last + 1)
                    if date(year - 1, 1, 1) <= date.today()
                ]
        for start in range(0, len(fees), 100):
            self.post(fees[start : start + 100])

    def run_events(self, seed: int, per_second: float) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            started = time.monotonic()
            size = 1 if rng.random() < 0.4 else rng.randrange(2, 21)
            self.post([self.next_event(rng) for _ in range(size)])
            pause = size / per_second - (time.monotonic() - started)
            if pause > 0:
                self.stop.wait(pause)

    def run_lookups(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            cert = rng.choice(self.certs)
            during = self.fault_active > 0
            started = time.monotonic()
            try:
                answer = self.lookups.call("GET", f"/v1/verifications/{cert.cid}")
                status = answer.status_code
            except requests.RequestException as exc:
                status, answer = 599, exc
            elapsed = time.monotonic() - started
            with self.stats.lock:
                self.stats.lookups.append((elapsed, during))
                if status >= 500:
                    self.stats.server_errors.append(f"lookup {cert.cid}: {status} {answer}")
            self.stop.wait(0.05)

    def subscribe(self, watch: int) -> None:
        """An employer subscribes to status changes of `watch` certifications."""
        ids = [cert.cid for cert in random.sample(self.certs, min(watch, len(self.certs)))]
        url = f"http://127.0.0.1:{self.receiver_port}/hooks/{uuid.uuid4().hex[:8]}"
        body = {"url": url, "certification_ids": ids}
        answer = self.lookups.call("POST", "/v1/subscriptions", json=body)
        with self.stats.lock:
            if answer.status_code != 201:
                self.stats.server_errors.append(f"subscription: {answer.status_code} {answer.text}")
                return
            created = answer.json()
            self.stats.subscriptions[created["id"]] = {
                "secret": created["secret"],
                "ids": set(ids),
                "at": time.time(),
            }


def _month_end(year: int, month: int) -> date:
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


# --------------------------------------------------------------------------- the soak


class Soak:
    """One soak run: its processes, load, faults, checks and figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="gw-soak-"))
        self.fleet = Fleet(self.workdir)
        self.stats = Stats()
        self.db_name = f"gw_soak_{secrets.token_hex(4)}"
        self.admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.ports = {
            name: free_port() for name in ("web", "redis", "standin", "receiver", "unused")
        }
        self.receiver = Receiver(self.ports["receiver"])
        self.policy = load_policy()
        self.injected_permanent = 0
        self.redis_down = threading.Lock()  # held while a fault has Redis down
        #: Certifications whose badge its earner deleted: the gateway does not issue it again.
        self.deleted_badges: set[str] = set()
        self.db_created = False
        self.standin = f"http://127.0.0.1:{self.ports['standin']}"
        self.web = f"http://127.0.0.1:{self.ports['web']}"
        self.env = {
            **os.environ,
            "DATABASE_URL": ADMIN_URL.set(database=self.db_name).render_as_string(False),
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "WEB_BIND": f"127.0.0.1:{self.ports['web']}",
            "WEB_WORKERS": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
            "CREDLY_API_BASE": f"{self.standin}/v1",
            "CREDLY_ORGANIZATION_ID": ORGANIZATION,
            "CREDLY_AUTH_TOKEN": CREDLY_TOKEN,
            "CREDLY_BADGE_TEMPLATES": json.dumps(
                {
                    code: str(uuid.uuid5(uuid.NAMESPACE_URL, code))
                    for code in self.policy.credentials
                }
            ),
            "CREDLY_TIMEOUT_SECONDS": "2",
            "JOB_RETRY_BASE_SECONDS": "1",
            "DELIVERY_RETRY_BASE_SECONDS": "1",
            "DELIVERY_TIMEOUT_SECONDS": "3",
            "RELAY_INTERVAL_SECONDS": "1",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOK_ALLOW_PLAIN_HTTP": "true",  # the receiver is plain http
            "PUBLIC_BASE_URL": self.web,
            "VERIFY_RATE_LIMIT": "100000/minute",
            "VERIFY_RATE_LIMIT_AUTHENTICATED": "100000/minute",
            "CREDLY_WEBHOOK_RATE_LIMIT": "100000/minute",
            "CREDLY_WEBHOOK_CHECKS": "100000/hour",
            "LOG_LEVEL": "WARNING",
        }
        (self.workdir / "metrics").mkdir()
        self.db: Engine | None = None
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)

    # -- set-up

    def gateway(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [str(BIN / "gateway"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"gateway {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start_redis(self) -> None:
        argv = ["redis-server", "--port", str(self.ports["redis"]), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no"]
        self.fleet.start("redis", "redis", argv, self.env)
        wait_port(self.ports["redis"])

    def start_worker(self, n: int) -> None:
        argv = [str(BIN / "gateway"), "worker", "--name", f"soak-{n}-{uuid.uuid4().hex[:6]}"]
        self.fleet.start(f"worker-{n}", "worker", argv, self.env)

    def set_up(self) -> None:
        """The database, the processes, the receiver and the two API clients."""
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.db_created = True
        self.db = create_engine(self.env["DATABASE_URL"], pool_pre_ping=True)
        self.gateway("db", "upgrade")
        argv = [sys.executable, "-m", "tests.support.credly_standin"]
        argv += ["--port", str(self.ports["standin"]), "--token", CREDLY_TOKEN]
        argv += ["--organization-id", ORGANIZATION]
        self.fleet.start("standin", "credly-standin", argv, self.env)
        self.start_redis()
        self.receiver.start()
        self.fleet.start("web", "gunicorn", [str(BIN / "gateway"), "serve"], self.env)
        for n in (1, 2):
            self.start_worker(n)
        wait_port(self.ports["standin"])
        self.wait_ready()
        self.control("POST", "/_control/reset")
        writer = json.loads(
            self.gateway(
                "clients",
                "create",
                "--name",
                "membership",
                "--scope",
                "events:write certifications:read",
            )
        )
        reader = json.loads(
            self.gateway("clients", "create", "--name", "employer", "--scope", "verifications:read")
        )
        self.load = Load(
            Api(self.web, writer, "events:write certifications:read"),
            Api(self.web, reader, "verifications:read"),
            self.stats,
            self.policy,
            self.ports["receiver"],
        )

    def wait_ready(self) -> None:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                if requests.get(f"{self.web}/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("gunicorn did not answer /healthz")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, self.standin + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"] if answer.content else None

    def tear_down(self) -> None:
        if hasattr(self, "load"):
            self.load.stop.set()
        self.fleet.stop_all()
        self.receiver.stop()
        if self.db is not None:
            self.db.dispose()
        if self.db_created:
            with self.admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()
        if not self.args.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.log(f"logs kept in {self.workdir}")

    # -- faults

    @contextmanager
    def fault(self, name: str) -> Iterator[None]:
        self.load.fault_active += 1
        with self.stats.lock:
            self.stats.faults.append(name)
        self.log(f"fault: {name}")
        try:
            yield
        finally:
            self.load.fault_active -= 1

    def credly_errors(self, rng: random.Random) -> None:
        operation = rng.choice(["issue", "issue", "replace", "revoke", "get", "list"])
        kind = rng.choice(["500", "429", "slow", "timeout", "permanent"])
        if kind == "permanent" and operation not in ("issue", "replace"):
            kind = "500"
        answers = {
            "500": [{"status": 500}] * rng.randrange(1, 6),
            "429": [{"status": 429, "retry_after": 1}] * rng.randrange(1, 4),
            "slow": [{"delay": 1.2}] * rng.randrange(2, 10),
            # longer than CREDLY_TIMEOUT_SECONDS, then done: the retry meets a duplicate
            "timeout": [{"delay": 3}] * rng.randrange(1, 4),
            "permanent": [{"status": 422, "body": {"data": {"message": PERMANENT_MARK}}}],
        }[kind]
        if kind == "permanent":
            self.injected_permanent += 1
        with self.fault(f"credly {operation} {kind} x{len(answers)}"):
            self.control("POST", "/_control/faults", {"responses": answers, "operation": operation})
            time.sleep(10)

    def credly_out_of_band(self, rng: random.Random) -> None:
        live = [b for b in self.control("GET", "/_control/badges") if b["state"] in LIVE]
        if not live:
            return
        badge = rng.choice(live)
        what = rng.choice(["replace", "delete", "accept"])
        with self.fault(f"credly badge {what} out of band"):
            if what == "accept":
                event = self.control(
                    "POST", f"/_control/badges/{badge['id']}/state", {"state": "accepted"}
                )
            else:
                event = self.control("POST", f"/_control/badges/{badge['id']}/{what}", {})
            if what == "delete":
                self.deleted_badges.add(badge["issuer_earner_id"])
            self.notify(event["id"], event.get("event_type", "badge.state.changed"))
            time.sleep(5)

    def notify(self, event_id: str, event_type: str, organization: str = ORGANIZATION) -> None:
        body = {
            "id": event_id,
            "organization_id": organization,
            "event_type": event_type,
            "occurred_at": now_iso(),
        }
        answer = requests.post(f"{self.web}/webhooks/credly", json=body, timeout=60)
        if answer.status_code >= 500 and answer.status_code != 503:
            with self.stats.lock:
                self.stats.server_errors.append(f"/webhooks/credly {answer.status_code}")

    def forged(self, rng: random.Random) -> None:
        with self.fault("forged Credly notification"):
            organization = ORGANIZATION if rng.random() < 0.7 else str(uuid.uuid4())
            self.notify(str(uuid.uuid4()), "badge.deleted", organization)

    def kill_worker(self, rng: random.Random) -> None:
        n = rng.choice([1, 2])
        with self.fault(f"worker {n} SIGKILLed"):
            self.fleet.kill(f"worker-{n}")
            time.sleep(rng.uniform(2, 6))
            self.start_worker(n)

    def kill_redis(self, rng: random.Random) -> None:
        if not self.redis_down.acquire(blocking=False):
            return  # an overlapping fault has it down already: nothing to kill
        try:
            with self.fault("redis killed"):
                self.fleet.kill("redis")
                time.sleep(rng.uniform(3, 8))
                self.start_redis()
        finally:
            self.redis_down.release()

    def terminate_backends(self, rng: random.Random) -> None:
        with self.fault("postgres backends terminated"):
            with self.admin.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": self.db_name},
                )
            time.sleep(2)

    def receiver_trouble(self, rng: random.Random) -> None:
        mode = rng.choice(["fail", "hang"])
        with self.fault(f"webhook receiver {mode}s"):
            self.receiver.mode = mode
            time.sleep(rng.uniform(10, 30))
            self.receiver.mode = "ok"

    def run_faults(self, until: float) -> None:
        """Start a random fault every few seconds, each in its own thread, so they overlap; a
        worker is SIGKILLed at a fixed pace besides."""
        rng = random.Random(7)
        kinds: list[Callable[[random.Random], None]] = [
            self.credly_errors,
            self.credly_errors,
            self.credly_out_of_band,
            self.forged,
            self.kill_redis,
            self.terminate_backends,
            self.receiver_trouble,
        ]
        kill_every = min(150.0, max(45.0, (until - time.monotonic()) / 3))
        next_kill = time.monotonic() + kill_every / 2
        threads = []
        while time.monotonic() < until - 15:
            chosen = self.kill_worker if time.monotonic() >= next_kill else rng.choice(kinds)
            if chosen == self.kill_worker:
                next_kill += kill_every
            thread = threading.Thread(
                target=self._guarded, args=(chosen, random.Random(rng.random()))
            )
            thread.start()
            threads.append(thread)
            self.load.stop.wait(rng.uniform(4, 12))
        for thread in threads:
            thread.join()

    def _guarded(self, fault: Callable[[random.Random], None], rng: random.Random) -> None:
        try:
            fault(rng)
        except Exception as exc:
            self.log(f"fault {fault.__name__} not made: {exc!r}")

    # -- the run

    def run(self) -> int:
        """Set up, load with faults, drain, check; 1 on any violation, else 0."""
        self.set_up()
        sampler = threading.Event()
        threading.Thread(target=self._sample, args=(sampler,), daemon=True).start()
        self.log(f"granting {self.args.certifications} certifications")
        self.load.populate(self.args.certifications)
        for _ in range(3):
            self.load.subscribe(50)
        self.log("steady load with faults")
        load_started = time.monotonic()
        until = load_started + self.args.minutes * 60
        workers = [
            threading.Thread(target=self.load.run_events, args=(n, self.args.rate / 2))
            for n in range(2)
        ] + [threading.Thread(target=self.load.run_lookups, args=(10 + n,)) for n in range(2)]
        for thread in workers:
            thread.start()
        faults = threading.Thread(target=self.run_faults, args=(until,))
        faults.start()
        swept = subscribed = False
        posted_before = self.stats.events_posted
        while time.monotonic() < until:
            time.sleep(1)
            if not swept and time.monotonic() > load_started + (until - load_started) / 2:
                swept = True
                threading.Thread(target=self._sweep, daemon=True).start()
            if not subscribed and time.monotonic() > load_started + (until - load_started) / 3:
                subscribed = True
                self.load.subscribe(100)
        self.load.stop.set()
        for thread in workers:
            thread.join()
        self.stats.load_seconds = time.monotonic() - load_started
        self.stats.steady_events = self.stats.events_posted - posted_before
        faults.join()
        self.log("load over; waiting for the queue to drain")
        drained = self.drain()
        if self.has_reconcile():
            self.gateway("badges", "reconcile")
            drained = self.drain() and drained
        sampler.set()
        violations = [] if drained else ["the queue did not drain in time"]
        violations += self.check()
        self.report(violations)
        return 1 if violations else 0

    def _sample(self, stop: threading.Event) -> None:
        while not stop.wait(2):
            self.fleet.sample_rss()

    def _sweep(self) -> None:
        try:
            self.log("gateway sweep: " + self.gateway("sweep", "--json").strip()[:300])
        except Exception as exc:
            with self.stats.lock:
                self.stats.server_errors.append(f"gateway sweep failed: {exc}")

    def has_reconcile(self) -> bool:
        return "reconcile" in self.gateway("badges", "--help")

    def drain(self) -> bool:
        end = time.monotonic() + self.args.drain_timeout
        query = text(
            "SELECT (SELECT count(*) FROM outbox WHERE state = ANY(:jobs)) + "
            "(SELECT count(*) FROM deliveries WHERE state = ANY(:deliveries))"
        )
        left, next_note = None, time.monotonic() + 30
        while time.monotonic() < end:
            with self.db.connect() as connection:
                left = connection.execute(
                    query, {"jobs": list(OPEN_JOBS), "deliveries": list(OPEN_DELIVERIES)}
                ).scalar()
            if left == 0:
                return True
            if time.monotonic() > next_note:
                next_note += 30
                self.log(f"still open: {self.open_work()}")
            time.sleep(2)
        self.log(f"still open after {self.args.drain_timeout} s: {self.open_work()}")
        return False

    def open_work(self) -> str:
        """The jobs and deliveries not settled yet, counted by kind and state."""
        with self.db.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT kind, state, count(*), max(attempts), min(due_at) FROM outbox "
                    "WHERE state = ANY(:jobs) GROUP BY 1, 2 UNION ALL "
                    "SELECT 'delivery', state, count(*), max(attempts), min(last_attempt_at) "
                    "FROM deliveries WHERE state = ANY(:deliveries) GROUP BY 1, 2"
                ),
                {"jobs": list(OPEN_JOBS), "deliveries": list(OPEN_DELIVERIES)},
            ).all()
        return "; ".join(f"{k} {s} x{n} (attempts {a}, due {d})" for k, s, n, a, d in rows)

    # -- invariants

    def check(self) -> list[str]:
        """Every invariant, once the queue has drained; one line (and trail) a violation."""
        today = datetime.now(UTC).date()
        violations: list[str] = []
        with Session(self.db) as session:
            violations += self.check_events(session)
            violations += self.check_standings(session, today)
            violations += self.check_jobs(session)
            violations += self.check_subscribers(session)
        with self.stats.lock:
            violations += [f"answered 5xx: {error}" for error in self.stats.server_errors]
        return violations

    def trail(self, session: Session, certification_id: str) -> str:
        """The certification's events (accepted or not) and jobs, oldest first, for a report."""
        events = session.execute(
            text(
                "SELECT event_id, type, status, occurred_at, body->'data' FROM events "
                "WHERE certification_id = :c ORDER BY id"
            ),
            {"c": certification_id},
        )
        jobs = session.execute(
            text(
                "SELECT id, kind, state, attempts, last_error FROM outbox "
                "WHERE certification_id = :c ORDER BY id"
            ),
            {"c": certification_id},
        )
        lines = [
            f"    event {e[0]} {e[1]} {e[2]} {e[3]:%Y-%m-%d %H:%M:%S} {json.dumps(e[4])}"
            for e in events
        ]
        lines += [f"    job {j[0]} {j[1]} {j[2]} attempts={j[3]} {j[4] or ''}"[:300] for j in jobs]
        return "\n".join(lines)

    def check_events(self, session: Session) -> list[str]:
        """Every event answered 202 is recorded, once, as accepted."""
        ids = list(self.stats.accepted)
        found: dict[str, list[str]] = defaultdict(list)
        for start in range(0, len(ids), 5000):
            for event_id, status in session.execute(
                text("SELECT event_id, status FROM events WHERE event_id = ANY(:ids)"),
                {"ids": ids[start : start + 5000]},
            ):
                found[event_id].append(status)
        out = []
        for event_id in ids:
            if found.get(event_id) != ["accepted"]:
                cid = self.stats.accepted[event_id][0]
                out.append(
                    f"{cid}: event {event_id} answered 202 is recorded as {found.get(event_id)}\n"
                    + self.trail(session, cid)
                )
        return out

    def check_standings(self, session: Session, today: date) -> list[str]:
        """Stored standing = evaluate(history, today); badges on the stand-in and the public
        record agree with it."""
        badges: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for badge in self.control("GET", "/_control/badges"):
            badges[badge["issuer_earner_id"]].append(badge)
        failed_permanently = {
            cid
            for (cid,) in session.execute(
                text("SELECT certification_id FROM outbox WHERE state = 'failed'")
            )
        }
        rows = session.execute(
            text(
                "SELECT c.certification_id, c.status, c.standing, v.name, v.credential, "
                "v.credential_name, v.status, v.certified_since, v.valid_through "
                "FROM certifications c LEFT JOIN verification_records v "
                "ON v.certification_id = c.certification_id ORDER BY c.certification_id"
            )
        ).all()
        out = []
        reader = Database(self.env["DATABASE_URL"])  # the gateway's statements, on this session
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            ids = [row[0] for row in chunk]
            histories = load_histories(reader, ids, session.connection())
            for cid, status, stored, *record in chunk:
                problems = self.certification_problems(
                    cid, status, stored, record, histories.get(cid, []), today, badges.get(cid, [])
                )
                if cid in failed_permanently or cid in self.deleted_badges:
                    problems = [p for p in problems if not p.startswith("badge")]
                if problems:
                    out.append(f"{cid}: " + "; ".join(problems) + "\n" + self.trail(session, cid))
        return out

    def certification_problems(
        self,
        cid: str,
        status: str,
        stored: dict[str, Any],
        record: list[Any],
        history: list[rules.Event],
        today: date,
        held: list[dict[str, Any]],
    ) -> list[str]:
        """What is wrong with one certification: its stored standing, public record, badges."""
        standing = rules.evaluate(history, today, self.policy)
        expected = standing.to_dict()
        problems = []
        if status != standing.status:
            problems.append(f"stored status {status}, evaluate says {standing.status}")
        differing = sorted(k for k in expected if k != "as_of" and stored.get(k) != expected[k])
        if differing:
            problems.append(
                "stored standing differs from evaluate in "
                + ", ".join(f"{k} ({stored.get(k)!r} != {expected[k]!r})" for k in differing)
            )
        member = standing.member
        name = f"{member.first_name} {member.last_name}"
        known = self.policy.credentials.get(standing.credential)
        public = [
            name,
            standing.credential,
            known.name if known else standing.credential,
            standing.status,
            standing.certified_on,
            standing.fees.paid_through if standing.status == "active" else None,
        ]
        if record != public:
            problems.append(f"public record {record} != projection {public}")
        want = 1 if standing.status in rules.BADGE_KEPT else 0
        live = [badge for badge in held if badge["state"] in LIVE]
        if len(live) != want:
            seen = ", ".join(
                f"{b['id']} {b['state']} {b['recipient_email']} created {b['created_at']} "
                f"state since {b['state_updated_at']}"
                for b in held
            )
            problems.append(
                f"badge: {len(live)} live on Credly, want {want} ({standing.status}); "
                f"Credly has: {seen}"
            )
        for badge in live:
            shown = (badge["issued_to_first_name"], badge["issued_to_last_name"])
            if shown != (member.first_name, member.last_name):
                problems.append(f"badge {badge['id']} names {shown}, member is {name}")
        return problems

    def check_jobs(self, session: Session) -> list[str]:
        """No failed job but those an injected permanent Credly error made fail."""
        out = []
        allowed = 0
        for job_id, kind, cid, error in session.execute(
            text("SELECT id, kind, certification_id, last_error FROM outbox WHERE state='failed'")
        ):
            if PERMANENT_MARK in (error or "") and kind in BADGE_JOBS:
                allowed += 1
                continue
            out.append(f"{cid}: job {job_id} {kind} failed: {error}\n" + self.trail(session, cid))
        if allowed > self.injected_permanent:
            out.append(f"{allowed} jobs failed on {self.injected_permanent} injected errors")
        return out

    def check_subscribers(self, session: Session) -> list[str]:
        """Each subscriber got its watched certifications' status changes, in order, signed,
        ending on the current status; no delivery failed."""
        out = []
        with self.receiver.lock:
            received = list(self.receiver.received)
        by_target: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        seen: set[str] = set()
        for delivery in received:
            event = json.loads(delivery["body"])
            sid = event.get("subscription_id")
            subscription = self.stats.subscriptions.get(sid)
            if subscription is None or not signature_valid(subscription["secret"], delivery):
                out.append(f"delivery {delivery['id']} to {sid}: signature not valid")
                continue
            if delivery["id"] in seen:  # a retry of a delivery the receiver already had
                continue
            seen.add(delivery["id"])
            by_target[(sid, event["data"]["certification_id"])].append(event)
        records = dict(
            session.execute(text("SELECT certification_id, status FROM verification_records")).all()
        )
        for sid, subscription in self.stats.subscriptions.items():
            states = dict(
                session.execute(
                    text(
                        "SELECT certification_id, string_agg(state, ',') FROM deliveries "
                        "WHERE target = :t GROUP BY certification_id"
                    ),
                    {"t": sid},
                ).all()
            )
            for cid in subscription["ids"]:
                events = by_target.get((sid, cid), [])
                sequences = [e["sequence"] for e in events]
                if sequences != sorted(sequences):
                    out.append(f"{cid}: subscription {sid} got sequences {sequences} out of order")
                if "failed" in (states.get(cid) or ""):
                    out.append(f"{cid}: a delivery to {sid} failed ({states[cid]})")
                if cid in states and not events:
                    out.append(f"{cid}: {sid} was sent nothing ({states[cid]})")
                if events and events[-1]["data"]["status"] != records.get(cid):
                    out.append(
                        f"{cid}: {sid} last got {events[-1]['data']['status']}, "
                        f"the record is {records.get(cid)}\n" + self.trail(session, cid)
                    )
        return out

    # -- figures

    def figures(self) -> dict[str, Any]:
        during = sorted(s for s, fault in self.stats.lookups if fault)
        every = sorted(s for s, _ in self.stats.lookups)
        with Session(self.db) as session:
            lags = dict(
                session.execute(
                    text(
                        "SELECT CASE WHEN o.kind = :sync THEN 'record' "
                        "ELSE 'badge' END, max(o.finished_at - e.received_at) "
                        "FROM outbox o JOIN events e ON e.id = o.event_pk "
                        "WHERE o.state = 'done' AND o.kind = ANY(:kinds) GROUP BY 1"
                    ),
                    {
                        "kinds": [*BADGE_JOBS, kinds.SYNC_VERIFICATION],
                        "sync": kinds.SYNC_VERIFICATION,
                    },
                ).all()
            )
            retried, attempts = session.execute(
                text(
                    "SELECT count(*), coalesce(sum(attempts - 1), 0) FROM outbox WHERE attempts > 1"
                )
            ).one()
            events_recorded = session.execute(text("SELECT count(*) FROM events")).scalar()
        return {
            "minutes": self.args.minutes,
            "certifications": len(self.load.certs),
            "events_recorded": events_recorded,
            "events_accepted": len(self.stats.accepted),
            "answers": dict(sorted(self.stats.answers.items())),
            "events_per_second": round(self.stats.steady_events / self.stats.load_seconds, 1),
            "lookups": len(every),
            "lookup_p99_ms": _p99_ms(every),
            "lookup_p99_during_faults_ms": _p99_ms(during),
            "max_event_to_badge_s": _seconds(lags.get("badge")),
            "max_event_to_public_record_s": _seconds(lags.get("record")),
            "posts_resent": self.stats.resent,
            "jobs_retried": retried,
            "retries": int(attempts),
            "faults": len(self.stats.faults),
            "permanent_errors_injected": self.injected_permanent,
            "webhooks_received": len(self.receiver.received),
            "peak_rss_mb": {k: round(v / 2**20) for k, v in sorted(self.fleet.peak_rss.items())},
        }

    def report(self, violations: list[str]) -> None:
        figures = self.figures()
        figures["violations"] = len(violations)
        for violation in violations[:200]:
            print("VIOLATION " + violation)
        if len(violations) > 200:
            print(f"... and {len(violations) - 200} more violations")
        if self.args.json:
            print(json.dumps(figures, indent=2))
        else:
            for key, value in figures.items():
                print(f"{key:32} {value}")


def _p99_ms(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100)[98] * 1000, 1)


def _seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 1) if value is not None else None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the soak as Ctrl-C does: everything it started too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="Length of the steady load.")
    parser.add_argument("--certifications", type=int, default=20_000, help="Population granted.")
    parser.add_argument("--rate", type=float, default=40, help="Events a second, steady load.")
    parser.add_argument(
        "--drain-timeout", type=float, default=600, help="Seconds the queue may take to drain."
    )
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    parser.add_argument("--keep-logs", action="store_true", help="Keep the processes' logs.")
    args = parser.parse_args(argv)
    soak = Soak(args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return soak.run()
    finally:
        soak.tear_down()


if __name__ == "__main__":
    sys.exit(main())
