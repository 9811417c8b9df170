"""`/webhooks/credly`: Credly's unsigned notifications, recorded at once and checked by a job."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue

from gateway.platform import metrics
from gateway.platform.config import Settings
from gateway.schemas.events import ShapeError
from gateway.schemas.responses import WebhookReceiptSchema
from gateway.schemas.webhooks import CredlyEnvelopeSchema
from gateway.usecases import credly_notifications
from gateway.web import ratelimit
from gateway.web.apidoc import json_answer, operation
from gateway.web.context import services
from gateway.web.observability import request_id
from gateway.web.problems import Problem

bp = Blueprint("webhooks", __name__)

#: The app extension giving the `Sender` of a delivery from a client address.
SENDERS = "gateway.credly_senders"


def init_app(app: Flask, settings: Settings, counter: ratelimit.Counter) -> None:
    """Give the view the senders of deliveries, with their allowances kept in `counter`."""
    checks = app.extensions[ratelimit.CREDLY_CHECKS]
    app.extensions[SENDERS] = ratelimit.CredlyAllowances(settings, counter, checks).sender


@bp.post("/webhooks/credly")
@operation(
    "A Credly webhook notification",
    tags=["credly"],
    description="Recorded once per Credly event id and checked by a job that fetches the event "
    "from Credly; notifications of another organisation are answered 200 but refused. Credly's "
    "`Content-Type` is not relied on. Rate limited per client address (429); over the bound of "
    "notifications checked with Credly a new one is answered 503 and not recorded (an address "
    "caught sending forged ones has a small bound of its own).",
    request=CredlyEnvelopeSchema,
    responses={200: json_answer(WebhookReceiptSchema, "Recorded (or recorded before).")},
    errors=("BadRequest", "PayloadTooLarge", "TooManyRequests", "Unavailable"),
)
def credly_notification() -> ResponseReturnValue:
    """Record a notification and queue its job; 200 for any well-formed one (docs/credly.md,
    "Webhooks"). Over the bound of notifications checked with Credly (the shared one, or the
    address's own once it is caught sending forged ones), a new one is answered 503 with
    Retry-After and not recorded: Credly delivers it again later."""
    body = request.get_json(force=True, silent=True)  # Credly's Content-Type is not relied on
    sender = current_app.extensions[SENDERS](request.remote_addr)
    try:
        receipt = credly_notifications.receive_notification(
            services(), body, request_id=request_id(), sender=sender
        )
    except ShapeError as exc:
        metrics.CREDLY_NOTIFICATIONS.labels("malformed").inc()
        raise Problem(
            400, "Bad Request", "The body is not a Credly notification.", errors=exc.errors
        ) from exc
    except credly_notifications.OverBound as exc:
        metrics.CREDLY_NOTIFICATIONS.labels("over_bound").inc()
        raise Problem(
            503,
            "Service Unavailable",
            "Too many notifications to check with Credly now: deliver it again later.",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    metrics.CREDLY_NOTIFICATIONS.labels("duplicate" if receipt.duplicate else receipt.status).inc()
    # decision: another organisation's (refused) one gets 200 too: a 4xx = 25 days of redelivery
    return {"id": receipt.notification_id, "status": receipt.status, "duplicate": receipt.duplicate}
