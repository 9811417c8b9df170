"""`gateway clients`: the OAuth2 API clients."""

from __future__ import annotations

import json
from collections.abc import Callable

import click
from flask.cli import with_appcontext

from gateway.cli.group import CommandGroup, one_line, table
from gateway.usecases import clients as api_clients
from gateway.web.context import services


@click.group(cls=CommandGroup)
def clients() -> None:
    """OAuth2 API clients."""


@clients.command("create")
@click.option("--name", required=True, help="Who the client is, e.g. 'membership system'.")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    help="A scope to grant, or several separated by spaces; repeat it for more "
    f"(--scope admin --scope events:write). Scopes: {' '.join(api_clients.SCOPES)}.",
)
@with_appcontext
def clients_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a client; prints {"client_id", "client_secret"} (the secret is shown only here)."""
    try:
        api_clients.register(services().db, name, " ".join(scopes), _shown("no client was created"))
    except api_clients.InvalidClientField as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}") from exc


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def clients_list(as_json: bool) -> None:
    """List clients (never their secrets)."""
    rows = [
        {
            "client_id": c.client_id,
            "name": c.name,
            "scope": c.scope,
            "created_at": c.created_at.isoformat(timespec="seconds"),
            "revoked_at": c.revoked_at.isoformat(timespec="seconds") if c.revoked_at else None,
        }
        for c in api_clients.listing(services().db)
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    lines = [("CLIENT ID", "NAME", "SCOPE", "STATE")] + [
        (
            row["client_id"],
            row["name"],
            row["scope"],
            f"revoked {row['revoked_at']}" if row["revoked_at"] else "active",
        )
        for row in rows
    ]
    for line in table(lines):
        click.echo(line)


@clients.command("new-secret")
@click.argument("client_id")
@with_appcontext
def clients_new_secret(client_id: str) -> None:
    """Give a client a new secret, as when its secret leaked: the old one gets no token from now
    on and every token issued stops working at once; the client keeps its id, scopes and webhook
    subscriptions. Prints {"client_id", "client_secret"} (the secret is shown only here)."""
    try:
        found = api_clients.change_secret(
            services().db, client_id, _shown(f"{client_id} keeps its secret")
        )
    except api_clients.ClientRevoked as exc:
        raise click.ClickException(f"{client_id} is revoked; create a new client") from exc
    if not found:
        raise click.ClickException(one_line(f"no client {client_id!r}"))


def _shown(otherwise: str) -> Callable[[api_clients.NewClient], None]:
    """What writes a new secret on stdout before it is stored: a stdout that takes nothing (a
    full disk, closed) ends the command in one line, which ends with `otherwise`."""

    def show(new: api_clients.NewClient) -> None:
        shown = json.dumps({"client_id": new.client_id, "client_secret": new.client_secret})
        try:
            click.echo(shown)  # and flushed; a closed stdout fails too (`watched_stdout`)
        except OSError as exc:
            reason = exc.strerror or exc
            raise click.ClickException(
                f"the secret could not be written on stdout ({reason}): {otherwise}"
            ) from exc

    return show


@clients.command("revoke")
@click.argument("client_id")
@with_appcontext
def clients_revoke(client_id: str) -> None:
    """Revoke a client; its tokens stop working at once, and its webhook subscriptions are
    deleted (nothing more is delivered to them)."""
    done = api_clients.revoke_client(services().db, client_id)
    if done is None:
        raise click.ClickException(one_line(f"no client {client_id!r}"))
    deleted = done.subscriptions_deleted
    subscriptions = f"{deleted} webhook subscription{'' if deleted == 1 else 's'} deleted"
    if not done.already:
        click.echo(f"revoked {client_id}; {subscriptions}")
        return
    when = done.revoked_at.isoformat(timespec="seconds")
    click.echo(
        f"{client_id} was already revoked ({when})" + (f"; {subscriptions}" if deleted else "")
    )
