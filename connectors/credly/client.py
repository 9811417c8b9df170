"""`CredlyClient`: Credly's REST API over HTTP for one organisation, every call with a timeout,
and at most a set number of calls a process makes at once (`holding_a_connection` bounds the
wait for one)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from connectors.credly.errors import (
    AlreadyReplaced,
    CredlyError,
    NoConnection,
    NotFound,
    PermanentError,
    TransientError,
    Unauthorized,
    UnknownOrganization,
    current_badge_id,
)
from connectors.credly.service import OnTransient, retried
from connectors.credly.wire import (
    BADGE,
    BADGES,
    EVENT,
    REPLACE,
    REPLACED,
    REVOKE,
    REVOKED,
    TOKENS,
    Badge,
    BadgeRequest,
    filter_param,
    not_a_badge,
    parse_credly_datetime,
)
from connectors.errors import parse_retry_after

log = logging.getLogger("connectors.credly")  # the connector's logger; the dry run's is its child

Timeout = float | tuple[float, float]
OnRequest = Callable[[str, str, int | None, float], None]

DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
DEFAULT_MAX_CONNECTIONS = 64  # Credly calls a process makes at once (CREDLY_MAX_CONNECTIONS)
#: How many pages back a badge listing reads again when the list shrinks between two reads.
RECHECKED_PAGES = 20


@dataclass
class _Holding:
    """The connection places a block of `holding_a_connection` waits for until `until`, keeps."""

    until: float
    held: list[threading.BoundedSemaphore] = field(default_factory=list)


_holding: ContextVar[_Holding | None] = ContextVar("credly_holding", default=None)


@contextmanager
def holding_a_connection(until: float) -> Iterator[None]:
    """In the block, the first call of a client waits for a free connection until `until`
    (`time.monotonic()`) at most, else raises `NoConnection`; the block then keeps that place
    until it ends, so that its later calls wait no more (it waits once, not before each call)."""
    holding = _Holding(until)
    token = _holding.set(holding)
    try:
        yield
    finally:
        _holding.reset(token)
        for place in holding.held:
            place.release()


class CredlyClient:
    """Client of Credly's REST API for one organisation; every call has a timeout.

    Errors: `TransientError` (retry), `PermanentError` (do not), `NotFound` (a 404), and
    `UnknownOrganization` for a 404 when Credly does not know the organisation either (checked at
    a client's 404s until a call under the organisation succeeds).
    `on_request(method, path_template, status_or_None, seconds)` is called after every HTTP call.
    """

    def __init__(
        self,
        base_url: str,
        organization_id: str,
        auth_token: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        on_request: OnRequest | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.organization_id = organization_id
        self.timeout = timeout
        self._auth = (auth_token, "")
        self._session = session or settled_session(self.base_url, max_connections)
        # A place for each connection: a call waits for one here, where the wait can be bounded,
        # never in the connection pool (which waits without end).
        self._places = threading.BoundedSemaphore(max_connections)
        self._on_request = on_request
        #: Credly answered a call under the organisation: it knows the organisation.
        self._organization_known = False

    def __repr__(self) -> str:
        return f"CredlyClient({self.base_url!r}, organization_id={self.organization_id!r})"

    # -- operations

    def issue_badge(self, request: BadgeRequest, *, locale: str = "en") -> Badge:
        """Issue a badge (`POST /organizations/{org}/badges`); Credly answers 201 with it."""
        body = request.body()
        body["locale"] = locale
        return self._badge(self._call("POST", BADGES, json_body=body))

    def replace_badge(self, badge_id: str, request: BadgeRequest) -> Badge:
        """Replace a badge by a new one (`POST .../badges/{id}/replace`); returns the new badge.

        AlreadyReplaced (naming the successor) when Credly says the badge was replaced already.
        """
        return self._replace(badge_id, request.replace_body())

    def _replace(self, badge_id: str, body: dict[str, Any]) -> Badge:
        try:
            answer = self._call("POST", REPLACE, {"badge_id": badge_id}, json_body=body)
        except NotFound:
            raise
        except PermanentError as exc:
            successor = current_badge_id(exc.body)
            if successor is None:
                raise
            raise AlreadyReplaced(
                f"Credly badge {badge_id} was replaced by {successor}",
                successor=successor,
                status=exc.status,
                body=exc.body,
            ) from exc
        return self._badge(answer)

    def successor_by_replacing(self, badge: Badge) -> Badge:
        """The badge that replaced `badge` (state `replaced`), found by asking Credly to replace
        it again, a write: Credly refuses naming the successor; should it replace the badge after
        all, that new badge is the successor."""
        body = {"badge_template_id": badge.badge_template_id}
        try:
            return self._replace(badge.id, body)
        except AlreadyReplaced as exc:
            return self.get_badge(exc.successor)

    def revoke_badge(
        self, badge_id: str, *, reason: str, suppress_revoke_notification_email: bool = False
    ) -> Badge:
        """Revoke a badge (`PUT .../badges/{id}/revoke`); revoking a revoked badge succeeds, and
        a replaced one is answered as Credly holds it (state `replaced`: revoke its successor).
        NotFound when it was deleted."""
        body = {
            "reason": reason,
            "suppress_revoke_notification_email": suppress_revoke_notification_email,
        }
        try:
            answer = self._call("PUT", REVOKE, {"badge_id": badge_id}, json_body=body)
            return self._badge(answer)
        except NotFound:
            raise
        except PermanentError:
            current = self.get_badge(badge_id)
            if current.state == REVOKED:
                log.info("Credly badge %s was already revoked", badge_id)
                return current
            if current.state != REPLACED:
                raise
            return current

    def get_badge(self, badge_id: str) -> Badge:
        """Read one badge (`GET .../badges/{id}`)."""
        return self._badge(self._call("GET", BADGE, {"badge_id": badge_id}))

    def list_badges(
        self,
        filters: dict[str, str],
        on_total: Callable[[int], None] | None = None,
        on_transient: OnTransient | None = None,
    ) -> Iterator[Badge]:
        """Every badge matching `filters`, page after page until `next_page_url` is null (one
        page in memory at a time); `on_total` gets the first page's `metadata.total_count`. A
        page whose read fails transiently is read again once `on_transient` returns; without
        it, the error ends the listing.

        Pages are requested by number on the configured base URL, so the credentials never go to
        a URL taken from an answer.

        A list that shrinks between two reads (`metadata.total_count` down: badges deleted) has
        moved the badges after those deleted up, onto pages read already, where they would be
        missed: the listing then steps back as many pages as hold that many badges (at most
        RECHECKED_PAGES) and reads on from there, leaving out the badges it yielded from the
        pages it reads again.
        """
        params = {"filter": filter_param(filters)} if filters else {}
        page, total, size = 1, None, 0
        recent: deque[set[str]] = deque(maxlen=RECHECKED_PAGES)  # ids of the last pages yielded
        while True:
            read = partial(self._call, "GET", BADGES, params={**params, "page": str(page)})
            answer = retried(read, on_transient)
            items = answer.get("data")
            if not isinstance(items, list):
                raise PermanentError(
                    "Credly answered a badge list without a data array", body=answer
                )
            metadata = answer.get("metadata") or {}
            count = _count(metadata.get("total_count"))
            if page == 1 and on_total is not None:
                on_total(count or len(items))
            if total is not None and count is not None and count < total and page > 1 and size:
                back = min(-(-(total - count) // size), len(recent), page - 1)
                log.info("the badge list shrank between two reads: %d pages read again", back)
                page, total = page - back, count
                continue
            total = count if count is not None else total
            size = size or len(items)
            yielded = set().union(*recent)
            badges = [self._parse_badge(item, answer) for item in items]
            recent.append({badge.id for badge in badges})
            yield from (badge for badge in badges if badge.id not in yielded)
            if not items or not metadata.get("next_page_url"):
                return
            page += 1

    def get_event(self, event_id: str) -> dict[str, Any]:
        """The `data` object of one organisation event (`GET .../events/{id}`); NotFound on 404."""
        answer = self._call("GET", EVENT, {"event_id": event_id})
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PermanentError("Credly answered an event without data", body=answer)
        return data

    def token_expiry(self) -> datetime | None:
        """When the configured token expires, from `GET .../authorization_tokens`: the entry
        naming this token, else the only one listed; None when the list cannot say."""
        answer = self._call("GET", TOKENS)
        tokens = [t for t in answer.get("data") or [] if isinstance(t, Mapping)]
        mine = [t for t in tokens if self._auth[0] in (t.get("token"), t.get("id"))]
        chosen = mine or (tokens if len(tokens) == 1 else [])
        return parse_credly_datetime(chosen[0].get("expires_at")) if chosen else None

    # -- transport

    def _badge(self, answer: dict[str, Any]) -> Badge:
        return self._parse_badge(answer.get("data"), answer)

    @staticmethod
    def _parse_badge(data: object, answer: dict[str, Any]) -> Badge:
        try:
            if not isinstance(data, Mapping):
                raise ValueError(not_a_badge(data))
            return Badge.from_json(data)
        except ValueError as exc:
            raise PermanentError(f"Credly answered {exc}", body=answer) from exc

    def _url(self, template: str, path_params: Mapping[str, str]) -> str:
        quoted = {k: quote(str(v), safe="") for k, v in path_params.items()}
        return self.base_url + template.format(org=quote(self.organization_id, safe=""), **quoted)

    def _call(
        self,
        method: str,
        template: str,
        path_params: Mapping[str, str] | None = None,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One HTTP call, once a connection is free; the decoded JSON answer, or the matching
        CredlyError (`NoConnection` when none came free in time)."""
        url = self._url(template, path_params or {})
        holding = _holding.get()
        if holding is None:
            with self._places:
                return self._call_now(method, url, template, json_body, params)
        if self._places not in holding.held:
            if not self._places.acquire(timeout=max(0.0, holding.until - time.monotonic())):
                raise NoConnection(f"Credly {method} {template}: no connection came free in time")
            holding.held.append(self._places)
        return self._call_now(method, url, template, json_body, params)

    def _call_now(
        self,
        method: str,
        url: str,
        template: str,
        json_body: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        status: int | None = None
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                auth=self._auth,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
            status = response.status_code
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise TransientError(f"Credly {method} {template}: {exc!r}") from exc
        except requests.RequestException as exc:
            raise PermanentError(f"Credly {method} {template}: {exc!r}") from exc
        finally:
            elapsed = time.monotonic() - started
            log.debug("Credly %s %s -> %s in %.3fs", method, template, status, elapsed)
            if self._on_request is not None:
                self._on_request(method, template, status, elapsed)
        try:
            answer = self._decode(method, template, response)
        except NotFound as exc:
            if not self._organization_known:
                self._check_organization(method, template, exc)
            raise
        self._organization_known = True
        return answer

    def _check_organization(self, method: str, template: str, not_found: NotFound) -> None:
        """A 404 under the organisation says a badge or event is gone only where Credly knows the
        organisation. Its badge list answering 404 too (read here, page 1, unless it was the
        call) is `UnknownOrganization`; any other answer leaves the 404 as it came."""
        if (method, template) == ("GET", BADGES):
            raise UnknownOrganization(
                f"Credly does not know the organisation {self.organization_id} (404): "
                "check CREDLY_ORGANIZATION_ID",
                status=not_found.status,
                body=not_found.body,
            ) from not_found
        try:
            self._call_now("GET", self._url(BADGES, {}), BADGES, None, {"page": "1"})
        except Unauthorized:  # UnknownOrganization, or a refused token: the jobs wait
            raise
        except CredlyError as exc:
            log.info("Credly did not say whether it knows the organisation: %s", exc)

    @staticmethod
    def _decode(method: str, template: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            body: object = response.json() if response.content else {}
        except ValueError:
            body = response.text[:2000]
        where = f"Credly {method} {template} answered {status}"
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise TransientError(f"{where} without a JSON object", status=status, body=body)
            return body
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise TransientError(where, status=status, body=body, retry_after=retry_after)
        if status == 404:
            raise NotFound(where, status=status, body=body)
        if status in (401, 403):
            raise Unauthorized(where, status=status, body=body)
        raise PermanentError(where, status=status, body=body)


def _count(value: object) -> int | None:
    """A list's `metadata.total_count` as a number of badges; None when it gives none."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def settled_session(
    base_url: str, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> requests.Session:
    """A session for one API host whose proxy and CA bundle settings (`HTTPS_PROXY`, `NO_PROXY`,
    `REQUESTS_CA_BUNDLE`, ...) are read from the environment once, not at every call as requests
    does by default (a scan of the whole environment per call). It keeps up to `max_connections`
    connections alive and makes no more calls than that at once: one more waits for a free one."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_connections, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session
