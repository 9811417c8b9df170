"""Wiring of a process: the web app (settings, services, job dispatch, blueprints), in one place."""

from __future__ import annotations

import logging

import click
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform import logs, signing
from gateway.platform.config import PRODUCTION_MODE, ConfigError, Settings
from gateway.store.db import MigrationRefused, unavailable_reason
from gateway.usecases import credly_token, issuer, subscriptions
from gateway.usecases.services import (
    ServedFiles,
    Services,
    check_policy_covers_certifications,
    check_redis_database,
    check_schema_current,
)

log = logging.getLogger("gateway")


#: The Credly calls a badge job's lease should hold at their longest (a look-up, the issue, the
#: look-up after a failed issue, a replace): JOB_TIMEOUT_SECONDS below that many Credly timeouts is
#: warned of.
LEASE_CREDLY_CALLS = 4


def create_app(
    settings: Settings | None = None,
    *,
    jobs: str = "ON_DEMAND",
    migrate: bool = True,
    files: ServedFiles | None = None,
    reads_keys: bool = True,
) -> Flask:
    """Build the Flask app: the one place that wires settings, storage, API and error handling.

    `jobs`: where jobs run without Redis, a `jobs.engine.dispatch.JobThread` name. `migrate`: bring
    the embedded default's SQLite database up to date, and check that any other is (not for the
    `db` commands, which move it). `files`: the signing keys and policy table to serve with, read
    by another process (`gateway serve`'s master), instead of the files the settings name.
    `reads_keys`: read the signing keys at start (refused there if unfit or lost), as a process
    that answers requests (and signs) or manages the keys does; any other (a worker, an
    operator's command) reads them only if it signs.

    Settings that cannot be used raise ConfigError, in one line; under a command a click error
    instead, which ends it in that line (exit status 1), not a traceback: Flask's own `flask --app
    gateway.bootstrap:create_app ...` builds the app before it runs the command.
    """
    try:
        return _build(settings, jobs=jobs, migrate=migrate, files=files, reads_keys=reads_keys)
    except ConfigError as exc:
        if click.get_current_context(silent=True) is None:
            raise
        raise click.ClickException(str(exc)) from exc


