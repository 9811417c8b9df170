"""The directory connector against a stub directory and token endpoint on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from connectors.directory import Directory, DirectoryRefused, DirectoryUnavailable, make_directory
from tests.support.http_stubs import DirectoryStub, Received, serve

RECORD = {"certification_id": "CERT-1", "name": "Ada Lovelace", "status": "active"}


def directory(url: str) -> Directory:
    return Directory(url, f"{url}/token", "gateway", "s3cret", timeout=2)


def puts(received: list[Received]) -> list[str]:
    """The bearer token of each PUT, in order."""
    return [r.headers["Authorization"] for r in received if r.method == "PUT"]


def test_the_record_is_put_with_a_client_credentials_token_fetched_once():
    stub = DirectoryStub()
    with serve(stub) as (url, received):
        client = directory(url)
        assert client.put_record("CERT-1", RECORD) == 200
        assert client.put_record("CERT 2/x", {**RECORD, "certification_id": "CERT 2/x"}) == 200
    assert stub.records["CERT-1"] == RECORD
    assert stub.records["CERT%202%2Fx"]["certification_id"] == "CERT 2/x"  # the id is escaped
    assert stub.issued == ["tok-1"]
    [token_request] = [r for r in received if r.path == "/token"]
    assert b"grant_type=client_credentials" in token_request.body
    assert token_request.headers["Authorization"].startswith("Basic ")  # client_secret_basic


def test_an_expired_token_is_replaced_before_the_call_without_a_401():
    stub = DirectoryStub(expires_in=61)  # Authlib renews 60 s ahead: stale after 1 s
    with serve(stub) as (url, received):
        client = directory(url)
        client.put_record("CERT-1", RECORD)
        time.sleep(1.2)
        client.put_record("CERT-1", RECORD)
    assert stub.issued == ["tok-1", "tok-2"]
    assert puts(received) == ["Bearer tok-1", "Bearer tok-2"]


def test_a_401_fetches_a_new_token_and_retries_once():
    stub = DirectoryStub()
    with serve(stub) as (url, received):
        client = directory(url)
        client.put_record("CERT-1", RECORD)
        stub.stale.add("tok-1")  # revoked by the directory before it expired
        assert client.put_record("CERT-1", {**RECORD, "status": "revoked"}) == 200
    assert puts(received) == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert stub.records["CERT-1"]["status"] == "revoked"


def records_answer(status: int, body: dict | None = None):
    """A directory whose token endpoint works but whose records answer `status`."""
    stub = DirectoryStub()
    return stub, lambda request: stub(request) if request.path == "/token" else (status, body)


def test_a_second_401_is_a_refusal_not_a_loop():
    stub, respond = records_answer(401)
    with serve(respond) as (url, received), pytest.raises(DirectoryRefused) as refused:
        directory(url).put_record("CERT-1", RECORD)
    assert refused.value.status == 401
    assert len(puts(received)) == 2 and stub.issued == ["tok-1", "tok-2"]


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_are_transient(status):
    _, respond = records_answer(status)
    with serve(respond) as (url, _), pytest.raises(DirectoryUnavailable) as failed:
        directory(url).put_record("CERT-1", RECORD)
    assert failed.value.status == status


def test_a_bad_request_is_refused():
    _, respond = records_answer(400, {"error": "bad"})
    with serve(respond) as (url, _), pytest.raises(DirectoryRefused) as refused:
        directory(url).put_record("CERT-1", RECORD)
    assert refused.value.status == 400 and "bad" in refused.value.body


def test_a_token_endpoint_refusing_the_client_is_a_refusal():
    invalid_client = serve(lambda r: (401, {"error": "invalid_client"}))
    with invalid_client as (url, received), pytest.raises(DirectoryRefused, match="invalid_client"):
        directory(url).put_record("CERT-1", RECORD)
    assert puts(received) == []


def test_a_token_endpoint_failing_with_5xx_is_transient():
    with serve(lambda r: (502, None)) as (url, _), pytest.raises(DirectoryUnavailable) as failed:
        directory(url).put_record("CERT-1", RECORD)
    assert failed.value.status == 502


def test_an_unreachable_directory_is_transient():
    with serve(DirectoryStub()) as (url, _):
        gone = url
    with pytest.raises(DirectoryUnavailable):
        directory(gone).put_record("CERT-1", RECORD)


def test_no_directory_without_all_four_settings():
    assert make_directory(None, None, None, None) is None
    assert make_directory("http://d", "http://d/token", "id", "secret") is not None
