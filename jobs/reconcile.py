"""Reconciliation: compare what Credly holds with the standings, and repair drift through the
ordinary badge jobs (`gateway badges reconcile`, and daily after the sweep).

Two passes, each holding one page or one batch in memory (flat for a million certifications):

1. Credly's badges of each configured template (on the dry-run backend, the badges it recorded of
   every credential's template), page after page. A live badge of a certification
   whose status keeps none gets a revoke job; one of a certification that keeps its badge is what
   the gateway records (Credly's id, state and e-mail address are taken, in a new row when it
   has none), and is marked as seen live (`badges.credly_checked_at`), unless the certification
   keeps another live badge: then it is a duplicate (a template that allows them) and a
   `revoke_duplicate` job revokes it. A badge adopted so (not the recorded one nor its
   successor) that names the member otherwise than their details now say gets a replace job,
   which brings it up to date; so does a successor of the recorded one (replaced in Credly's
   UI, its notification lost) that names them otherwise, its e-mail address aside, as that
   notification would have.
2. The certifications, in batches, each batch's statuses and badge rows read at once (one with
   no live badge recorded and none called for is in step as read). A recorded badge said to be
   live but not seen live in pass 1 is read from Credly and Credly's state taken (a 404: deleted
   by its earner); a successor found so is brought up to date as in pass 1. A certification
   that keeps its badge but has none live gets an issue job, unless its earner deleted or
   rejected it.

A dry run reports the same without recording or queueing anything (it keeps the ids seen live in
memory instead of marking them), and sends Credly reads only: a recorded badge replaced in Credly
is counted with its successor unknown (Credly names a successor only when asked to replace the
badge again, a write), a live badge of its certification taken for that successor.

A Credly read (a page, a badge) that fails transiently is tried again, waiting as the badge jobs do
(JOB_RETRY_BASE_SECONDS doubling, never less than Credly's Retry-After, at most MAX_WAIT_SECONDS),
up to READ_TRIES times. Credly is never read inside a transaction: what a batch needs is read
first, and a row a job changed meanwhile is left to that job.

Given a `stop` event (the worker's warm stop), a reconciliation ends early once it is set, raising
`Stopped` before its next Credly read, page or certification: what it repaired stands, and a later
run does the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from connectors.credly.errors import NotFound, TransientError, Unauthorized
from connectors.credly.service import retried
from connectors.credly.wire import REPLACED
from connectors.credly.wire import Badge as CredlyBadge
from gateway.platform import clock, metrics
from gateway.rules import BADGE_KEPT, kinds
from gateway.store.models import SUPERSEDED, UNFINISHED, Badge, Certification, OutboxItem
from gateway.usecases.services import Services
from jobs.badges.credly_calls import deleted, latest
from jobs.badges.recipient import (
    expired_on_arrival,
    expiry,
    named_otherwise,
    names_member,
    renews,
    template_for,
)
from jobs.badges.rows import add_period_badge, refused_again
from jobs.badges.states import EARNERS_CHOICE, LIVE
from jobs.engine.retry import backoff

log = logging.getLogger("jobs.reconcile")

#: Badges (pass 1) or certifications (pass 2) handled in one transaction.
BATCH = 500
REPAIRS = ("revoked", "issued", "renewed", "taken_from_credly", "duplicates_revoked", "updated")
#: A revoke job queued by reconciliation (the member's reason comes from the status).
REVOKE_PAYLOAD = {"reason_rule": "RECONCILE", "reason": "Credly holds a live badge of it"}
#: The badge jobs whose failure a certification's badge found in step makes good.
BADGE_KINDS = (kinds.ISSUE_BADGE, kinds.REPLACE_BADGE, kinds.REVOKE_BADGE, kinds.REVOKE_DUPLICATE)
#: The repairs whose good end makes good the certification's failed badge jobs (`supersedes`):
#: each brings its badge to what the standing says now.
REPAIRING = (kinds.ISSUE_BADGE, kinds.REPLACE_BADGE, kinds.REVOKE_BADGE)

#: Tries of one Credly read before the reconciliation gives up (a refused token: at once).
READ_TRIES = 5
#: The longest wait between two tries of a read, whatever Credly's Retry-After.
MAX_WAIT_SECONDS = 60
#: How a reconciliation waits between the tries of a read (tests replace it).
sleep = time.sleep

Progress = Callable[[str, int | None, int], None]


class Stopped(Exception):
    """The reconciliation ended early: its process is stopping."""


class UnknownCertification(LookupError):
    """The certification a reconciliation was asked to check is not recorded."""


@dataclass
class Summary:
    """What a reconciliation found: badges and certifications checked, in step, repairs by kind."""

    dry_run: bool = False
    badges_checked: int = 0
    certifications_checked: int = 0
    in_step: int = 0
    repaired: Counter[str] = field(default_factory=Counter)
    #: Recorded badges a dry run found replaced in Credly, whose successor it did not look up.
    successors_unknown: set[str] = field(default_factory=set)
    #: Certifications that keep a badge and have none live, of a credential with no Credly badge
    #: template configured: not issued one (the job would fail as their first one did).
    no_template: int = 0
    #: Certifications that keep a badge and have none live, whose issue Credly refused for good
    #: as it would be sent again (the badge's `refused_request`): not issued one again.
    refused: int = 0
    #: Failed badge jobs of certifications found in step, marked superseded (on a dry run: that
    #: would be); a repair's failed jobs are marked when the repair ends well.
    superseded: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "dry_run": self.dry_run,
            "badges_checked": self.badges_checked,
            "certifications_checked": self.certifications_checked,
            "in_step": self.in_step,
            "repaired": {kind: self.repaired[kind] for kind in REPAIRS},
            "successors_unknown": len(self.successors_unknown),
            "no_template": self.no_template,
            "refused": self.refused,
            "failed_jobs_superseded": self.superseded,
            "seconds": round(self.seconds, 3),
        }

    def repair(self, kind: str) -> None:
        """Count one repair (a drift found, on a dry run: not counted by `/metrics`) of `kind`."""
        self.repaired[kind] += 1
        if not self.dry_run:
            metrics.CREDLY_DRIFT.labels(kind).inc()


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class _Run:
    """One reconciliation: its services, options and what it found so far."""

    def __init__(
        self,
        svc: Services,
        dry_run: bool,
        certification_id: str | None,
        progress: Progress,
        stop: threading.Event | None,
    ) -> None:
        self.svc, self.dry_run, self.only, self.progress = svc, dry_run, certification_id, progress
        self.stop = stop
        self.started = clock.now()
        self.summary = Summary(dry_run=dry_run)
        self.seen_live: set[str] = set()  # a dry run's marks, in memory
        self.jobs: list[int] = []
        self.untemplated = set(svc.settings.untemplated(svc.policy.credentials))

    def check_stop(self) -> None:
        """Raise Stopped if the process is stopping."""
        if self.stop is not None and self.stop.is_set():
            raise Stopped("the process is stopping")

    # -- pass 1: Credly's badges

    def templates(self) -> dict[str, str]:
        """The badge template of each credential whose badges are compared: the configured ones;
        on the dry-run backend every credential's, placeholders included (those it issues from)."""
        if not self.svc.settings.credly_dry_run:
            return self.svc.settings.credly_badge_templates
        return {
            credential: template_for(self.svc, credential)
            for credential in self.svc.policy.credentials
        }

    def credly_pass(self) -> None:
        for credential, template in sorted(self.templates().items()):
            label = f"Credly badges of {credential} ({template})"
            total: list[int] = []
            filters = {"badge_template_id": template}
            if self.only:
                filters["issuer_earner_id"] = self.only
            found = self.svc.credly.list_badges(
                filters, on_total=total.append, on_transient=self._wait
            )
            done = 0
            for page in _chunks(found, BATCH):
                self.check_stop()
                self._credly_page([b for b in page if b.live()])
                done += len(page)
                self.summary.badges_checked += len(page)
                self.progress(label, total[0] if total else None, done)

    def _credly_page(self, live: list[CredlyBadge]) -> None:
        by_earner: dict[str, list[CredlyBadge]] = {}
        for badge in live:
            if badge.issuer_earner_id:
                by_earner.setdefault(badge.issuer_earner_id, []).append(badge)
        if not by_earner:
            return
        now = self._recorded_elsewhere(by_earner)  # read from Credly before any row is locked
        with self.svc.db.transaction() as session:
            certs = {
                c.certification_id: c
                for c in session.scalars(
                    select(Certification).where(Certification.certification_id.in_(by_earner))
                )
            }
            for earner, held in by_earner.items():
                cert = certs.get(earner)
                if cert is not None:  # else not one of ours
                    self._compare(session, cert, held, now)

    def _recorded_elsewhere(
        self, by_earner: dict[str, list[CredlyBadge]]
    ) -> dict[str, CredlyBadge]:
        """Credly's state now of each recorded live badge not among the page's badges of its
        certification (replaced, or of another template), by its recorded id."""
        with self.svc.db.sessions() as session:
            rows = session.execute(
                select(Badge.certification_id, Badge.period_start, Badge.credly_badge_id)
                .join(Certification, Certification.certification_id == Badge.certification_id)
                .where(
                    Badge.certification_id.in_(by_earner),
                    Badge.credly_badge_id.is_not(None),
                    Badge.state.in_(LIVE),
                    Certification.status.in_(BADGE_KEPT),
                )
            ).all()
        return {
            badge_id: self._credly_state(badge_id)
            for earner, _, badge_id in rows
            if badge_id not in {b.id for b in by_earner[earner]}
        }

    def _compare(
        self,
        session: Session,
        cert: Certification,
        held: list[CredlyBadge],
        now: dict[str, CredlyBadge],
    ) -> None:
        row = _period_badge(session, cert)
        if cert.status not in BADGE_KEPT:
            log.info("a live badge of a %s certification", cert.status)
            self.summary.repair("revoked")
            self._queue(session, cert, kinds.REVOKE_BADGE, REVOKE_PAYLOAD)
            if row is not None:
                self._seen(cert, row)
            return
        kept = self._kept(row, held, now)
        if kept is None:
            return  # its recorded badge changed since it was read: left to the second pass
        badge, adopted = kept
        if adopted and _kept_by_another_period(session, cert, badge.id):
            # a late event moved the period: the issue job takes that badge over, its issue day
            # made this period's; the second pass queues one when none is on its way
            log.info("another period's badge", extra={"credly_badge_id": badge.id})
            return
        duplicates = [extra for extra in held if extra.id != badge.id]
        for extra in duplicates:
            log.info("a duplicate live badge", extra={"credly_badge_id": extra.id})
            self.summary.repair("duplicates_revoked")
            self._queue(session, cert, kinds.REVOKE_DUPLICATE, {"credly_badge_id": extra.id})
        if row is None or (row.credly_badge_id, row.state) != (badge.id, badge.state):
            previous = row.credly_badge_id if row is not None else None
            row = self._take(session, cert, row, badge)
            connection = session.connection()
            if adopted and not names_member(self.svc, cert.certification_id, badge, connection):
                log.info("an adopted badge names the member otherwise: replaced")
                self.summary.repair("updated")
                self._queue(session, cert, kinds.REPLACE_BADGE, {})
            elif (
                adopted or badge.id == previous or not self._successor_taken(session, cert, badge)
            ) and not duplicates:  # in step once taken, as the second pass finds a taken one
                self._in_step(session, cert, row, badge)
        else:
            self.summary.in_step += 1
            if row.recipient_email is None and not self.dry_run:  # recorded before it was kept
                row.recipient_email = badge.recipient_email
            if not duplicates:
                self._in_step(session, cert, row, badge)
        self._seen(cert, row)

    def _kept(
        self, row: Badge | None, held: list[CredlyBadge], now: dict[str, CredlyBadge]
    ) -> tuple[CredlyBadge, bool] | None:
        """Which live badge the certification keeps, and whether it is adopted (not recorded
        here): the recorded one (or its successor), as Credly said it is `now` when it is not
        among `held`; but of `held`, one the member accepted rather than the recorded one they
        have not claimed. Else an accepted one of `held`, else the first, adopted (on a dry run,
        which leaves a replaced badge's successor unknown, that one stands for the successor).
        Any other live badge of `held` is a duplicate. None when the recorded badge is one not
        read before (a job changed it meanwhile)."""
        if row is not None:
            recorded = next((b for b in held if b.id == row.credly_badge_id), None)
            if recorded is not None:
                return _claimed_first(recorded, held)
            if row.credly_badge_id and row.state in LIVE:
                current = now.get(row.credly_badge_id)
                if current is None:
                    return None
                if current.live():
                    return next((b for b in held if b.id == current.id), current), False
                if current.state == REPLACED:  # a dry run's: its successor unknown
                    return _preferred(held), False
        return _preferred(held), True

    def _take(
        self, session: Session, cert: Certification, row: Badge | None, badge: CredlyBadge
    ) -> Badge | None:
        """Record Credly's `badge` (its id, state, e-mail address, issue time and expiry) in the
        certification's row, created when it has none; nothing on a dry run. The row."""
        self.summary.repair("taken_from_credly")
        if self.dry_run:
            return row
        if row is None:
            period_start = date.fromisoformat(cert.standing["certified_on"])
            row = add_period_badge(
                session, cert.certification_id, period_start, badge.badge_template_id, badge.state
            )
        row.credly_badge_id, row.state = badge.id, badge.state
        row.recipient_email = badge.recipient_email or row.recipient_email
        row.state_changed_at, row.last_error = clock.now(), None
        row.issued_at = badge.issued_at or row.issued_at
        row.expires_at = badge.expires_at or row.expires_at
        return row

    def _successor_taken(self, session: Session, cert: Certification, badge: CredlyBadge) -> bool:
        """After taking Credly's live `badge` in place of the recorded one it replaced (in
        Credly's UI, unnotified): queue a replace job when it names the member otherwise than
        their details say (e-mail aside), as its notification would. Whether one was queued."""
        period_start = date.fromisoformat(cert.standing["certified_on"])
        connection = session.connection()
        if not named_otherwise(self.svc, cert.certification_id, period_start, badge, connection):
            return False
        log.info(
            "a successor names the member otherwise: replaced", extra={"credly_badge_id": badge.id}
        )
        self.summary.repair("updated")
        self._queue(session, cert, kinds.REPLACE_BADGE, {})
        return True

    def _seen(self, cert: Certification, row: Badge | None) -> None:
        if self.dry_run:
            self.seen_live.add(cert.certification_id)
        elif row is not None:
            row.credly_checked_at = self.started

    # -- pass 2: the certifications

    def standings_pass(self) -> None:
        query = select(Certification.certification_id).order_by(Certification.certification_id)
        if self.only:
            query = query.where(Certification.certification_id == self.only)
        with self.svc.db.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
        after, done = None, 0
        while True:
            page = query.limit(BATCH)
            if after is not None:
                page = page.where(Certification.certification_id > after)
            with self.svc.db.sessions() as session:
                ids = list(session.scalars(page))
                read = _current_rows(session, ids) if ids else {}  # without locking them
                failing = _failing(session, ids) if ids else set()
            if not ids:
                return
            for certification_id in ids:
                self.check_stop()
                status, row = read[certification_id]
                self._standing(certification_id, status, row, certification_id in failing)
            after, done = ids[-1], done + len(ids)
            self.summary.certifications_checked += len(ids)
            self.progress("certifications", total if not self.only else len(ids), done)

    def _standing(
        self, certification_id: str, status: str, read: Badge | None, failing: bool
    ) -> None:
        """Check one certification, given its status and current badge row as its batch read
        them, and whether it has failed badge jobs."""
        if certification_id in self.seen_live or self._checked(read):
            return
        recorded = _recorded_live(read)
        if recorded is None and _none_called_for(status, read.state if read else None):
            # In step as read: no transaction unless failed jobs are to be marked; a change
            # since is the job of the event that made it.
            self.summary.in_step += 1
            if failing:
                with self.svc.db.transaction() as session:
                    cert = session.get(Certification, certification_id)
                    row = _period_badge(session, cert)
                    if _none_called_for(cert.status, row.state if row else None):
                        self._in_step(session, cert, row, None)
            return
        # Credly is read before the row is locked; a row that changed since is a job's to finish
        state = self._credly_state(recorded[0]) if recorded else None
        with self.svc.db.transaction() as session:
            cert = session.get(Certification, certification_id)
            row = _period_badge(session, cert)
            if self._checked(row):
                return
            live = _recorded_live(row) is not None
            if live and recorded != (row.credly_badge_id, row.state):
                self.summary.in_step += 1
                return
            taken = False  # Credly's state recorded: a repair, so not in step as well
            if live:
                assert state is not None
                if state.state == REPLACED:  # a dry run's: its successor unknown
                    return
                previous = row.credly_badge_id
                if (state.id, state.state) != (row.credly_badge_id, row.state):
                    self._take(session, cert, row, state)
                    taken = True
                if state.live():
                    self.summary.in_step += cert.status in BADGE_KEPT and not taken
                    if cert.status in BADGE_KEPT:
                        if state.id == previous or not self._successor_taken(session, cert, state):
                            self._in_step(session, cert, row, state)
                    else:
                        self.summary.repair("revoked")
                        self._queue(session, cert, kinds.REVOKE_BADGE, REVOKE_PAYLOAD)
                    return
                if state.state in LIVE and cert.status in BADGE_KEPT:  # expired (BADGE_EXPIRES)
                    if renews(state, expiry(self.svc, cert.standing)):
                        self.summary.repair("renewed")  # a renewal the replace job missed
                        self._queue(session, cert, kinds.REPLACE_BADGE, {})
                    else:
                        self.summary.in_step += not taken  # expired as the standing says
                        self._in_step(session, cert, row, state)
                    return
                row_state = state.state
            else:
                row_state = row.state if row is not None else None
            if _none_called_for(cert.status, row_state):
                self.summary.in_step += not taken
                self._in_step(session, cert, row, None)
            elif expired_on_arrival(expiry(self.svc, cert.standing)):
                self.summary.in_step += not taken  # issued once a payment makes it current
                self._in_step(session, cert, row, None)
            elif row is not None and row_state == "queued" and _issue_pending(session, cert):
                self.summary.in_step += 1  # an issue job is on its way
            elif cert.credential in self.untemplated:
                self.summary.no_template += 1
            elif row is not None and refused_again(
                self.svc, cert.certification_id, row.refused_request, session.connection()
            ):
                log.info("not issued again: Credly refused it", extra={"note": row.note})
                self.summary.refused += 1
            else:
                self.summary.repair("issued")
                self._queue(session, cert, kinds.ISSUE_BADGE, {})

    def _checked(self, row: Badge | None) -> bool:
        """Whether the first pass of this run saw the row's badge live in Credly."""
        checked = row.credly_checked_at if row is not None else None
        return checked is not None and checked >= self.started

    def _credly_state(self, badge_id: str) -> CredlyBadge:
        """Credly's badge `badge_id` as it is now (its last successor; deleted on a 404); on a
        dry run a replaced one as it is, its successor unknown (finding it sends a write). Never
        called inside a transaction: its retries wait."""

        def read() -> CredlyBadge:
            self.check_stop()
            found = self.svc.credly.get_badge(badge_id)
            return found if self.dry_run else latest(self.svc, found)

        try:
            found = retried(read, self._wait)
        except NotFound:
            return deleted(badge_id)
        if found.state == REPLACED:  # a dry run's
            log.info("replaced; successor not looked up", extra={"credly_badge_id": found.id})
            self.summary.successors_unknown.add(found.id)
        return found

    def _wait(self, error: TransientError, tries: int) -> None:
        """Wait before trying a read again after its `tries`-th transient failure, `error`; or
        give up, raising it: after READ_TRIES tries, or at once when Credly refused the token."""
        if tries >= READ_TRIES or isinstance(error, Unauthorized):
            raise error
        self.check_stop()
        retry_after = min(error.retry_after or 0, MAX_WAIT_SECONDS)
        delay = min(
            backoff(tries, self.svc.settings.job_retry_base_seconds, retry_after),
            MAX_WAIT_SECONDS,
        )
        log.warning(
            "a Credly read failed; trying again in %d s",
            delay,
            extra={"error": str(error), "tries": tries},
        )
        sleep(delay)

    # -- repairs

    def _in_step(
        self, session: Session, cert: Certification, row: Badge | None, badge: CredlyBadge | None
    ) -> None:
        """The certification's badge is in step with Credly: Credly's live `badge`, when it
        names the member as their details say (e-mail aside), or no live badge where none is
        called for. Its failed badge jobs are superseded, and the error one left on its badge
        row is cleared (nothing on a dry run, which counts them)."""
        if badge is not None and named_otherwise(
            self.svc,
            cert.certification_id,
            date.fromisoformat(cert.standing["certified_on"]),
            badge,
            session.connection(),
        ):
            return  # a failed replace, say: still to be done
        failed = _failed_badge_jobs(session, cert.certification_id)
        if not failed:
            return
        self.summary.superseded += len(failed)
        if self.dry_run:
            return
        session.execute(
            update(OutboxItem).where(OutboxItem.id.in_(failed)).values(state=SUPERSEDED)
        )
        if row is not None:
            row.last_error = None
        log.info("failed badge jobs superseded", extra={"jobs": failed})

    def _queue(self, session: Session, cert: Certification, kind: str, payload: dict) -> None:
        """Queue an ordinary badge job (nothing on a dry run); a repair names the
        certification's failed badge jobs, which its good end supersedes."""
        if self.dry_run:
            return
        period_start = cert.standing["certified_on"]
        if kind in REPAIRING:
            failed = _failed_badge_jobs(session, cert.certification_id)
            payload = {**payload, "supersedes": failed} if failed else payload
        item = OutboxItem(
            certification_id=cert.certification_id,
            kind=kind,
            payload={**payload, "period_start": period_start},
        )
        session.add(item)
        session.flush()
        self.jobs.append(item.id)


