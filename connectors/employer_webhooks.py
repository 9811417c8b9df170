"""Signed webhook POSTs (Standard Webhooks): secrets, signatures, a private-address guard, sending.

Facts this module relies on (Standard Webhooks specification v1, standardwebhooks.com):

- Three headers: `webhook-id` (the message id, the same on every retry so receivers can drop
  duplicates), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
  (`v1,<base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}">`).
- The key is the base64 part of the secret `whsec_<base64>`; receivers verify with it (e.g.
  `standardwebhooks.Webhook(secret).verify(body, headers)`, which allows 5 minutes of clock skew).
- A 2xx answer acknowledges the message; anything else (a redirect too) is a failed attempt.

A plain `http://` target is refused unless the operator allows it (development, tests): a message
carries a member's name and status, and its signature could be replayed by anyone who read it. A
target whose host resolves to a loopback, private, link-local or otherwise non-global address is
refused unless the operator allows them, as is an IPv6 address embedding such an IPv4 address
(IPv4-mapped or -compatible, NAT64, 6to4, Teredo) or in NAT64's local-use prefix: checked at
registration, and by every connection the sender
opens, which connects to the very address it checked (a DNS answer that changed between a check and
the connection cannot lead it elsewhere). The module imports nothing of Flask, `gateway` or `jobs`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from connectors.errors import PermanentError, TransientError, without_nul

SECRET_PREFIX = "whsec_"
USER_AGENT = "credential-gateway-webhooks/1"
#: How much of a receiver's answer is kept in the delivery log.
ANSWER_EXCERPT_BYTES = 1024

Timeout = float | tuple[float, float]


class TargetRefused(PermanentError):
    """The URL may not receive deliveries: not https (or http where allowed), or its host is not
    a public address."""


class TargetUnresolved(TransientError):
    """The URL's host does not resolve (now); DNS may answer later."""


