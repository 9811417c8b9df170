"""What a job runs with: this process's services."""

from __future__ import annotations

from gateway.platform.config import Settings
from gateway.usecases.services import Services

_services: Services | None = None


def use(services: Services) -> None:
    """Run jobs of this process with `services` (the web app's, for in-process jobs)."""
    global _services
    _services = services


def services() -> Services:
    """This process's services, built from the environment on first use (in a worker)."""
    global _services
    if _services is None:
        settings = Settings.from_env()
        if not settings.database_url:
            raise RuntimeError("a worker needs DATABASE_URL (and REDIS_URL) to be set")
        _services = Services.build(settings)
        _services.db.commit_asynchronously()  # as `run_worker` does: see there
    return _services
