"""Rate limits (the `limits` library): verification lookups per address or per API client, Credly
notifications per address (and the checks with Credly they cost: shared, or an address's own once
it is caught sending forged ones, and its refused ones: `CredlyAllowances`), failed client
authentications at the token endpoint per address, webhook subscriptions created and changes to
the certifications they watch per API client.

One sliding-window counter per limit of a key. With one limit (the default), one Redis script a
lookup checks and counts; with several (`100/hour;10/minute`), all are checked before any counts.
Either way a refused request (or batch) uses none of the allowance. A token request counts as in
flight until it is answered, and is refused while the address's failed client authentications and
its requests in flight would pass the limit; so is a request that creates a subscription or changes
watched ids, while the client's successful ones and those in flight would: what counts is known only
once answered, and concurrent requests cannot all slip through. Counts live in Redis when it is
configured, so every web process shares them, else in this process's memory; while Redis is down
they are kept in memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.platform import metrics
from gateway.platform.config import Settings
from gateway.usecases import credly_notifications
from gateway.web.auth import bearer_sent, current_client_id, require_oauth
from gateway.web.problems import Problem, unprocessable

log = logging.getLogger("gateway.web.ratelimit")

LOOKUP_SCOPE = "verifications:read"
BATCH = "verifications.batch_verifications"
TOKEN = "oauth.issue_token"
CREATE_SUBSCRIPTION = "subscriptions.create_subscription"
WATCH = "subscriptions.watch_certifications"
UNWATCH = "subscriptions.unwatch_certifications"
PREFIX = "gateway-ratelimit"
REDIS_RETRY_SECONDS = 5  # while Redis is down, how often to try it again
#: An attempt in flight counts for at least this many seconds and at most twice as many, unless
#: it ends: one that never does (its process killed) stops counting by itself.
IN_FLIGHT_SECONDS = 300
#: The app extension answering whether one more Credly notification may be checked.
CREDLY_CHECKS = "credly_webhook_checks"
CHECKS_KEY = "credly-webhooks/checks"
#: The counter of the checks of every caught address together: CREDLY_WEBHOOK_CHECKS apart.
CAUGHT_CHECKS_KEY = "credly-webhooks/checks-caught"
#: The app extension counting one anonymous lookup from an address: the limit refusing it, or None.
COUNT_ADDRESS = "gateway.count_address_lookup"
COUNT_BATCH = "gateway.count_batch_lookups"
#: Requests of the limited blueprints that look nothing up: they use none of the allowance.
NOT_LOOKUPS = frozenset({"verifications.list_receipts"})
#: Where a request that was counted before it reached Flask (`gateway.web.plain_lookup`) carries
#: the outcome: a one-tuple of the refusing limit, or of None.
COUNTED = "gateway.lookup_counted"


class TooManyRequests(Problem):
    """A request over its rate limit (lookups, Credly notifications, failed client
    authentications, subscriptions created or their watched ids changed): 429 with
    `Retry-After`."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(
            429, "Too Many Requests", detail, headers={"Retry-After": str(retry_after)}
        )


