"""The Credly token: its expiry and whether Credly still takes it.

The expiry is read from Credly's authorization-tokens API where the token may (docs/credly.md,
"Tokens"), when a worker starts and daily from the workers' cron (`jobs.cron.check_credly_token`;
without Redis, the serving process's, `jobs.cron.InProcessCron`), falling back to
`CREDLY_TOKEN_EXPIRES_ON`; a warning is logged 14 days ahead, when the app starts (with what is
known by then), when a worker has read it at start, and daily. When Credly answers 401 or 403,
or 404 for the organisation's badge list, the Credly jobs pause (`jobs.engine.outbox`): they
wait, not using their attempts, and one is let through every CREDLY_PAUSE_SECONDS to try again;
when it succeeds, or another token or organisation id is configured, the jobs held back are due
again at once. `/readyz` and the `gateway_credly_paused` metric show it.

What is learned is kept per token and organisation id (a fingerprint of both) in Redis, shared by
every process, or in this process's memory without Redis.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import date
from typing import TYPE_CHECKING, Any

from connectors.credly.errors import CredlyError, UnknownOrganization
from connectors.errors import describe
from gateway.platform import clock
from gateway.platform.config import Settings

if TYPE_CHECKING:
    import redis

    from gateway.usecases.services import Services

log = logging.getLogger("gateway.credly")

WARN_DAYS = 14
_memory: dict[str, tuple[str, float | None]] = {}
_memory_lock = threading.Lock()


class TokenState:
    """What the gateway learned about its current Credly token."""

    def __init__(self, settings: Settings, client: redis.Redis | None) -> None:
        token = settings.credly_auth_token or "dry-run"
        configured = f"{settings.credly_organization_id or ''}\n{token}"
        fingerprint = hashlib.sha256(configured.encode()).hexdigest()[:16]
        self.prefix = f"gateway:credly-token:{fingerprint}"
        self.redis = client
        #: Redis failed a read of this state: it reads nothing more (one warning, one wait).
        self.unreadable = False

    def _get(self, *names: str) -> list[str | None]:
        """The values of `names`, read at once; None each when Redis cannot be read."""
        keys = [f"{self.prefix}:{name}" for name in names]
        if self.redis is not None:
            if self.unreadable:
                return [None] * len(keys)
            try:
                values = self.redis.mget(keys)
            except Exception as exc:  # Redis down: nothing learned, nothing paused
                self._unreadable(exc)
                return [None] * len(keys)
            return [value.decode() if value is not None else None for value in values]
        with _memory_lock:
            return [self._remembered(key) for key in keys]

    @staticmethod
    def _remembered(key: str) -> str | None:
        value, until = _memory.get(key, (None, None))
        if until is not None and until < time.monotonic():
            _memory.pop(key, None)
            return None
        return value

    def _unreadable(self, exc: Exception) -> None:
        self.unreadable = True
        log.warning("Credly token state unreadable: %s", exc)

    def _set(self, name: str, value: str, seconds: float | None = None) -> None:
        key = f"{self.prefix}:{name}"
        if self.redis is not None:
            self.redis.set(key, value, ex=None if seconds is None else max(1, int(seconds)))
            return
        with _memory_lock:
            _memory[key] = (value, None if seconds is None else time.monotonic() + seconds)

    def _take(self, name: str) -> bool:
        """Delete `name`; True for the one caller that found it there."""
        key = f"{self.prefix}:{name}"
        if self.redis is not None:
            try:
                return bool(self.redis.delete(key))
            except Exception as exc:
                self._unreadable(exc)
                return False
        with _memory_lock:
            found = self._remembered(key) is not None
            _memory.pop(key, None)
            return found

    def expires_on(self) -> date | None:
        """The expiry Credly reported for this token, if it did."""
        [value] = self._get("expires_on")
        return date.fromisoformat(value) if value else None

    def learn_expiry(self, day: date) -> None:
        """Keep the expiry Credly reported."""
        self._set("expires_on", day.isoformat())

    def paused(self) -> str | None:
        """Why the Credly jobs wait (Credly refused this token), or None."""
        [reason] = self._get("paused")
        return reason

    def pause_known(self) -> bool | None:
        """Whether the Credly jobs wait for a working token; None when Redis cannot be read."""
        [reason] = self._get("paused")
        if reason is None and self.unreadable:
            return None
        return reason is not None

    def holding(self) -> tuple[str | None, bool]:
        """Why the Credly jobs wait, or None; and whether jobs were held back for this token
        since Credly last took it (read at once)."""
        reason, held = self._get("paused", "held")
        return reason, held is not None

    def pause(self, reason: str, seconds: float) -> None:
        """Make the Credly jobs wait `seconds` before one tries the token again."""
        if self.paused() is None:
            log.error("Credly refused the gateway's calls: Credly jobs wait (%s)", reason)
        self._set("paused", reason, seconds)
        self._set("held", "1")

    def end_pause(self) -> bool:
        """Credly took the token: forget that jobs were held back for it; True for the one
        caller that ended the pause (the one to bring them forward)."""
        return self._take("held")


def token_state(svc: Services) -> TokenState:
    """The state of the token `svc` is configured with."""
    return TokenState(svc.settings, svc.redis)


def read_expiry(svc: Services) -> date | None:
    """The token's expiry from Credly where the token may read it (kept for `/readyz`), else
    `CREDLY_TOKEN_EXPIRES_ON`; a WARNING when neither says. When Credly does not know the
    organisation (a wrong CREDLY_ORGANIZATION_ID), the Credly jobs pause (an ERROR)."""
    if svc.settings.credly_dry_run:
        return svc.settings.credly_token_expires_on
    try:
        found = svc.credly.token_expiry()
    except UnknownOrganization as exc:
        token_state(svc).pause(describe(exc), svc.settings.credly_pause_seconds)
        found = None
    except CredlyError as exc:
        log.info("Credly did not say when the token expires: %s", exc)
        found = None
    if found is None:
        known = token_state(svc).expires_on() or svc.settings.credly_token_expires_on
        if known is None:
            log.warning(
                "the Credly token's expiry is unknown: Credly's list of the organisation's "
                "tokens does not say which is this one, and CREDLY_TOKEN_EXPIRES_ON is not set; "
                "set it, so that a warning comes %d days before the token expires",
                WARN_DAYS,
            )
        return known
    token_state(svc).learn_expiry(found.date())
    return found.date()


def known_expiry(settings: Settings, state: TokenState | None = None) -> date | None:
    """The expiry Credly reported (`state`), else the configured one (None if neither)."""
    learned = state.expires_on() if state is not None else None
    return learned or settings.credly_token_expires_on


def credly_status(
    settings: Settings, today: date | None = None, state: TokenState | None = None
) -> dict[str, Any]:
    """`{"mode": "live" | "dry-run", "token_expires_on", "days_left", "paused"}`: the expiry
    Credly reported (`state`), else the configured one (None if neither); why jobs wait, if so."""
    expires = known_expiry(settings, state)
    today = today or clock.now().date()
    return {
        "mode": "dry-run" if settings.credly_dry_run else "live",
        "token_expires_on": expires.isoformat() if expires else None,
        "days_left": (expires - today).days if expires else None,
        "paused": state.paused() if state is not None else None,
    }


def warn_if_token_expiring(
    settings: Settings, today: date | None = None, state: TokenState | None = None
) -> bool:
    """Log a WARNING when the live token expires within WARN_DAYS or has expired; True if so."""
    status = credly_status(settings, today, state)
    days_left = status["days_left"]
    if status["mode"] != "live" or days_left is None or days_left > WARN_DAYS:
        return False
    if days_left == 0:
        when = "expires today"
    elif days_left > 0:
        when = f"expires in {days_left} day{'s' if days_left > 1 else ''}"
    else:
        when = f"expired {-days_left} day{'s' if days_left < -1 else ''} ago"
    log.warning(
        "the Credly token %s (%s): create a new one in Credly and set "
        "CREDLY_AUTH_TOKEN and CREDLY_TOKEN_EXPIRES_ON",
        when,
        status["token_expires_on"],
        extra={"credly_token_days_left": days_left},
    )
    return True


def check_token(svc: Services, today: date | None = None) -> bool:
    """Read the expiry from Credly and warn if it is near; True if it warned."""
    read_expiry(svc)
    return warn_if_token_expiring(svc.settings, today, token_state(svc))


def check_token_at_start(svc: Services) -> bool:
    """Read the expiry from Credly when a worker starts and warn if it is near, unless it is the
    expiry the app's start (`create_app`) knew already (it warned then if need be); True if it
    warned."""
    state = token_state(svc)
    known_at_app_start = known_expiry(svc.settings, state)
    if read_expiry(svc) == known_at_app_start:
        return False
    return warn_if_token_expiring(svc.settings, state=state)
