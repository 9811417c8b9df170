"""Directory connector: PUT each public verification record to an external verification directory.

The directory is an OAuth 2.0 resource server. The gateway gets its token with the client
credentials grant through Authlib's `OAuth2Session` and keeps it until it expires (Authlib fetches
a new one by itself then, since the token has `expires_at`). A 401 from the directory (a token
revoked early, or a clock that disagrees) makes it fetch a new token and try once more.

`PUT {base}/records/{certification_id}` with the public record as JSON; 2xx is success; timeouts,
connection errors, 408, 429 and 5xx are transient (`Retry-After` honoured); other answers refuse.
The module imports nothing of Flask, `gateway` or `jobs`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from connectors.errors import PermanentError, TransientError, parse_retry_after, without_nul

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
RETRIED_STATUSES = frozenset({408, 429})


class DirectoryError(Exception):
    """A call to the directory (or its token endpoint) failed; `status` None without an answer."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class DirectoryUnavailable(DirectoryError, TransientError):
    """Worth retrying: no answer, 408, 429 or 5xx; `retry_after` in seconds if the answer said."""


class DirectoryRefused(DirectoryError, PermanentError):
    """The directory or its token endpoint refused (any other 4xx, an OAuth error)."""


def _transient(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 500


def _fail(where: str, response: requests.Response) -> DirectoryError:
    status, body = response.status_code, without_nul(response.text[:1000])
    if _transient(status):
        error = DirectoryUnavailable(f"{where} answered {status}", status=status, body=body)
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return error
    return DirectoryRefused(f"{where} answered {status}", status=status, body=body)


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """Turn what requests and Authlib raise into DirectoryUnavailable / DirectoryRefused."""
    try:
        yield
    except OAuthError as exc:  # the token endpoint answered an OAuth error, e.g. invalid_client
        raise DirectoryRefused(f"{where}: token endpoint refused: {exc}") from exc
    except requests.HTTPError as exc:  # the token endpoint answered 5xx or a non-JSON error
        raise _fail(f"{where}: token endpoint", exc.response) from exc
    except requests.RequestException as exc:
        raise DirectoryUnavailable(f"{where}: {exc!r}") from exc
    except ValueError as exc:  # a token answer that is not a JSON object
        raise DirectoryRefused(f"{where}: {exc}") from exc


class Directory:
    """A client of one verification directory; keeps its access token between calls."""

    def __init__(
        self,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: Timeout = (3.05, 10.0),
    ) -> None:
        self.records_url = base_url.rstrip("/") + "/records/"
        self._session = OAuth2Session(
            client_id,
            client_secret,
            token_endpoint=token_url,
            grant_type="client_credentials",
            default_timeout=timeout,
        )
        self._lock = threading.Lock()  # one token fetch at a time, one session user at a time

    def put_record(self, certification_id: str, record: Mapping[str, Any]) -> int:
        """PUT the public record of `certification_id`; its 2xx status, else a DirectoryError."""
        url = self.records_url + quote(certification_id, safe="")
        where = f"directory PUT {url}"
        with self._lock, _translated(where):
            if not self._session.token:
                self._session.fetch_token()
            response = self._session.put(url, json=dict(record))
            if response.status_code == 401:
                log.info("the directory refused its token; fetching a new one")
                self._session.fetch_token()
                response = self._session.put(url, json=dict(record))
        if 200 <= response.status_code < 300:
            return response.status_code
        raise _fail(where, response)


def make_directory(
    base_url: str | None,
    token_url: str | None,
    client_id: str | None,
    client_secret: str | None,
    *,
    timeout: Timeout = (3.05, 10.0),
) -> Directory | None:
    """The directory client, or None when the directory is not configured."""
    if not (base_url and token_url and client_id and client_secret):
        return None
    return Directory(base_url, token_url, client_id, client_secret, timeout=timeout)
