"""Signed webhook POSTs: Standard Webhooks signatures, the private-address guard, answers."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from connectors import employer_webhooks
from connectors.employer_webhooks import (
    DeliveryFailed,
    TargetRefused,
    WebhookSender,
    check_target,
    new_secret,
    signed_headers,
)
from gateway.platform import logs
from tests.support.http_stubs import dripping, scripted, self_signed, serve

BODY = json.dumps({"type": "certification.status_changed", "data": {"status": "active"}}).encode()


def plain_sender(**options: object) -> WebhookSender:
    """A sender that may POST to plain http URLs, as the stub receivers are."""
    return WebhookSender(allow_http=True, **options)


def check_plain(url: str, *, allow_private: bool) -> None:
    """`check_target` with plain http URLs allowed: what else it refuses."""
    check_target(url, allow_private=allow_private, allow_http=True)


def test_a_signature_verifies_with_the_standardwebhooks_package():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", BODY, int(time.time()))
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_a_changed_body_or_another_secret_fails_verification():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", BODY, int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"active", b"lapsed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_secrets_are_whsec_and_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


#: IPv6 addresses that reach a private IPv4 address (127.0.0.1, 10.0.0.1, 169.254.169.254).
EMBEDDING_PRIVATE_IPV4 = (
    "64:ff9b::7f00:1",  # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::1",  # 6to4
    "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",  # Teredo, server 10.0.0.1, client 8.8.8.8
    "::7f00:1",  # IPv4-compatible
    "::a00:1",
    "::ffff:0:7f00:1",  # IPv4-translated
    "::ffff:a9fe:a9fe",  # IPv4-mapped
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        *(f"http://[{address}]/hook" for address in EMBEDDING_PRIVATE_IPV4),
        "http://[64:ff9b:1::808:808]/hook",  # NAT64 for local use: anything behind it
        # not public, whatever this Python's tables say
        "http://192.0.0.192/hook",  # IETF protocol assignments: a cloud metadata address
        "http://[64:ff9b::c000:c0]/hook",  # the same through NAT64
        "http://[fec0::1]/hook",  # site-local
        "http://[3fff::1]/hook",  # documentation (2024)
        "http://[5f00::1]/hook",  # SRv6 segment ids
    ],
)
def test_targets_on_loopback_private_or_link_local_addresses_are_refused(url):
    with pytest.raises(TargetRefused, match="not allowed"):
        check_plain(url, allow_private=False)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "[::ffff:93.184.216.34]",
        "[64:ff9b::5db8:d822]",
        "[2002:5db8:d822::1]",
        "[2606:4700::1]",
    ],
)
def test_a_target_on_a_public_address_is_taken(address):
    check_target(f"https://{address}/hooks/gateway", allow_private=False)


def test_a_refusal_does_not_tell_what_an_internal_name_resolves_to(monkeypatch):
    """An employer could map the gateway's network through the refusals' text otherwise."""
    _resolving(monkeypatch, "db.internal", ["10.20.30.40"])
    with pytest.raises(TargetRefused, match="not allowed") as refused:
        check_target("https://db.internal/hook", allow_private=False)
    assert "10.20.30.40" not in str(refused.value)


def test_the_operator_setting_lets_private_targets_through():
    check_target("https://127.0.0.1:9/hook", allow_private=True)


@pytest.mark.parametrize("allow_private", [True, False])
def test_a_plain_http_target_is_refused_unless_allowed(allow_private):
    """A delivery carries a member's name and status and a signature anyone on the way could
    replay: https only, but where the operator allows plain http (development, tests)."""
    for url in ("http://93.184.216.34/hook", "HTTP://93.184.216.34:8080/hook?token=SECRET"):
        with pytest.raises(TargetRefused, match="plain http URL") as refused:
            check_target(url, allow_private=allow_private)
        assert "SECRET" not in str(refused.value)
        check_target(url, allow_private=allow_private, allow_http=True)
    check_target("https://93.184.216.34/hook", allow_private=allow_private)


def test_the_sender_refuses_a_plain_http_url_before_connecting_unless_allowed():
    with serve(scripted(then=204)) as (url, received):
        with pytest.raises(TargetRefused, match="plain http URL"):
            WebhookSender(allow_private=True).send(url + "/hook", new_secret(), "msg_1", BODY)
        assert received == []
        assert plain_sender(allow_private=True).send(url + "/hook", new_secret(), "m", BODY) == 204
    assert len(received) == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/x",
        "http:///nohost",
        "javascript:alert(1)",
        "http://93.184.216.34:99999/x",
        "http://93.184.216.34:0/x",
        "http://93.184.216.34:http/x",
    ],
)
def test_only_http_and_https_urls_with_a_host_and_a_port_are_taken(url):
    with pytest.raises(TargetRefused):
        check_plain(url, allow_private=True)


def test_the_sender_checks_the_address_again_before_posting():
    with serve(scripted()) as (url, received):
        with pytest.raises(TargetRefused):
            plain_sender(allow_private=False).send(url + "/hook", new_secret(), "msg_1", BODY)
        assert received == []


def test_the_sender_posts_the_signed_body_and_returns_the_2xx_status():
    secret = new_secret()
    with serve(scripted(then=204)) as (url, received):
        status = plain_sender(allow_private=True).send(url + "/hook", secret, "msg_7", BODY)
    assert status == 204
    [request] = received
    assert request.method == "POST" and request.path == "/hook" and request.body == BODY
    assert request.headers["webhook-id"] == "msg_7"
    assert Webhook(secret).verify(request.body, request.headers) == json.loads(BODY)


@pytest.mark.parametrize("status", [500, 404, 302])
def test_any_answer_but_2xx_is_a_failed_attempt_with_its_status(status):
    with serve(scripted(then=status)) as (url, _), pytest.raises(DeliveryFailed) as failed:
        plain_sender(allow_private=True).send(url, new_secret(), "msg_1", BODY)
    assert failed.value.status == status


def test_no_answer_is_a_failed_attempt_without_status():
    with serve(scripted()) as (url, _):
        closed = url  # the server is gone once the block ends
    with pytest.raises(DeliveryFailed) as failed:
        plain_sender(timeout=1, allow_private=True).send(closed, new_secret(), "msg_1", BODY)
    assert failed.value.status is None


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 500 Oops\r\nContent-Length: 5000\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-Slow: "],
    ids=["the-body", "the-headers"],
)
@pytest.mark.parametrize("allow_private", [True, False])
def test_a_receiver_dripping_its_answer_is_cut_off_at_the_longest_attempt(
    monkeypatch, head, allow_private
):
    monkeypatch.setattr(employer_webhooks, "_public", lambda address: address == "127.0.0.1")
    sender = plain_sender(timeout=(0.5, 1.5), allow_private=allow_private)
    with dripping(head, every=0.2) as url:  # each byte well within the read timeout
        started = time.monotonic()
        with pytest.raises(DeliveryFailed):
            sender.send(f"{url}/hook", new_secret(), "m", BODY)
        took = time.monotonic() - started
    assert sender.longest_attempt <= took < sender.longest_attempt + 2.0  # the drip lasts on


def test_a_failed_attempt_says_nothing_of_the_urls_user_password_or_query():
    with serve(scripted(then=500)) as (url, _), pytest.raises(DeliveryFailed) as answered:
        secret_url = url.replace("://", "://user:s3cret@") + "/hook?token=SEC%52ET{x}|y#frag"
        plain_sender(allow_private=True).send(secret_url, new_secret(), "m", BODY)
    with pytest.raises(DeliveryFailed) as unanswered:
        plain_sender(timeout=1, allow_private=True).send(secret_url, new_secret(), "m", BODY)
    for failed in (answered, unanswered):
        message = str(failed.value)
        assert "/hook?…" in message
        found = ("user:", "s3cret", "SEC", "ET{", "ET%7B", "frag")
        assert not [part for part in found if part in message], message


@pytest.fixture
def debug_logs():
    """The gateway's logging set up at LOG_LEVEL=DEBUG for the test."""
    root = logging.getLogger()
    level = root.level
    logs.configure("DEBUG")
    yield
    root.setLevel(level)


