"""Signed webhook POSTs (Standard Webhooks): secrets, signatures, a private-address guard, sending.

Facts this module relies on (Standard Webhooks specification v1, standardwebhooks.com):

- Three headers: `webhook-id` (the message id, the same on every retry so receivers can drop
  duplicates), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
  (`v1,<base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}">`).
- The key is the base64 part of the secret `whsec_<base64>`; receivers verify with it (e.g.
  `standardwebhooks.Webhook(secret).verify(body, headers)`, which allows 5 minutes of clock skew).
- A 2xx answer acknowledges the message; anything else (a redirect too) is a failed attempt.

A target whose host resolves to a loopback, private, link-local or otherwise non-global address is
refused unless the operator allows them, as is an IPv6 address embedding such an IPv4 address
(IPv4-mapped or -compatible, NAT64, 6to4, Teredo) or in NAT64's local-use prefix: checked at
registration, and by every connection the sender
opens, which connects to the very address it checked (a DNS answer that changed between a check and
the connection cannot lead it elsewhere). The module imports nothing of Flask, `gateway` or `jobs`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from connectors.errors import PermanentError, TransientError

SECRET_PREFIX = "whsec_"
USER_AGENT = "credential-gateway-webhooks/1"
#: How much of a receiver's answer is kept in the delivery log.
ANSWER_EXCERPT_BYTES = 1024

Timeout = float | tuple[float, float]


class TargetRefused(PermanentError):
    """The URL may not receive deliveries: not http(s), or its host is not a public address."""


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


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


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


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise TargetRefused unless `url` is http(s) on a host whose every address is public.

    With `allow_private` only the scheme and host are checked. TargetUnresolved when DNS does not
    answer for the host.
    """
    host, port = _http_target(url)
    if allow_private:
        return
    try:
        public_address(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"{host} does not resolve: {exc}") from exc


def _http_target(url: str) -> tuple[str, int]:
    """The host and port of `url`; TargetRefused unless it is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url} is not an http(s) URL with a host")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def public_address(host: str, port: int) -> str:
    """The first address `host` resolves to; TargetRefused unless every one of them is public."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    private = sorted({info[4][0] for info in found if not _public(info[4][0])})
    if private:
        raise TargetRefused(
            f"{host} resolves to a loopback, private or link-local address (or one embedding it) "
            f"({', '.join(private)}); such targets are not allowed"
        )
    return found[0][4][0]


class _PublicOnly(HTTPConnection):
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


class _PublicOnlyPool(HTTPConnectionPool):
    ConnectionCls = _PublicOnly


class _PublicOnlyHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPS


class PublicOnlyAdapter(HTTPAdapter):
    """Requests' adapter whose connections go to public addresses only."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicOnlyPool,
            "https": _PublicOnlyHTTPSPool,
        }


class WebhookSender:
    """POSTs signed messages to subscribers' URLs, connecting to public addresses only (unless
    `allow_private`)."""

    def __init__(
        self,
        *,
        timeout: Timeout = (3.05, 10.0),
        allow_private: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.session = session or requests.Session()
        if not allow_private:
            self.session.trust_env = False  # via a proxy, the proxy's address would be checked
            for scheme in ("http://", "https://"):
                self.session.mount(scheme, PublicOnlyAdapter())

    def send(self, url: str, secret: str, message_id: str, body: bytes) -> int:
        """POST `body` signed with `secret`; the 2xx status, else TargetRefused/DeliveryFailed."""
        _http_target(url)  # the addresses are checked by the connection (PublicOnlyAdapter)
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
            raise DeliveryFailed(f"POST {url}: {exc!r}") from exc
        with response:
            if 200 <= response.status_code < 300:
                return response.status_code
            raise DeliveryFailed(
                f"POST {url} answered {response.status_code}",
                status=response.status_code,
                body=_excerpt(response),
            )


def _excerpt(response: requests.Response) -> str:
    """The start of an answer's body, as far as it can be read."""
    try:
        start = response.raw.read(ANSWER_EXCERPT_BYTES, decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError):
        return ""
    return start.decode("utf-8", "replace")
