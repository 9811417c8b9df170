"""`gateway sync`: pushes of public records to the verification directory and subscriptions."""

from __future__ import annotations

import io
import sys

import click
from flask.cli import with_appcontext

from gateway.cli.group import COUNT, CommandGroup, one_line
from gateway.usecases import backfill
from gateway.web.context import services


@click.group(cls=CommandGroup)
def sync() -> None:
    """Pushes of public records to the verification directory and webhook subscriptions."""


@sync.command("backfill")
@click.option(
    "--target", default="directory", show_default=True, help="`directory` or a subscription id."
)
@click.option("--restart", is_flag=True, help="Start over instead of resuming the last run.")
@click.option("--batch-size", default=500, show_default=True, type=COUNT, help="Per commit.")
@with_appcontext
def sync_backfill(target: str, restart: bool, batch_size: int) -> None:
    """Queue a push of every current public record to the target, resuming the last run."""
    svc = services()
    try:
        plan = backfill.prepare(svc, target, restart=restart)
    except backfill.UnknownTarget as exc:
        raise click.BadParameter(one_line(str(exc)), param_hint="--target") from exc
    if plan.resumes_after:
        click.echo(f"resuming after {plan.resumes_after} (--restart starts over)")
    sink = None if sys.stdout.isatty() else io.StringIO()
    with click.progressbar(length=plan.remaining, label=f"queueing for {target}", file=sink) as bar:
        queued = backfill.run(svc, target, batch_size=batch_size, on_batch=bar.update)
    click.echo(f"queued {queued} {'delivery' if queued == 1 else 'deliveries'} to {target}")
