"""The gateway's clock: every "now" (and so every "today") the gateway judges by is read here.

It runs with the real time, moved by the offset that `set_now` sets: a test can put the whole
gateway on another day while time still passes as usual.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: How far a signed token's time may lie ahead of this clock and still be taken: the clock of
#: the machine that signed it may run a little ahead of this one's (RFC 7519's leeway).
LEEWAY = timedelta(seconds=60)

_offset = timedelta(0)


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC) + _offset


def set_now(when: datetime | None) -> None:
    """Move the clock so that it reads `when` now and runs on from there; None puts it back."""
    global _offset
    _offset = timedelta(0) if when is None else when - datetime.now(UTC)
