"""`/v1/events`: internal systems post certification events and read what became of them."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, request, url_for
from flask.typing import ResponseReturnValue

from gateway.platform import metrics
from gateway.rules import EVENT_TYPES
from gateway.schemas import responses as r
from gateway.schemas.events import EXAMPLE_EVENT, MAX_EVENTS, EventBatchSchema
from gateway.usecases import intake, queries
from gateway.web import observability
from gateway.web.apidoc import (
    BODY_ERRORS,
    EVENT_BODY_ERRORS,
    LOCATION,
    REPLAYED,
    json_answer,
    operation,
    results,
)
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
                "Idempotent-Replayed": REPLAYED,
            },
        )
    },
    errors=(*EVENT_BODY_ERRORS, "NotFound", "Conflict"),
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
    return content_type, f"{app.json.dumps(answer.body)}\n".encode(), headers


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
    record = queries.event_record(services(), event_id)
    if record is None:
        raise Problem(404, "Not Found", f"No event {event_id} has been received.")
    return record
