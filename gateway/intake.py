"""The event use case: validate, evaluate, record event + standing + outbox in ONE transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import rules
from gateway.schemas.events import Envelope, ShapeError, load_envelope
from gateway.services import Services
from gateway.store import models
from gateway.store.history import load_history
from gateway.store.models import utcnow
from gateway.views import standing_view

ATTEMPTS = 3


@dataclass(frozen=True)
class Answer:
    """What the API answers: status, JSON body, extra headers, and the outbox items to dispatch."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    outbox_ids: tuple[int, ...] = ()


def body_hash(body: Any) -> str:
    """SHA-256 of the canonical JSON of `body`: the same event however its keys are ordered."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    """A problem+json body (RFC 9457)."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors,
    }


def shape_problem(errors: list[dict[str, str]]) -> dict[str, Any]:
    """The 422 body of a malformed event."""
    return problem(422, "Unprocessable Content", "The event is malformed.", errors)


def submit_event(
    svc: Services,
    body: Any,
    *,
    client_id: str | None = None,
    request_id: str | None = None,
    received_at: datetime | None = None,
) -> Answer:
    """Accept or reject one event; an IntegrityError from a concurrent twin is retried."""
    received_at = received_at or utcnow()
    try:
        envelope = load_envelope(body)
        _check_category(svc.policy, envelope)
    except ShapeError as exc:
        return Answer(422, shape_problem(exc.errors))
    digest = body_hash(body)
    for attempt in range(ATTEMPTS):
        try:
            with svc.db.transaction() as session:
                return _submit(
                    svc, session, envelope, body, digest, client_id, request_id, received_at
                )
        except IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _check_category(policy: rules.Policy, envelope: Envelope) -> None:
    event = envelope.event
    if isinstance(event, rules.CcpActivity) and event.category not in policy.categories:
        raise ShapeError(
            [
                {
                    "field": "data.category",
                    "message": f"Must be one of: {', '.join(policy.categories)}.",
                }
            ]
        )


def _submit(
    svc: Services,
    session: Session,
    envelope: Envelope,
    body: dict[str, Any],
    digest: str,
    client_id: str | None,
    request_id: str | None,
    received_at: datetime,
) -> Answer:
    event = envelope.event
    cert = session.get(models.Certification, envelope.certification_id, with_for_update=True)
    replay = _replay(session, event.event_id, digest)
    if replay is not None:
        return replay
    if cert is None and not isinstance(event, rules.Granted):
        return Answer(
            404,
            problem(
                404,
                "Not Found",
                f"Certification {envelope.certification_id} is unknown.",
                [
                    {
                        "rule": "CERT-UNKNOWN",
                        "message": f"No certification {envelope.certification_id} has been "
                        "granted; only certification.granted may create one.",
                    }
                ],
            ),
        )
    history = load_history(session, envelope.certification_id)
    violations = rules.validate(history, event, policy=svc.policy, received_at=received_at)
    today = received_at.date()
    after = None
    if not violations:
        try:
            after = rules.evaluate([*history, event], today, svc.policy)
        except rules.NotCertified:
            violations = [
                rules.Violation(
                    "EVENT-FUTURE", f"The certification starts after today ({today.isoformat()})."
                )
            ]
    row = models.Event(
        event_id=event.event_id,
        type=event.type,
        certification_id=envelope.certification_id,
        occurred_at=event.occurred_at,
        body=body,
        body_hash=digest,
        client_id=client_id,
        request_id=request_id,
        received_at=received_at,
    )
    if violations:
        reasons = [{"rule": v.rule, "message": v.message} for v in violations]
        row.status, row.reasons, row.response_status = "rejected", reasons, 422
        row.response_body = problem(
            422, "Unprocessable Content", "The event breaks the certification rules.", reasons
        )
        session.add(row)
        session.flush()
        return Answer(422, row.response_body)
    assert after is not None
    before = rules.evaluate(history, cert.evaluated_on, svc.policy) if cert else None
    row.status, row.reasons, row.response_status = "accepted", [], 202
    row.response_body = {}
    session.add(row)
    session.flush()
    acts, outbox = record_standing(
        svc,
        session,
        envelope.certification_id,
        before,
        after,
        event_pk=row.id,
        request_id=request_id,
    )
    session.flush()
    row.response_body = {
        "event_id": event.event_id,
        "status": "accepted",
        "standing": standing_view(session, envelope.certification_id, after),
        "actions": [a.kind for a in acts],
    }
    return Answer(202, row.response_body, outbox_ids=tuple(item.id for item in outbox))


def _replay(session: Session, event_id: str, digest: str) -> Answer | None:
    previous = session.scalar(select(models.Event).where(models.Event.event_id == event_id))
    if previous is None:
        return None
    if previous.body_hash != digest:
        return Answer(
            409,
            problem(
                409,
                "Conflict",
                f"Event {event_id} was already received with a different body.",
                [{"field": "event_id", "message": "Already used for another event."}],
            ),
        )
    return Answer(
        previous.response_status,
        previous.response_body,
        headers={"Idempotent-Replayed": "true"},
    )


def record_standing(
    svc: Services,
    session: Session,
    certification_id: str,
    before: rules.Standing | None,
    after: rules.Standing,
    *,
    event_pk: int | None,
    request_id: str | None,
) -> tuple[list[rules.Action], list[models.OutboxItem]]:
    """Store `after` as the certification's standing and queue the actions its change calls for."""
    member = after.member
    stored_member = session.get(models.Member, member.member_id)
    if stored_member is None:
        session.add(
            models.Member(
                member_id=member.member_id,
                first_name=member.first_name,
                last_name=member.last_name,
                email=member.email,
            )
        )
    else:
        stored_member.first_name, stored_member.last_name = member.first_name, member.last_name
        stored_member.email = member.email
    cert = session.get(models.Certification, certification_id)
    if cert is None:
        cert = models.Certification(certification_id=certification_id)
        session.add(cert)
    cert.credential, cert.member_id, cert.status = after.credential, member.member_id, after.status
    cert.standing = after.to_dict()
    cert.evaluated_on = after.as_of
    cert.next_change_on = after.next_change_on
    acts = rules.actions(before, after, badge_expires=svc.settings.badge_expires)
    outbox = [
        models.OutboxItem(
            event_pk=event_pk,
            certification_id=certification_id,
            kind=act.kind,
            payload=_payload(act, after.certified_on),
            request_id=request_id,
        )
        for act in acts
    ]
    session.add_all(outbox)
    return acts, outbox


def _payload(action: rules.Action, period_start: date) -> dict[str, Any]:
    return {**asdict(action), "period_start": period_start.isoformat()}
