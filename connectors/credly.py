"""Credly connector: a typed client of Credly's REST API v1, a dry-run backend and a factory.

Facts this module relies on (Credly web service docs, `credly.com/docs/issued_badges`,
`/docs/web_service_api`, `/docs/webhooks`):

- HTTP Basic auth with the organisation's authorization token as user name and an empty password;
  JSON bodies; every answer is an envelope `{"data": ..., "metadata": ...}`.
- `issued_at` / `expires_at` are sent as `"2014-04-01 09:41:00 -0500"`; Credly answers with ISO 8601
  (`"2014-04-01T14:41:00.000Z"`). `expires_at: null` means the template's default expiry and
  `false` means none (docs/credly.md, "Issuing").
- Credly refuses a duplicate (same template and the same e-mail or `issuer_earner_id`) with a 422;
  `holder_badges` looks a badge up the same way (docs/credly.md, "Duplicates").
- A replace sends only Credly's replace fields; a replaced badge names its successor in
  `metadata.current_badge_id` when it is replaced again (docs/credly.md, "Replacing").
- Lists are paged (`metadata.next_page_url` is null on the last page) and filtered with
  `filter=key::value|key::value`.
- No public source says what Credly answers when an already revoked badge is revoked again, so a 4xx
  on revoke is followed by a read of the badge: if it is revoked, the revoke succeeded; if it was
  replaced, that badge is answered as read, and the caller revokes its successor.
- A 401 or 403 means the token no longer works: `Unauthorized`, which the jobs wait out.

The module talks to the outside world only: it imports nothing of Flask, `gateway` or `jobs`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from connectors import errors

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
OnRequest = Callable[[str, str, int | None, float], None]
#: Called with a read's transient error and its failed tries so far: returns to read again (after
#: waiting), raises to give up.
OnTransient = Callable[["TransientError", int], None]
T = TypeVar("T")

DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
DEFAULT_MAX_CONNECTIONS = 64  # Credly calls a process makes at once (CREDLY_MAX_CONNECTIONS)
CREDLY_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"
REVOKED = "revoked"
REPLACED = "replaced"
PENDING = "pending"
ACCEPTED = "accepted"
#: States of a badge that no longer stands for anything (the others: pending, accepted, rejected).
ENDED_STATES = frozenset({REVOKED, REPLACED})
#: States of a badge that shows (unless it has expired).
LIVE_STATES = frozenset({PENDING, ACCEPTED})

BADGES = "/organizations/{org}/badges"
BADGE = "/organizations/{org}/badges/{badge_id}"
REPLACE = "/organizations/{org}/badges/{badge_id}/replace"
REVOKE = "/organizations/{org}/badges/{badge_id}/revoke"
EVENT = "/organizations/{org}/events/{event_id}"
ORGANIZATION = "/organizations/{org}"
TOKENS = "/organizations/{org}/authorization_tokens"


# --------------------------------------------------------------------------- values and errors


def format_credly_datetime(value: datetime) -> str:
    """A datetime in the form Credly documents for requests (`2014-04-01 09:41:00 -0500`), in its
    own offset (so a day's midnight in the certifying body's zone stays that day).

    A naive datetime is taken to be UTC. An offset of seconds, as zones had before they kept
    standard time (Liberia's -00:44:30 until 1972), has no place in that form: such a moment is
    sent in UTC, the same instant.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        value = value.astimezone(UTC)
    return value.strftime(CREDLY_DATETIME_FORMAT)


def parse_credly_datetime(value: object) -> datetime | None:
    """An aware UTC datetime from Credly's ISO 8601 answer (or its request form); None if absent.

    A value in neither form, or one whose UTC time falls outside years 1 to 9999, gives None
    too; the original stays in `Badge.raw`.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.strptime(value, CREDLY_DATETIME_FORMAT)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


@dataclass(frozen=True)
class Badge:
    """An issued Credly badge, as far as the gateway cares; `raw` keeps Credly's whole object."""

    id: str
    state: str
    issuer_earner_id: str | None
    badge_template_id: str | None
    recipient_email: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Badge:
        """Build from the `data` object of Credly's answer (template id nested or flat)."""
        if not isinstance(data, Mapping) or not data.get("id"):
            raise ValueError(f"not a Credly badge object: {data!r}")
        template = data.get("badge_template")
        template_id = template.get("id") if isinstance(template, Mapping) else None
        template_id = template_id or data.get("badge_template_id")
        earner = data.get("issuer_earner_id")
        return cls(
            id=str(data["id"]),
            state=str(data.get("state") or ""),
            issuer_earner_id=None if earner is None else str(earner),
            badge_template_id=None if template_id is None else str(template_id),
            recipient_email=data.get("recipient_email"),
            issued_at=parse_credly_datetime(data.get("issued_at")),
            expires_at=parse_credly_datetime(data.get("expires_at")),
            raw=dict(data),
        )

    @property
    def ended(self) -> bool:
        """True once revoked or replaced."""
        return self.state in ENDED_STATES

    def live(self, now: datetime | None = None) -> bool:
        """True while the badge shows: pending or accepted, and not past its expiry."""
        if self.state not in LIVE_STATES:
            return False
        return self.expires_at is None or self.expires_at > (now or datetime.now(UTC))


class CredlyError(Exception):
    """A call to Credly failed; `status` is the HTTP status (None without an answer)."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class TransientError(CredlyError, errors.TransientError):
    """Worth retrying: timeout, connection error, 429 or 5xx; `retry_after` in seconds if given."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class PermanentError(CredlyError, errors.PermanentError):
    """Credly refused the request (4xx but 429); retrying the same request cannot help."""


class NotFound(PermanentError):
    """Credly answered 404: no such badge or event in this organisation."""


class Unauthorized(TransientError):
    """Credly answered 401 or 403: the token is expired, revoked or lacks the permission. Not the
    job's fault: the jobs wait until a working token is configured."""


class NoConnection(errors.TransientError):
    """A call not made: no connection came free by the time `holding_a_connection` set. Credly
    was not asked, so this is no failure of Credly's."""


class AlreadyReplaced(PermanentError):
    """Credly refused to replace a badge that was replaced already; `successor` is its
    `metadata.current_badge_id`."""

    def __init__(self, message: str, *, successor: str, status: int | None, body: object) -> None:
        super().__init__(message, status=status, body=body)
        self.successor = successor


def current_badge_id(body: object) -> str | None:
    """The successor Credly names in an error body's `metadata.current_badge_id`, if any."""
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    found = metadata.get("current_badge_id") if isinstance(metadata, Mapping) else None
    return str(found) if found else None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --------------------------------------------------------------------------- shared helpers


def id_evidence(title: str, number: str) -> dict[str, str]:
    """Credly's ID evidence: a number shown on the badge (`issuer_earner_id` is not shown)."""
    return {"type": "IdEvidence", "title": title, "description": number}


def url_evidence(title: str, url: str) -> dict[str, str]:
    """Credly's URL evidence: a link shown on the badge."""
    return {"type": "UrlEvidence", "title": title, "url": url}


#: The fields of a replace that the gateway sends, all of them documented by Credly (docs/credly.md,
#: "Replacing"; it documents `notification_message` too, which the gateway leaves out): no
#: recipient_email.
REPLACE_FIELDS = (
    "badge_template_id",
    "issued_at",
    "issued_to_first_name",
    "issued_to_last_name",
    "expires_at",
    "evidence",
)


@dataclass(frozen=True)
class BadgeRequest:
    """What a badge says and who it is for: the fields issuing and replacing both send.

    `expires_at` None means no expiry, sent as `false` (null would mean the template's default).
    """

    recipient_email: str
    first_name: str
    last_name: str
    badge_template_id: str
    issued_at: datetime
    issuer_earner_id: str
    expires_at: datetime | None = None
    evidence: tuple[dict[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        """Credly's JSON fields for issuing this badge."""
        return {
            "recipient_email": self.recipient_email,
            "issued_to_first_name": self.first_name,
            "issued_to_last_name": self.last_name,
            "badge_template_id": self.badge_template_id,
            "issued_at": format_credly_datetime(self.issued_at),
            "issuer_earner_id": self.issuer_earner_id,
            "expires_at": False
            if self.expires_at is None
            else format_credly_datetime(self.expires_at),
        } | ({"evidence": [dict(item) for item in self.evidence]} if self.evidence else {})

    def replace_body(self) -> dict[str, Any]:
        """Credly's JSON fields for replacing a badge by this one: documented ones only."""
        body = self.body()
        return {name: body[name] for name in REPLACE_FIELDS if name in body}

    def shows_as(self, badge: Badge) -> bool:
        """True when `badge` already says what this request would (e-mail aside)."""
        return (
            badge.badge_template_id == self.badge_template_id
            and badge.issued_at == self.issued_at.astimezone(UTC)
            and self.names_as(badge)
        )

    def names_as(self, badge: Badge) -> bool:
        """True when `badge` names the member and expires as this request would (e-mail aside)."""
        raw = badge.raw
        return (
            raw.get("issued_to_first_name") == self.first_name
            and raw.get("issued_to_last_name") == self.last_name
            and badge.expires_at == (self.expires_at and self.expires_at.astimezone(UTC))
        )


def filter_param(filters: Mapping[str, str]) -> str:
    """Credly's `filter` query value, `key::value|key::value`."""
    for part in (*filters.keys(), *filters.values()):
        if not _filterable(part):
            raise ValueError(f"a Credly filter key or value may not contain '|' or '::': {part!r}")
    return "|".join(f"{key}::{value}" for key, value in filters.items())


def _filterable(value: str) -> bool:
    return "|" not in value and "::" not in value


def pick_badge(badges: Iterable[Badge]) -> Badge | None:
    """The badge that stands: a live one before an ended one, then the newest by `issued_at`."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return max(badges, key=lambda b: (not b.ended, b.issued_at or oldest), default=None)


def holder_badges(
    service: BadgeService,
    *,
    badge_template_id: str,
    issuer_earner_id: str | None = None,
    recipient_email: str | None = None,
    others: bool = False,
) -> list[Badge]:
    """Every badge of the template Credly counts as the same earner's (docs/credly.md,
    "Duplicates"): the same `issuer_earner_id` or the same e-mail, one paged search each. A
    badge found by e-mail that names another earner id is that earner's, not this one's: left
    out unless `others` (Credly compares a new badge with it too when it refuses duplicates). An
    e-mail that a filter cannot hold (a `|` is valid in one) is not searched for."""
    found: dict[str, Badge] = {}
    searches = (("issuer_earner_id", issuer_earner_id), ("recipient_email", recipient_email))
    for key, value in searches:
        if not value or not _filterable(value):
            continue
        for badge in service.list_badges({key: value, "badge_template_id": badge_template_id}):
            if (
                badge.badge_template_id == badge_template_id
                and _same(key, badge, value)
                and (others or not of_another_earner(badge, issuer_earner_id))
            ):
                found[badge.id] = badge
    return list(found.values())


def of_another_earner(badge: Badge, issuer_earner_id: str | None) -> bool:
    """Whether `badge` names an earner id other than `issuer_earner_id` (one with none, issued in
    Credly's UI, is anyone's)."""
    return bool(badge.issuer_earner_id) and badge.issuer_earner_id != issuer_earner_id


def _same(key: str, badge: Badge, value: str) -> bool:
    if key == "recipient_email":  # e-mail addresses compare without case
        return (badge.recipient_email or "").casefold() == value.casefold()
    return badge.issuer_earner_id == value


def retried(read: Callable[[], T], on_transient: OnTransient | None) -> T:
    """What `read` answers, read again after each transient failure once `on_transient` returns
    (it raises to give up); without `on_transient`, the first failure is raised."""
    tries = 0
    while True:
        try:
            return read()
        except TransientError as exc:
            tries += 1
            if on_transient is None:
                raise
            on_transient(exc, tries)


def live_badge(badges: Iterable[Badge]) -> Badge | None:
    """The newest of the badges that still show, if any (a revoked or expired one never)."""
    now = datetime.now(UTC)
    return pick_badge(b for b in badges if b.live(now))


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class BadgeService(Protocol):
    """What the jobs need from Credly; implemented by `CredlyClient` and `DryRunCredly`."""

    def issue_badge(self, request: BadgeRequest, *, locale: str = "en") -> Badge: ...

    def replace_badge(self, badge_id: str, request: BadgeRequest) -> Badge: ...

    def revoke_badge(
        self, badge_id: str, *, reason: str, suppress_revoke_notification_email: bool = False
    ) -> Badge: ...

    def get_badge(self, badge_id: str) -> Badge: ...

    def list_badges(
        self,
        filters: dict[str, str],
        on_total: Callable[[int], None] | None = None,
        on_transient: OnTransient | None = None,
    ) -> Iterator[Badge]: ...

    def successor_by_replacing(self, badge: Badge) -> Badge: ...

    def get_event(self, event_id: str) -> dict[str, Any]: ...

    def token_expiry(self) -> datetime | None: ...

    def ping(self) -> None: ...


# --------------------------------------------------------------------------- the real client


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

    Errors: `TransientError` (retry), `PermanentError` (do not), `NotFound` (a 404).
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
        """
        params = {"filter": filter_param(filters)} if filters else {}
        page = 1
        while True:
            read = partial(self._call, "GET", BADGES, params={**params, "page": str(page)})
            answer = retried(read, on_transient)
            items = answer.get("data")
            if not isinstance(items, list):
                raise PermanentError(
                    "Credly answered a badge list without a data array", body=answer
                )
            metadata = answer.get("metadata") or {}
            if page == 1 and on_total is not None:
                on_total(int(metadata.get("total_count") or len(items)))
            yield from (self._parse_badge(item, answer) for item in items)
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

    def ping(self) -> None:
        """Read the organisation (`GET /organizations/{org}`): token and organisation are valid."""
        self._call("GET", ORGANIZATION)

    # -- transport

    def _badge(self, answer: dict[str, Any]) -> Badge:
        return self._parse_badge(answer.get("data"), answer)

    @staticmethod
    def _parse_badge(data: object, answer: dict[str, Any]) -> Badge:
        try:
            if not isinstance(data, Mapping):
                raise ValueError(f"not a Credly badge object: {data!r}")
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
        return self._decode(method, template, response)

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


# --------------------------------------------------------------------------- dry run


#: The dry run's store: one row per badge, with the fields it searches on (the e-mail casefolded,
#: as Credly compares it) and the badge object as JSON; rows in issue order.
DRY_RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS badges (
    id TEXT PRIMARY KEY,
    issuer_earner_id TEXT,
    badge_template_id TEXT,
    state TEXT NOT NULL,
    email_key TEXT NOT NULL,
    badge TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS badges_earner ON badges (badge_template_id, issuer_earner_id);
CREATE INDEX IF NOT EXISTS badges_email ON badges (badge_template_id, email_key);
"""
#: How long a call waits for another process's call on the same store.
DRY_RUN_LOCK_SECONDS = 30.0
#: Filters the store answers itself (`_matches` checks every filter on what it finds).
DRY_RUN_COLUMNS = {
    "issuer_earner_id": "issuer_earner_id = ?",
    "badge_template_id": "badge_template_id = ?",
    "state": "state = ?",
    "recipient_email": "email_key = ?",
}


class DryRunCredly:
    """Credly for the embedded default: logs each request it would send and answers as Credly would.

    Nothing leaves the process and no token exists here. Its badges are kept in `state_file`, an
    SQLite database (WAL mode; each call one transaction begun with the write lock, so restarts
    and every process of the machine share them, and a call costs the same however many badges
    there are), or in this process's memory without one. The JSON file that earlier releases
    kept beside it (same name, `.json`) is moved into it at first use and renamed `.json.migrated`.
    """

    def __init__(
        self,
        organization_id: str = "dry-run",
        logger: logging.Logger | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.organization_id = organization_id
        self._log = logger or logging.getLogger("connectors.credly.dry_run")
        self._thread_lock = threading.Lock()
        self._file = state_file
        # One connection per process: a forked child never uses or closes its parent's (SQLite
        # forbids it), it opens its own.
        self._connections: dict[int, sqlite3.Connection] = {}
        self._log.warning(
            "Credly DRY RUN backend for organization %s: requests are logged, never sent",
            organization_id,
        )

    def __repr__(self) -> str:
        return f"DryRunCredly(organization_id={self.organization_id!r})"

    def _would_send(
        self, method: str, template: str, body: object = None, query: str = "", **path_params: str
    ) -> None:
        path = template.format(org=self.organization_id, **path_params) + query
        shown = "" if body is None else " " + json.dumps(body, sort_keys=True, default=str)
        self._log.info("DRY RUN: would send %s %s%s", method, path, shown)

    def issue_badge(self, request: BadgeRequest, *, locale: str = "en") -> Badge:
        """Record a new pending badge, refusing a duplicate of a live one as Credly does."""
        body = request.body()
        body["locale"] = locale
        self._would_send("POST", BADGES, body)
        with self._state() as db:
            _refuse_duplicate(db, body)
            return _store_new(db, body)

    def replace_badge(self, badge_id: str, request: BadgeRequest) -> Badge:
        """Mark the badge `replaced` and record its pending successor (keeping its recipient)."""
        body = request.replace_body()
        self._would_send("POST", REPLACE, body, badge_id=badge_id)
        with self._state() as db:
            old = _existing(db, badge_id)
            if old["state"] == REPLACED:
                raise AlreadyReplaced(
                    f"dry run: badge {badge_id} was replaced",
                    successor=old["current_badge_id"],
                    status=422,
                    body={"metadata": {"current_badge_id": old["current_badge_id"]}},
                )
            if old["state"] == REVOKED:
                raise PermanentError(
                    f"dry run: badge {badge_id} is revoked and cannot be replaced",
                    status=422,
                    body={"data": {"message": "Badge is revoked"}},
                )
            kept = {"recipient_email": old["recipient_email"]}
            kept["issuer_earner_id"] = old["issuer_earner_id"]
            new = _store_new(db, {**kept, **body}, replaces=badge_id)
            old.update(state=REPLACED, state_updated_at=_now_iso(), current_badge_id=new.id)
            _save(db, old)
            return new

    def successor_by_replacing(self, badge: Badge) -> Badge:
        """The recorded badge that replaced `badge`."""
        with self._state() as db:
            return Badge.from_json(_existing(db, _existing(db, badge.id)["current_badge_id"]))

    def revoke_badge(
        self, badge_id: str, *, reason: str, suppress_revoke_notification_email: bool = False
    ) -> Badge:
        """Mark the badge revoked; revoking it again changes nothing, and a replaced one is
        answered as it is (as Credly's client answers it)."""
        body = {
            "reason": reason,
            "suppress_revoke_notification_email": suppress_revoke_notification_email,
        }
        self._would_send("PUT", REVOKE, body, badge_id=badge_id)
        with self._state() as db:
            badge = _existing(db, badge_id)
            if badge["state"] not in (REVOKED, REPLACED):
                badge.update(
                    state=REVOKED,
                    state_updated_at=_now_iso(),
                    revoked_at=_now_iso(),
                    revocation_reason=reason,
                )
                _save(db, badge)
            return Badge.from_json(badge)

    def get_badge(self, badge_id: str) -> Badge:
        """The recorded badge; NotFound if none."""
        self._would_send("GET", BADGE, badge_id=badge_id)
        with self._state() as db:
            return Badge.from_json(_existing(db, badge_id))

    def list_badges(
        self,
        filters: dict[str, str],
        on_total: Callable[[int], None] | None = None,
        on_transient: OnTransient | None = None,
    ) -> Iterator[Badge]:
        """Recorded badges whose fields equal every filter value, in issue order (nothing here
        fails transiently: `on_transient` is never called)."""
        self._would_send("GET", BADGES, query=f"?filter={filter_param(filters)}" if filters else "")
        searched = {key: value for key, value in filters.items() if key in DRY_RUN_COLUMNS}
        where = " AND ".join(DRY_RUN_COLUMNS[key] for key in searched) or "1"
        values = [v.casefold() if k == "recipient_email" else v for k, v in searched.items()]
        with self._state() as db:
            rows = db.execute(f"SELECT badge FROM badges WHERE {where} ORDER BY rowid", values)
            badges = [Badge.from_json(json.loads(raw)) for (raw,) in rows]
        found = [b for b in badges if _matches(b, filters)]
        if on_total is not None:
            on_total(len(found))
        return iter(found)

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Always NotFound: the dry-run organisation has no events, so no webhook is believed."""
        self._would_send("GET", EVENT, event_id=event_id)
        raise NotFound(
            f"dry run: no Credly event {event_id}",
            status=404,
            body={"data": {"message": "Not found"}},
        )

    def token_expiry(self) -> datetime | None:
        """None: the dry run has no token."""
        return None

    def ping(self) -> None:
        """Nothing to reach: logs the request only."""
        self._would_send("GET", ORGANIZATION)

    # -- the store

    @contextmanager
    def _state(self) -> Iterator[sqlite3.Connection]:
        """One call's transaction on the badges: this process's lock, then the store's write
        lock (BEGIN IMMEDIATE), committed when the call succeeds, else rolled back."""
        with self._thread_lock:
            db = self._connections.get(os.getpid()) or self._connect()
            with _transaction(db):
                yield db

    def _connect(self) -> sqlite3.Connection:
        """This process's connection to the store, which is created (and the old JSON file moved
        into it) if need be."""
        if self._file is None:
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            # It holds members' names and addresses: readable by its owner only (SQLite gives
            # its WAL files the database file's mode).
            os.close(os.open(self._file, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(
                self._file,
                timeout=DRY_RUN_LOCK_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a dry run's badges need no fsync per call
        db.executescript(DRY_RUN_SCHEMA)
        if self._file is not None:
            _take_over_json(db, self._file.with_suffix(".json"))
        self._connections[os.getpid()] = db
        return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A transaction holding the store's write lock from its start."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _take_over_json(db: sqlite3.Connection, old: Path) -> None:
    """Move the badges of the JSON file earlier releases kept into the store, once: the file
    is renamed `.json.migrated` in the same transaction (another process finds it gone)."""
    if not old.exists():
        return
    with _transaction(db):
        if not old.exists():
            return
        for raw in json.loads(old.read_text()).values():
            _save(db, raw)
        os.replace(old, old.with_name(old.name + ".migrated"))
    with suppress(FileNotFoundError):
        old.with_suffix(".lock").unlink()  # the old file's lock file


def _existing(db: sqlite3.Connection, badge_id: str) -> dict[str, Any]:
    row = db.execute("SELECT badge FROM badges WHERE id = ?", (badge_id,)).fetchone()
    if row is None:
        raise NotFound(
            f"dry run: no Credly badge {badge_id}",
            status=404,
            body={"data": {"message": "Not found"}},
        )
    return json.loads(row[0])


def _save(db: sqlite3.Connection, raw: Mapping[str, Any]) -> None:
    """Write a badge object with the fields the dry run searches on (in place: its row keeps
    its issue order)."""
    badge = Badge.from_json(raw)
    email_key = str(badge.recipient_email).casefold()
    db.execute(
        "INSERT INTO badges (id, issuer_earner_id, badge_template_id, state, email_key, badge)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
        " issuer_earner_id = excluded.issuer_earner_id, email_key = excluded.email_key,"
        " badge_template_id = excluded.badge_template_id, badge = excluded.badge",
        (
            badge.id,
            badge.issuer_earner_id,
            badge.badge_template_id,
            badge.state,
            email_key,
            json.dumps(raw),
        ),
    )


def _refuse_duplicate(db: sqlite3.Connection, body: Mapping[str, Any]) -> None:
    """A 422 as Credly answers when a badge of the template that has not ended has the same
    `issuer_earner_id` or e-mail (compared casefolded)."""
    earner = body["issuer_earner_id"]
    searched = {
        "issuer_earner_id": None if earner is None else str(earner),
        "email_key": str(body["recipient_email"]).casefold(),
    }
    found = any(
        db.execute(
            f"SELECT 1 FROM badges WHERE badge_template_id IS ? AND {column} IS ?"
            " AND state NOT IN (?, ?) LIMIT 1",
            (body["badge_template_id"], value, *sorted(ENDED_STATES)),
        ).fetchone()
        for column, value in searched.items()
    )
    if found:
        raise PermanentError(
            "dry run: duplicate badge",
            status=422,
            body={"data": {"message": "User already has this badge"}},
        )


def _store_new(
    db: sqlite3.Connection, body: Mapping[str, Any], replaces: str | None = None
) -> Badge:
    raw = credly_badge_object(body, badge_id=str(uuid.uuid4()))
    if replaces:
        raw["replaces_badge_id"] = replaces
    _save(db, raw)
    return Badge.from_json(raw)


def credly_badge_object(body: Mapping[str, Any], *, badge_id: str) -> dict[str, Any]:
    """A pending badge object shaped like Credly's answer, from issue/replace request fields."""
    now = _now_iso()
    return {
        "id": badge_id,
        "state": PENDING,
        "issuer_earner_id": body.get("issuer_earner_id"),
        "recipient_email": body.get("recipient_email"),
        "issued_to_first_name": body.get("issued_to_first_name"),
        "issued_to_last_name": body.get("issued_to_last_name"),
        "issued_to": f"{body.get('issued_to_first_name')} {body.get('issued_to_last_name')}",
        "issued_at": _iso(parse_credly_datetime(body.get("issued_at"))),
        "expires_at": _iso(parse_credly_datetime(body.get("expires_at"))),
        "locale": body.get("locale", "en"),
        "badge_template": {"id": body.get("badge_template_id")},
        "created_at": now,
        "updated_at": now,
        "state_updated_at": now,
    }


def _matches(badge: Badge, filters: Mapping[str, str]) -> bool:
    """True if each filtered field of the badge (typed field, else raw key) equals the value."""
    typed = {"issuer_earner_id", "badge_template_id", "recipient_email", "state"}
    return all(
        (getattr(badge, key) if key in typed else badge.raw.get(key)) == value
        for key, value in filters.items()
    )


def _iso(value: datetime | None) -> str | None:
    """Credly's answer form of a timestamp, `2014-04-01T14:41:00.000Z`."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _now_iso() -> str:
    return _iso(datetime.now(UTC)) or ""


# --------------------------------------------------------------------------- the choice


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
