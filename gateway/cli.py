"""The `gateway` command: a Flask CLI group bound to the app, with the operators' commands."""

from __future__ import annotations

import click
from flask.cli import FlaskGroup, with_appcontext

from gateway import create_app
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gateway")
