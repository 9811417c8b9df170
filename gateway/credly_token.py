"""The Credly token's configured expiry: reported by `/readyz`, warned about 14 days ahead (when
the app or a worker starts, and daily from the workers' cron: `jobs.sweep.check_credly_token`).

Credly authorization tokens last 180 days and Credly offers no call that says when one expires, so
the gateway knows only what `CREDLY_TOKEN_EXPIRES_ON` tells it.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from gateway.config import Settings
from gateway.store.models import utcnow

log = logging.getLogger("gateway.credly")

WARN_DAYS = 14


def credly_status(settings: Settings, today: date | None = None) -> dict[str, Any]:
    """`{"mode": "live" | "dry-run", "token_expires_on", "days_left"}`; None when not configured."""
    expires = settings.credly_token_expires_on
    today = today or utcnow().date()
    return {
        "mode": "dry-run" if settings.credly_dry_run else "live",
        "token_expires_on": expires.isoformat() if expires else None,
        "days_left": (expires - today).days if expires else None,
    }


def warn_if_token_expiring(settings: Settings, today: date | None = None) -> bool:
    """Log a WARNING when the live token expires within WARN_DAYS or has expired; True if so."""
    status = credly_status(settings, today)
    days_left = status["days_left"]
    if status["mode"] != "live" or days_left is None or days_left > WARN_DAYS:
        return False
    when = f"in {days_left} days" if days_left >= 0 else f"{-days_left} days ago"
    log.warning(
        "the Credly token expires %s (%s): create a new one in Credly and set "
        "CREDLY_AUTH_TOKEN and CREDLY_TOKEN_EXPIRES_ON",
        when,
        status["token_expires_on"],
        extra={"credly_token_days_left": days_left},
    )
    return True
