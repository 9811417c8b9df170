"""The benches' Redis database, held for a run with the claim the test sessions take.

A test session takes a Redis database by a key in database 0 (tests/support/database.py) and
empties it at will; a bench does the same with its own. Each holds the database it flushes under
that key, so neither flushes one the other holds, and two runs never share one.
"""

from __future__ import annotations

import sys
import uuid
from types import TracebackType

import redis

#: The key under which a test session holds its database (tests/support/database.py).
CLAIM = "gateway-tests:redis-db:{number}"
HOLD_SECONDS = 12 * 3600  # a bench killed outright leaves the database held this long at most


class HeldDatabase:
    """The Redis database of `url` (from the environment variable `setting`), held and emptied
    from `with` to its end; exits the bench with a clear line if a test session or another run
    holds it."""

    def __init__(self, url: str, setting: str) -> None:
        self.url = url
        self.setting = setting
        self.client = redis.Redis.from_url(url)
        pool = self.client.connection_pool
        self.number = int(pool.connection_kwargs.get("db", 0))
        #: Database 0 of the same server (from_url would let the URL's database win over db=0).
        self.claims = redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class, **{**pool.connection_kwargs, "db": 0}
            )
        )
        self.key = CLAIM.format(number=self.number)
        self._holder = f"bench-{uuid.uuid4().hex}"

    def __enter__(self) -> HeldDatabase:
        if self.number == 0:
            sys.exit(f"{self.setting}: database 0 holds the claims; name another database")
        if not self.claims.set(self.key, self._holder, nx=True, ex=HOLD_SECONDS):
            sys.exit(
                f"Redis database {self.number} of {self.url} is held by a test session or another "
                f"run ({self.key} in database 0): name another in {self.setting}"
            )
        self.flush()
        return self

    def flush(self) -> None:
        """Empty the database, which must still be ours."""
        if self.claims.get(self.key) != self._holder.encode():
            sys.exit(f"Redis database {self.number} is no longer held by this run: not flushed")
        self.claims.expire(self.key, HOLD_SECONDS)
        self.client.flushdb()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.claims.get(self.key) == self._holder.encode():
            self.client.flushdb()
            self.claims.delete(self.key)
