"""credential-gateway: certification events in, standing out, Credly badges and lookups in step."""

from __future__ import annotations

import logging

from flask import Flask

from gateway import logs
from gateway.config import Settings
from gateway.services import Services

log = logging.getLogger("gateway")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: the one place that wires settings, storage, API and error handling."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=settings.instance_path, instance_relative_config=True)
    settings = settings.with_instance(app.instance_path)
    logs.configure(settings.log_level)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=64 * 1024)
    svc = Services.build(settings)
    app.extensions["gateway"] = svc
    if svc.db.is_sqlite:
        svc.db.upgrade()

    from gateway import auth
    from gateway.api import health, problems

    problems.register(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    log.info(settings.mode_line())
    return app
