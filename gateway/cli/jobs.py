"""`gateway jobs`: the side-effect jobs' queue, failed jobs, requeueing them."""

from __future__ import annotations

import json
import re
import textwrap

import click
from flask.cli import with_appcontext

from gateway.cli.group import COUNT, CommandGroup
from gateway.platform import clock
from gateway.platform.config import MAX_WHOLE_NUMBER
from gateway.usecases.queries import failed_jobs, queue_status
from gateway.web.context import services
from jobs.engine.dispatch import requeue


@click.group(cls=CommandGroup)
def jobs() -> None:
    """Side-effect jobs: the queue's state, failed ones, requeueing."""


def _outbox_id(job_id: str) -> int:
    """A job id as `gateway jobs failed` prints it (outbox-123), or its number alone (123), as
    its outbox id."""
    number = re.fullmatch(r"(?:outbox-)?([0-9]{1,20})", job_id, flags=re.ASCII)
    outbox_id = int(number.group(1)) if number else 0
    if not 0 < outbox_id <= MAX_WHOLE_NUMBER:  # an id column's range
        raise click.BadParameter(f"{job_id[:40]!r}: job ids look like outbox-123 (or 123)")
    return outbox_id


def _job_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else _outbox_id(value)


@jobs.command("failed")
@click.option(
    "--limit",
    type=COUNT,
    default=None,
    help="List at most this many (default: every one).",
)
@click.option(
    "--after",
    callback=_job_id,
    default=None,
    metavar="JOB_ID",
    help="Start after this job (the last one a --limit listing showed).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@with_appcontext
def jobs_failed(limit: int | None, after: int | None, as_json: bool) -> None:
    """List jobs that failed for good, oldest first, with their error."""
    rows = failed_jobs(services().db, after=after or 0, limit=limit)
    if as_json:  # streamed as they are read: one array, as json.dumps writes it
        opening = "["  # written with the first row, so that a read that fails writes nothing
        row = None
        for row in rows:
            click.echo(opening + json.dumps(row), nl=False)
            opening = ", "
        click.echo("[]" if opening == "[" else "]")
        if row is not None and limit is not None:  # on stderr, as for the table
            click.echo(f"(more may follow: --after {row['job_id']})", err=True)
        return
    listed = None
    for listed in rows:
        job, kind = listed["job_id"], _cut(listed["kind"], KIND_WIDTH)
        certification = _cut(listed["certification_id"] or "-", CERTIFICATION_WIDTH)
        click.echo(
            f"{job:{JOB_WIDTH}} {kind:{KIND_WIDTH}} {certification:{CERTIFICATION_WIDTH}} "
            f"attempts={listed['attempts']} {listed['finished_at']}\n"
            + _indented(listed["error"] or "(no error recorded)")
        )
    if listed is None:
        click.echo("no failed jobs")
    elif limit is not None:
        click.echo(f"(more may follow: --after {listed['job_id']})", err=True)


#: The columns of `jobs failed`: a job id of the largest outbox id (never cut, `jobs requeue`
#: takes it), the longest kind, a certification id (a longer one is cut: `--json` has it whole).
JOB_WIDTH, KIND_WIDTH, CERTIFICATION_WIDTH = len(f"outbox-{MAX_WHOLE_NUMBER}"), 19, 20
#: How wide a line of a failed job's error is, indent included.
ERROR_WIDTH = 100


def _cut(text: str, width: int) -> str:
    """`text`, or its first `width - 1` characters and an ellipsis if it is longer."""
    return text if len(text) <= width else f"{text[: width - 1]}…"


def _indented(error: str) -> str:
    """A failed job's error under its line: each of its lines indented, a long one wrapped."""
    lines = (
        wrapped
        for line in error.splitlines() or [""]
        for wrapped in textwrap.wrap(line, ERROR_WIDTH - 4, break_on_hyphens=False) or [""]
    )
    return "\n".join(f"    {line}" for line in lines)


@jobs.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@with_appcontext
def jobs_status(as_json: bool) -> None:
    """The outbox, which is the queue: items by kind and state, how many are due now."""
    found = queue_status(services().db)
    waiting = (clock.now() - found.oldest_due_at).total_seconds() if found.oldest_due_at else 0
    if as_json:
        rows = [{"kind": k, "state": s, "count": n} for (k, s), n in sorted(found.counts.items())]
        click.echo(json.dumps({"items": rows, "due": found.due, "oldest_due_seconds": waiting}))
        return
    click.echo(f"{'KIND':22} {'STATE':10} COUNT")
    for (kind, state), number in sorted(found.counts.items()):
        click.echo(f"{kind:22} {state:10} {number}")
    click.echo(f"due now: {found.due} (the longest waiting for {waiting:.0f} s)")


@jobs.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every failed job.")
@with_appcontext
def jobs_requeue(job_ids: tuple[str, ...], requeue_all: bool) -> None:
    """Put failed jobs back on the queue: JOB_ID ... (outbox-12, as `jobs failed` prints it,
    or 12) or --all. A JOB_ID that is not of a failed job is named at the end (exit status 1)."""
    if bool(job_ids) == requeue_all:
        both = "JOB_ID(s) and --all cannot be combined: give one or the other"
        raise click.UsageError(both if requeue_all else "give JOB_ID(s) or --all")
    ids = None if requeue_all else [_outbox_id(job_id) for job_id in job_ids]  # None: every one

    def say(requeued: list[int]) -> None:  # as each chunk commits: true should a later one fail
        click.echo("".join(f"requeued outbox-{outbox_id}\n" for outbox_id in requeued), nl=False)

    done = requeue(services(), ids, say)
    if requeue_all and not done:
        click.echo("no failed jobs")
    missing = sorted(set(ids) - set(done)) if ids is not None else []
    if missing:
        raise click.ClickException(
            "not failed (or unknown): " + ", ".join(f"outbox-{i}" for i in missing)
        )