def _build(
    settings: Settings | None,
    *,
    jobs: str,
    migrate: bool,
    files: ServedFiles | None,
    reads_keys: bool,
) -> Flask:
    from gateway.web.plain import GatewayFlask

    settings = settings or Settings.from_env()
    app = GatewayFlask(
        "gateway",
        template_folder="web/templates",
        static_folder="web/static",
        instance_path=settings.instance_path,
        instance_relative_config=True,
    )
    own_keys = settings.signing_keys_file is None  # else one file every machine is given
    in_folder = settings.database_url is None  # the embedded default's database, in the folder
    settings = settings.with_instance(app.instance_path)
    logs.configure(settings.log_level)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    try:
        svc = Services.build(settings, files)
    except OSError as exc:  # a SQLite database whose folder cannot be made or written
        name = "INSTANCE_PATH" if in_folder else "DATABASE_URL"
        raise ConfigError(f"{name}: {exc.strerror or exc}: {exc.filename}") from exc
    app.extensions["gateway"] = svc
    if svc.db.is_sqlite and migrate and not svc.db.up_to_date():  # else: no write lock taken
        try:
            svc.db.upgrade(policy=svc.policy)
        except MigrationRefused as exc:
            raise ConfigError(f"INSTANCE_PATH: the database cannot be migrated: {exc}") from exc
    if migrate:  # not for the `db` commands, which may be what brings the schema
        check_schema_current(svc.db)
        check_policy_covers_certifications(svc.db, svc.policy)
        check_redis_database(svc.redis)  # (they use no Redis)
        subscriptions.warn_of_plain_http_targets(svc)
    # read (or created, at first start) now, not at the first signature; not by the commands
    # that sign nothing, which may run where the key file is not
    keys = svc.keys if migrate and reads_keys else None
    if keys is not None and files is None and not own_keys:  # else the reader of `files` says it
        warn_of_made_keys(keys, settings.signing_keys_file)
    if keys is not None and not keys.holds(signing.RS256):
        log.warning(
            "SIGNING_KEYS_FILE %s holds no RSA key: Open Badges credentials are signed ES256, "
            "which not every Open Badges verifier accepts (they must accept RS256); run `gateway "
            "keys rotate` to add an RSA key",
            settings.signing_keys_file,
        )
    if not settings.public_base_url and not svc.db.is_sqlite:
        log.warning(
            "PUBLIC_BASE_URL is not set: receipts, credentials and badge links name the address "
            "each request came to (its Host header); set it to the gateway's public address"
        )
    if settings.issuer_name == Settings.issuer_name and not svc.db.is_sqlite:
        log.warning(
            "ISSUER_NAME is not set: lookups, receipts and credentials name the certifying body "
            "%r; set it to the body's name",
            settings.issuer_name,
        )
    if own_keys and keys is not None and not svc.db.is_sqlite:  # a process that signs
        log.warning(
            "SIGNING_KEYS_FILE is not set: this machine signs with keys of its own (%s); set it "
            "to one file that every web machine is given, or what one machine signs (receipts, "
            "credentials) fails to verify on another",
            settings.signing_keys_file,
        )
    if settings.issuer_logo and issuer.logo_file(settings.issuer_logo, app.instance_path) is None:
        log.warning(
            "ISSUER_LOGO %r is not a PNG, JPEG or SVG file in the instance folder %s: no logo "
            "is shown",
            settings.issuer_logo,
            app.instance_path,
        )

    from gateway.cli.main import register as register_commands
    from gateway.web import (
        auth,
        credential_page,
        observability,
        pages,
        plain_events,
        plain_lookup,
        problems,
        ratelimit,
        security,
    )
    from gateway.web.api import credentials, credly_notifications, verifications
    from jobs.engine import context
    from jobs.engine.dispatch import JobThread, make_dispatcher, relay
    from jobs.engine.outbox import resume_held_at_start

    svc.dispatcher = make_dispatcher(
        svc, synchronous=settings.jobs_synchronous, jobs=JobThread[jobs]
    )
    context.use(svc)
    # The `db` commands run no jobs; the other commands leave them to the server, which does this
    # at its own start.
    if settings.jobs_in_process and migrate and jobs != JobThread.IN_SERVER.name:
        try:
            relay(svc, svc.dispatcher)  # side effects left behind by a process that died
            resume_held_at_start(svc)  # Credly jobs held back for a token no longer configured
        except SQLAlchemyError as exc:
            log.warning("outbox relay at start failed: %s", unavailable_reason(exc))
    problems.register(app)
    observability.init_app(app, svc)
    auth.init_app(app)
    security.init_app(app)
    register_routes(app)
    counter = ratelimit.init_app(
        app,
        settings,
        apis=(verifications.bp, credentials.checks),
        pages=(pages.bp, credential_page.bp),
        webhooks=credly_notifications.bp,
    )
    credly_notifications.init_app(app, settings, counter)
    app.plain_paths.update(GET=plain_lookup.answer, POST=plain_events.answer)
    register_commands(app)
    mode = settings.mode_line()  # not production's: a warning, seen at any LOG_LEVEL but ERROR
    log.log(logging.INFO if mode.startswith(PRODUCTION_MODE) else logging.WARNING, mode)
    if not settings.credly_dry_run and settings.job_timeout_seconds < LEASE_CREDLY_CALLS * (
        settings.credly_timeout_seconds
    ):
        log.warning(
            "JOB_TIMEOUT_SECONDS (%d) is under %d times CREDLY_TIMEOUT_SECONDS (%d): a job still "
            "waiting for Credly when its lease ends is run again beside it by another worker (on "
            "a badge template that allows duplicates, a second badge); raise JOB_TIMEOUT_SECONDS",
            settings.job_timeout_seconds,
            LEASE_CREDLY_CALLS,
            settings.credly_timeout_seconds,
        )
    untemplated = settings.untemplated(svc.policy.credentials)
    if untemplated:
        log.warning(
            "CREDLY_BADGE_TEMPLATES names no badge template for %s: their badges are not "
            "issued (each issue job fails) until one is set",
            ", ".join(untemplated),
        )
    # at start (with the expiry Credly reported, once read); daily from the cron (the workers',
    # or, without Redis, the serving process's)
    credly_token.warn_if_token_expiring(settings, state=credly_token.token_state(svc))
    return app


def in_instance(settings: Settings) -> Settings:
    """`settings` with the instance folder the app finds (INSTANCE_PATH, else Flask's), and the
    defaults of the embedded database and of SIGNING_KEYS_FILE in it: for the processes that
    read them without building the app."""
    return settings.with_instance(
        Flask("gateway", instance_path=settings.instance_path).instance_path
    )


def warn_of_made_keys(keys: signing.SigningKeys, path: str) -> None:
    """Warn when `keys` were made at `path` just now, SIGNING_KEYS_FILE naming a file that did not
    exist (a typo, a volume not mounted): keys no other web machine has."""
    if keys.created:
        log.warning(
            "SIGNING_KEYS_FILE names %s, which did not exist: new signing keys were made there. "
            "Give every web machine this same file, or what one machine signs (receipts, "
            "credentials) fails to verify on another",
            path,
        )


def register_routes(app: Flask) -> None:
    """Serve every route of the gateway on `app`: the API, the token endpoint and the pages."""
    from gateway.web import auth, credential_page, openapi, pages
    from gateway.web.api import (
        certifications,
        credentials,
        credly_notifications,
        events,
        health,
        keys,
        subscriptions,
        verifications,
    )

    for blueprint in (
        health.bp,
        auth.bp,
        keys.bp,
        events.bp,
        certifications.bp,
        credly_notifications.bp,
        verifications.bp,
        pages.bp,
        openapi.bp,
        subscriptions.bp,
        credentials.bp,
        credentials.checks,
        credential_page.bp,
    ):
        app.register_blueprint(blueprint)
