"""`gateway db`: the database schema's migrations."""

from __future__ import annotations

import re
from typing import Any

import click
from alembic.runtime.migration import MigrationContext
from flask.cli import with_appcontext

from gateway.cli.group import CommandGroup, TextArguments
from gateway.store.db import MigrationRefused, alembic_config, migration_scripts
from gateway.web.context import services


class _MigrationCommand(TextArguments):
    """A command of `gateway db`: any database error of its, a migration the database refuses
    included, ends it in one line (exit status 1)."""

    migrating = True


class _MigrationGroup(CommandGroup):
    """`gateway db`: its commands' errors, a migration the data refuses among them, end them in
    one line (exit status 1)."""

    migrating = True
    command_class = _MigrationCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MigrationRefused as exc:
            raise click.ClickException(f"the migration was refused: {exc}") from exc


@click.group(cls=_MigrationGroup)
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply the database migrations up to --revision (default: all); a database already
    there, or past it, is left as it is (and the command says so). Upgrades run at once take
    their turns."""
    svc = services()
    before, after = svc.db.upgrade(revision, policy=svc.policy)
    reached = " ".join(after) or "base (no migration applied)"
    if before != after:
        click.echo(f"database upgraded to {reached}")
    elif set(after) == {s.revision for s in migration_scripts().get_revisions(revision)}:
        click.echo(f"database already at {reached}: nothing to upgrade")
    else:
        click.echo(
            f"database already at {reached}, past {revision}: nothing to upgrade "
            f"(`gateway db downgrade {revision}` goes back to it)"
        )


@db.command(
    "downgrade",
    short_help="Undo migrations, down to REVISION.",
    context_settings={"ignore_unknown_options": True},  # `-1` is a revision, not an option
)
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Undo the migrations after REVISION (e.g. `-1` for the last one, `base` for all); a
    database already there is left as it is (and the command says so)."""
    before, after = services().db.downgrade(revision)
    reached = " ".join(after) or "base (no migration applied)"
    if before != after:
        click.echo(f"database downgraded to {reached}")
    else:
        click.echo(f"database already at {reached}: nothing to downgrade")


@db.command("current")
@with_appcontext
def db_current() -> None:
    """The revision the database is at (`base` for a database never migrated)."""
    db = services().db
    db.alembic("current", verbose=False)
    with db.engine.connect() as connection:
        if not MigrationContext.configure(connection).get_current_heads():
            click.echo("base (no migration applied)")  # Alembic itself says nothing


@db.command("history")
@with_appcontext
def db_history() -> None:
    """Every migration, newest first, marking the current one."""
    services().db.alembic("history", indicate_current=True)


def _revision_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A revision id that is also a file name's start: digits, small letters and _."""
    if not re.fullmatch(r"[0-9a-z_]+", value):
        raise click.BadParameter(f"{value!r} is not made of digits, small letters and _")
    return value


@db.command("revision")
@click.option("--message", "-m", required=True, help="What the migration does.")
@click.option(
    "--rev-id",
    required=True,
    callback=_revision_id,
    help="The new revision's id: digits, small letters and _, e.g. 0015.",
)
@click.option("--down", default=None, help="The revision it follows (default: the single head).")
@with_appcontext
def db_revision(message: str, rev_id: str, down: str | None) -> None:
    """Autogenerate a migration from the models (development)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    db = services().db
    cfg = alembic_config(db.url)
    if rev_id in {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}:
        raise click.ClickException(f"--rev-id {rev_id} is a migration already; give a new id")
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(
            cfg, message=message, autogenerate=True, rev_id=rev_id, head=down or "head"
        )
