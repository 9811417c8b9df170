"""`gateway sweep`: re-evaluate the certifications whose standing changes on a day."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import date
from typing import Any

import click
from flask.cli import with_appcontext

from gateway.cli.group import COUNT, TextArguments
from gateway.platform import clock
from gateway.rules.periods import EARLIEST_DAY, LATEST_DAY
from gateway.usecases.sweep import Scope, count, range_in_order
from gateway.web.context import services
from jobs.cron import SweepRunning, locked_sweep


class Day(click.ParamType):
    """A day written YYYY-MM-DD, one of the days the rules compute with."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            self.fail(f"{value!r} is not a day written YYYY-MM-DD", param, ctx)
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value} is not a real date", param, ctx)
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            self.fail(f"must be from {EARLIEST_DAY} to {LATEST_DAY}", param, ctx)
        return day


@click.command("sweep", cls=TextArguments)
@click.option(
    "--as-of",
    type=Day(),
    help="The day (default: today, UTC). A later day is recorded too, with a warning: "
    "standings as of that day, their jobs queued now.",
)
@click.option("--dry-run", is_flag=True, help="Report what would change; record nothing.")
@click.option("--full", is_flag=True, help="Evaluate every certification, not only the due ones.")
@click.option("--from-id", default=None, help="First certification id of this run's range.")
@click.option("--to-id", default=None, help="Last certification id of this run's range.")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=COUNT,
    help="Certifications per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_appcontext
def sweep_command(
    as_of: date | None,
    dry_run: bool,
    full: bool,
    from_id: str | None,
    to_id: str | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """Re-evaluate the certifications whose standing changes on the day (today unless --as-of),
    record the changes and queue what they call for."""
    svc = services()
    if from_id is not None and to_id is not None and not range_in_order(svc, from_id, to_id):
        raise click.BadParameter(
            f"{from_id!r} comes after --to-id {to_id!r} in the database's order of ids: "
            "the range holds none",
            param_hint="--from-id",
        )
    scope = Scope(
        as_of=as_of or clock.now().date(),
        full=full,
        first_id=from_id,
        last_id=to_id,
        batch_size=batch_size,
        dry_run=dry_run,
    )
    total = count(svc, scope)
    sink = None if sys.stdout.isatty() and not as_json else io.StringIO()
    with click.progressbar(length=total, label="sweeping", file=sink) as bar:
        try:
            summary = locked_sweep(svc, scope, on_batch=bar.update)
        except SweepRunning as exc:
            raise click.ClickException(str(exc)) from exc
    result = summary.as_dict()
    if as_json:
        click.echo(json.dumps(result))
        return
    skipped = (
        f" (skipped {summary.not_yet_granted} granted after it)" if summary.not_yet_granted else ""
    )
    click.echo(
        f"as of {result['as_of']}{' (dry run)' if dry_run else ''}: evaluated {summary.evaluated}"
        f"{skipped}, changed {summary.changed} in {result['seconds']} s"
    )
    for transition, n in sorted(summary.transitions.items()):
        click.echo(f"  {transition}: {n}")
    for kind, n in sorted(summary.actions.items()):
        click.echo(f"  {'would queue' if dry_run else 'queued'} {kind}: {n}")
