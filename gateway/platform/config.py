"""Every setting of the gateway, read from the environment once, with the embedded defaults."""

from __future__ import annotations

import functools
import inspect
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import psycopg
from gunicorn.util import parse_address
from limits import parse_many
from limits.util import SEPARATORS, SINGLE_EXPR
from marshmallow import ValidationError
from marshmallow.validate import Email
from psycopg.conninfo import make_conninfo
from redis import connection as redis_connection
from redis.connection import parse_url
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.rules.periods import parse_day


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", raw):  # ASCII digits: int() takes "1_000", "٣"
        raise ConfigError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


def _date(env: Mapping[str, str], name: str) -> date | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return parse_day(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a date YYYY-MM-DD, got {raw!r}") from exc


def _time_of_day(raw: str) -> str:
    """SWEEP_TIME: H:MM or HH:MM in ASCII digits ("²" is a digit to Python), 00:00 to 23:59;
    as HH:MM."""
    if not re.fullmatch(r"([01]?[0-9]|2[0-3]):[0-5][0-9]", raw):
        raise ConfigError(f"SWEEP_TIME must be HH:MM (UTC, 00:00 to 23:59), got {raw!r}")
    return raw.zfill(5)


def _split(name: str, raw: str, shown: str) -> SplitResult:
    """`raw`, the URL of setting `name`, in parts; a ConfigError when it cannot be read."""
    try:
        return urlsplit(raw)
    except ValueError as exc:  # an unbalanced [ of an IPv6 address, say
        raise ConfigError(f"{name} is not a URL ({exc}), got {shown!r}") from exc


def _base_url(env: Mapping[str, str], name: str, *, base: bool = True) -> str | None:
    """An absolute http(s) URL, or None when unset. A base URL, which paths are added to, loses
    its trailing slash and may have no query or fragment; any other (`base=False`) is kept as
    given."""
    raw = (env.get(name) or "").strip()
    if base:
        raw = raw.rstrip("/")
    if not raw:
        return None
    shown = _redact(raw)
    parts = _split(name, raw, shown)
    extra = base and (parts.query or parts.fragment)
    if parts.scheme not in ("https", "http") or not parts.hostname or extra:
        raise ConfigError(f"{name} must be an absolute http(s) URL, got {shown!r}")
    _check_url_port(name, parts, shown)
    return raw


def _contact(env: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) URL (its scheme in lower case) or an e-mail address (without a
    `mailto:` before it), or None when unset: how to reach the certifying body, shown to
    employers and linked."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    scheme = _split(name, raw, raw).scheme
    if scheme in ("http", "https"):
        _base_url({name: raw}, name, base=False)
        return scheme + raw[len(scheme) :]
    address = raw[len("mailto:") :] if scheme == "mailto" else raw
    try:
        Email()(address)
    except ValidationError as exc:
        raise ConfigError(
            f"{name} must be an e-mail address or an absolute http(s) URL, got {raw!r}"
        ) from exc
    return address


def _token(env: Mapping[str, str], name: str, *, secret: bool = False) -> str | None:
    """An identifier or secret, taken as given, or None when unset. One that is blank or has
    whitespace around it is refused: no id or token has, and the service it is sent to would
    refuse every call. A secret's value is not shown."""
    raw = env.get(name)
    if not raw:
        return None
    if raw != raw.strip():
        shown = "" if secret else f", got {raw!r}"
        raise ConfigError(f"{name} must not be blank or begin or end with whitespace{shown}")
    return raw


def _zone(raw: str) -> str:
    """An IANA time zone name (e.g. America/Chicago, UTC): not `localtime`, whatever zone the
    machine is set to, nor a path."""
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        named = False
    else:
        named = raw == "UTC" or raw in _zone_names()
    if not named:
        raise ConfigError(
            "TIME_ZONE must be an IANA time zone name such as UTC or America/Chicago (not "
            f"localtime or a path), got {raw!r}"
        )
    return raw


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA time zone names of the time zone database, without the machine's `localtime`."""
    return frozenset(available_timezones() - {"localtime"})


def path_setting(env: Mapping[str, str], name: str) -> str | None:
    """A path, absolute, or None when unset; spaces alone are refused (not a file named so)."""
    raw = env.get(name)
    if not raw:
        return None
    if not raw.strip():
        raise ConfigError(f"{name} is blank (spaces only): leave it unset for its default")
    return os.path.abspath(raw)


def _templates(raw: str | None) -> dict[str, str]:
    """Parse the credential -> Credly badge template map: JSON object or `RMA=uuid,RPT=uuid`;
    each credential once, each with a template id."""
    if not raw:
        return {}
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            items = json.loads(raw, object_pairs_hook=list)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CREDLY_BADGE_TEMPLATES is not valid JSON: {exc}") from exc
    else:
        items = []
        for item in filter(None, (part.strip() for part in raw.split(","))):
            code, sep, template = item.partition("=")
            if not sep or not code.strip():
                raise ConfigError(f"CREDLY_BADGE_TEMPLATES item {item!r} is not CODE=TEMPLATE_ID")
            items.append((code, template))
    pairs: dict[str, str] = {}
    for code, template in items:
        code = code.strip()
        if not code:
            raise ConfigError("CREDLY_BADGE_TEMPLATES names a template for no credential")
        if not isinstance(template, str) or not template.strip():
            raise ConfigError(
                f"CREDLY_BADGE_TEMPLATES gives {code} no template id, got {json.dumps(template)}"
            )
        if code in pairs:
            raise ConfigError(f"CREDLY_BADGE_TEMPLATES names {code} twice")
        pairs[code] = template.strip()
    return pairs


def setting(env: str, default: str, description: str) -> dict[str, str]:
    """The documentation of a setting, kept as its `Settings` field's metadata: its environment
    variable, its default in words and what it does (markdown). scripts/configuration_doc.py makes
    docs/configuration.md from them."""
    return {"env": env, "default": default, "description": description}


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration; `from_env` is the only place that reads the environment."""

    database_url: str | None = field(
        default=None,
        metadata=setting(
            "DATABASE_URL",
            "SQLite in the instance folder",
            "`postgresql://user:pass@host:port/db` in production: psycopg 3 (`postgresql://` or "
            "`postgresql+psycopg://`, not another driver's `postgresql+psycopg2://`), a port from "
            "1 to 65535",
        ),
    )
    database_connect_timeout_seconds: int = field(
        default=3,
        metadata=setting(
            "DATABASE_CONNECT_TIMEOUT_SECONDS",
            "`3`",
            "PostgreSQL: how long a new connection may take (at least 2, libpq's floor); a "
            "database that accepts connections and never answers costs a request no more than this",
        ),
    )
    database_pool_timeout_seconds: int = field(
        default=3,
        metadata=setting(
            "DATABASE_POOL_TIMEOUT_SECONDS",
            "`3`",
            "PostgreSQL: how long a request waits for a pooled connection when every one is busy "
            "(then `503`)",
        ),
    )
    database_statement_timeout_ms: int = field(
        default=10_000,
        metadata=setting(
            "DATABASE_STATEMENT_TIMEOUT_MS",
            "`10000`",
            "PostgreSQL: the longest any statement may run (`statement_timeout`, then `503` or a "
            "retried job); `0`: no limit. Migrations are not limited; a `statement_timeout` in "
            "`DATABASE_URL`'s `options` wins",
        ),
    )
    instance_path: str | None = field(
        default=None,
        metadata=setting(
            "INSTANCE_PATH",
            "Flask's instance folder: `instance/` in a checkout (an editable install), "
            "`<prefix>/var/gateway-instance` for an installed package",
            "the folder where the embedded default's files live (the SQLite database, the signing "
            "keys, the dry-run Credly's badges) and the logo file",
        ),
    )
    redis_url: str | None = field(
        default=None,
        metadata=setting(
            "REDIS_URL",
            "none: jobs run in-process",
            "RQ queues and rate limits, e.g. `redis://127.0.0.1:6379/0`: a port from 1 to 65535, "
            "the database (path or `?db=`) a number 0 or more, one the server has: a Redis that "
            "answers and refuses it stops the processes and commands at start (one that does not "
            "answer does not: docs/operations.md, *Commands*)",
        ),
    )
    policy_file: str | None = field(
        default=None,
        metadata=setting(
            "POLICY_FILE",
            "the packaged `gateway/rules/policy.toml`",
            "the credential policy table (codes, names, points per cycle, current eligibility "
            "criteria id); it must keep every credential certifications hold, even one no longer "
            "offered, and its numbers within their bounds (docs/rules.md; checked at start); "
            "`gateway db upgrade` judges the recorded refusals under it (docs/operations.md)",
        ),
    )
    credly_api_base: str | None = field(
        default=None,
        metadata=setting(
            "CREDLY_API_BASE",
            "none: dry-run backend",
            "`https://api.credly.com/v1` or `https://sandbox-api.credly.com/v1`",
        ),
    )
    credly_organization_id: str | None = field(
        default=None,
        metadata=setting(
            "CREDLY_ORGANIZATION_ID",
            "none",
            "Credly organisation id",
        ),
    )
    credly_auth_token: str | None = field(
        default=None,
        repr=False,
        metadata=setting(
            "CREDLY_AUTH_TOKEN",
            "none",
            "Credly authorization token (HTTP Basic user name)",
        ),
    )
    credly_token_expires_on: date | None = field(
        default=None,
        metadata=setting(
            "CREDLY_TOKEN_EXPIRES_ON",
            "none",
            "the token's expiry date (Credly tokens last 180 days), used when Credly's "
            "authorization-tokens API does not say (the workers read it there at start and daily; "
            "without Redis, the serving process daily); reported by `/readyz`, logged as a "
            "WARNING from 14 days ahead when the app starts, when a worker has read it from "
            "Credly at start, and daily at `SWEEP_TIME` by one of the workers (without Redis, by "
            "one serving process); when neither Credly nor this setting says, those reads log a "
            "WARNING asking for it",
        ),
    )
    credly_badge_templates: dict[str, str] = field(
        default_factory=dict,
        metadata=setting(
            "CREDLY_BADGE_TEMPLATES",
            "none",
            "credential → badge template: `RMA=uuid,RPT=uuid` or a JSON object of strings; each "
            "credential once, with a template id. With Credly configured, a credential of the "
            "policy table it gives no template is named in a warning at start: its badges are not "
            "issued (the issue job fails, the badge shows `error`), and the reconciliation counts "
            "those certifications (`no_template`) instead of queuing the job again",
        ),
    )
    credly_timeout_seconds: int = field(
        default=10,
        metadata=setting(
            "CREDLY_TIMEOUT_SECONDS",
            "`10`",
            "read timeout of each Credly call",
        ),
    )
    credly_max_connections: int = field(
        default=64,
        metadata=setting(
            "CREDLY_MAX_CONNECTIONS",
            "`64`",
            "Credly calls one process makes at once, over as many kept-alive connections; a job "
            "beyond them waits for one until half its lease (`JOB_TIMEOUT_SECONDS`) is over, "
            "then is given back without using an attempt; 1 to 1,000",
        ),
    )
    credly_pause_seconds: int = field(
        default=300,
        metadata=setting(
            "CREDLY_PAUSE_SECONDS",
            "`300`",
            "after Credly refuses the token (401/403), or does not know the organisation (404), "
            "the Credly jobs wait, not using their attempts; one tries again after this many "
            "seconds. Configuring another token or organisation id resumes them at once",
        ),
    )
    credly_webhook_rate_limit: str = field(
        default="120/minute",
        metadata=setting(
            "CREDLY_WEBHOOK_RATE_LIMIT",
            "`120/minute`",
            "deliveries to `/webhooks/credly` one client address may make (429 with `Retry-After` "
            "beyond)",
        ),
    )
    credly_webhook_checks: str = field(
        default="600/hour",
        metadata=setting(
            "CREDLY_WEBHOOK_CHECKS",
            "`600/hour`",
            "new notifications checked with Credly (one call each), across all addresses; beyond "
            "it a new one is answered 503 with `Retry-After` and not recorded, so Credly delivers "
            "it again later. An address caught sending forged ones draws on "
            "`CREDLY_WEBHOOK_FORGED_CHECKS` instead, and all such addresses together on as many "
            "again, kept apart: Credly is asked at most twice this",
        ),
    )
    credly_webhook_forged_checks: str = field(
        default="5/hour",
        metadata=setting(
            "CREDLY_WEBHOOK_FORGED_CHECKS",
            "`5/hour`",
            "new notifications checked with Credly from one client address whose notification a "
            "check found forged (Credly does not know its event) within the last hour: its own "
            "allowance, not drawn from `CREDLY_WEBHOOK_CHECKS`, so it cannot use up the genuine "
            "notifications' checks; beyond it a new one is answered 503 with `Retry-After` and "
            "not recorded",
        ),
    )
    credly_webhook_refused: str = field(
        default="10/hour",
        metadata=setting(
            "CREDLY_WEBHOOK_REFUSED",
            "`10/hour`",
            "deliveries naming another organisation that one client address may have recorded "
            "as `refused` and logged; beyond it they are still answered 200 as refused but "
            "neither recorded nor logged, with one warning for the address in each window",
        ),
    )
    credly_revoked_is_duplicate: bool = field(
        default=False,
        metadata=setting(
            "CREDLY_REVOKED_IS_DUPLICATE",
            "`false`",
            "set when Credly counts a revoked badge as a duplicate on a template that does not "
            "allow duplicates: a pending badge whose member changes e-mail is then kept at its "
            "first address (brought up to date otherwise, with a note) instead of being revoked "
            "and issued again to the new one, which Credly would refuse",
        ),
    )
    badge_expires: bool = field(
        default=False,
        metadata=setting(
            "BADGE_EXPIRES",
            "`false`",
            "set badges' `expires_at` to the paid-through date (each renewal replaces the badge; "
            "a badge that would be expired on arrival is issued by the payment that makes it "
            "current); otherwise no expiry (`false` to Credly, never the template's default)",
        ),
    )
    token_expires_in: int = field(
        default=3600,
        metadata=setting(
            "OAUTH_TOKEN_EXPIRES_IN",
            "`3600`",
            "lifetime of issued access tokens, seconds",
        ),
    )
    token_failure_rate_limit: str = field(
        default="20/minute",
        metadata=setting(
            "OAUTH_FAILURE_RATE_LIMIT",
            "`20/minute`",
            "failed client authentications at `/oauth/token` one client address may make, however "
            "many of its requests run at once (each counts until it is answered); beyond it every "
            "token request from the address is answered 429 with `Retry-After`, before any secret "
            "is checked",
        ),
    )
    queue_name: str = field(
        default="gateway",
        metadata=setting(
            "QUEUE_NAME",
            "`gateway`",
            "the RQ queue name",
        ),
    )
    job_retry_base_seconds: int = field(
        default=5,
        metadata=setting(
            "JOB_RETRY_BASE_SECONDS",
            "`5`",
            "first retry delay of a failed Credly call; doubles each attempt (jittered, capped at "
            "1 h, never below Credly's `Retry-After`, which is honoured up to a day: a longer "
            "one, however large, waits a day), 8 attempts",
        ),
    )
    job_timeout_seconds: int = field(
        default=120,
        metadata=setting(
            "JOB_TIMEOUT_SECONDS",
            "`120`",
            "lease of one job attempt; a killed worker's job is claimed by another once it ends; "
            "a job starts, or waits for a Credly connection, only in its first half. Keep it at "
            "least 4 times `CREDLY_TIMEOUT_SECONDS` (a WARNING at start says when it is not): a "
            "job still waiting for Credly when its lease ends is run again beside it",
        ),
    )
    job_concurrency: int = field(
        default=64,
        metadata=setting(
            "JOB_CONCURRENCY",
            "`64`",
            "jobs one worker process runs at once (threads: a slow Credly answer holds up one of "
            "them); sized for Credly answering in about 100 ms, when a job spends most of its "
            "time waiting (`8` suits a Credly that answers at once); 1 to 1,000",
        ),
    )
    relay_interval_seconds: int = field(
        default=5,
        metadata=setting(
            "RELAY_INTERVAL_SECONDS",
            "`5`",
            "how often each worker wakes the workers for outbox items due for over 2 s (their "
            "wake-up lost with Redis, a lease ended, a retry's time come); without Redis, how "
            "often `gateway run` looks for items other commands queued",
        ),
    )
    worker_metrics_port: int = field(
        default=0,
        metadata=setting(
            "WORKER_METRICS_PORT",
            "`0`: none",
            "`gateway worker` (or its `--metrics-port`): serve the worker's own metrics (job runs, "
            "Credly calls) at `http://HOST:PORT/metrics` on every interface; one port per worker "
            "process of a machine",
        ),
    )
    jobs_synchronous: bool = field(
        default=False,
        metadata=setting(
            "JOBS_SYNCHRONOUS",
            "`false`",
            "without `REDIS_URL` only (ignored with it): run the in-process jobs in the thread "
            "that queued them instead of on a background thread, so the request or command that "
            "caused them returns only once every due job has settled, its retries waited out "
            "(tests, one-off commands); `1`, `true`, `yes` or `on` turn it on",
        ),
    )
    sweep_time: str = field(
        default="02:30",
        metadata=setting(
            "SWEEP_TIME",
            "`02:30`",
            "the UTC time (`HH:MM`; `H:MM` is taken too) at which the workers' cron queues the "
            "daily sweep (then the "
            "reconciliation with Credly) and the Credly token expiry check. Without Redis the "
            "serving process runs them itself (`gateway run`, each process of `gateway serve`), "
            "one process a day of those sharing the database, and 10 seconds after it starts "
            "when no process has taken the latest run due (today's once this time has passed, "
            "else yesterday's): docs/operations.md, *The job engine*",
        ),
    )
    web_bind: str = field(
        default="127.0.0.1:8000",
        metadata=setting(
            "WEB_BIND",
            "`127.0.0.1:8000`",
            "`gateway serve`: address of the production server: `HOST:PORT` (a host, "
            "`0.0.0.0` for every IPv4 interface, and a port from 1 to 65535), `[IPv6]:PORT` "
            "(e.g. `[::1]:8000`), `unix:PATH` (a Unix socket's path) or `fd://FD` (a socket "
            "already open as that file descriptor); any other value is refused at start",
        ),
    )
    web_workers: int = field(
        default=max(2, (3 * (os.cpu_count() or 1) + 1) // 2),
        metadata=setting(
            "WEB_WORKERS",
            "three for every two cores, at least 2",
            "`gateway serve`: gunicorn worker processes, 1 to 1,000",
        ),
    )
    web_threads: int = field(
        default=6,
        metadata=setting(
            "WEB_THREADS",
            "`6`",
            "`gateway serve`: threads per process (gthread); the single events a process's "
            "threads post at once are recorded in one transaction, so more threads per process "
            "make fewer, larger transactions (and lookups wait longer for the process's GIL); "
            "1 to 1,000",
        ),
    )
    web_timeout: int = field(
        default=30,
        metadata=setting(
            "WEB_TIMEOUT",
            "`30`",
            "`gateway serve`: seconds before a process whose main loop is stuck is restarted "
            "(gunicorn's timeout; a request thread waiting on the network does not count), "
            "and how long a stopping process may finish its requests; `0`: no restart, and 30 s "
            "to stop",
        ),
    )
    log_level: str = field(
        default="INFO",
        metadata=setting(
            "LOG_LEVEL",
            "`INFO`",
            "logs are JSON, one object per line, on stderr; the level of the gateway's own "
            "lines. gunicorn's (its start-up and one access line a request) and Werkzeug's (the "
            "same, of `gateway run`) keep their servers' level, INFO: an access log at any level",
        ),
    )
    verify_rate_limit: str = field(
        default="60/minute",
        metadata=setting(
            "VERIFY_RATE_LIMIT",
            "`60/minute`",
            "verification lookups (API and `/verify` page) per client address without a token; any "
            "rate the [`limits` library](https://limits.readthedocs.io/) reads, e.g. "
            "`100/hour;10/minute`",
        ),
    )
    verify_rate_limit_authenticated: str = field(
        default="600/minute",
        metadata=setting(
            "VERIFY_RATE_LIMIT_AUTHENTICATED",
            "`600/minute`",
            "verification lookups per API client with a `verifications:read` token (a batch counts "
            "each id)",
        ),
    )
    trusted_proxies: int = field(
        default=0,
        metadata=setting(
            "TRUSTED_PROXIES",
            "`0`",
            "how many reverse proxies in front of the gateway set `X-Forwarded-For`; the client "
            "address is taken from it (leave 0 when clients reach the gateway directly, so they "
            "cannot forge it)",
        ),
    )
    directory_base_url: str | None = field(
        default=None,
        metadata=setting(
            "DIRECTORY_BASE_URL",
            "none: no directory pushes",
            "the external verification directory; each public record is `PUT` to "
            "`{base}/records/{certification_id}`",
        ),
    )
    directory_token_url: str | None = field(
        default=None,
        metadata=setting(
            "DIRECTORY_TOKEN_URL",
            "none",
            "the directory's OAuth 2.0 token endpoint (client credentials, `client_secret_basic`)",
        ),
    )
    directory_client_id: str | None = field(
        default=None,
        metadata=setting(
            "DIRECTORY_CLIENT_ID",
            "none",
            "the gateway's client id at the directory",
        ),
    )
    directory_client_secret: str | None = field(
        default=None,
        repr=False,
        metadata=setting(
            "DIRECTORY_CLIENT_SECRET",
            "none",
            "its client secret",
        ),
    )
    delivery_timeout_seconds: int = field(
        default=10,
        metadata=setting(
            "DELIVERY_TIMEOUT_SECONDS",
            "`10`",
            "read timeout of each webhook POST and directory call; a webhook POST is cut off "
            "after this plus 3 s in all, however slowly its receiver answers",
        ),
    )
    delivery_retry_base_seconds: int = field(
        default=30,
        metadata=setting(
            "DELIVERY_RETRY_BASE_SECONDS",
            "`30`",
            "first retry delay of a failed delivery; doubles each attempt (jittered, capped at 3 "
            "h; never below the directory's `Retry-After`, honoured up to a day)",
        ),
    )
    delivery_retry_window_seconds: int = field(
        default=24 * 3600,
        metadata=setting(
            "DELIVERY_RETRY_WINDOW_SECONDS",
            "`86400`",
            "a delivery gets as many attempts as its longest waits fit in this window (16 in a day "
            "by default), then fails",
        ),
    )
    webhook_allow_private_targets: bool = field(
        default=False,
        metadata=setting(
            "WEBHOOK_ALLOW_PRIVATE_TARGETS",
            "`false`",
            "let webhooks go to loopback, private and link-local addresses (tests, closed "
            "networks); refused otherwise",
        ),
    )
    webhook_allow_plain_http: bool = field(
        default=False,
        metadata=setting(
            "WEBHOOK_ALLOW_PLAIN_HTTP",
            "`false`",
            "let webhooks go to plain `http://` URLs (development and tests only: a delivery "
            "carries a member's name and status and its signature, which anyone on the way could "
            "read and replay). Off, an `http://` URL is refused at registration (`422` naming "
            "`url`), and each delivery to a subscription stored with one fails with an error "
            "saying so (logged, in its delivery log and `gateway jobs failed`; a WARNING at start "
            "counts them) until it is registered again with `https://`",
        ),
    )
    subscription_rate_limit: str = field(
        default="200/day",
        metadata=setting(
            "SUBSCRIPTION_RATE_LIMIT",
            "`200/day`",
            "webhook subscriptions one API client may create (`POST /v1/subscriptions`; 429 with "
            "`Retry-After` beyond); a request refused for any reason counts for nothing",
        ),
    )
    subscription_watch_rate_limit: str = field(
        default="600/hour",
        metadata=setting(
            "SUBSCRIPTION_WATCH_RATE_LIMIT",
            "`600/hour`",
            "changes to the certification ids its subscriptions watch one API client may make "
            "(`POST` and `DELETE /v1/subscriptions/{id}/certifications`, one allowance for both, "
            "a request counting once however many ids it names; 429 with `Retry-After` beyond); "
            "a request refused for any reason counts for nothing",
        ),
    )
    subscription_retention_days: int = field(
        default=90,
        metadata=setting(
            "SUBSCRIPTION_RETENTION_DAYS",
            "`90`",
            "how long a deleted webhook subscription's record, delivery log and advance notices "
            "are kept after its deletion, and a finished delivery to a live subscription or the "
            "directory after it finished (the last delivered and the last tried of each "
            "certification stay); the daily sweep then deletes them",
        ),
    )
    public_base_url: str | None = field(
        default=None,
        metadata=setting(
            "PUBLIC_BASE_URL",
            "none",
            "the gateway's public address, e.g. `https://verify.example.org`: links to the public "
            "verification page (badge evidence), the issuer of signed receipts and credentials",
        ),
    )
    time_zone: str = field(
        default="UTC",
        metadata=setting(
            "TIME_ZONE",
            "`UTC`",
            "the certifying body's IANA time zone (e.g. `America/Chicago`): the calendar day of a "
            "badge's `issued_at` and, with `BADGE_EXPIRES`, the end of the day its `expires_at` "
            "names (standings, lookups and credentials count days in UTC)",
        ),
    )
    issuer_name: str = field(
        default="Certifying body (ISSUER_NAME not set)",
        metadata=setting(
            "ISSUER_NAME",
            "`Certifying body (ISSUER_NAME not set)`",
            "the certifying body's name, shown as who vouches for every verification",
        ),
    )
    issuer_url: str | None = field(
        default=None,
        metadata=setting(
            "ISSUER_URL",
            "none",
            "the certifying body's public web site",
        ),
    )
    issuer_contact: str | None = field(
        default=None,
        metadata=setting(
            "ISSUER_CONTACT",
            "none",
            "where employers and members ask about a certification: an e-mail address (a "
            "`mailto:` before it is dropped) or an absolute `http(s)` URL; anything else is "
            "refused at start. An e-mail address is also the Open Badges issuer profile's `email`",
        ),
    )
    issuer_logo: str | None = field(
        default=None,
        metadata=setting(
            "ISSUER_LOGO",
            "none",
            "the certifying body's logo: a file name in the instance folder (PNG, JPEG or SVG)",
        ),
    )
    signing_keys_file: str | None = field(  # unset: OWN_KEYS_FILE in the instance folder
        default=None,
        metadata=setting(
            "SIGNING_KEYS_FILE",
            "`signing-keys.json` in the instance folder, created when missing (keys of this "
            "machine's own; on PostgreSQL the processes that sign, `gateway serve`, `gateway run` "
            "and the `gateway keys` commands, log a WARNING at start saying so, the workers and "
            "the other commands none)",
            "the JWK set (private keys) that signs receipts (ES256: its first P-256 key) and Open "
            "Badges credentials (RS256: its first RSA key, else that P-256 key); all are "
            "published. At least one is a P-256 key; each has a `kid` of its own and is a P-256 "
            "private key (`kty` EC, `crv` P-256, `alg` ES256 or "
            "none) or an RSA private key of 2048 to 4096 bits (`kty` RSA, `alg` RS256 or none). "
            "A file it names that does not exist is created at start with a new key of each kind "
            "and a WARNING (give every web machine that file), unless the database records "
            "receipts or credentials: the gateway then does not start until the file is back, or "
            "`gateway keys new-set` makes a new set (a SIGHUP of `gateway serve` onto a missing "
            "file keeps the keys it serves)",
        ),
    )
    receipt_retention_days: int = field(
        default=2190,
        metadata=setting(
            "RECEIPT_RETENTION_DAYS",
            "`2190` (6 years)",
            "how long the record of each signed verification receipt is kept; older ones are "
            "pruned by the daily sweep (or `gateway receipts prune`). A receipt itself stays "
            "verifiable for as long as its key is published",
        ),
    )
    job_retention_days: int = field(
        default=365,
        metadata=setting(
            "JOB_RETENTION_DAYS",
            "`365`",
            "how long a job that ended `done` (or `superseded`) is kept after it ended, listed "
            "among its event's jobs (`GET /v1/events/{event_id}`); the daily sweep then deletes "
            "it (a failed job stays until it is retried)",
        ),
    )
    malformed_event_retention_days: int = field(
        default=90,
        metadata=setting(
            "MALFORMED_EVENT_RETENTION_DAYS",
            "`90`",
            "how long the latest malformed attempt at an event id (a `422` naming fields) is "
            "kept for `GET /v1/events/{event_id}`; the daily sweep then deletes it",
        ),
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            database_connect_timeout_seconds=_int(
                env, "DATABASE_CONNECT_TIMEOUT_SECONDS", cls.database_connect_timeout_seconds
            ),
            database_pool_timeout_seconds=_int(
                env, "DATABASE_POOL_TIMEOUT_SECONDS", cls.database_pool_timeout_seconds
            ),
            database_statement_timeout_ms=_int(
                env, "DATABASE_STATEMENT_TIMEOUT_MS", cls.database_statement_timeout_ms
            ),
            instance_path=path_setting(env, "INSTANCE_PATH"),
            redis_url=env.get("REDIS_URL") or None,
            policy_file=env.get("POLICY_FILE") or None,
            credly_api_base=_base_url(env, "CREDLY_API_BASE"),
            credly_organization_id=_token(env, "CREDLY_ORGANIZATION_ID"),
            credly_auth_token=_token(env, "CREDLY_AUTH_TOKEN", secret=True),
            credly_token_expires_on=_date(env, "CREDLY_TOKEN_EXPIRES_ON"),
            credly_badge_templates=_templates(env.get("CREDLY_BADGE_TEMPLATES")),
            credly_timeout_seconds=_int(env, "CREDLY_TIMEOUT_SECONDS", cls.credly_timeout_seconds),
            credly_max_connections=_int(env, "CREDLY_MAX_CONNECTIONS", cls.credly_max_connections),
            credly_pause_seconds=_int(env, "CREDLY_PAUSE_SECONDS", cls.credly_pause_seconds),
            credly_revoked_is_duplicate=_flag(env, "CREDLY_REVOKED_IS_DUPLICATE"),
            badge_expires=_flag(env, "BADGE_EXPIRES"),
            jobs_synchronous=_flag(env, "JOBS_SYNCHRONOUS"),
            web_bind=env.get("WEB_BIND") or cls.web_bind,
            web_workers=_int(env, "WEB_WORKERS", cls.web_workers),
            web_threads=_int(env, "WEB_THREADS", cls.web_threads),
            web_timeout=_int(env, "WEB_TIMEOUT", cls.web_timeout),
            sweep_time=_time_of_day(env.get("SWEEP_TIME") or cls.sweep_time),
            token_expires_in=_int(env, "OAUTH_TOKEN_EXPIRES_IN", cls.token_expires_in),
            token_failure_rate_limit=(
                env.get("OAUTH_FAILURE_RATE_LIMIT") or cls.token_failure_rate_limit
            ),
            queue_name=(env.get("QUEUE_NAME") or "").strip() or cls.queue_name,
            job_retry_base_seconds=_int(env, "JOB_RETRY_BASE_SECONDS", cls.job_retry_base_seconds),
            job_timeout_seconds=_int(env, "JOB_TIMEOUT_SECONDS", cls.job_timeout_seconds),
            job_concurrency=_int(env, "JOB_CONCURRENCY", cls.job_concurrency),
            relay_interval_seconds=_int(env, "RELAY_INTERVAL_SECONDS", cls.relay_interval_seconds),
            worker_metrics_port=_int(env, "WORKER_METRICS_PORT", cls.worker_metrics_port),
            log_level=_log_level(env.get("LOG_LEVEL") or cls.log_level),
            credly_webhook_rate_limit=(
                env.get("CREDLY_WEBHOOK_RATE_LIMIT") or cls.credly_webhook_rate_limit
            ),
            credly_webhook_checks=env.get("CREDLY_WEBHOOK_CHECKS") or cls.credly_webhook_checks,
            credly_webhook_forged_checks=(
                env.get("CREDLY_WEBHOOK_FORGED_CHECKS") or cls.credly_webhook_forged_checks
            ),
            credly_webhook_refused=env.get("CREDLY_WEBHOOK_REFUSED") or cls.credly_webhook_refused,
            verify_rate_limit=env.get("VERIFY_RATE_LIMIT") or cls.verify_rate_limit,
            verify_rate_limit_authenticated=(
                env.get("VERIFY_RATE_LIMIT_AUTHENTICATED") or cls.verify_rate_limit_authenticated
            ),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", cls.trusted_proxies),
            directory_base_url=_base_url(env, "DIRECTORY_BASE_URL"),
            directory_token_url=_base_url(env, "DIRECTORY_TOKEN_URL", base=False),
            directory_client_id=_token(env, "DIRECTORY_CLIENT_ID"),
            directory_client_secret=_token(env, "DIRECTORY_CLIENT_SECRET", secret=True),
            delivery_timeout_seconds=_int(
                env, "DELIVERY_TIMEOUT_SECONDS", cls.delivery_timeout_seconds
            ),
            delivery_retry_base_seconds=_int(
                env, "DELIVERY_RETRY_BASE_SECONDS", cls.delivery_retry_base_seconds
            ),
            delivery_retry_window_seconds=_int(
                env, "DELIVERY_RETRY_WINDOW_SECONDS", cls.delivery_retry_window_seconds
            ),
            webhook_allow_private_targets=_flag(env, "WEBHOOK_ALLOW_PRIVATE_TARGETS"),
            webhook_allow_plain_http=_flag(env, "WEBHOOK_ALLOW_PLAIN_HTTP"),
            subscription_rate_limit=(
                env.get("SUBSCRIPTION_RATE_LIMIT") or cls.subscription_rate_limit
            ),
            subscription_watch_rate_limit=(
                env.get("SUBSCRIPTION_WATCH_RATE_LIMIT") or cls.subscription_watch_rate_limit
            ),
            subscription_retention_days=_int(
                env, "SUBSCRIPTION_RETENTION_DAYS", cls.subscription_retention_days
            ),
            public_base_url=_base_url(env, "PUBLIC_BASE_URL"),
            time_zone=_zone(env.get("TIME_ZONE") or cls.time_zone),
            issuer_name=(env.get("ISSUER_NAME") or "").strip() or cls.issuer_name,
            issuer_url=_base_url(env, "ISSUER_URL"),
            issuer_contact=_contact(env, "ISSUER_CONTACT"),
            issuer_logo=env.get("ISSUER_LOGO") or None,
            signing_keys_file=path_setting(env, "SIGNING_KEYS_FILE"),
            receipt_retention_days=_int(env, "RECEIPT_RETENTION_DAYS", cls.receipt_retention_days),
            job_retention_days=_int(env, "JOB_RETENTION_DAYS", cls.job_retention_days),
            malformed_event_retention_days=_int(
                env, "MALFORMED_EVENT_RETENTION_DAYS", cls.malformed_event_retention_days
            ),
        )

    def __post_init__(self) -> None:
        credly = {
            "CREDLY_API_BASE": self.credly_api_base,
            "CREDLY_ORGANIZATION_ID": self.credly_organization_id,
            "CREDLY_AUTH_TOKEN": self.credly_auth_token,
        }
        missing = [name for name, value in credly.items() if not value]
        if 0 < len(missing) < len(credly):
            raise ConfigError(
                f"Credly is only partly configured: set {', '.join(missing)} too "
                "(or none of the three for the dry-run backend)"
            )
        for name in (
            "verify_rate_limit",
            "verify_rate_limit_authenticated",
            "credly_webhook_rate_limit",
            "credly_webhook_checks",
            "credly_webhook_forged_checks",
            "credly_webhook_refused",
            "token_failure_rate_limit",
            "subscription_rate_limit",
            "subscription_watch_rate_limit",
        ):
            _check_rate(self.__dataclass_fields__[name].metadata["env"], getattr(self, name))
        for name, least in _LEAST.items():
            value, most = getattr(self, name), _MOST.get(name, MAX_WHOLE_NUMBER)
            if not least <= value <= most:
                setting_name = self.__dataclass_fields__[name].metadata["env"]
                raise ConfigError(f"{setting_name} must be from {least} to {most}, got {value}")
        if not 0 <= self.worker_metrics_port <= 65535:
            raise ConfigError(
                f"WORKER_METRICS_PORT must be a TCP port (0: none), got {self.worker_metrics_port}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        _check_database_url(self.database_url)
        _check_redis_url(self.redis_url)
        _check_bind(self.web_bind)
        _check_folder("INSTANCE_PATH", self.instance_path)
        _all_or_none(
            "The verification directory",
            {
                "DIRECTORY_BASE_URL": self.directory_base_url,
                "DIRECTORY_TOKEN_URL": self.directory_token_url,
                "DIRECTORY_CLIENT_ID": self.directory_client_id,
                "DIRECTORY_CLIENT_SECRET": self.directory_client_secret,
            },
        )

    @property
    def credly_dry_run(self) -> bool:
        """True when Credly calls go to the dry-run backend (any Credly setting missing)."""
        return not (self.credly_api_base and self.credly_organization_id and self.credly_auth_token)

    def untemplated(self, credentials: Iterable[str]) -> list[str]:
        """The `credentials` (of the policy table) whose badges live Credly cannot issue, as
        CREDLY_BADGE_TEMPLATES gives them no template; none on the dry-run backend, which has
        a placeholder for each."""
        if self.credly_dry_run:
            return []
        return sorted(c for c in credentials if not self.credly_badge_templates.get(c))

    @property
    def jobs_in_process(self) -> bool:
        """True when there is no Redis: jobs run inside the web process."""
        return self.redis_url is None

    def with_instance(self, instance_path: str | Path) -> Settings:
        """Fill the instance folder, and the embedded default database and signing key paths in
        it."""
        folder = Path(instance_path)
        return replace(
            self,
            instance_path=str(folder),
            database_url=self.database_url or f"sqlite:///{folder / 'gateway.sqlite3'}",
            signing_keys_file=self.signing_keys_file or str(folder / OWN_KEYS_FILE),
        )

    def mode_line(self) -> str:
        """One log line saying how the service runs: the embedded default (SQLite, jobs in this
        process, dry-run Credly), production (PostgreSQL, Redis, Credly), or a mix naming what is
        not production's."""
        sqlite = (self.database_url or "sqlite").startswith("sqlite")
        parts = ", ".join(
            (
                f"database={'SQLite' if sqlite else 'PostgreSQL'} {_redact(self.database_url)}",
                "jobs=in-process"
                if self.jobs_in_process
                else f"jobs=Redis {_redact(self.redis_url)}",
                "credly=dry-run" if self.credly_dry_run else f"credly={self.credly_api_base}",
            )
        )
        embedded = {"SQLite": sqlite, "in-process jobs": self.jobs_in_process}
        embedded["dry-run Credly"] = self.credly_dry_run
        if all(embedded.values()):
            return f"EMBEDDED DEFAULT MODE (not for production): {parts}"
        if not any(embedded.values()):
            return f"{PRODUCTION_MODE}: {parts}"
        unlike = " and ".join(name for name, on in embedded.items() if on)
        return f"mixed mode ({unlike}, not for production): {parts}"


#: The least value of each whole-number setting (the rest are checked on their own).
_LEAST = {
    "database_connect_timeout_seconds": 2,
    "database_pool_timeout_seconds": 1,
    "database_statement_timeout_ms": 0,  # 0: no limit
    "credly_timeout_seconds": 1,
    "credly_max_connections": 1,
    "credly_pause_seconds": 1,
    "web_workers": 1,
    "web_threads": 1,
    "web_timeout": 0,  # 0: gunicorn's "no timeout"
    "token_expires_in": 1,
    "job_retry_base_seconds": 1,
    "job_timeout_seconds": 1,
    "job_concurrency": 1,
    "relay_interval_seconds": 1,
    "trusted_proxies": 0,
    "delivery_timeout_seconds": 1,
    "delivery_retry_base_seconds": 1,
    "delivery_retry_window_seconds": 1,
    "receipt_retention_days": 1,
    "subscription_retention_days": 1,
    "job_retention_days": 1,
    "malformed_event_retention_days": 1,
}
#: The greatest value of a whole-number setting: what a 32-bit column or counter holds.
MAX_WHOLE_NUMBER = 2**31 - 1
#: The signing keys of a machine's own, in its instance folder, where SIGNING_KEYS_FILE is unset.
OWN_KEYS_FILE = "signing-keys.json"
#: Tighter bounds where a larger value would overflow a date, or start more processes, threads
#: or connections than a machine has room for (a typo of a digit too many).
_MOST = {
    "receipt_retention_days": 36_500,
    "subscription_retention_days": 36_500,
    "job_retention_days": 36_500,
    "malformed_event_retention_days": 36_500,
    "web_workers": 1_000,
    "web_threads": 1_000,
    "job_concurrency": 1_000,
    "credly_max_connections": 1_000,
}
#: How `Settings.mode_line` begins for production (PostgreSQL, Redis, Credly).
PRODUCTION_MODE = "production mode"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    """The level in Python's own spelling (WARN, as Python and gunicorn take it, is WARNING)."""
    level = raw.strip().upper()
    return "WARNING" if level == "WARN" else level


#: The DATABASE_URL schemes the gateway speaks: PostgreSQL through psycopg 3, or SQLite.
DATABASE_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres", "sqlite", "sqlite+pysqlite")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def _check_database_url(url: str | None) -> None:
    """Refuse a DATABASE_URL that SQLAlchemy cannot read, of another database or driver, with a
    port out of range, or whose SQLite file would be in something that is not a folder."""
    if url is None:
        return
    shown = _redact(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(
            f"DATABASE_URL must be a URL such as postgresql://user:pass@host:5432/db (a port "
            f"from 1 to 65535), got {shown!r}"
        ) from exc
    if parsed.drivername not in DATABASE_SCHEMES:
        if parsed.drivername.partition("+")[0] in ("postgresql", "postgres"):
            raise ConfigError(
                "DATABASE_URL: the gateway speaks to PostgreSQL with psycopg 3: use postgresql:// "
                f"or postgresql+psycopg://, got {shown!r}"
            )
        allowed = ", ".join(f"{s}://" for s in ("postgresql", "sqlite"))
        raise ConfigError(f"DATABASE_URL must be a URL starting {allowed}, got {shown!r}")
    _check_port("DATABASE_URL", parsed.port, shown)
    if parsed.drivername.startswith("postgres"):
        options = {name: str(value) for name, value in parsed.query.items()}
        try:  # libpq's own check of the connection options (a typo such as sslmod=)
            make_conninfo("", **options)
        except psycopg.ProgrammingError as exc:
            reason = str(exc).strip()
            raise ConfigError(f"DATABASE_URL: {reason}, got {shown!r}") from exc
    path = parsed.database or ":memory:"
    if parsed.drivername.startswith("sqlite") and not path.startswith((":memory:", "file:")):
        folder = os.path.dirname(os.path.abspath(path))
        _check_folder("DATABASE_URL", folder, "the SQLite file's folder ")


def _check_redis_url(url: str | None) -> None:
    """Refuse a REDIS_URL that redis-py cannot read, with a port out of range, or whose database
    number (its path or `db` query) is not a whole number, which redis-py would take for 0."""
    if url is None:
        return
    shown = _redact(url)
    parts = _split("REDIS_URL", url, shown)
    if parts.scheme not in REDIS_SCHEMES or not url.lower().startswith(f"{parts.scheme}://"):
        allowed = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        raise ConfigError(f"REDIS_URL must be a URL starting {allowed}, got {shown!r}")
    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL is not a Redis URL ({exc}), got {shown!r}") from exc
    _check_url_port("REDIS_URL", parts, shown)
    numbers = parse_qs(parts.query).get("db", [])[:1]  # redis-py reads the first
    if parts.scheme != "unix":  # (a unix:// path is the socket's)
        numbers += [parts.path.strip("/") or "0"]  # none: 0
    if not all(re.fullmatch(r"[0-9]{1,10}", n) and int(n) <= MAX_WHOLE_NUMBER for n in numbers):
        raise ConfigError(
            f"REDIS_URL's database must be a number 0 or more (redis://host:6379/0), got {shown!r}"
        )
    unknown = sorted(set(parse_qs(parts.query)) - _redis_options(parts.scheme))
    if unknown:
        raise ConfigError(
            f"REDIS_URL: redis-py takes no option {', '.join(unknown)}, got {shown!r}"
        )


def _redis_options(scheme: str) -> set[str]:
    """The query options redis-py takes in a URL of `scheme`: those it parses, and the keywords
    of the connection (and connection pool) a URL of that scheme makes."""
    connection = {
        "rediss": redis_connection.SSLConnection,
        "unix": redis_connection.UnixDomainSocketConnection,
    }.get(scheme, redis_connection.Connection)
    names = set(redis_connection.URL_QUERY_ARGUMENT_PARSERS)
    for owner in (*connection.__mro__, redis_connection.ConnectionPool):
        init = owner.__dict__.get("__init__")
        if init is not None:
            names.update(
                name
                for name, parameter in inspect.signature(init).parameters.items()
                if parameter.kind is parameter.KEYWORD_ONLY
                or parameter.kind is parameter.POSITIONAL_OR_KEYWORD
            )
    return names - {"self"}


def _check_port(name: str, port: int | None, shown: str) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{name}'s port must be from 1 to 65535, got {port} in {shown!r}")


def _check_url_port(name: str, parts: SplitResult, shown: str) -> None:
    """Refuse a URL whose port is not a number from 1 to 65535 (none: the scheme's)."""
    try:
        port = parts.port
    except ValueError as exc:  # not a number, or past 65535
        raise ConfigError(f"{name}'s port must be from 1 to 65535, got {shown!r}") from exc
    _check_port(name, port, shown)


#: WEB_BIND's TCP forms: HOST:PORT, [IPv6]:PORT (gunicorn reads a bare HOST as port 8000, an
#: empty one as every interface).
_TCP_BIND = re.compile(r"(?:[A-Za-z0-9._-]+|\[([0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]):([0-9]+)")


def _is_ipv6(address: str) -> bool:
    """Whether `address` (the inside of `[...]`, a zone `%eth0` allowed) is an IPv6 address."""
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _check_bind(bind: str) -> None:
    """Refuse a WEB_BIND other than HOST:PORT, [IPv6]:PORT, unix:PATH or fd://FD, which gunicorn
    would take for another address, or fail on when it starts."""
    if bind.startswith("unix:"):
        if not parse_address(bind).strip():  # as gunicorn reads it (unix:PATH or unix://PATH)
            raise ConfigError(
                f"WEB_BIND: unix: must be followed by the socket's path, got {bind!r}"
            )
        return
    if re.fullmatch(r"fd://[0-9]+", bind):
        return
    tcp = _TCP_BIND.fullmatch(bind)
    if tcp is None or (tcp[1] is not None and not _is_ipv6(tcp[1])):
        raise ConfigError(
            f"WEB_BIND must be HOST:PORT ([IPv6]:PORT), unix:PATH or fd://FD, got {bind!r}"
        )
    if not 1 <= int(tcp[2]) <= 65535:
        raise ConfigError(f"WEB_BIND's port must be from 1 to 65535, got {bind!r}")


def _check_folder(name: str, path: str | None, what: str = "") -> None:
    """Refuse a folder path that is something else, or that something else stands in the way of
    (a file where a folder above it would be made)."""
    if path is None:
        return
    found = path
    while not os.path.exists(found) and os.path.dirname(found) != found:
        found = os.path.dirname(found)
    if os.path.exists(found) and not os.path.isdir(found):
        why = "" if found == path else f" ({found} is not one)"
        raise ConfigError(f"{name}: {what}{path} is not a folder and cannot be made one{why}")


def _all_or_none(what: str, values: dict[str, str | None]) -> None:
    """Refuse a group of settings of which only some are set."""
    missing = [name for name, value in values.items() if not value]
    if 0 < len(missing) < len(values):
        raise ConfigError(
            f"{what} is only partly configured: set {', '.join(missing)} too (or none of them)"
        )


def _check_rate(name: str, value: str) -> None:
    """Refuse a rate limit that `limits` cannot parse (e.g. `60/minute`, `1000 per hour`), that
    allows no request or whose window is 0."""
    try:
        limits = parse_many(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a rate limit such as 60/minute, got {value!r}") from exc
    if any(limit.amount < 1 for limit in limits):
        raise ConfigError(f"{name} must allow at least 1 request, got {value!r}")
    # `limits` reads a window of 0 (`10/0 seconds`) as 1: another rate than the one written
    windows = (SINGLE_EXPR.match(item) for item in SEPARATORS.split(value))
    if any(window and window[3] is not None and int(window[3]) < 1 for window in windows):
        raise ConfigError(
            f"{name} must count over a window of at least 1 (10/5 minutes), got {value!r}"
        )


def _redact(url: str | None) -> str:
    """A URL without its password, for logs."""
    if not url:
        return "none"
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
