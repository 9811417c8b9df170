"""`/webhooks/credly`: Credly's unsigned notifications, recorded at once and checked by a job."""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from gateway import credly_webhooks
from gateway.api.context import services
from gateway.api.problems import Problem
from gateway.logs import request_id
from gateway.schemas.events import ShapeError

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/credly")
def credly_notification() -> ResponseReturnValue:
    """Record a notification and queue its job; 200 for any well-formed one (docs/operations.md)."""
    body = request.get_json(force=True, silent=True)  # Credly's Content-Type is not relied on
    try:
        receipt = credly_webhooks.receive_notification(services(), body, request_id=request_id())
    except ShapeError as exc:
        raise Problem(
            400, "Bad Request", "The body is not a Credly notification.", errors=exc.errors
        ) from exc
    # decision: another organisation's (refused) one gets 200 too: a 4xx = 25 days of redelivery
    return {"id": receipt.notification_id, "status": receipt.status, "duplicate": receipt.duplicate}
