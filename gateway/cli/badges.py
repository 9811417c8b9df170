"""`gateway badges`: members' Credly badges, the unclaimed ones and the reconciliation with
Credly."""

from __future__ import annotations

import json
import os
import sys
from zoneinfo import ZoneInfo

import click
from flask.cli import with_appcontext

from connectors.credly.errors import CredlyError
from connectors.errors import describe
from gateway.cli.group import COUNT, CommandGroup, one_line, table
from gateway.usecases.services import (
    DRY_RUN_BADGES,
)
from gateway.usecases.unclaimed import list_unclaimed
from gateway.web.context import services
from jobs.reconcile import UnknownCertification, reconcile


@click.group(cls=CommandGroup)
def badges() -> None:
    """Credly badges: the ones members have not claimed; reconciling them with Credly."""


class _Progress:
    """Progress of a long command: a bar per stage on a terminal, else a line per tenth."""

    def __init__(self, terminal: bool) -> None:
        self.terminal, self.label, self.bar, self.said = terminal, None, None, -1

    def __call__(self, label: str, total: int | None, done: int) -> None:
        if label != self.label:
            self.close()
            self.label, self.said = label, -1
            if self.terminal:
                self.bar = click.progressbar(length=total or 0, label=label).__enter__()
                self.bar.pos = 0
        if self.bar is not None:
            self.bar.update(done - self.bar.pos)
            return
        tenth = done * 10 // total if total else done
        if tenth != self.said:
            self.said = tenth
            click.echo(f"{label}: {done}{f' of {total}' if total else ''}", err=True)

    def close(self) -> None:
        """End the current stage's bar."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@badges.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Report the drift; repair nothing.")
@click.option("--certification", "certification_id", default=None, help="Only this one.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_appcontext
def badges_reconcile(dry_run: bool, certification_id: str | None, as_json: bool) -> None:
    """Compare the badges Credly holds with the standings and repair drift through the badge
    jobs: revoke a live badge a standing keeps none of, issue a missing one (not one its earner
    deleted), take Credly's id and state where they differ. With the dry-run backend, its
    recorded badges are compared (those this machine pretended to issue)."""
    svc = services()
    progress = _Progress(sys.stderr.isatty() and not as_json)
    try:
        summary = reconcile(
            svc, dry_run=dry_run, certification_id=certification_id, progress=progress
        )
    except UnknownCertification as exc:
        raise click.ClickException(one_line(str(exc))) from exc
    except CredlyError as exc:  # still failing after its tries: one line, not a traceback
        raise click.ClickException(f"reconciliation stopped: {one_line(describe(exc))}") from exc
    finally:
        progress.close()
    if svc.settings.credly_dry_run:
        kept = os.path.join(svc.settings.instance_path or "", DRY_RUN_BADGES)
        click.echo(
            f"compared with the dry-run Credly backend's badges ({kept}): the ones this "
            "machine pretended to issue, not Credly's",
            err=True,
        )
    result = summary.as_dict()
    if as_json:
        click.echo(json.dumps(result))
        return
    verb = "would repair" if dry_run else "repaired"
    click.echo(
        f"{'CHECKED':34} {result['badges_checked']} Credly badges, "
        f"{result['certifications_checked']} certifications"
    )
    click.echo(f"{'IN STEP':34} {result['in_step']}")
    for kind, n in result["repaired"].items():
        click.echo(f"{f'{verb} ({kind})'.upper():34} {n}")
    if result["successors_unknown"]:  # dry run: replaced in Credly, successor not looked up
        click.echo(f"{'SUCCESSORS UNKNOWN':34} {result['successors_unknown']}")
    if result["no_template"]:  # CREDLY_BADGE_TEMPLATES names no template for their credential
        click.echo(f"{'NO BADGE TEMPLATE (NOT ISSUED)':34} {result['no_template']}")
    if result["refused"]:  # Credly refused their issue for good, as it would be sent again
        click.echo(f"{'REFUSED BY CREDLY (NOT ISSUED)':34} {result['refused']}")
    if result["failed_jobs_superseded"]:  # failed badge jobs of badges found in step
        click.echo(f"{'FAILED JOBS SUPERSEDED':34} {result['failed_jobs_superseded']}")
    click.echo(f"{'SECONDS':34} {result['seconds']}")


@badges.command("unclaimed")
@click.option(
    "--days",
    default=14,
    show_default=True,
    type=click.IntRange(min=0, max=36_500),
    help="Pending (not claimed) for at least this many days.",
)
@click.option(
    "--limit",
    type=COUNT,
    default=None,
    help="List at most this many, the longest pending first (default: every one).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def badges_unclaimed(days: int, limit: int | None, as_json: bool) -> None:
    """List badges members have not claimed for --days days or more, so the membership team
    can nudge them."""
    zone = ZoneInfo(services().settings.time_zone)
    listed = list_unclaimed(services().db, days=days, limit=limit)
    if as_json:
        click.echo(json.dumps([badge.to_dict(zone) for badge in listed]))
        return
    if not listed:
        click.echo(f"no badge pending for {days} days or more")
        return
    lines = [
        ("CERTIFICATION", "NAME", "EMAIL", "ISSUE DATE ON BADGE", "PENDING SINCE", "DAYS PENDING")
    ]
    for badge in listed:
        row = badge.to_dict(zone)
        lines.append(
            (
                row["certification_id"],
                row["name"],
                row["email"],
                row["issue_date_on_badge"] or "",
                badge.pending_since.astimezone(zone).date().isoformat(),
                str(row["days_pending"]),
            )
        )
    for line in table(lines):
        click.echo(line)
