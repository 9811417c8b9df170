"""The retry policy of side-effect jobs: exponential back-off with jitter, honouring Retry-After."""

from __future__ import annotations

import random

MAX_ATTEMPTS = 8
CAP_SECONDS = 3600


def backoff(attempt: int, base: float, retry_after: float | None = None) -> int:
    """Whole seconds to wait before attempt `attempt + 1`; never less than Credly's Retry-After."""
    ceiling = min(CAP_SECONDS, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(1, round(max(delay, retry_after or 0)))


def schedule(base: float) -> list[int]:
    """The intervals given to RQ at enqueue, for retries after a crash (no Retry-After known)."""
    return [round(min(CAP_SECONDS, base * 2**n)) or 1 for n in range(MAX_ATTEMPTS - 1)]