class DeliveryFailed(TransientError):
    """The POST failed: no answer, or an answer other than 2xx; `status` is None without one."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def new_secret() -> str:
    """A fresh signing secret, `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of `body` sent as `message_id` at `timestamp`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


#: IPv6 prefixes whose last 32 bits are an IPv4 address the packets reach: IPv4-compatible
#: (deprecated), IPv4-translated (SIIT) and NAT64's well-known prefix.
_LAST_32_BITS_IPV4 = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
#: NAT64 for local use: an operator's own translation to any IPv4 address, never a public target.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (6to4, Teredo's server and client, NAT64, ...)."""
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    if any(ip in prefix for prefix in _LAST_32_BITS_IPV4):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


#: Ranges that are not public targets whatever the interpreter's tables say (Python releases before
#: the 2024 table fixes call most of 192.0.0.0/24 global, and none refuses IPv6 site-local
#: addresses): IETF protocol assignments (a cloud metadata address among them), site-local, the
#: IPv6 documentation prefix of 2024 and SRv6 segment ids.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(prefix)
    for prefix in ("192.0.0.0/24", "fec0::/10", "3fff::/20", "5f00::/16")
)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip.is_global
        and not ip.is_multicast
        and not any(ip.version == net.version and ip in net for net in _NOT_GLOBAL)
    )


def _public(address: str) -> bool:
    """Whether `address` is public, and so is any IPv4 address it embeds (the packets reach it
    through a translator or tunnel)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:  # ::ffff:a.b.c.d is the IPv4 address itself
            return _global(ip.ipv4_mapped)
        if ip in _LOCAL_NAT64 or not all(_global(v4) for v4 in _embedded_ipv4(ip)):
            return False
    return _global(ip)


def check_target(url: str, *, allow_private: bool, allow_http: bool = False) -> None:
    """Raise TargetRefused unless `url` is https (or, with `allow_http`, http) on a host whose
    every address is public.

    With `allow_private` only the scheme and host are checked. TargetUnresolved when DNS does not
    answer for the host.
    """
    host, port = _http_target(url, allow_http=allow_http)
    if allow_private:
        return
    try:
        public_address(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"{host} does not resolve") from exc


def _http_target(url: str, *, allow_http: bool) -> tuple[str, int]:
    """The host and port of `url`; TargetRefused unless it is https (or, with `allow_http`, http)
    with a host and a port from 1 to 65535."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{_shown(url)} is not an http(s) URL with a host")
    try:
        port = parts.port
    except ValueError as exc:  # past 65535, or not a number
        raise TargetRefused(f"{_shown(url)} has no valid port (1 to 65535)") from exc
    if port == 0:
        raise TargetRefused(f"{_shown(url)} has no valid port (1 to 65535)")
    if parts.scheme == "http" and not allow_http:
        raise TargetRefused(
            f"{_shown(url)} is a plain http URL, which anyone on the way could read and replay: "
            "webhooks go to https URLs only"
        )
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _shown(url: str) -> str:
    """`url` as logs and the delivery log show it: without the user, password, query and
    fragment, which may hold the receiver's secrets."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


def _scrubbed(text: str, url: str) -> str:
    """`text` (an error that may quote `url` or its parts, as given or as requests encoded
    them) without the URL's secrets."""
    parts = urlsplit(url)
    text = _QUOTED_PATH.sub(f"url: {parts.path or '/'}" + ("?…" if parts.query else ""), text)
    secrets_in_url = [parts.netloc.rpartition("@")[0], parts.query, parts.fragment]
    for secret in filter(None, secrets_in_url):
        text = text.replace(secret, "…")
    return text


#: How urllib3 quotes the request target in its errors ("... with url: /hook?token=...").
_QUOTED_PATH = re.compile(r"url: [^\s\"'()]+")


def public_address(host: str, port: int) -> str:
    """The first address `host` resolves to; TargetRefused unless every one of them is public."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not all(_public(info[4][0]) for info in found):  # which ones is not told: an oracle
        raise TargetRefused(
            f"{host} resolves to a loopback, private or link-local address (or one embedding it); "
            "such targets are not allowed"
        )
    return found[0][4][0]


_attempt = threading.local()  # the deadline of the POST this thread is sending, if any


class _Deadlined(HTTPConnection):
    """A connection that a timer cuts at the sending thread's deadline: a receiver that drips
    its answer a byte at a time, each within the read timeout, cannot hold the sender longer."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_attempt, "deadline", None)
        if deadline is not None:
            if self.sock is None:
                self.connect()
            wait = max(deadline - time.monotonic(), 0.0)
            timer = threading.Timer(wait, _cut, (self.sock, _attempt.cut))
            timer.daemon = True
            timer.start()
            _attempt.timers.append(timer)
        super().request(*args, **kwargs)


def _cut(sock: socket.socket, cut: threading.Event) -> None:
    cut.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once; the pool drops it


class _PublicOnly(_Deadlined):
    """A connection to the public address its host resolves to, checked as it connects."""

    def _new_conn(self) -> socket.socket:
        try:
            sock = urllib3.util.connection.create_connection(
                (public_address(self._dns_host, self.port), self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        return sock


class _PublicOnlyHTTPS(_PublicOnly, HTTPSConnection):
    """The TLS one: the certificate and SNI still name the host, not the address."""


class _DeadlinedHTTPS(_Deadlined, HTTPSConnection):
    """A TLS connection cut at the deadline, to any address (private targets allowed)."""


def _pool(connection: type[HTTPConnection], base: type[HTTPConnectionPool]) -> type:
    return type(f"{connection.__name__}Pool", (base,), {"ConnectionCls": connection})


class SenderAdapter(HTTPAdapter):
    """Requests' adapter whose connections are cut at the attempt's deadline and, unless
    `allow_private`, go to public addresses only."""

    def __init__(self, *, allow_private: bool) -> None:
        plain, tls = (
            (_Deadlined, _DeadlinedHTTPS) if allow_private else (_PublicOnly, _PublicOnlyHTTPS)
        )
        self.pools = {
            "http": _pool(plain, HTTPConnectionPool),
            "https": _pool(tls, HTTPSConnectionPool),
        }
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pools


class WebhookSender:
    """POSTs signed messages to subscribers' https URLs (http too with `allow_http`), connecting
    to public addresses only (unless `allow_private`)."""

    def __init__(
        self,
        *,
        timeout: Timeout = (3.05, 10.0),
        allow_private: bool = False,
        allow_http: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.allow_http = allow_http
        self.session = session or requests.Session()
        if not allow_private:
            self.session.trust_env = False  # via a proxy, the proxy's address would be checked
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, SenderAdapter(allow_private=allow_private))

    @property
    def longest_attempt(self) -> float:
        """The most one POST may take, answer read included: the connect and read timeouts."""
        return sum(self.timeout) if isinstance(self.timeout, tuple) else 2 * self.timeout

    def send(self, url: str, secret: str, message_id: str, body: bytes) -> int:
        """POST `body` signed with `secret`; the 2xx status, else TargetRefused/DeliveryFailed.
        The attempt is cut after `longest_attempt` seconds, however the receiver answers."""
        _http_target(url, allow_http=self.allow_http)  # the addresses: by the connection
        longest = self.longest_attempt
        _attempt.deadline, _attempt.timers = time.monotonic() + longest, []
        _attempt.cut = cut = threading.Event()
        try:
            status = self._post(url, secret, message_id, body)
        except DeliveryFailed:
            if not cut.is_set():
                raise
            status = None
        finally:
            for timer in _attempt.timers:
                timer.cancel()
            _attempt.deadline = None
        if cut.is_set():  # a cut answer may read as whole (headers ended by the close)
            raise DeliveryFailed(f"POST {_shown(url)}: no whole answer within {longest:g} s")
        return status

    def _post(self, url: str, secret: str, message_id: str, body: bytes) -> int:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signed_headers(secret, message_id, body, int(time.time())),
        }
        try:
            response = self.session.post(
                url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,  # a redirect could lead anywhere, a private address too
                stream=True,  # read no more of the answer than the log keeps
            )
        except requests.RequestException as exc:
            raise DeliveryFailed(_scrubbed(f"POST {_shown(url)}: {exc!r}", url)) from exc
        with response:
            if 200 <= response.status_code < 300:
                return response.status_code
            raise DeliveryFailed(
                f"POST {_shown(url)} answered {response.status_code}",
                status=response.status_code,
                body=_excerpt(response),
            )


def _excerpt(response: requests.Response) -> str:
    """The start of an answer's body, as far as it can be read, as text a database stores: bytes
    that are not UTF-8, and NUL, which PostgreSQL's text cannot hold, read as U+FFFD."""
    try:
        start = response.raw.read(ANSWER_EXCERPT_BYTES, decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError):
        return ""
    return without_nul(start.decode("utf-8", "replace"))
