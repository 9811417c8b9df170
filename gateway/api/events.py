"""`/v1/events`: internal systems post certification events and read what became of them."""

from __future__ import annotations

from flask import Blueprint, Response, json, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.exceptions import BadRequest

from gateway import intake, logs, metrics
from gateway.api.problems import PROBLEM_TYPE, Problem
from gateway.auth import current_client_id, require_scope
from gateway.rules import EVENT_TYPES
from gateway.services import services
from gateway.store import models
from gateway.views import job_view

bp = Blueprint("events", __name__)


def json_body() -> object:
    """The request's JSON body, or a problem saying what is wrong with it."""
    if not request.is_json:
        raise Problem(
            415,
            "Unsupported Media Type",
            "Send the body as application/json.",
            errors=[{"field": "Content-Type", "message": "Must be application/json."}],
        )
    try:
        return request.get_json()
    except BadRequest as exc:
        raise Problem(
            400,
            "Bad Request",
            "The body is not valid JSON.",
            errors=[{"field": "body", "message": "Malformed JSON."}],
        ) from exc


@bp.post("/v1/events")
@require_scope("events:write")
def post_event() -> ResponseReturnValue:
    """Validate, record and act on one event (SPEC §5)."""
    svc = services()
    body = json_body()
    answer = intake.submit_event(
        svc, body, client_id=current_client_id(), request_id=logs.request_id()
    )
    svc.dispatcher.dispatch(answer.outbox_ids)
    event_type = body.get("type") if isinstance(body, dict) else None
    metrics.count_event(
        event_type if isinstance(event_type, str) and event_type in EVENT_TYPES else "unknown",
        answer.status,
        answer.body,
        replayed="Idempotent-Replayed" in answer.headers,
    )
    mimetype = "application/json" if answer.status < 400 else PROBLEM_TYPE
    response = Response(json.dumps(answer.body), status=answer.status, mimetype=mimetype)
    response.headers.update(answer.headers)
    if answer.status == 202:
        response.headers["Location"] = url_for("events.get_event", event_id=answer.body["event_id"])
    return response


@bp.get("/v1/events/<event_id>")
@require_scope("events:write", "certifications:read")
def get_event(event_id: str) -> ResponseReturnValue:
    """The recorded event, its status and reasons, and the state of every job it caused."""
    with services().db.sessions() as session:
        row = session.scalar(select(models.Event).where(models.Event.event_id == event_id))
        if row is None:
            raise Problem(404, "Not Found", f"No event {event_id} has been received.")
        jobs = session.scalars(
            select(models.OutboxItem)
            .where(models.OutboxItem.event_pk == row.id)
            .order_by(models.OutboxItem.id)
        )
        return {
            "event_id": row.event_id,
            "type": row.type,
            "certification_id": row.certification_id,
            "occurred_at": row.occurred_at.isoformat(),
            "received_at": row.received_at.isoformat(),
            "status": row.status,
            "reasons": row.reasons,
            "data": row.body.get("data"),
            "jobs": [job_view(item) for item in jobs],
        }
