"""The daily sweep: re-evaluate certifications whose standing can change without any event."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import date

from sqlalchemy import func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from gateway import rules
from gateway.platform import clock
from gateway.store.history import load_histories
from gateway.store.models import Certification
from gateway.usecases.services import Services
from gateway.usecases.standings import Change, record_standings

log = logging.getLogger("gateway.usecases.sweep")


@dataclass(frozen=True)
class Scope:
    """Which certifications a sweep visits: due ones (or all), optionally an id range."""

    as_of: date
    full: bool = False
    first_id: str | None = None
    last_id: str | None = None
    batch_size: int = 500
    dry_run: bool = False

    def query(self, today: date) -> Select:
        """The certification ids this sweep visits, `today` being the day it runs."""
        query = select(Certification.certification_id)
        if not self.full:
            query = query.where(Certification.next_change_on <= self.as_of)
        if not self.dry_run:  # a standing recorded for a later day is not taken back by a sweep
            later = Certification.evaluated_on <= self.as_of
            if self.takes_back_ahead(today):
                later = or_(later, Certification.evaluated_on > today)
            query = query.where(later)
        if self.first_id is not None:
            query = query.where(Certification.certification_id >= self.first_id)
        if self.last_id is not None:
            query = query.where(Certification.certification_id <= self.last_id)
        return query

    def takes_back_ahead(self, today: date) -> bool:
        """Whether this sweep takes back the standings recorded ahead of `today` (by a sweep of a
        later day): a full one of today or later does."""
        return self.full and self.as_of >= today and not self.dry_run

    def revisits(self, evaluated_on: date, today: date) -> bool:
        """Whether a standing recorded as of `evaluated_on` is this sweep's to re-evaluate."""
        ahead = evaluated_on > today and self.takes_back_ahead(today)
        return evaluated_on <= self.as_of or self.dry_run or ahead


def _warn_of_a_future_day(scope: Scope, today: date) -> None:
    """Log a warning when `scope` records the standings of a day after `today`: members show as
    that day leaves them (lapsed, say) and their jobs run now; the daily sweeps leave them until
    that day, an event takes one back as of its own day, `gateway sweep --full` all of them as of
    today (see `Scope.query`)."""
    if scope.as_of > today and not scope.dry_run:
        log.warning(
            "sweeping as of %s, after today (%s, UTC): the standings are recorded as of that day "
            "and the jobs their changes call for are queued now (gateway sweep --full takes "
            "them back to today)",
            scope.as_of,
            today,
            extra={"as_of": scope.as_of.isoformat(), "today": today.isoformat()},
        )


@dataclass
class Summary:
    """What a sweep did; certifications granted after its day are skipped, not evaluated."""

    scope: Scope
    evaluated: int = 0
    not_yet_granted: int = 0
    changed: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    notices_queued: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "as_of": self.scope.as_of.isoformat(),
            "dry_run": self.scope.dry_run,
            "evaluated": self.evaluated,
            "not_yet_granted": self.not_yet_granted,
            "changed": self.changed,
            "transitions": dict(self.transitions),
            "actions_queued": dict(self.actions),
            "notices_queued": self.notices_queued,
            "seconds": round(self.seconds, 3),
        }


def range_in_order(svc: Services, first_id: str, last_id: str) -> bool:
    """Whether `first_id` comes no later than `last_id` in the database's order of certification
    ids (its collation, which a range of the sweep follows)."""
    with svc.db.sessions() as session:
        column = Certification.__table__.c.certification_id
        first, last = literal(first_id, column.type), literal(last_id, column.type)
        return bool(session.scalar(select(first <= last)))


def count(svc: Services, scope: Scope) -> int:
    """How many certifications `scope` visits (for a progress bar)."""
    with svc.db.sessions() as session:
        query = scope.query(clock.now().date())
        return session.scalar(select(func.count()).select_from(query.subquery()))