def _preferred(held: list[CredlyBadge]) -> CredlyBadge:
    """The badge of `held` a certification keeps: an accepted one, else the first."""
    return max(held, key=lambda b: b.state == "accepted")


def _claimed_first(recorded: CredlyBadge, held: list[CredlyBadge]) -> tuple[CredlyBadge, bool]:
    """The recorded badge, not adopted; but when the member has not claimed it and has accepted
    another live badge of `held`, that one, adopted: the member keeps the badge they claimed
    (and may have shared), the unclaimed one is the duplicate."""
    claimed = _preferred(held)
    if recorded.state != "accepted" and claimed.state == "accepted":
        return claimed, True
    return recorded, False


def _recorded_live(row: Badge | None) -> tuple[str, str] | None:
    """The Credly id and state of `row`'s badge if it is recorded live."""
    if row is None or not row.credly_badge_id or row.state not in LIVE:
        return None
    return row.credly_badge_id, row.state


def _none_called_for(status: str, row_state: str | None) -> bool:
    """Whether a certification with no badge live calls for none: its status keeps none, or its
    earner deleted or rejected the badge (their choice stands)."""
    return status not in BADGE_KEPT or row_state in EARNERS_CHOICE


def _period_badge(session: Session, cert: Certification) -> Badge | None:
    """The badge row of the certification's current period, locked."""
    query = select(Badge).where(
        Badge.certification_id == cert.certification_id,
        Badge.period_start == date.fromisoformat(cert.standing["certified_on"]),
    )
    return session.scalar(query.with_for_update())


