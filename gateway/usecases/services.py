"""What a use case runs with (`Services`: settings, database, Redis, policy, signing keys, the
connectors and the job engine's `Wakeup`), built once per process for the web, the jobs and the
CLI, and the checks a process makes before it starts (schema migrated, policy covering the
certifications, signing keys not lost)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis
from sqlalchemy import exists, func, inspect, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from connectors.credly.backend import make_credly
from connectors.credly.service import BadgeService
from connectors.directory import Directory, make_directory
from connectors.employer_webhooks import WebhookSender
from gateway import rules
from gateway.platform import metrics
from gateway.platform.combining import Combiner
from gateway.platform.config import OWN_KEYS_FILE, ConfigError, Settings
from gateway.platform.signing import SigningKeys
from gateway.schemas.events import MAX_EVENTS
from gateway.store.db import Database, unavailable_reason
from gateway.store.models import CredentialStatusEntry, Receipt

log = logging.getLogger("gateway")

#: Where the dry-run Credly keeps its badges, in the instance folder.
DRY_RUN_BADGES = "credly-dry-run.sqlite3"


class Wakeup(Protocol):
    """What the gateway needs of the job engine: workers woken for committed outbox items."""

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        """Have these newly committed items worked soon; never raises for a broker outage."""

    def wake(self) -> None:
        """Have the due items worked soon; never raises for a broker outage."""


@dataclass(frozen=True)
class ServedFiles:
    """What a web process serves with from two files: the signing keys of SIGNING_KEYS_FILE and
    the credential policy table of POLICY_FILE."""

    keys: SigningKeys
    policy: rules.Policy


@dataclass
class Services:
    """Everything a request, a job or a command needs, built once per process."""

    settings: Settings
    db: Database
    redis: redis.Redis | None
    policy: rules.Policy
    credly: BadgeService
    webhooks: WebhookSender
    directory: Directory | None = None
    dispatcher: Wakeup | None = None
    _keys: SigningKeys | None = field(default=None, repr=False)
    #: The single events of concurrent requests, recorded together (`intake.submit_event`).
    single_events: Combiner[Any, Any] = field(
        default_factory=lambda: Combiner(MAX_EVENTS), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.db.on_commit = self._wake  # the unit of work: a commit wakes the workers it needs

    def _wake(self, outbox_ids: list[int]) -> None:
        if self.dispatcher is not None:  # else the relay wakes a worker for them
            self.dispatcher.dispatch(outbox_ids)

    @property
    def keys(self) -> SigningKeys:
        """The signing key set (SIGNING_KEYS_FILE), read on first use; created if missing while
        the database records nothing signed (`check_keys_not_lost`)."""
        if self._keys is None:
            if not self.settings.signing_keys_file:
                raise RuntimeError("SIGNING_KEYS_FILE must be set to sign or verify")
            check_keys_not_lost(self.db, self.settings)
            self._keys = signing_keys(self.settings.signing_keys_file)
        return self._keys

    @classmethod
    def build(cls, settings: Settings, files: ServedFiles | None = None) -> Services:
        """Connect to what `settings` names (nothing is contacted until first use); with the keys
        and policy table of `files`, else of the files the settings name."""
        if not settings.database_url:
            raise ValueError("database_url must be resolved before building services")
        return cls(
            settings=settings,
            db=Database(
                settings.database_url,
                connect_timeout=settings.database_connect_timeout_seconds,
                pool_timeout=settings.database_pool_timeout_seconds,
                statement_timeout_ms=settings.database_statement_timeout_ms,
            ),
            redis=redis_client(settings),
            policy=files.policy if files else policy_table(settings),
            credly=make_credly(
                base_url=settings.credly_api_base,
                organization_id=settings.credly_organization_id,
                auth_token=settings.credly_auth_token,
                timeout=(3.05, settings.credly_timeout_seconds),
                max_connections=settings.credly_max_connections,
                on_request=metrics.observe_credly,
                dry_run_file=_in_instance(settings, DRY_RUN_BADGES),
            ),
            webhooks=WebhookSender(
                timeout=(3.05, settings.delivery_timeout_seconds),
                allow_private=settings.webhook_allow_private_targets,
                allow_http=settings.webhook_allow_plain_http,
            ),
            directory=make_directory(
                settings.directory_base_url,
                settings.directory_token_url,
                settings.directory_client_id,
                settings.directory_client_secret,
                timeout=(3.05, settings.delivery_timeout_seconds),
            ),
            _keys=files.keys if files else None,
        )


def redis_client(settings: Settings) -> redis.Redis | None:
    """The client of REDIS_URL, None without it; it connects on first use."""
    if not settings.redis_url:
        return None
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)


def check_redis_database(client: redis.Redis | None) -> None:
    """Refuse, with a ConfigError in one line, a Redis that answers but refuses what REDIS_URL
    asks of it: a database number the server does not have (`redis://host:6379/99` on a server
    of 16), which every use of Redis would then fail on. A Redis that does not answer (down, or
    slow beyond the client's 2 s) is let be: events are still accepted while it is away, and the
    commands that need it say so when they do."""
    if client is None:
        return
    try:
        client.ping()
    except redis.ResponseError as exc:
        number = client.connection_pool.connection_kwargs.get("db", 0)
        raise ConfigError(f"REDIS_URL: the Redis server refused database {number}: {exc}") from exc
    except redis.RedisError:
        return


def _in_instance(settings: Settings, name: str) -> Path | None:
    """The file `name` in the instance folder, once the app has set one."""
    return Path(settings.instance_path) / name if settings.instance_path else None


def signing_keys(path: str, create: bool = True) -> SigningKeys:
    """The key set of SIGNING_KEYS_FILE at `path`, created if missing (unless not to `create`);
    ConfigError naming the setting, in one line, when it is not a set of ES256 and RS256 signing
    keys, or is missing and not to be created."""
    try:
        return SigningKeys.load(path, create)
    except ValueError as exc:
        raise ConfigError(f"SIGNING_KEYS_FILE: {exc}") from exc


def policy_table(settings: Settings) -> rules.Policy:
    """The credential policy table of POLICY_FILE, which must hold every credential that
    CREDLY_BADGE_TEMPLATES names."""
    try:
        policy = rules.load_policy(settings.policy_file)
    except ValueError as exc:
        raise ConfigError(f"POLICY_FILE: {exc}") from exc
    unknown = sorted(set(settings.credly_badge_templates) - set(policy.credentials))
    if unknown:
        raise ConfigError(
            f"CREDLY_BADGE_TEMPLATES names {', '.join(unknown)}, not in the credential policy "
            f"table (credentials: {', '.join(sorted(policy.credentials))})"
        )
    return policy


def served_files(
    settings: Settings, *, database: bool = False, create_keys: bool = True
) -> ServedFiles:
    """The signing keys (SIGNING_KEYS_FILE; to `create_keys`, made if missing while the database
    records nothing signed) and the policy table (POLICY_FILE) as a web process reads them at
    start; with `database`, the table is also checked against the credentials certifications
    hold. ConfigError, in one line naming the setting, on an unfit file (the keys are read last: a
    missing key file is made only along a fit table)."""
    policy = policy_table(settings)
    path = settings.signing_keys_file
    to_make = create_keys and not os.path.exists(path)
    if database or to_make:
        db = database_for_checks(settings)
        try:
            if database:
                check_policy_covers_certifications(db, policy)
            if to_make:
                check_keys_not_lost(db, settings)
        finally:
            db.dispose()
    return ServedFiles(signing_keys(path, create_keys), policy)


def database_for_checks(settings: Settings) -> Database:
    """A handle on the database for the checks made before web processes start (dispose of it
    after): it connects within the settings' timeouts. ConfigError in one line when a SQLite
    database's file cannot be made or opened."""
    try:
        return Database(
            settings.database_url,
            connect_timeout=settings.database_connect_timeout_seconds,
            statement_timeout_ms=settings.database_statement_timeout_ms,
        )
    except OSError as exc:  # a SQLite database whose folder cannot be made or written
        raise ConfigError(
            f"the database {database_address(settings.database_url)} cannot be opened "
            f"({exc.strerror or exc}): see DATABASE_URL, or INSTANCE_PATH for the embedded "
            "default's"
        ) from exc


#: The credential codes certifications hold, one index probe each (a loose index scan).
_CREDENTIALS_IN_USE = text(
    "WITH RECURSIVE used(code) AS ("
    " SELECT min(credential) FROM certifications"
    " UNION ALL SELECT (SELECT min(credential) FROM certifications WHERE credential > code)"
    " FROM used WHERE code IS NOT NULL)"
    " SELECT code FROM used WHERE code IS NOT NULL"
)


def check_schema_current(db: Database) -> None:
    """Refuse to start on a database whose schema lacks migrations of this code (run `gateway db
    upgrade` first); one a newer release migrated is fine. While the database cannot say (down,
    say), a WARNING names where it is and why, and the process starts: it may come up later."""
    try:
        missing = db.missing_migrations()
    except SQLAlchemyError as exc:
        log.warning(
            "DATABASE_URL: the schema of the database at %s is not checked: %s",
            database_address(db.url),
            unavailable_reason(exc),
        )
        return
    if missing:
        raise ConfigError(
            f"DATABASE_URL: the database lacks migrations {', '.join(missing)} of this release; "
            "run `gateway db upgrade` first"
        )


def database_address(url: str) -> str:
    """Where a database URL points, without user or password: host:port, or SQLite's file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    host = parsed.host or parsed.query.get("host") or "localhost"  # a query's: a socket folder
    port = parsed.port or parsed.query.get("port") or 5432
    return ",".join(host) if isinstance(host, tuple) else f"{host}:{port}"


def check_policy_covers_certifications(db: Database, policy: rules.Policy) -> None:
    """Refuse to start with a policy table that lacks a credential certifications hold: their
    standings could not be evaluated. Skipped while the database cannot say (down, or its schema
    not made yet)."""
    try:
        used = {code for (code,) in db.read(_CREDENTIALS_IN_USE)}
    except SQLAlchemyError as exc:
        log.info(
            "the policy table is not checked against the certifications: %s", exc.__class__.__name__
        )
        return
    missing = sorted(used - set(policy.credentials))
    if missing:
        raise ConfigError(
            f"POLICY_FILE: the credential policy table lacks {', '.join(missing)}, which "
            "certifications hold; put it back (a credential no longer offered stays in the table)"
        )


#: What the signing keys sign that the database records, by table: receipts, and Open Badges
#: credentials (each has its status list entry; the status lists are signed from them).
_SIGNED = ((Receipt.__table__, "receipt"), (CredentialStatusEntry.__table__, "credential"))


def check_keys_not_lost(db: Database, settings: Settings) -> None:
    """Refuse to start where the file SIGNING_KEYS_FILE names does not exist while the database
    records what its keys signed (receipts, credentials): keys made in their place, as at a first
    start, would leave all of it unverifiable against the published keys. (Without the setting,
    a machine signs with keys of its own in its instance folder, made when missing.) An EXISTS on
    each table decides (a table not made yet records nothing), the count is made only to say so;
    a database that cannot say is refused too. ConfigError in one line naming the file and the
    ways out."""
    path = settings.signing_keys_file
    if os.path.exists(path) or Path(path) == _in_instance(settings, OWN_KEYS_FILE):
        return
    try:
        with db.engine.connect() as connection:
            found = inspect(connection)
            signed = [
                (table, name)
                for table, name in _SIGNED
                if found.has_table(table.name)
                and connection.scalar(select(exists().select_from(table)))
            ]
            counts = [
                _counted(connection.scalar(select(func.count()).select_from(table)), name)
                for table, name in signed
            ]
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"SIGNING_KEYS_FILE: {path} does not exist, and the database at "
            f"{database_address(db.url)} cannot say whether its keys signed anything "
            f"({unavailable_reason(exc)}): new keys are made only where nothing was signed; start "
            "again once it answers, or put the key set back"
        ) from exc
    if counts:
        raise ConfigError(
            f"SIGNING_KEYS_FILE: {path} does not exist, but the database records "
            f"{' and '.join(counts)} its keys signed, which new keys would leave unverifiable: "
            "put the key set back, or run `gateway keys new-set` to sign with a new set from now "
            "on (what the lost keys signed then fails to verify)"
        )


def _counted(number: int, name: str) -> str:
    """`number` of `name`: 1 receipt, 2 receipts."""
    return f"{number} {name}" if number == 1 else f"{number} {name}s"
