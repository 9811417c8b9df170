"""The wiring of one process: settings, database, Redis; shared by the web app, jobs and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from gateway.config import Settings
from gateway.store.db import Database


@dataclass
class Services:
    """Everything a request, a job or a command needs, built once per process."""

    settings: Settings
    db: Database
    redis: redis.Redis | None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Connect to what `settings` names (nothing is contacted until first use)."""
        if not settings.database_url:
            raise ValueError("database_url must be resolved before building services")
        client = (
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
            if settings.redis_url
            else None
        )
        return cls(settings=settings, db=Database(settings.database_url), redis=client)


def services() -> Services:
    """The services of the current Flask app."""
    return current_app.extensions["gateway"]
