"""Which Credly a process talks to: `CredlyClient` when Credly is configured, else the dry run."""

from __future__ import annotations

import logging
from pathlib import Path

from connectors.credly.client import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    CredlyClient,
    OnRequest,
    Timeout,
)
from connectors.credly.dry_run import DryRunCredly
from connectors.credly.service import BadgeService

log = logging.getLogger("connectors.credly")  # the connector's logger; the dry run's is its child


def make_credly(
    *,
    base_url: str | None,
    organization_id: str | None,
    auth_token: str | None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    on_request: OnRequest | None = None,
    dry_run_file: Path | None = None,
) -> BadgeService:
    """`CredlyClient` when base URL, organisation and token are all set, else `DryRunCredly`
    (keeping its badges in `dry_run_file`)."""
    settings = {
        "CREDLY_API_BASE": base_url,
        "CREDLY_ORGANIZATION_ID": organization_id,
        "CREDLY_AUTH_TOKEN": auth_token,
    }
    if base_url and organization_id and auth_token:
        return CredlyClient(
            base_url,
            organization_id,
            auth_token,
            timeout=timeout,
            max_connections=max_connections,
            on_request=on_request,
        )
    missing = [name for name, value in settings.items() if not value]
    if len(missing) < len(settings):
        log.warning("Credly is only partly configured (missing %s): using the dry run", missing)
    return DryRunCredly(organization_id=organization_id or "dry-run", state_file=dry_run_file)