class Counter:
    """Sliding-window counts in Redis (or memory), falling back to memory while Redis is down."""

    def __init__(self, redis_url: str | None) -> None:
        self.fallback = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.shared = None
        if redis_url:
            storage: Storage = RedisStorage(
                redis_url,
                key_prefix=PREFIX,
                wrap_exceptions=True,
                socket_connect_timeout=2,
                socket_timeout=2,
            )
            self.shared = SlidingWindowCounterRateLimiter(storage)
        self.retry_shared_at = 0.0

    def _run(self, call: Callable[[SlidingWindowCounterRateLimiter], object]) -> object:
        if self.shared is not None and time.monotonic() >= self.retry_shared_at:
            try:
                return call(self.shared)
            except StorageError as exc:
                log.warning("rate limits counted in memory: %s", exc.storage_error)
                self.retry_shared_at = time.monotonic() + REDIS_RETRY_SECONDS
        return call(self.fallback)

    def hit(self, items: list[RateLimitItem], key: str, cost: int) -> RateLimitItem | None:
        """Count `cost` against every limit of `key` unless one refuses it; the first limit
        refusing it, if any.

        One limit checks and counts in one step. Several are all tested before any counts, so
        that a refused request uses none of them (a request racing this one between the test and
        the counts may still leave the limits before the refusing one charged)."""
        if len(items) > 1:
            refused = self.test(items, key, cost)
            if refused is not None:
                return refused
        for item in items:
            if not self._run(lambda limiter, item=item: limiter.hit(item, key, cost=cost)):
                return item
        return None

    def test(self, items: list[RateLimitItem], key: str, cost: int = 1) -> RateLimitItem | None:
        """The first limit of `key` that `cost` more would break, if any (nothing counted)."""
        for item in items:
            if not self._run(lambda limiter, item=item: limiter.test(item, key, cost=cost)):
                return item
        return None

    def begin(self, key: str) -> tuple[int, Callable[[], None]]:
        """Count one more attempt in flight on `key`: how many are in flight now (this one too),
        and the call ending it.

        An attempt is counted atomically in the slot of IN_FLIGHT_SECONDS it began in; those in
        flight are the counts of this slot and the one before. Ending one takes it off its own
        slot's count, which is kept for as long as that slot is read."""
        slot = int(time.time() // IN_FLIGHT_SECONDS)
        current, expiry = f"{key}/{slot}", 2 * IN_FLIGHT_SECONDS

        def count(limiter: SlidingWindowCounterRateLimiter) -> tuple[int, Storage]:
            storage = limiter.storage
            return storage.incr(current, expiry) + storage.get(f"{key}/{slot - 1}"), storage

        in_flight, storage = self._run(count)

        def end() -> None:
            try:
                storage.incr(current, expiry, amount=-1)
            except StorageError as exc:  # it stops counting when its slot expires
                log.warning("an attempt in flight left counted: %s", exc.storage_error)

        return in_flight, end

    def retry_after(self, item: RateLimitItem, key: str) -> int:
        """Whole seconds until the window of `item` has room again (at least 1)."""
        stats = self._run(lambda limiter: limiter.get_window_stats(item, key))
        return max(1, math.ceil(stats.reset_time - time.time()))


class CredlyAllowances:
    """Each client address's own allowances, kept in the rate-limit counter: its checks once it
    is caught sending forged notifications (CREDLY_WEBHOOK_FORGED_CHECKS, and all caught ones
    together as many as CREDLY_WEBHOOK_CHECKS, apart from the shared ones) and its refused ones
    (CREDLY_WEBHOOK_REFUSED); any other check draws on the shared CREDLY_WEBHOOK_CHECKS."""

    def __init__(
        self, settings: Settings, counter: Counter, shared: Callable[[], int | None]
    ) -> None:
        self.counter, self.shared = counter, shared
        self.forged = parse_many(settings.credly_webhook_forged_checks)
        self.pool = parse_many(settings.credly_webhook_checks)
        self.refused = parse_many(settings.credly_webhook_refused)
        longest = max(self.refused, key=lambda item: item.get_expiry())
        self.noted: list[RateLimitItem] = [type(longest)(1, longest.multiples)]

    def sender(self, address: str | None) -> credly_notifications.Sender:
        """The sender of a delivery from `address`, drawing on these allowances."""
        return credly_notifications.Sender(
            address, partial(self.checks, address), partial(self.refusal, address)
        )

    def checks(self, address: str | None, caught: bool) -> int | None:
        """Count one check; None when it may be made, else the seconds until one may."""
        if not caught:
            return self.shared()
        # the address's own first: what it sends beyond that uses none of the caught ones' pool
        for items, key in (
            (self.forged, f"credly-webhooks/forged:{address}"),
            (self.pool, CAUGHT_CHECKS_KEY),
        ):
            over = self.counter.hit(items, key, 1)
            if over is not None:
                return self.counter.retry_after(over, key)
        return None

    def refusal(self, address: str | None) -> credly_notifications.Refusal:
        """Count one refused notification; past the allowance, the first of the longest window
        is noted."""
        if self.counter.hit(self.refused, f"credly-webhooks/refused:{address}", 1) is None:
            return credly_notifications.Refusal.KEEP
        if self.counter.hit(self.noted, f"credly-webhooks/refused-noted:{address}", 1) is None:
            return credly_notifications.Refusal.DROP_NOTED
        return credly_notifications.Refusal.DROP


@dataclass(frozen=True)
class _ClientLimit:
    """A limit of the requests one API client makes to some endpoints: `items`, counted under
    `name` for requests answered `success`; `detail` explains a refusal."""

    name: str
    items: list[RateLimitItem]
    detail: str
    success: int

    def key(self, client: str) -> str:
        """The counter of `client`."""
        return f"{self.name}/client:{client}"

    def in_flight_key(self, client: str) -> str:
        """The count of `client`'s requests being answered (`Counter.begin`)."""
        return f"{self.name}/in-flight/client:{client}"


def lookup_client() -> str | None:
    """The client id of a valid `verifications:read` token on this request, else None.

    Never raises: a missing or bad token counts against the address, and the view refuses a bad one.
    """
    if "lookup_client" not in g:
        g.lookup_client = None
        if bearer_sent():
            with contextlib.suppress(OAuth2Error):
                g.lookup_client = require_oauth.acquire_token([LOOKUP_SCOPE]).client_id
    return g.lookup_client


def address_key(address: str | None) -> str:
    """The counter of the anonymous lookups from an address (API and page alike)."""
    return f"lookups/address:{address}"


def init_app(
    app: Flask,
    settings: Settings,
    *,
    apis: Iterable[Blueprint],
    pages: Iterable[Blueprint],
    webhooks: Blueprint,
) -> Counter:
    """Limit the lookups of `apis` (per address, or per client with a `verifications:read` token,
    batches counting each id) and of `pages` (per address; the bare form is free), an address having
    one allowance for all of them; the Credly notifications of `webhooks` (per address); the
    webhook subscriptions created (per API client, SUBSCRIPTION_RATE_LIMIT) and the changes to
    the ids they watch (per API client, SUBSCRIPTION_WATCH_RATE_LIMIT).
    `app.extensions[CREDLY_CHECKS]()` says whether one more notification may be checked with Credly
    (CREDLY_WEBHOOK_CHECKS, across addresses)."""
    if settings.trusted_proxies:
        n = settings.trusted_proxies  # X-Forwarded-Proto too: HSTS is sent when TLS is in front
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    counter = Counter(settings.redis_url)
    anonymous = parse_many(settings.verify_rate_limit)
    authenticated = parse_many(settings.verify_rate_limit_authenticated)

    def limit(key: str, items: list[RateLimitItem], cost: int, detail: str) -> None:
        counted = request.environ.pop(COUNTED, None)
        refused = counted[0] if counted else counter.hit(items, key, cost)
        if refused is not None:
            raise TooManyRequests(detail, counter.retry_after(refused, key))

    def limit_api(cost: int = 1) -> None:
        client = lookup_client()
        if client:
            key, items, rate = f"lookups/client:{client}", authenticated, "this API client"
            setting = settings.verify_rate_limit_authenticated
        else:
            key, items, rate = address_key(request.remote_addr), anonymous, "this address"
            setting = settings.verify_rate_limit
        most = min(item.amount for item in items)
        if cost > most:  # no window would ever have room for it: waiting cannot help
            raise unprocessable(
                "certification_ids",
                f"{cost} ids are more than the limit of {rate} allows at once ({setting}); "
                f"send at most {most} a request.",
            )
        limit(key, items, cost, f"Too many lookups from {rate}: the limit is {setting}.")

    def limit_page() -> None:
        # The bare form costs nothing; a number asked for, a receipt checked (its record is read
        # as it is now) or a credential posted costs one.
        asked = "certification_id" in request.args or "receipt" in request.args
        if asked or request.method == "POST":
            limit(
                address_key(request.remote_addr),  # one allowance for the page and the API
                anonymous,
                1,
                f"Too many lookups: the limit is {settings.verify_rate_limit} per address.",
            )

    notifications = parse_many(settings.credly_webhook_rate_limit)
    checks = parse_many(settings.credly_webhook_checks)

    def limit_webhooks() -> None:
        key = f"credly-webhooks/address:{request.remote_addr}"
        refused = counter.hit(notifications, key, 1)
        if refused is not None:
            metrics.CREDLY_NOTIFICATIONS.labels("rate_limited").inc()
            detail = f"Too many notifications from this address: the limit is {notifications[0]}."
            raise TooManyRequests(detail, counter.retry_after(refused, key))

    def admit_check() -> int | None:
        """None when one more notification may be checked, else seconds until one may."""
        refused = counter.hit(checks, CHECKS_KEY, 1)
        return None if refused is None else counter.retry_after(refused, CHECKS_KEY)

    def admit(attempts: str, items: list[RateLimitItem], key: str, detail: str) -> None:
        """Count this request in flight on `attempts` until it is answered (`end_attempt`), and
        refuse it when the counts of `key` and the requests in flight (this one too) would pass
        `items`. Counting one more in flight is one atomic step: concurrent requests cannot all
        pass the test before any of them counts."""
        in_flight, g.end_attempt = counter.begin(attempts)
        refused = counter.test(items, key, in_flight)
        if refused is not None:
            raise TooManyRequests(detail, counter.retry_after(refused, key))

    failures = parse_many(settings.token_failure_rate_limit)

    def failures_key() -> str:
        return f"oauth-failures/address:{request.remote_addr}"

    @app.before_request
    def limit_token_requests() -> None:
        # A token request is in flight from here until it is answered. It is refused, before any
        # secret is hashed, when the address's failed client authentications and its requests in
        # flight (this one too) would pass the limit.
        if request.endpoint == TOKEN:
            admit(
                f"oauth-attempts/address:{request.remote_addr}",
                failures,
                failures_key(),
                "Too many failed client authentications from this address: the limit is "
                f"{settings.token_failure_rate_limit}.",
            )

    @app.after_request
    def count_token_failures(response: Response) -> Response:
        # Recorded before the attempt ends (end_attempt): it never stops counting in between.
        if request.endpoint == TOKEN and response.status_code == 401:
            counter.hit(failures, failures_key(), 1)
        return response

    @app.teardown_request
    def end_attempt(_error: BaseException | None) -> None:
        # A token request's, or a per-client limited one's: whatever the answer, or if there was
        # none (an exception).
        end = g.pop("end_attempt", None)
        if end is not None:
            end()

    changes = _ClientLimit(
        "subscription-changes",
        parse_many(settings.subscription_watch_rate_limit),
        "Too many changes to watched certifications from this API client: the limit is "
        f"{settings.subscription_watch_rate_limit}.",
        200,
    )
    per_client = {
        CREATE_SUBSCRIPTION: _ClientLimit(
            "subscriptions",
            parse_many(settings.subscription_rate_limit),
            "Too many subscriptions created by this API client: the limit is "
            f"{settings.subscription_rate_limit}.",
            201,
        ),
        WATCH: changes,
        UNWATCH: changes,
    }

    @app.before_request
    def limit_per_client() -> None:
        # Counted once it succeeded, so that a request refused for any reason uses none of the
        # allowance (a request without a good token is the view's to refuse); in flight until it
        # is answered, and refused when the client's counted requests and those in flight (this
        # one too) would pass the limit.
        limited = per_client.get(request.endpoint or "")
        client = lookup_client() if limited else None
        if client:
            admit(limited.in_flight_key(client), limited.items, limited.key(client), limited.detail)

    @app.after_request
    def count_per_client(response: Response) -> Response:
        # Recorded before the attempt ends (end_attempt): it never stops counting in between.
        limited = per_client.get(request.endpoint or "")
        if limited and response.status_code == limited.success:
            counter.hit(limited.items, limited.key(current_client_id()), 1)
        return response

    app.extensions[CREDLY_CHECKS] = admit_check
    app.extensions[COUNT_ADDRESS] = lambda address: counter.hit(anonymous, address_key(address), 1)
    app.extensions[COUNT_BATCH] = limit_api
    # On the app, not the blueprints: they are shared by every app built in this process.
    limited = {api.name: limit_api for api in apis} | {page.name: limit_page for page in pages}
    limited[webhooks.name] = limit_webhooks

    counted_elsewhere = NOT_LOOKUPS | {BATCH}

    @app.before_request
    def limit_lookups() -> None:
        # A batch is counted by its view, once its token and body are checked (an id a lookup).
        if request.method == "OPTIONS" or request.endpoint in counted_elsewhere:
            return
        check = limited.get(request.blueprint or "")
        if check is not None:
            check()

    return counter