def _current_rows(session: Session, ids: list[str]) -> dict[str, tuple[str, Badge | None]]:
    """Each certification's status and the badge row of its current period, in two reads."""
    certifications = session.execute(
        select(Certification.certification_id, Certification.status, Certification.standing).where(
            Certification.certification_id.in_(ids)
        )
    ).all()
    rows = {
        (row.certification_id, row.period_start): row
        for row in session.scalars(select(Badge).where(Badge.certification_id.in_(ids)))
    }
    return {
        certification_id: (
            status,
            rows.get((certification_id, date.fromisoformat(standing["certified_on"]))),
        )
        for certification_id, status, standing in certifications
    }


def _kept_by_another_period(session: Session, cert: Certification, credly_id: str) -> bool:
    """Whether a row of another period of the certification records Credly's badge `credly_id`
    live."""
    found = select(Badge.id).where(
        Badge.certification_id == cert.certification_id,
        Badge.period_start != date.fromisoformat(cert.standing["certified_on"]),
        Badge.credly_badge_id == credly_id,
        Badge.state.in_(LIVE),
    )
    return session.scalar(found.limit(1)) is not None


def _failed_badge_jobs(session: Session, certification_id: str) -> list[int]:
    """The ids of the certification's failed badge jobs, locked."""
    found = select(OutboxItem.id).where(
        OutboxItem.certification_id == certification_id,
        OutboxItem.state == "failed",
        OutboxItem.kind.in_(BADGE_KINDS),
    )
    return list(session.scalars(found.order_by(OutboxItem.id).with_for_update()))


