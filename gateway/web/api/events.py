"""`/v1/events`: internal systems post certification events and read what became of them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Flask, Response, current_app, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from gateway.platform import metrics
from gateway.rules import EVENT_TYPES
from gateway.schemas import responses as r
from gateway.schemas.events import EXAMPLE_EVENT, MAX_EVENTS, EventBatchSchema
from gateway.store import models
from gateway.usecases import intake
from gateway.usecases.queries import job_view
from gateway.web import observability
from gateway.web.apidoc import BODY_ERRORS, LOCATION, json_answer, operation, results
from gateway.web.auth import current_client_id, require_scope
from gateway.web.context import services
from gateway.web.problems import PROBLEM_TYPE, Problem, json_body, loaded

bp = Blueprint("events", __name__)

#: Where the plain path (`gateway.web.plain_events`) hands Flask the error its submission of
#: the request's event raised, for Flask to answer it as it answers any.
SUBMISSION_FAILED = "gateway.submission_failed"
GET_EVENT = "events.get_event"


#: Room for MAX_EVENTS events of several KiB each (the app's default limit is 64 KiB).
MAX_BATCH_BODY = 1024 * 1024


@bp.before_request
def _allow_batches() -> None:
    if request.endpoint == "events.post_events":
        request.max_content_length = MAX_BATCH_BODY


_EVENT = {"$ref": "#/components/schemas/Event"}  # one of the event types (gateway.web.openapi)


@bp.post("/v1/events")
@require_scope("events:write")
@operation(
    "Record one event",
    tags=["events"],
    description="Validate its shape and its meaning against the rules, record it and queue the "
    "jobs its change in standing calls for. The same `event_id` with the same body answers as "
    "the first time did, with `Idempotent-Replayed: true`.",
    request=_EVENT,
    request_example=EXAMPLE_EVENT,
    responses={
        202: json_answer(
            r.EventAnswerSchema,
            "Recorded; the standing after the event and the actions it caused.",
            headers={
                **LOCATION,
                "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
            },
        )
    },
    errors=(*BODY_ERRORS, "NotFound", "Conflict"),
)
def post_event() -> ResponseReturnValue:
    """Validate, record and act on one event (docs/api.md, *Events*)."""
    body = json_body()
    failed = request.environ.pop(SUBMISSION_FAILED, None)
    if failed is not None:
        raise failed  # answered as if this submission had failed
    answer = intake.submit_event(
        services(), body, client_id=current_client_id(), request_id=observability.request_id()
    )
    content_type, data, headers = event_answer(
        current_app, body, answer, lambda event_id: url_for(GET_EVENT, event_id=event_id)
    )
    return Response(data, status=answer.status, content_type=content_type, headers=headers)


def event_answer(
    app: Flask, body: object, answer: intake.Answer, location: Callable[[str], str]
) -> tuple[str, bytes, list[tuple[str, str]]]:
    """Count an answered event; its answer's content type, body and headers (`location` gives
    the path of a recorded event by its id)."""
    _count(body, answer)
    content_type = "application/json" if answer.status < 400 else PROBLEM_TYPE
    headers = list(answer.headers.items())
    if answer.status == 202:
        headers.append(("Location", location(answer.body["event_id"])))
    return content_type, app.json.dumps(answer.body).encode(), headers


@bp.post("/v1/events/batch")
@require_scope("events:write")
@operation(
    "Record up to 100 events",
    tags=["events"],
    description="Each event is answered as `POST /v1/events` would answer it, had they been sent "
    "one after another in this order (a later one sees the earlier ones); they are recorded "
    "together. A result's `body` is that answer's body, `replayed` its `Idempotent-Replayed`, "
    "`location` its `Location`.",
    request={
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": _EVENT}
        },
    },
    request_example={"events": [EXAMPLE_EVENT]},
    responses={
        200: results(
            {
                "type": "object",
                "required": ["status", "replayed", "location", "body"],
                "additionalProperties": False,
                "properties": {
                    "status": {"type": "integer", "enum": [202, 404, 409, 422]},
                    "replayed": {"type": "boolean"},
                    "location": {"type": ["string", "null"]},
                    "body": {"anyOf": [r.EventAnswerSchema, r.ProblemSchema]},
                },
            },
            "One result per event, in the order sent.",
        )
    },
    errors=BODY_ERRORS,
)
def post_events() -> ResponseReturnValue:
    """Up to MAX_EVENTS events in one request, each answered as `POST /v1/events` would answer
    it had they been sent one after another; recorded together."""
    bodies = loaded(EventBatchSchema(), json_body(), "batch of events")["events"]
    return {
        "results": [
            {
                "status": answer.status,
                "replayed": "Idempotent-Replayed" in answer.headers,
                "location": _location(answer) if answer.status == 202 else None,
                "body": answer.body,
            }
            for answer in _submit(bodies)
        ]
    }


def _submit(bodies: list[object]) -> list[intake.Answer]:
    """Submit the events together and count them."""
    answers = intake.submit_events(
        services(), bodies, client_id=current_client_id(), request_id=observability.request_id()
    )
    for body, answer in zip(bodies, answers, strict=True):
        _count(body, answer)
    return answers


def _count(body: object, answer: intake.Answer) -> None:
    event_type = body.get("type") if isinstance(body, dict) else None
    metrics.count_event(
        event_type if isinstance(event_type, str) and event_type in EVENT_TYPES else "unknown",
        answer.status,
        answer.body,
        replayed="Idempotent-Replayed" in answer.headers,
    )


def _location(answer: intake.Answer) -> str:
    return url_for(GET_EVENT, event_id=answer.body["event_id"])


@bp.get("/v1/events/<path:event_id>")  # an event id may hold `/`
@require_scope("events:write", "certifications:read")
@operation(
    "A recorded event, its outcome and its jobs",
    tags=["events"],
    responses={200: json_answer(r.EventRecordSchema, "The recorded event.")},
    errors=("NotFound",),
)
def get_event(event_id: str) -> ResponseReturnValue:
    """The recorded event, its status and reasons, and the state of every job it caused; else
    the latest malformed attempt at that id, rejected with its field errors."""
    with services().db.sessions() as session:
        row = session.scalar(select(models.Event).where(models.Event.event_id == event_id))
        if row is None:
            attempt = session.get(models.MalformedEvent, event_id)
            if attempt is None:
                raise Problem(404, "Not Found", f"No event {event_id} has been received.")
            return _attempt_view(attempt)
        jobs = session.scalars(
            select(models.OutboxItem)
            .where(models.OutboxItem.event_pk == row.id)
            .order_by(models.OutboxItem.id)
        )
        return {
            "event_id": row.event_id,
            "type": row.type,
            "certification_id": row.certification_id,
            "occurred_at": _as_sent(row.body, row.occurred_at),
            "received_at": row.received_at.isoformat(),
            "status": "rejected" if row.status == models.EVENT_KEPT else row.status,
            "reasons": row.reasons,
            "data": row.body.get("data"),
            "jobs": [job_view(item) for item in jobs],
        }


#: The UTC offset that ends an RFC 3339 date-time (Z, written so, is UTC's).
_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")


def _as_sent(body: object, taken: datetime | None) -> str | None:
    """`occurred_at` at the UTC offset its sender wrote it with (which decides its day), when
    it was taken as a date-time (`taken`, in UTC); ISO 8601 as Python writes it."""
    if taken is None:
        return None
    sent = body.get("occurred_at") if isinstance(body, dict) else None
    found = _OFFSET.search(sent) if isinstance(sent, str) else None
    if found is None:
        return taken.isoformat()
    offset = timedelta(hours=int(found[2]), minutes=int(found[3]))
    return taken.astimezone(timezone(-offset if found[1] == "-" else offset)).isoformat()


def _attempt_view(attempt: models.MalformedEvent) -> dict[str, object]:
    """A malformed attempt as an event record: what of its envelope was usable, no jobs."""
    data = attempt.body.get("data")
    return {
        "event_id": attempt.event_id,
        "type": attempt.type,
        "certification_id": attempt.certification_id,
        "occurred_at": _as_sent(attempt.body, attempt.occurred_at),
        "received_at": attempt.received_at.isoformat(),
        "status": "rejected",
        "reasons": attempt.reasons,
        "data": data if isinstance(data, dict) else None,
        "jobs": [],
    }
