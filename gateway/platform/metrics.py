"""Prometheus metrics: HTTP, events, rule rejections, jobs, queue depth, outbox, Credly calls.

With several gunicorn processes set PROMETHEUS_MULTIPROC_DIR (`gateway serve` does): every process
writes its samples there and `/metrics` aggregates them (prometheus-client's multiprocess mode).
Workers count their job runs and Credly calls: each serves its own on WORKER_METRICS_PORT, or
writes them to the folder of the web processes of its machine when it shares their
PROMETHEUS_MULTIPROC_DIR. Every worker's job outcomes are also read from the database when
`/metrics` is scraped, wherever the workers run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform.config import ConfigError, path_setting

#: The queue as `/metrics` shows it: the items not yet done or failed by state, and how many are
#: due now (read from the database when scraped).
QueueGauges = Callable[[], tuple[Mapping[str, int], int]]

#: Every worker's jobs as `/metrics` shows them: how many outbox items ended, by kind and final
#: outcome (read from the database when scraped).
JobOutcomes = Callable[[], Mapping[tuple[str, str], int]]

#: The methods counted under their own name; any other (a client may send any token) is `other`,
#: so that no caller can add series to the exposition.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The `method` label of a request's metrics."""
    return method if method in METHODS else "other"


HTTP_REQUESTS = Counter(
    "gateway_http_requests_total", "HTTP requests answered.", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "gateway_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["endpoint", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter(
    "gateway_events_total", "Events received, by type and outcome.", ["type", "outcome"]
)
EVENT_GROUPS = Histogram(
    "gateway_event_group_size",
    "Well-formed events recorded in one transaction, by source: single (the single events of "
    "concurrent requests, grouped) or batch (one batch request's).",
    ["source"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 100),
)
RULE_REJECTIONS = Counter(
    "gateway_rule_rejections_total", "Rule violations that rejected an event.", ["rule"]
)
JOBS = Counter(
    "gateway_jobs_total",
    "Job attempts run to an end by the processes reporting here, by kind and how the attempt "
    "ended: done, retrying (tried again later), failed (the last attempt), paused (put off "
    "while Credly refuses the token, using no attempt). Every worker's ended jobs are "
    "gateway_job_outcomes_total.",
    ["kind", "outcome"],
)
CREDLY_LATENCY = Histogram(
    "gateway_credly_request_duration_seconds",
    "Time of each call to Credly.",
    ["operation", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CREDLY_NOTIFICATIONS = Counter(
    "gateway_credly_notifications_total",
    "Deliveries to /webhooks/credly, by outcome: received, duplicate, refused (another "
    "organisation), rate_limited (per address), over_bound (the confirmation bound), malformed.",
    ["outcome"],
)
CREDLY_DRIFT = Counter(
    "gateway_credly_drift_total",
    "Differences reconciliation found between Credly and the standings, by repair: revoked, "
    "issued, renewed, taken_from_credly, duplicates_revoked, updated (the replace jobs of "
    "adopted badges); a dry run counts none.",
    ["repair"],
)
CREDLY_ERRORS = Counter(
    "gateway_credly_errors_total",
    "Credly calls that failed (no answer, 429 or 5xx).",
    ["operation"],
)

#: Every metric above: `/metrics` shows each one's HELP and TYPE even before any process has a
#: sample of it (a web process never runs the workers' jobs).
DESCRIBED = (
    HTTP_REQUESTS,
    HTTP_LATENCY,
    EVENTS,
    EVENT_GROUPS,
    RULE_REJECTIONS,
    JOBS,
    CREDLY_LATENCY,
    CREDLY_NOTIFICATIONS,
    CREDLY_DRIFT,
    CREDLY_ERRORS,
)


def count_event(event_type: str, status: int, body: dict, replayed: bool) -> None:
    """Count one answered event: its outcome and, for rejections, each rule."""
    errors = body.get("errors") or []
    if replayed:
        outcome = "replayed"
    elif status == 202:
        outcome = "accepted"
    elif status == 422 and errors and "rule" in errors[0]:
        outcome = "rejected"
        for error in errors:
            RULE_REJECTIONS.labels(error["rule"]).inc()
    else:
        outcome = {404: "unknown_certification", 409: "conflict"}.get(status, "invalid")
    EVENTS.labels(event_type, outcome).inc()


def observe_credly(method: str, path: str, status: int | None, seconds: float) -> None:
    """The Credly connector's `on_request` hook."""
    operation = f"{method} {path}"
    CREDLY_LATENCY.labels(operation, str(status or "none")).observe(seconds)
    if status is None or status == 429 or status >= 500:
        CREDLY_ERRORS.labels(operation).inc()


class BacklogCollector(Collector):
    """Queue depth and outbox backlog, read when /metrics is scraped."""

    def __init__(self, queue: QueueGauges, paused: Callable[[], bool | None]) -> None:
        self.queue = queue
        self.paused = paused

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            "gateway_outbox_backlog",
            "Outbox items not yet done or failed, by state.",
            labels=["state"],
        )
        depth = GaugeMetricFamily(
            "gateway_queue_depth", "Outbox items due now, waiting for a worker to claim them."
        )
        paused = GaugeMetricFamily(
            "gateway_credly_paused",
            "1 while Credly refuses the configured token (401/403) and Credly jobs wait, else 0; "
            "no sample while that cannot be read (Redis does not answer).",
        )
        known = self.paused()
        if known is not None:
            paused.add_metric([], 1 if known else 0)
        yield paused
        try:
            counts, due = self.queue()
        except SQLAlchemyError:
            return  # /readyz reports the database; metrics stay up without it
        for state, n in sorted(counts.items()):
            backlog.add_metric([state], n)
        depth.add_metric([], due)
        yield backlog
        yield depth


class OutcomeCollector(Collector):
    """Every worker's job outcomes, read when /metrics is scraped."""

    def __init__(self, outcomes: JobOutcomes) -> None:
        self.outcomes = outcomes

    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            counts = self.outcomes()
        except SQLAlchemyError:
            return  # /readyz reports the database; metrics stay up without it
        ended = CounterMetricFamily(
            "gateway_job_outcomes",
            "Jobs (outbox items) that ended, by kind and outcome: done, or failed after their "
            "last attempt. Every worker's, counted in the database; a requeued item counts again "
            "when it ends again. Retries and pauses are gateway_jobs_total.",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), n in sorted(counts.items()):
            ended.add_metric([kind, outcome], n)
        yield ended


class _Shared(Collector):
    """Every process's samples in the shared folder, and the HELP and TYPE of each metric of
    DESCRIBED that none has a sample of yet."""

    def __init__(self, folder: str) -> None:
        self.samples = multiprocess.MultiProcessCollector(None, path=folder)

    def collect(self) -> Iterator[Metric]:
        found = list(self.samples.collect())
        yield from found
        named = {metric.name for metric in found}
        for wrapper in DESCRIBED:
            yield from (metric for metric in wrapper.describe() if metric.name not in named)


class _ThisProcess(Collector):
    """This process's own metrics, when it is the only one (no multiprocess directory)."""

    def collect(self) -> Iterator:
        return REGISTRY.collect()


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def shared_folder() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, absolute, created if missing (None when unset).

    Raises ConfigError, in one line, when it is spaces alone (as the gateway's path settings) or
    names something that is not and cannot become a folder: every sample of the process would
    fail to be written.
    """
    path = path_setting(os.environ, MULTIPROC_DIR)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{MULTIPROC_DIR} {path!r} is not a folder and cannot be made one: {exc.strerror}"
        ) from exc
    return path


#: The folder `gateway serve` made for its processes' samples (PROMETHEUS_MULTIPROC_DIR unset),
#: which its gunicorn master removes as it exits (`remove_own_folder`).
OWN_FOLDER = "GATEWAY_OWN_METRICS_DIR"


def serve_folder() -> str:
    """`gateway serve`'s PROMETHEUS_MULTIPROC_DIR: the one set (created if missing; kept as it is,
    as the workers of the machine may write there), else a new folder of this instance's own,
    named in OWN_FOLDER."""
    os.environ.pop(OWN_FOLDER, None)
    folder = shared_folder()
    if folder is None:
        folder = os.environ[OWN_FOLDER] = tempfile.mkdtemp(prefix="gateway-metrics-")
    return folder


def remove_own_folder() -> None:
    """Remove the folder `serve_folder` made for this instance, once its processes have ended (a
    folder that PROMETHEUS_MULTIPROC_DIR set is kept)."""
    own = os.environ.get(OWN_FOLDER)
    if own and own == os.environ.get(MULTIPROC_DIR):
        shutil.rmtree(own, ignore_errors=True)


def serve_process_metrics(port: int) -> None:
    """Serve this process's own metrics on `port` of every interface (a worker's: jobs, Credly
    calls), on a daemon thread."""
    start_http_server(port, registry=REGISTRY)


def registry(
    queue: QueueGauges, paused: Callable[[], bool | None], outcomes: JobOutcomes
) -> CollectorRegistry:
    """What `/metrics` shows: every process's samples of this machine (or this process's own),
    the outbox backlog (`queue`), whether the Credly jobs wait for a working token (`paused`,
    None when unknown) and every worker's job outcomes (`outcomes`)."""
    registry = CollectorRegistry()
    folder = shared_folder()
    registry.register(_Shared(folder) if folder else _ThisProcess())
    registry.register(BacklogCollector(queue, paused))
    registry.register(OutcomeCollector(outcomes))
    return registry
