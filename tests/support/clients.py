"""API clients and their tokens, made directly in a test app's database."""

from __future__ import annotations

from flask import Flask


def register_client(app: Flask, scope: str, name: str = "test client") -> tuple[str, str]:
    """Create an API client directly in the app's database; returns (client_id, secret)."""
    from gateway.usecases import clients

    with app.extensions["gateway"].db.transaction() as session:
        new = clients.create_client(session, name, scope)
    return new.client_id, new.client_secret


def fetch_token(app: Flask, scope: str) -> str:
    """A bearer token for a new client with `scope`, through the token endpoint."""
    client_id, secret = register_client(app, scope)
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def served_token(base: str, client_id: str, secret: str) -> str:
    """A bearer token from the token endpoint of a gateway serving at `base`, over real HTTP."""
    import requests

    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