def test_no_log_line_quotes_a_webhook_urls_query_at_debug_either(debug_logs, caplog):
    """urllib3 logs each request at DEBUG (`"POST /hook?token=... HTTP/1.1" 200`): its loggers
    stay at INFO. It warns of a malformed answer naming the URL: without its query, the
    receiver's secret."""
    caplog.set_level(logging.DEBUG)
    sender = plain_sender(allow_private=True)
    with serve(scripted(then=204)) as (url, _):
        assert sender.send(f"{url}/hook?token=SECRET-1", new_secret(), "m", BODY) == 204
    malformed = b"HTTP/1.1 204 No Content\r\nnot a header line\r\n\r\n"
    with dripping(malformed, every=30) as url:
        assert sender.send(f"{url}/hook?token=SECRET-2", new_secret(), "m", BODY) == 204
    urllib3 = [record for record in caplog.records if record.name.startswith("urllib3")]
    assert [record.levelname for record in urllib3] == ["WARNING"]
    assert "/hook?…)" in urllib3[0].getMessage()
    assert "SECRET" not in caplog.text


def _resolving(monkeypatch, host: str, answers: list[str]) -> list[str]:
    """Make `host` resolve to each of `answers` in turn (the last one from then on)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(name, port, *args, **kwargs):
        if name != host:
            return real(name, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_host_that_resolves_elsewhere_when_connecting_is_refused_then(monkeypatch):
    with serve(scripted(then=204)) as (url, received):
        target = f"http://hooks.example:{urlsplit(url).port}/hook"
        asked = _resolving(monkeypatch, "hooks.example", ["93.184.216.34", "127.0.0.1"])
        check_plain(target, allow_private=False)  # as at registration: a public address
        with pytest.raises(TargetRefused, match="not allowed"):
            plain_sender().send(target, new_secret(), "m", BODY)
        assert asked == ["93.184.216.34", "127.0.0.1"]  # the delivery's connection asked again
        assert received == []


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE_IPV4)
def test_a_host_resolving_to_an_ipv6_address_embedding_a_private_one_is_refused_on_connecting(
    monkeypatch, address
):
    with serve(scripted(then=204)) as (url, received):
        target = f"http://hooks.example:{urlsplit(url).port}/hook"
        asked = _resolving(monkeypatch, "hooks.example", [address])
        with pytest.raises(TargetRefused, match="not allowed"):
            check_plain(target, allow_private=False)
        with pytest.raises(TargetRefused, match="not allowed"):
            plain_sender().send(target, new_secret(), "m", BODY)
        assert asked == [address, address] and received == []


def test_a_checked_connection_goes_to_the_address_it_checked_and_names_the_host(monkeypatch):
    monkeypatch.setattr(employer_webhooks, "_public", lambda address: address == "127.0.0.1")
    with serve(scripted(then=204)) as (url, received):
        port = urlsplit(url).port
        _resolving(monkeypatch, "hooks.example", ["127.0.0.1"])
        status = plain_sender().send(f"http://hooks.example:{port}/hook", new_secret(), "m", BODY)
    assert status == 204
    [request] = received
    assert request.headers["Host"] == f"hooks.example:{port}"


def _trusting(certificate) -> requests.Session:
    session = requests.Session()
    session.verify = str(certificate)
    return session


def test_a_checked_tls_connection_verifies_the_hosts_certificate_and_names_it(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(employer_webhooks, "_public", lambda address: address == "127.0.0.1")
    tls, certificate = self_signed("hooks.example", tmp_path)
    with serve(scripted(then=204), tls) as (url, received):
        target = f"https://hooks.example:{urlsplit(url).port}/hook"
        _resolving(monkeypatch, "hooks.example", ["127.0.0.1"])
        status = WebhookSender(session=_trusting(certificate)).send(target, new_secret(), "m", BODY)
    assert status == 204
    [request] = received
    assert request.headers["Host"] == f"hooks.example:{urlsplit(url).port}"


def test_a_checked_tls_connection_refuses_a_certificate_for_another_host(monkeypatch, tmp_path):
    monkeypatch.setattr(employer_webhooks, "_public", lambda address: address == "127.0.0.1")
    tls, certificate = self_signed("elsewhere.example", tmp_path)
    with serve(scripted(then=204), tls) as (url, received):
        target = f"https://hooks.example:{urlsplit(url).port}/hook"
        _resolving(monkeypatch, "hooks.example", ["127.0.0.1"])
        sender = WebhookSender(session=_trusting(certificate))
        with pytest.raises(DeliveryFailed, match="Hostname mismatch"):
            sender.send(target, new_secret(), "m", BODY)
    assert received == []


def test_the_answer_kept_of_a_failed_attempt_holds_no_nul_nor_undecodable_bytes():
    answer = b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 6\r\n\r\na\x00b\xffc\n"
    with dripping(answer, every=60) as url, pytest.raises(DeliveryFailed) as failed:
        plain_sender(allow_private=True).send(url, new_secret(), "m", BODY)
    assert (failed.value.status, failed.value.body) == (500, "a\ufffdb\ufffdc\n")
