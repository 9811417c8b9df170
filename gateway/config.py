"""Every setting of the gateway, read from the environment once, with the embedded defaults."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _date(env: Mapping[str, str], name: str) -> date | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a date YYYY-MM-DD, got {raw!r}") from exc


def _time_of_day(raw: str) -> str:
    hours, _, minutes = raw.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ConfigError(f"SWEEP_TIME must be HH:MM (UTC), got {raw!r}")
    return f"{int(hours):02d}:{int(minutes):02d}"


def _base_url(env: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) URL without its trailing slash, or None when unset."""
    raw = (env.get(name) or "").strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    return raw


def _zone(raw: str) -> str:
    """An IANA time zone name (e.g. America/Chicago)."""
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"TIME_ZONE must be an IANA time zone such as UTC, got {raw!r}") from exc
    return raw


def _path(raw: str | None) -> str | None:
    return os.path.abspath(raw) if raw else None


def _templates(raw: str | None) -> dict[str, str]:
    """Parse the credential -> Credly badge template map: JSON object or `RMA=uuid,RPT=uuid`."""
    if not raw:
        return {}
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CREDLY_BADGE_TEMPLATES is not valid JSON: {exc}") from exc
        return {str(k): str(v) for k, v in parsed.items()}
    pairs = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        code, sep, template = item.partition("=")
        if not sep or not code.strip() or not template.strip():
            raise ConfigError(f"CREDLY_BADGE_TEMPLATES item {item!r} is not CODE=TEMPLATE_ID")
        pairs[code.strip()] = template.strip()
    return pairs


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration; `from_env` is the only place that reads the environment."""

    database_url: str | None = None
    instance_path: str | None = None
    redis_url: str | None = None
    secret_key: str = "embedded-default-not-secret"
    policy_file: str | None = None
    credly_api_base: str | None = None
    credly_organization_id: str | None = None
    credly_auth_token: str | None = field(default=None, repr=False)
    credly_token_expires_on: date | None = None
    credly_badge_templates: dict[str, str] = field(default_factory=dict)
    credly_timeout_seconds: int = 10
    badge_expires: bool = False
    token_expires_in: int = 3600
    queue_name: str = "gateway"
    job_retry_base_seconds: int = 5
    job_timeout_seconds: int = 120
    job_concurrency: int = 8
    relay_interval_seconds: int = 5
    jobs_synchronous: bool = False
    sweep_time: str = "02:30"
    web_bind: str = "127.0.0.1:8000"
    web_workers: int = 2 * (os.cpu_count() or 1) + 1
    web_threads: int = 4
    web_timeout: int = 30
    log_level: str = "INFO"
    verify_rate_limit: str = "60/minute"
    verify_rate_limit_authenticated: str = "600/minute"
    trusted_proxies: int = 0
    directory_base_url: str | None = None
    directory_token_url: str | None = None
    directory_client_id: str | None = None
    directory_client_secret: str | None = field(default=None, repr=False)
    delivery_timeout_seconds: int = 10
    delivery_retry_base_seconds: int = 30
    delivery_retry_window_seconds: int = 24 * 3600
    webhook_allow_private_targets: bool = False
    public_base_url: str | None = None
    time_zone: str = "UTC"
    issuer_name: str = "Certifying body (ISSUER_NAME not set)"
    issuer_url: str | None = None
    issuer_contact: str | None = None
    issuer_logo: str | None = None
    signing_keys_file: str | None = None
    receipt_retention_days: int = 2190

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            instance_path=_path(env.get("INSTANCE_PATH")),
            redis_url=env.get("REDIS_URL") or None,
            secret_key=env.get("SECRET_KEY") or cls.secret_key,
            policy_file=env.get("POLICY_FILE") or None,
            credly_api_base=(env.get("CREDLY_API_BASE") or "").rstrip("/") or None,
            credly_organization_id=env.get("CREDLY_ORGANIZATION_ID") or None,
            credly_auth_token=env.get("CREDLY_AUTH_TOKEN") or None,
            credly_token_expires_on=_date(env, "CREDLY_TOKEN_EXPIRES_ON"),
            credly_badge_templates=_templates(env.get("CREDLY_BADGE_TEMPLATES")),
            credly_timeout_seconds=_int(env, "CREDLY_TIMEOUT_SECONDS", cls.credly_timeout_seconds),
            badge_expires=_flag(env.get("BADGE_EXPIRES")),
            jobs_synchronous=_flag(env.get("JOBS_SYNCHRONOUS")),
            web_bind=env.get("WEB_BIND") or cls.web_bind,
            web_workers=_int(env, "WEB_WORKERS", cls.web_workers),
            web_threads=_int(env, "WEB_THREADS", cls.web_threads),
            web_timeout=_int(env, "WEB_TIMEOUT", cls.web_timeout),
            sweep_time=_time_of_day(env.get("SWEEP_TIME") or cls.sweep_time),
            token_expires_in=_int(env, "OAUTH_TOKEN_EXPIRES_IN", cls.token_expires_in),
            queue_name=env.get("QUEUE_NAME") or cls.queue_name,
            job_retry_base_seconds=_int(env, "JOB_RETRY_BASE_SECONDS", cls.job_retry_base_seconds),
            job_timeout_seconds=_int(env, "JOB_TIMEOUT_SECONDS", cls.job_timeout_seconds),
            job_concurrency=_int(env, "JOB_CONCURRENCY", cls.job_concurrency),
            relay_interval_seconds=_int(env, "RELAY_INTERVAL_SECONDS", cls.relay_interval_seconds),
            log_level=(env.get("LOG_LEVEL") or cls.log_level).upper(),
            verify_rate_limit=env.get("VERIFY_RATE_LIMIT") or cls.verify_rate_limit,
            verify_rate_limit_authenticated=(
                env.get("VERIFY_RATE_LIMIT_AUTHENTICATED") or cls.verify_rate_limit_authenticated
            ),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", cls.trusted_proxies),
            directory_base_url=(env.get("DIRECTORY_BASE_URL") or "").rstrip("/") or None,
            directory_token_url=env.get("DIRECTORY_TOKEN_URL") or None,
            directory_client_id=env.get("DIRECTORY_CLIENT_ID") or None,
            directory_client_secret=env.get("DIRECTORY_CLIENT_SECRET") or None,
            delivery_timeout_seconds=_int(
                env, "DELIVERY_TIMEOUT_SECONDS", cls.delivery_timeout_seconds
            ),
            delivery_retry_base_seconds=_int(
                env, "DELIVERY_RETRY_BASE_SECONDS", cls.delivery_retry_base_seconds
            ),
            delivery_retry_window_seconds=_int(
                env, "DELIVERY_RETRY_WINDOW_SECONDS", cls.delivery_retry_window_seconds
            ),
            webhook_allow_private_targets=_flag(env.get("WEBHOOK_ALLOW_PRIVATE_TARGETS")),
            public_base_url=_base_url(env, "PUBLIC_BASE_URL"),
            time_zone=_zone(env.get("TIME_ZONE") or cls.time_zone),
            issuer_name=env.get("ISSUER_NAME") or cls.issuer_name,
            issuer_url=_base_url(env, "ISSUER_URL"),
            issuer_contact=env.get("ISSUER_CONTACT") or None,
            issuer_logo=env.get("ISSUER_LOGO") or None,
            signing_keys_file=_path(env.get("SIGNING_KEYS_FILE")),
            receipt_retention_days=_int(env, "RECEIPT_RETENTION_DAYS", cls.receipt_retention_days),
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
        for name in ("verify_rate_limit", "verify_rate_limit_authenticated"):
            _check_rate(name.upper(), getattr(self, name))
        if self.delivery_retry_base_seconds < 1:
            raise ConfigError("DELIVERY_RETRY_BASE_SECONDS must be at least 1")
        if self.job_concurrency < 1:
            raise ConfigError("JOB_CONCURRENCY must be at least 1")
        if self.relay_interval_seconds < 1:
            raise ConfigError("RELAY_INTERVAL_SECONDS must be at least 1")
        if self.receipt_retention_days < 1:
            raise ConfigError("RECEIPT_RETENTION_DAYS must be at least 1")
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

    @property
    def jobs_in_process(self) -> bool:
        """True when there is no Redis: jobs run inside the web process."""
        return self.redis_url is None

    def with_instance(self, instance_path: str | Path) -> Settings:
        """Fill the embedded default database and signing key paths from the instance folder."""
        folder = Path(instance_path)
        return replace(
            self,
            database_url=self.database_url or f"sqlite:///{folder / 'gateway.sqlite3'}",
            signing_keys_file=self.signing_keys_file or str(folder / "signing-keys.json"),
        )

    def mode_line(self) -> str:
        """One log line saying how the service runs."""
        sqlite = (self.database_url or "sqlite").startswith("sqlite")
        if sqlite or self.jobs_in_process or self.credly_dry_run:
            parts = [
                f"database={_redact(self.database_url)}",
                "jobs=in-process" if self.jobs_in_process else "jobs=redis",
                "credly=dry-run" if self.credly_dry_run else f"credly={self.credly_api_base}",
            ]
            return "EMBEDDED DEFAULT MODE (not for production): " + ", ".join(parts)
        return (
            f"production mode: database={_redact(self.database_url)}, "
            f"redis={_redact(self.redis_url)}, "
            f"credly={'dry-run' if self.credly_dry_run else self.credly_api_base}"
        )


def _all_or_none(what: str, values: dict[str, str | None]) -> None:
    """Refuse a group of settings of which only some are set."""
    missing = [name for name, value in values.items() if not value]
    if 0 < len(missing) < len(values):
        raise ConfigError(
            f"{what} is only partly configured: set {', '.join(missing)} too (or none of them)"
        )


def _check_rate(name: str, value: str) -> None:
    """Refuse a rate limit that `limits` cannot parse (e.g. `60/minute`, `1000 per hour`)."""
    try:
        parse_many(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a rate limit such as 60/minute, got {value!r}") from exc


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
