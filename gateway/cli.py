"""The `gateway` command: a Flask CLI group bound to the app, with the operators' commands."""

from __future__ import annotations

import json

import click
from flask.cli import FlaskGroup, with_appcontext

from gateway import auth, create_app
from gateway.services import services


@click.group(cls=FlaskGroup, create_app=lambda: create_app())
def cli() -> None:
    """Operate the credential gateway."""


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply the database migrations."""
    services().db.upgrade(revision)
    click.echo(f"database upgraded to {revision}")


@cli.group()
def clients() -> None:
    """OAuth2 API clients."""


@clients.command("create")
@click.option("--name", required=True, help="Who the client is, e.g. 'membership system'.")
@click.option("--scope", required=True, help=f"Space-separated scopes: {' '.join(auth.SCOPES)}.")
@with_appcontext
def clients_create(name: str, scope: str) -> None:
    """Create a client; prints {"client_id", "client_secret"} (the secret is shown only here)."""
    try:
        with services().db.transaction() as session:
            new = auth.create_client(session, name, scope)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    click.echo(json.dumps({"client_id": new.client_id, "client_secret": new.client_secret}))


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def clients_list(as_json: bool) -> None:
    """List clients (never their secrets)."""
    with services().db.sessions() as session:
        rows = [
            {
                "client_id": c.client_id,
                "name": c.name,
                "scope": c.scope,
                "created_at": c.created_at.isoformat(timespec="seconds"),
                "revoked_at": c.revoked_at.isoformat(timespec="seconds") if c.revoked_at else None,
            }
            for c in auth.list_clients(session)
        ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'CLIENT ID':24} {'NAME':24} {'SCOPE':40} STATE")
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['client_id']:24} {row['name'][:24]:24} {row['scope'][:40]:40} {state}")


@clients.command("revoke")
@click.argument("client_id")
@with_appcontext
def clients_revoke(client_id: str) -> None:
    """Revoke a client; its tokens stop working at once."""
    with services().db.transaction() as session:
        found = auth.revoke_client(session, client_id)
    if not found:
        raise click.ClickException(f"no client {client_id}")
    click.echo(f"revoked {client_id}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gateway")