def _failing(session: Session, ids: list[str]) -> set[str]:
    """Which of the certifications `ids` have failed badge jobs."""
    found = select(OutboxItem.certification_id).where(
        OutboxItem.certification_id.in_(ids),
        OutboxItem.state == "failed",
        OutboxItem.kind.in_(BADGE_KINDS),
    )
    return set(session.scalars(found.distinct()))


def _issue_pending(session: Session, cert: Certification) -> bool:
    return (
        session.scalar(
            select(OutboxItem.id)
            .where(
                OutboxItem.certification_id == cert.certification_id,
                OutboxItem.kind == kinds.ISSUE_BADGE,
                OutboxItem.state.in_(UNFINISHED),
            )
            .limit(1)
        )
        is not None
    )


def reconcile(
    svc: Services,
    *,
    dry_run: bool = False,
    certification_id: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Compare Credly's badges with the standings and repair drift (see the module docstring);
    Stopped once `stop` is set; UnknownCertification, before anything is read from Credly, for a
    `certification_id` not recorded.

    With the dry-run backend, its badges are the ones compared: those this machine's processes
    pretended to issue (kept in the instance folder).
    """
    started = time.monotonic()
    if certification_id is not None:
        with svc.db.sessions() as session:
            if session.get(Certification, certification_id) is None:
                raise UnknownCertification(f"no certification {certification_id!r}")
    run = _Run(svc, dry_run, certification_id, progress or (lambda label, total, done: None), stop)
    run.credly_pass()
    run.standings_pass()
    if run.jobs:
        svc.dispatcher.dispatch(run.jobs)
    run.summary.seconds = time.monotonic() - started
    log.info("reconciled", extra={"summary": run.summary.as_dict()})
    return run.summary
