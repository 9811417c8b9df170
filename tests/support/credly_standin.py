"""A local HTTP server playing Credly's REST API v1, with fault injection, for tests and benchmarks.

It answers the endpoints the connector uses, in Credly's shapes (`{"data": ..., "metadata": ...}`),
checks HTTP Basic auth (token as user name, empty password) and keeps badges and events in memory.
A control API (plain JSON over HTTP, no auth) lets a test in another process drive it:

- `POST /_control/faults` `{"responses": [{"status": 500}, {"status": 429, "retry_after": 1},
  {"delay": 5}], "operation": "issue"}` queues answers for the next calls of one operation
  (default `issue`; also `replace`, `revoke`, `get`, `list`, `event`, `tokens`). `delay`
  sleeps before answering; `"hold": true` keeps the call waiting until `POST /_control/release`
  (a test's way to act while a call is in flight, whatever the machine's speed); without `status`
  the call then proceeds normally. `body` overrides the error body (with a 2xx `status`, it is the
  whole answer: Credly answering what it should not).
- `GET /_control/badges` all badges; `POST /_control/badges/{id}/state` `{"state": "accepted"}`
  changes a badge as its earner would and records the `badge.state.changed` event (answered);
  `POST /_control/badges/{id}/delete` deletes it as its earner would (`badge.deleted`);
  `POST /_control/badges/{id}/replace` replaces it as an issuer would in Credly's own UI.
- `POST /_control/events` `{"id", "type", "data", "organization_id"?, "occurred_at"?}` registers an
  event for `GET /organizations/{org}/events/{id}`, served only under its own organisation's path;
  `data` is merged into the event object.
- `GET /_control/requests` the API calls seen (method, path, operation, status, body), oldest
  first.
- `POST /_control/reset` forgets everything.

It models what docs/credly.md says Credly does; each behaviour cites the section. Where that page
says no source was found, the behaviour is a switch (`revoked_is_duplicate`,
`revoke_revoked_status`) so the jobs are tested both ways; templates an admin let take duplicates
are `duplicates_allowed`.

Run for benchmarks: `python -m tests.support.credly_standin --port 8099 [--latency-ms 150]`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit

log = logging.getLogger(__name__)

DEFAULT_ORGANIZATION_ID = "5f1b6cf1-1d6a-4c55-9c5a-2f3f6c0e0001"
DEFAULT_TOKEN = "standin-token"
REQUEST_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"
ENDED = {"revoked", "replaced"}
OPERATIONS = ("issue", "replace", "revoke", "get", "list", "event", "tokens")
REQUIRED_ISSUE_FIELDS = (
    "recipient_email",
    "issued_to_first_name",
    "issued_to_last_name",
    "badge_template_id",
    "issued_at",
)
FILTER_KEYS = {"issuer_earner_id", "badge_template_id", "recipient_email", "state"}
#: The fields a replace takes (docs/credly.md, "Replacing": recipient_email is not one of them).
REPLACE_FIELDS = (
    "badge_template_id",
    "issued_at",
    "issued_to_first_name",
    "issued_to_last_name",
    "expires_at",
    "evidence",
    "notification_message",
)

_ORG = r"/v1/organizations/(?P<org>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(_ORG + r"/badges$"), "issue"),
    ("GET", re.compile(_ORG + r"/badges$"), "list"),
    ("GET", re.compile(_ORG + r"/badges/(?P<id>[^/]+)$"), "get"),
    ("POST", re.compile(_ORG + r"/badges/(?P<id>[^/]+)/replace$"), "replace"),
    ("PUT", re.compile(_ORG + r"/badges/(?P<id>[^/]+)/revoke$"), "revoke"),
    ("GET", re.compile(_ORG + r"/events/(?P<id>[^/]+)$"), "event"),
    ("GET", re.compile(_ORG + r"/authorization_tokens$"), "tokens"),
]
BADGE_CONTROL = re.compile(r"^/_control/badges/(?P<id>[^/]+)/(?P<what>state|delete|replace)$")


class Answer(Exception):
    """Raised inside a handler to answer at once: status, JSON body and extra headers."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, {"data": {"message": message}, "metadata": {}}, headers)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _now() -> str:
    return _iso(datetime.now(UTC))


