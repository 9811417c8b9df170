"""`/v1/subscriptions`: employers' webhooks for status changes of the certifications they watch.

Scope `verifications:read`; each client sees and changes only its own subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import Schema
from sqlalchemy.orm import Session

from gateway.schemas import responses as r
from gateway.schemas.subscriptions import (
    CertificationIdsSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    SubscriptionCreateSchema,
    SubscriptionSchema,
    WatchedIdsSchema,
)
from gateway.store.models import Subscription
from gateway.usecases import subscriptions
from gateway.web.apidoc import BODY_ERRORS, LOCATION, empty, json_answer, operation
from gateway.web.auth import current_client_id, refuse_revoked_client, require_scope
from gateway.web.context import services
from gateway.web.problems import Problem, json_body, loaded, query_args, unprocessable
from gateway.web.ratelimit import LOOKUP_SCOPE

bp = Blueprint("subscriptions", __name__)

_view = SubscriptionSchema()
#: Room for MAX_WATCHED ids of 128 characters (the app's default limit is far smaller).
MAX_BODY = 2 * 1024 * 1024


@bp.before_request
def _allow_long_lists() -> None:
    request.max_content_length = MAX_BODY


def _owned(session: Session, subscription_id: str) -> Subscription:
    try:
        return subscriptions.owned(session, current_client_id(), subscription_id)
    except subscriptions.SubscriptionNotFound as exc:
        detail = f"You have no subscription {subscription_id}."
        raise Problem(404, "Not Found", detail) from exc


def _dump(subscription: Subscription, count: int, **extra: Any) -> dict[str, Any]:
    """The JSON view of a subscription watching `count` certifications."""
    return _view.dump(
        {
            "id": subscription.id,
            "url": subscription.url,
            "created_at": subscription.created_at,
            "notice_days": subscription.notice_days,
            "certification_count": count,
            **extra,
        }
    )


@bp.post("/v1/subscriptions")
@require_scope(LOOKUP_SCOPE)
@operation(
    "Register a webhook for status changes of the certifications it watches",
    tags=["subscriptions"],
    description=(
        "The answer shows the signing secret: the only time it is shown. The subscriptions an "
        "API client creates are rate limited (429 with `Retry-After` beyond)."
    ),
    request=SubscriptionCreateSchema,
    responses={201: json_answer(SubscriptionSchema, "Registered.", headers=LOCATION)},
    errors=(*BODY_ERRORS, "TooManySubscriptions", "TooManyRequests"),
)
def create_subscription() -> ResponseReturnValue:
    """Register a webhook; the answer shows its signing secret, the only time it is shown."""
    body = loaded(SubscriptionCreateSchema(), json_body(), "subscription")
    try:
        subscription = subscriptions.register(
            services(),
            current_client_id(),
            body["url"],
            body["certification_ids"],
            body["notice_days"],
        )
    except subscriptions.InvalidTarget as exc:
        raise unprocessable("url", str(exc)) from exc
    except subscriptions.TooManyWatched as exc:
        raise unprocessable("certification_ids", str(exc)) from exc
    except subscriptions.TooManySubscriptions as exc:
        raise Problem(409, "Conflict", str(exc)) from exc
    except subscriptions.ClientRevoked:
        refuse_revoked_client()
    view = _dump(subscription, len(body["certification_ids"]), secret=subscription.secret)
    location = url_for("subscriptions.get_subscription", subscription_id=subscription.id)
    return view, 201, {"Location": location}


@bp.get("/v1/subscriptions")
@require_scope(LOOKUP_SCOPE)
@operation(
    "Your subscriptions, oldest first",
    tags=["subscriptions"],
    responses={200: json_answer(r.SubscriptionsSchema, "Your live subscriptions.")},
)
def list_subscriptions() -> ResponseReturnValue:
    """Your live subscriptions, oldest first (without the watched ids)."""
    with services().db.sessions() as session:
        rows = subscriptions.list_owned(session, current_client_id())
        return {"subscriptions": [_dump(subscription, count) for subscription, count in rows]}


@bp.get("/v1/subscriptions/<subscription_id>")
@require_scope(LOOKUP_SCOPE)
@operation(
    "One of your subscriptions, with every certification id it watches",
    tags=["subscriptions"],
    responses={200: json_answer(SubscriptionSchema, "The subscription.")},
    errors=("NotFound",),
)
def get_subscription(subscription_id: str) -> ResponseReturnValue:
    """One of your subscriptions with every certification id it watches."""
    with services().db.transaction() as session:
        subscription = _owned(session, subscription_id)
        ids = subscriptions.watched_ids(session, subscription.id)
        return _dump(subscription, len(ids), certification_ids=ids)


@bp.delete("/v1/subscriptions/<subscription_id>")
@require_scope(LOOKUP_SCOPE)
@operation(
    "Delete a subscription and the ids it watches: nothing more is delivered to it",
    tags=["subscriptions"],
    responses={204: empty("Deleted.")},
    errors=("NotFound",),
)
def delete_subscription(subscription_id: str) -> ResponseReturnValue:
    """Delete a subscription and the ids it watches: nothing more is delivered to it."""
    with services().db.transaction() as session:
        subscriptions.remove(session, _owned(session, subscription_id))
    return Response(status=204)


def _watched_change(summary: str, ids: type[Schema]) -> Callable[[Callable], Callable]:
    """The operation of a change to the watched ids: the ids in the body, the count after it."""
    return operation(
        summary,
        tags=["subscriptions"],
        description=(
            "The changes an API client makes to the ids its subscriptions watch are rate limited "
            "(429 with `Retry-After` beyond): name many ids in one request."
        ),
        request=ids,
        responses={200: json_answer(r.WatchedChangeSchema, "The subscription after the change.")},
        errors=(*BODY_ERRORS, "NotFound", "TooManyRequests"),
    )


@bp.post("/v1/subscriptions/<subscription_id>/certifications")
@require_scope(LOOKUP_SCOPE)
@_watched_change("Watch more certifications (at most 10,000 in all)", WatchedIdsSchema)
def watch_certifications(subscription_id: str) -> ResponseReturnValue:
    """Watch more certifications (at most 10,000 in all); says how many were `added`."""
    return _change_watched(subscription_id, subscriptions.watch, "added", WatchedIdsSchema())


@bp.delete("/v1/subscriptions/<subscription_id>/certifications")
@require_scope(LOOKUP_SCOPE)
@_watched_change("Stop watching the certifications named in the body", CertificationIdsSchema)
def unwatch_certifications(subscription_id: str) -> ResponseReturnValue:
    """Stop watching the certifications named in the body (any watched before, also one an
    earlier release let through that is no certification's); says how many were `removed`."""
    return _change_watched(
        subscription_id, subscriptions.unwatch, "removed", CertificationIdsSchema()
    )


def _change_watched(
    subscription_id: str,
    change: Callable[[Session, Subscription, list[str]], int],
    key: str,
    schema: Schema,
) -> dict[str, Any]:
    ids = loaded(schema, json_body(), "list of ids")["certification_ids"]
    with services().db.transaction() as session:
        subscription = _owned(session, subscription_id)
        try:
            changed = change(session, subscription, ids)
        except subscriptions.TooManyWatched as exc:
            raise unprocessable("certification_ids", str(exc)) from exc
        count = subscriptions.count_watched(session, subscription.id)
        return {**_dump(subscription, count), key: changed}


@bp.get("/v1/subscriptions/<subscription_id>/deliveries")
@require_scope(LOOKUP_SCOPE)
@operation(
    "The delivery log, newest first",
    tags=["subscriptions"],
    parameters=[{"in": "query", "schema": DeliveryQuerySchema}],
    responses={200: json_answer(r.DeliveriesSchema, "A page of the log.")},
    errors=("NotFound", "Unprocessable"),
)
def list_deliveries(subscription_id: str) -> ResponseReturnValue:
    """The delivery log, newest first: `?limit=` (≤ 1000) and `?before=<sequence>` to page back."""
    schema = DeliveryQuerySchema()
    query = loaded(schema, query_args(schema.load_fields), "query")
    with services().db.transaction() as session:
        subscription = _owned(session, subscription_id)
        rows = subscriptions.deliveries(
            session, subscription.id, limit=query["limit"], before=query["before"]
        )
        return {"deliveries": DeliverySchema(many=True).dump(rows)}