def sweep(svc: Services, scope: Scope, on_batch: Callable[[int], None] | None = None) -> Summary:
    """Re-evaluate the certifications of `scope` on its day and record what changed.

    Changes are recorded exactly as an event's are (the stored standing, and the outbox items of
    the actions), one transaction per batch, visited by keyset pagination so memory stays bounded;
    the workers are woken after each commit. A day after today is recorded too, with a warning.
    """
    today = clock.now().date()
    _warn_of_a_future_day(scope, today)
    summary = Summary(scope=scope)
    started = time.perf_counter()
    after_id = ""
    while True:
        with svc.db.transaction() as session:
            ids = list(
                session.scalars(
                    scope.query(today)
                    .where(Certification.certification_id > after_id)
                    .order_by(Certification.certification_id)
                    .limit(scope.batch_size)
                )
            )
            if not ids:
                break
            after_id = ids[-1]
            _revisit_batch(svc, session, summary, ids, today)
        if on_batch:
            on_batch(len(ids))
    summary.seconds = time.perf_counter() - started
    return summary


def _revisit_batch(
    svc: Services, session: Session, summary: Summary, ids: list[str], today: date
) -> None:
    """Evaluate a batch; only certifications whose standing moved are written, in one flush."""
    rows = session.execute(
        select(
            Certification.certification_id,
            Certification.status,
            Certification.evaluated_on,
            Certification.next_change_on,
            Certification.standing["reasons"],
            Certification.standing["member"],
        )
        .where(Certification.certification_id.in_(ids))
        .order_by(Certification.certification_id)
        .with_for_update()
    )
    histories = load_histories(svc.db, ids, session.connection())
    moved: list[tuple[str, rules.Standing, rules.Standing]] = []
    for cert_id, status, evaluated_on, next_change_on, stored_reasons, stored_member in rows:
        if not summary.scope.revisits(evaluated_on, today):
            continue  # recorded for a later day since the batch was chosen (an event today)
        history = histories.get(cert_id, [])
        try:
            after = rules.evaluate(history, summary.scope.as_of, svc.policy)
        except rules.NotCertified:  # granted after the sweep's day: it has no standing to change
            summary.not_yet_granted += 1
            continue
        summary.evaluated += 1
        reasons = [{"rule": r.rule, "message": r.message} for r in after.reasons]
        same_status = status == after.status and stored_reasons == reasons
        member = _member(stored_member) or after.member
        if same_status and member == after.member and next_change_on == after.next_change_on:
            continue
        if not same_status:
            summary.changed += 1
            summary.transitions[f"{status}->{after.status}"] += 1
        before = rules.evaluate(history, evaluated_on, svc.policy)
        if before.status != status:
            # A rule reads the history otherwise since it was recorded (an upgrade): the jobs
            # acted on the recorded status, so the change is from that one.
            before = replace(before, status=status)
        if before.member != member:  # likewise for the member's details (the badge's name)
            before = replace(before, member=member)
        moved.append((cert_id, before, after))
    if summary.scope.dry_run:
        for _, before, after in moved:
            acts = rules.actions(before, after, badge_expires=svc.settings.badge_expires)
            summary.actions.update(a.kind for a in acts)
        return
    _record(svc, session, summary, moved)


def _member(stored: object) -> rules.Member | None:
    """The member's details a stored standing names (None: it names none readable)."""
    if not isinstance(stored, dict):
        return None
    try:
        return rules.Member(**{f.name: stored[f.name] for f in fields(rules.Member)})
    except (KeyError, TypeError):
        return None


def _record(
    svc: Services,
    session: Session,
    summary: Summary,
    moved: list[tuple[str, rules.Standing, rules.Standing]],
) -> None:
    """Store the new standings and queue their actions, a few statements for the whole batch."""
    changes = [Change(cert_id, before, after) for cert_id, before, after in moved]
    for recorded in record_standings(svc, session.connection(), changes):
        summary.actions.update(a.kind for a in recorded.actions)
