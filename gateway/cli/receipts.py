"""`gateway receipts`: the record of signed verification receipts issued."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from gateway.cli.group import CommandGroup
from gateway.platform import clock
from gateway.usecases import housekeeping
from gateway.web.context import services


@click.group(cls=CommandGroup)
def receipts() -> None:
    """The record of signed verification receipts issued."""


@receipts.command("prune")
@with_appcontext
def receipts_prune() -> None:
    """Delete the records of receipts older than RECEIPT_RETENTION_DAYS (also done daily)."""
    svc = services()
    pruned = housekeeping.prune_receipts(svc, clock.now())
    click.echo(f"pruned {pruned} receipts older than {svc.settings.receipt_retention_days} days")
