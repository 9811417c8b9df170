"""The retry policy of side-effect jobs: exponential back-off with jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_ATTEMPTS = 8
CAP_SECONDS = 3600
#: The longest `Retry-After` honoured: one beyond it (however large) is waited this long.
MAX_RETRY_AFTER_SECONDS = 24 * 3600


def backoff(
    attempt: int, base: float, retry_after: float | None = None, cap: float = CAP_SECONDS
) -> int:
    """Whole seconds to wait before attempt `attempt + 1`; never less than Credly's Retry-After,
    which is honoured up to MAX_RETRY_AFTER_SECONDS."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(ceiling / 2, ceiling)
    asked = min(retry_after, MAX_RETRY_AFTER_SECONDS) if retry_after and retry_after > 0 else 0
    return max(1, round(max(delay, asked)))


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a kind of job gets after transient failures, and the back-off between."""

    max_attempts: int
    base: float
    cap: float = CAP_SECONDS

    def delay(self, attempt: int, retry_after: float | None = None) -> int:
        """Whole seconds to wait before attempt `attempt + 1`; never less than a Retry-After (up
        to MAX_RETRY_AFTER_SECONDS)."""
        return backoff(attempt, self.base, retry_after, self.cap)


def within(window: float, base: float, cap: float) -> RetryPolicy:
    """The policy retrying as often as its longest waits (no jitter) fit in `window` seconds."""
    if base <= 0:
        raise ValueError("the back-off base must be positive")
    attempts, total = 1, 0.0
    while total + (wait := min(cap, base * 2 ** (attempts - 1))) <= window:
        total += wait
        attempts += 1
    return RetryPolicy(max_attempts=attempts, base=base, cap=cap)


class Deferred(Exception):
    """The item cannot run yet (another holds what it needs): it is due again after
    `retry_after` seconds, and the attempt is not counted."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