def _request_datetime(body: Mapping[str, Any], name: str) -> str | None:
    """The ISO form of a request timestamp in Credly's documented form; 422 otherwise."""
    value = body.get(name)
    if value is None or value is False:
        return None
    try:
        return _iso(datetime.strptime(str(value), REQUEST_DATETIME_FORMAT))
    except ValueError:
        raise _error(422, f"{name} must look like 2014-04-01 09:41:00 -0500") from None


class _Server(ThreadingHTTPServer):
    """A thread a connection, with a listen queue for the connections of several job workers at
    once (http.server's is 5: more connecting together are reset, which Credly does not do)."""

    request_queue_size = 256


class CredlyStandIn:
    """Credly on 127.0.0.1 in a background thread; `url` is the API base, ending in `/v1`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        token: str = DEFAULT_TOKEN,
        per_page: int = 50,
        latency: float = 0.0,
        template_expiry: Mapping[str, str] | None = None,
        revoked_is_duplicate: bool = False,
        duplicates_allowed: Collection[str] = (),
        revoke_revoked_status: int = 422,
        token_expires_at: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.organization_id = organization_id
        self.token = token
        self.per_page = per_page
        #: Seconds every API call waits before it is answered (Credly over the internet).
        self.latency = latency
        #: Default expiry (request form) of badge templates that have one (docs/credly.md,
        #: "Issuing": a template may carry a default expiry, applied when expires_at is null).
        self.template_expiry = dict(template_expiry or {})
        #: Whether a revoked badge still counts as a duplicate (docs/credly.md: no source says).
        self.revoked_is_duplicate = revoked_is_duplicate
        #: Templates whose duplicates an admin allowed (docs/credly.md, "Duplicates").
        self.duplicates_allowed = set(duplicates_allowed)
        #: What revoking a revoked badge answers (docs/credly.md: no source says; 422 or 200).
        self.revoke_revoked_status = revoke_revoked_status
        #: The token's expiry as `GET .../authorization_tokens` lists it (docs/credly.md, "Tokens").
        self.token_expires_at = token_expires_at
        #: The organisation's other tokens (another integration's, or the next one of a rotation),
        #: listed after the gateway's; no entry says which is the token the caller sent.
        self.other_tokens: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._holding = 0
        self._badges: dict[str, dict[str, Any]] = {}
        # Badge ids by issuer_earner_id and by e-mail, so large benchmark runs stay linear.
        self._by_earner: dict[str, list[str]] = {}
        self._by_email: dict[str, list[str]] = {}
        self._events: dict[str, dict[str, Any]] = {}
        self._faults: dict[str, deque[dict[str, Any]]] = {op: deque() for op in OPERATIONS}
        self._seen: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle

    @property
    def root(self) -> str:
        """`http://host:port`, without the API prefix."""
        if self._server is None:
            raise RuntimeError("the Credly stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The API base URL to configure the client with (`CREDLY_API_BASE`)."""
        return f"{self.root}/v1"

    @property
    def settings(self) -> dict[str, str]:
        """The gateway's settings for calling this stand-in (its API base, organisation, token)."""
        return {
            "credly_api_base": self.url,
            "credly_organization_id": self.organization_id,
            "credly_auth_token": self.token,
        }

    def start(self) -> CredlyStandIn:
        """Listen and serve in a daemon thread."""
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="credly-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers delayed by a fault are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> CredlyStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- control (also reachable over HTTP)

    def queue_faults(self, responses: list[dict[str, Any]], operation: str = "issue") -> None:
        """Queue answers for the next calls of `operation` (see the module docstring)."""
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {OPERATIONS}")
        for item in responses:
            if not isinstance(item, dict) or not ({"status", "delay", "hold"} & item.keys()):
                raise ValueError(f"a fault needs status, delay or hold: {item!r}")
        with self._lock:
            if any(item.get("hold") for item in responses):
                self._released.clear()
            self._faults[operation].extend(responses)

    def holding(self) -> int:
        """How many calls a `hold` fault keeps waiting now."""
        with self._lock:
            return self._holding

    def wait_holding(self, count: int = 1, timeout: float = 10) -> None:
        """Wait until `count` calls are held; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.holding() < count:
            assert time.monotonic() < deadline, f"{self.holding()} of {count} calls held"
            self.wait(0.01)

    def release(self) -> None:
        """Let the calls held by `hold` faults go on (until a fault with `hold` is queued again)."""
        self._released.set()

    def hold(self) -> None:
        """Keep this call waiting until `release`, unless the stand-in stops meanwhile."""
        with self._lock:
            self._holding += 1
        try:
            while not self._released.wait(0.02) and not self._stopping.is_set():
                pass
        finally:
            with self._lock:
                self._holding -= 1

    def badges(self) -> list[dict[str, Any]]:
        """Every badge, in issue order."""
        with self._lock:
            return [dict(b) for b in self._badges.values()]

    def add_event(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
        organization_id: str | None = None,
        occurred_at: str | None = None,
    ) -> dict[str, Any]:
        """Register an organisation event; returns the event object as Credly would answer it."""
        event = {
            "id": event_id or str(uuid.uuid4()),
            "organization_id": organization_id or self.organization_id,
            "event_type": event_type,
            "occurred_at": occurred_at or _now(),
            **dict(data or {}),
        }
        with self._lock:
            self._events[event["id"]] = event
        return event

    def set_badge_state(self, badge_id: str, state: str) -> dict[str, Any]:
        """Change a badge as its earner would (accept/reject) and record the event; returns it."""
        with self._lock:
            badge = self._badges.get(badge_id)
            if badge is None:
                raise KeyError(badge_id)
            now = _now()
            badge.update(state=state, state_updated_at=now, updated_at=now)
            if state == "accepted":
                badge["accepted_at"] = now
            snapshot = dict(badge)
        return self.add_event("badge.state.changed", {"badge": snapshot})

    def delete_badge(self, badge_id: str) -> dict[str, Any]:
        """Delete a badge as its earner may (docs/credly.md, "Revoking": deleting is not revoking;
        Credly reports `badge.deleted`); reading it then answers 404. Returns the event."""
        with self._lock:
            badge = self._badges.pop(badge_id, None)
            if badge is None:
                raise KeyError(badge_id)
            self._by_earner[badge["issuer_earner_id"]].remove(badge_id)
            self._by_email[str(badge["recipient_email"]).casefold()].remove(badge_id)
        return self.add_event("badge.deleted", {"badge": badge})

    def replace_out_of_band(self, badge_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a badge as an issuer would in Credly's UI; records `badge.state.changed` for
        the old badge (now `replaced`). Returns the event."""
        self.replace(badge_id, changes)
        with self._lock:
            snapshot = dict(self._badges[badge_id])
        return self.add_event("badge.state.changed", {"badge": snapshot})

    def requests_seen(self) -> list[dict[str, Any]]:
        """The API calls answered so far (method, path, operation, status), oldest first."""
        with self._lock:
            return list(self._seen)

    def reset(self) -> None:
        """Forget badges, events, queued faults and seen requests; let held calls go on."""
        self._released.set()
        with self._lock:
            self._badges.clear()
            self._by_earner.clear()
            self._by_email.clear()
            self._events.clear()
            for queue in self._faults.values():
                queue.clear()
            self._seen.clear()

    # -- the API (called by the handler)

    def authorized(self, header: str | None) -> bool:
        """True for `Basic base64(token:)`."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.token}:"

    def next_fault(self, operation: str) -> dict[str, Any] | None:
        """The queued answer for this call, if any."""
        with self._lock:
            queue = self._faults[operation]
            return queue.popleft() if queue else None

    def wait(self, seconds: float) -> None:
        """Sleep, unless the stand-in stops meanwhile."""
        self._stopping.wait(seconds)

    def record(
        self, method: str, path: str, operation: str | None, status: int, body: object = None
    ) -> None:
        """Remember one answered API call for `requests_seen`."""
        with self._lock:
            self._seen.append(
                {
                    "method": method,
                    "path": path,
                    "operation": operation,
                    "status": status,
                    "body": body,
                }
            )

    def issue(self, body: Mapping[str, Any]) -> tuple[int, object]:
        """Issue a badge: 201, or 422 for a missing field, a bad date or a live duplicate."""
        missing = [name for name in REQUIRED_ISSUE_FIELDS if not body.get(name)]
        if missing:
            raise _error(422, f"missing required fields: {', '.join(missing)}")
        badge = self._new_badge(body)
        with self._lock:
            # docs/credly.md, "Duplicates": the same template and the same e-mail or earner id;
            # refused with a 422. Whether a revoked badge counts is a switch (no source says).
            earner = badge["issuer_earner_id"]
            candidates = self._by_email.get(str(badge["recipient_email"]).casefold(), [])
            candidates = candidates + (self._by_earner.get(earner, []) if earner else [])
            for other in (self._badges[i] for i in candidates):
                same_template = other["badge_template"]["id"] == badge["badge_template"]["id"]
                allowed = badge["badge_template"]["id"] in self.duplicates_allowed
                if same_template and not allowed and self._counts_as_duplicate(other):
                    raise _error(422, "User already has this badge")
            self._store(badge)
        return 201, {"data": badge, "metadata": {}}

    def replace(self, badge_id: str, body: Mapping[str, Any]) -> tuple[int, object]:
        """Replace a live badge: the old one becomes `replaced`, the new one is answered (201)."""
        with self._lock:
            old = self._existing(badge_id)
            if old["state"] == "replaced":
                # docs/credly.md, "Replacing": refused, naming the successor.
                error = _error(422, "Badge has already been replaced")
                error.body["metadata"] = {"current_badge_id": old["current_badge_id"]}
                raise error
            if old["state"] == "revoked":
                raise _error(422, "A revoked badge cannot be replaced")
            # docs/credly.md, "Replacing": only the replace fields count; the recipient (e-mail,
            # earner id) is the old badge's.
            merged = {
                "recipient_email": old["recipient_email"],
                "issuer_earner_id": old["issuer_earner_id"],
                "issued_to_first_name": old["issued_to_first_name"],
                "issued_to_last_name": old["issued_to_last_name"],
                "badge_template_id": old["badge_template"]["id"],
                "expires_at": old["expires_at_requested"],
                "evidence": old["evidence"],
                "locale": old["locale"],
                **{k: v for k, v in body.items() if k in REPLACE_FIELDS},
            }
            new = self._new_badge(merged, issued_at=old["issued_at"])
            now = _now()
            old.update(
                state="replaced", state_updated_at=now, updated_at=now, current_badge_id=new["id"]
            )
            new["replaces_badge_id"] = badge_id
            self._store(new)
        return 201, {"data": new, "metadata": {}}

    def revoke(self, badge_id: str, body: Mapping[str, Any]) -> tuple[int, object]:
        """Revoke a badge (200); 422 without a reason, or if already revoked or replaced."""
        if not body.get("reason"):
            raise _error(422, "reason is required")
        with self._lock:
            badge = self._existing(badge_id)
            if badge["state"] == "revoked":
                if self.revoke_revoked_status == 200:
                    return 200, {"data": dict(badge), "metadata": {}}
                raise _error(self.revoke_revoked_status, "Badge has already been revoked")
            if badge["state"] == "replaced":  # docs/credly.md, "Replacing": the successor stands
                raise _error(422, "A replaced badge cannot be revoked")
            now = _now()
            badge.update(
                state="revoked",
                state_updated_at=now,
                updated_at=now,
                revoked_at=now,
                revocation_reason=body["reason"],
            )
            return 200, {"data": dict(badge), "metadata": {}}

    def get_badge(self, badge_id: str) -> tuple[int, object]:
        """One badge, or 404 (also once its earner deleted it: docs/credly.md, "Revoking")."""
        with self._lock:
            return 200, {"data": dict(self._existing(badge_id)), "metadata": {}}

    def list_badges(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, object]:
        """Badges matching `filter=key::value|...`, `per_page` a page, with Credly's metadata
        (docs/credly.md, "Reading": total_count, current_page, total_pages, next_page_url)."""
        filters = self._filters(query.get("filter", [""])[0])
        try:
            page = int(query.get("page", ["1"])[0])
        except ValueError:
            raise _error(400, "page must be a number") from None
        with self._lock:
            if "issuer_earner_id" in filters:
                ids = self._by_earner.get(filters["issuer_earner_id"], [])
                candidates = [self._badges[i] for i in ids]
            else:
                candidates = list(self._badges.values())
            found = [dict(b) for b in candidates if self._matches(b, filters)]
        pages = max(1, -(-len(found) // self.per_page))
        chunk = found[(page - 1) * self.per_page : page * self.per_page] if page >= 1 else []

        def page_url(number: int) -> str | None:
            if not 1 <= number <= pages:
                return None
            params = {**({"filter": query["filter"][0]} if "filter" in query else {})}
            return f"{self.root}{path}?{urlencode({**params, 'page': number})}"

        metadata = {
            "count": len(chunk),
            "current_page": page,
            "total_count": len(found),
            "total_pages": pages,
            "per": self.per_page,
            "previous_page_url": page_url(page - 1),
            "next_page_url": page_url(page + 1),
        }
        return 200, {"data": chunk, "metadata": metadata}

    def get_event(self, organization_id: str, event_id: str) -> tuple[int, object]:
        """One registered event of the organisation in the path; 404 for an unknown one, or one
        of another organisation (Credly scopes an organisation's events to it)."""
        with self._lock:
            event = self._events.get(event_id)
        if event is None or event["organization_id"] != organization_id:
            raise _error(404, "Not found")
        return 200, {"data": dict(event), "metadata": {}}

    def tokens(self) -> tuple[int, object]:
        """The organisation's tokens with their expiry (docs/credly.md, "Tokens")."""
        token = {"id": "standin-token-id", "name": "gateway", "expires_at": self.token_expires_at}
        return 200, {"data": [token, *self.other_tokens], "metadata": {}}

    # -- helpers (callers hold the lock where they touch state)

    def _store(self, badge: dict[str, Any]) -> None:
        self._badges[badge["id"]] = badge
        self._by_earner.setdefault(badge["issuer_earner_id"], []).append(badge["id"])
        self._by_email.setdefault(str(badge["recipient_email"]).casefold(), []).append(badge["id"])

    def _existing(self, badge_id: str) -> dict[str, Any]:
        badge = self._badges.get(badge_id)
        if badge is None:
            raise _error(404, "Not found")
        return badge

    def _new_badge(self, body: Mapping[str, Any], issued_at: str | None = None) -> dict[str, Any]:
        now = _now()
        first, last = body.get("issued_to_first_name"), body.get("issued_to_last_name")
        expires_at = body.get("expires_at")
        if expires_at is None:  # docs/credly.md, "Issuing": null is the template's default expiry
            expires_at = self.template_expiry.get(str(body.get("badge_template_id")))
        return {
            "id": str(uuid.uuid4()),
            "state": "pending",
            "issuer_earner_id": body.get("issuer_earner_id"),
            "recipient_email": body.get("recipient_email"),
            "issued_to_first_name": first,
            "issued_to_last_name": last,
            "issued_to": f"{first} {last}",
            "issued_at": _request_datetime(body, "issued_at") or issued_at,
            "expires_at": _request_datetime({"expires_at": expires_at}, "expires_at"),
            "expires_at_requested": body.get("expires_at"),
            "evidence": list(body.get("evidence") or []),
            "locale": body.get("locale") or "en",
            "badge_template": {"id": body.get("badge_template_id")},
            "accepted_at": None,
            "created_at": now,
            "updated_at": now,
            "state_updated_at": now,
        }

    def _counts_as_duplicate(self, badge: Mapping[str, Any]) -> bool:
        """A live badge does; a revoked or expired one only with `revoked_is_duplicate`."""
        if badge["state"] == "replaced":
            return False
        expired = badge["expires_at"] is not None and badge["expires_at"] <= _now()
        return self.revoked_is_duplicate or not (badge["state"] == "revoked" or expired)

    @staticmethod
    def _filters(value: str) -> dict[str, str]:
        filters: dict[str, str] = {}
        for part in filter(None, value.split("|")):
            key, sep, wanted = part.partition("::")
            if not sep or key not in FILTER_KEYS:
                raise _error(422, f"unsupported filter {part!r}")
            filters[key] = wanted
        return filters

    @staticmethod
    def _matches(badge: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
        for key, wanted in filters.items():
            actual = badge["badge_template"]["id"] if key == "badge_template_id" else badge[key]
            allowed = wanted.split(",") if key == "state" else [wanted]
            if key == "recipient_email":  # e-mail addresses compare without case
                actual, allowed = str(actual).casefold(), [wanted.casefold()]
            if actual not in allowed:
                return False
        return True


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the stand-in: control API, then Credly's API."""

    protocol_version = "HTTP/1.1"
    server_version = "CredlyStandIn/1"
    # One buffered write per answer and no Nagle delay: a keep-alive call takes ~1 ms, not 40 ms.
    wbufsize = -1
    disable_nagle_algorithm = True

    @property
    def standin(self) -> CredlyStandIn:
        return self.server.standin  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("credly stand-in: " + format, *args)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        operation: str | None = None
        body: dict[str, Any] | None = None
        try:
            body = self._body()
            if split.path.startswith("/_control/"):
                status, payload = self._control(split.path, body)
            else:
                operation, match = self._route(split.path)
                status, payload = self._api(operation, match, split, body)
            headers: dict[str, str] = {}
        except Answer as answer:
            status, payload, headers = answer.status, answer.body, answer.headers
        if not split.path.startswith("/_control/"):
            self.standin.record(self.command, split.path, operation, status, body)
        self._send(status, payload, headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _error(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise _error(400, "body must be a JSON object")
        return body

    def _route(self, path: str) -> tuple[str, re.Match[str]]:
        known_path = False
        for method, pattern, operation in ROUTES:
            match = pattern.match(path)
            if match:
                known_path = True
                if method == self.command:
                    return operation, match
        raise _error(405 if known_path else 404, "Not found")

    def _api(
        self, operation: str, match: re.Match[str], split: SplitResult, body: dict[str, Any]
    ) -> tuple[int, object]:
        standin = self.standin
        if not standin.authorized(self.headers.get("Authorization")):
            raise _error(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="Credly"'})
        if match["org"] != standin.organization_id:
            raise _error(404, "Not found")
        standin.wait(standin.latency)
        fault = standin.next_fault(operation)
        if fault is not None:
            standin.wait(float(fault.get("delay") or 0))
            if fault.get("hold"):
                standin.hold()
            if "status" in fault:
                headers = {}
                if fault.get("retry_after") is not None:
                    headers["Retry-After"] = str(fault["retry_after"])
                body_out = fault.get("body", {"data": {"message": "Injected fault"}})
                raise Answer(int(fault["status"]), body_out, headers)
        if operation == "issue":
            return standin.issue(body)
        if operation == "replace":
            return standin.replace(match["id"], body)
        if operation == "revoke":
            return standin.revoke(match["id"], body)
        if operation == "get":
            return standin.get_badge(match["id"])
        if operation == "list":
            return standin.list_badges(split.path, parse_qs(split.query))
        if operation == "event":
            return standin.get_event(match["org"], match["id"])
        return standin.tokens()

    def _control(self, path: str, body: dict[str, Any]) -> tuple[int, object]:
        standin = self.standin
        badge_match = BADGE_CONTROL.match(path)
        try:
            if (self.command, path) == ("POST", "/_control/faults"):
                responses = body.get("responses")
                if not isinstance(responses, list):
                    raise ValueError("responses must be a list")
                standin.queue_faults(responses, body.get("operation", "issue"))
                return 204, None
            if (self.command, path) == ("GET", "/_control/badges"):
                return 200, {"data": standin.badges()}
            if (self.command, path) == ("POST", "/_control/events"):
                event_type = body.get("type") or body.get("event_type")
                if not event_type:
                    raise ValueError("type is required")
                event = standin.add_event(
                    event_type,
                    body.get("data"),
                    event_id=body.get("id"),
                    organization_id=body.get("organization_id"),
                    occurred_at=body.get("occurred_at"),
                )
                return 201, {"data": event}
            if (self.command, path) == ("GET", "/_control/requests"):
                return 200, {"data": standin.requests_seen()}
            if (self.command, path) == ("POST", "/_control/release"):
                standin.release()
                return 204, None
            if (self.command, path) == ("POST", "/_control/reset"):
                standin.reset()
                return 204, None
            if self.command == "POST" and badge_match:
                badge_id, what = badge_match["id"], badge_match["what"]
                if what == "delete":
                    return 201, {"data": standin.delete_badge(badge_id)}
                if what == "replace":
                    return 201, {"data": standin.replace_out_of_band(badge_id, body)}
                state = body.get("state")
                if not state:
                    raise ValueError("state is required")
                return 201, {"data": standin.set_badge_state(badge_id, state)}
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        except KeyError:
            raise _error(404, "Not found") from None
        raise _error(404, "Not found")

    def _send(self, status: int, payload: object, headers: Mapping[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; prints one JSON line with the URL, organisation and token."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--organization-id", default=DEFAULT_ORGANIZATION_ID)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--per-page", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=0, help="Wait before every answer.")
    args = parser.parse_args(argv)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with CredlyStandIn(
        args.host,
        args.port,
        organization_id=args.organization_id,
        token=args.token,
        per_page=args.per_page,
        latency=args.latency_ms / 1000,
    ) as standin:
        print(
            json.dumps(
                {"url": standin.url, "organization_id": args.organization_id, "token": args.token}
            ),
            flush=True,
        )
        done.wait()


if __name__ == "__main__":
    main()
