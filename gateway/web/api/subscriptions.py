"""`/v1/subscriptions`: employers' webhooks for status changes of the certifications they watch.

Scope `verifications:read`; each client sees and changes only its own subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import Schema

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
from gateway.usecases.services import Services
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


@contextmanager
def _yours(subscription_id: str) -> Iterator[None]:
    """Answer 404 for a subscription the client does not hold."""
    try:
        yield
    except subscriptions.SubscriptionNotFound as exc:
        detail = f"You have no subscription {subscription_id}."
        raise Problem(404, "Not Found", detail) from exc


def _held_first(subscription_id: str, read: Callable[[], Any]) -> Any:
    """What `read` makes of the request; when it refuses it, a 404 instead for a subscription
    the client does not hold, so that a malformed request is refused only on the client's own."""
    try:
        return read()
    except Problem:
        with _yours(subscription_id):
            subscriptions.check_held(services(), current_client_id(), subscription_id)
        raise


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
    rows = subscriptions.list_of(services(), current_client_id())
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
    with _yours(subscription_id):
        subscription, ids = subscriptions.read(services(), current_client_id(), subscription_id)
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
    with _yours(subscription_id):
        subscriptions.delete_subscription(services(), current_client_id(), subscription_id)
    answer = Response(status=204)
    del answer.headers["Content-Type"]  # no body, so no media type
    return answer


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
    return _change_watched(subscription_id, subscriptions.watch_more, "added", WatchedIdsSchema())


@bp.delete("/v1/subscriptions/<subscription_id>/certifications")
@require_scope(LOOKUP_SCOPE)
@_watched_change("Stop watching the certifications named in the body", CertificationIdsSchema)
def unwatch_certifications(subscription_id: str) -> ResponseReturnValue:
    """Stop watching the certifications named in the body (any watched before, also one an
    earlier release let through that is no certification's); says how many were `removed`."""
    return _change_watched(
        subscription_id, subscriptions.stop_watching, "removed", CertificationIdsSchema()
    )


def _change_watched(
    subscription_id: str,
    change: Callable[[Services, str, str, list[str]], subscriptions.WatchedChange],
    key: str,
    schema: Schema,
) -> dict[str, Any]:
    body = _held_first(subscription_id, lambda: loaded(schema, json_body(), "list of ids"))
    ids = body["certification_ids"]
    with _yours(subscription_id):
        try:
            after = change(services(), current_client_id(), subscription_id, ids)
        except subscriptions.TooManyWatched as exc:
            raise unprocessable("certification_ids", str(exc)) from exc
    return {**_dump(after.subscription, after.count), key: after.changed}


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
    """The delivery log, newest first: `?limit=` (≤ 1000) and `?before=<sequence>` to page back.

    A subscription the client does not hold is a 404 whatever the query: a malformed one is
    refused only once the subscription is found to be the client's."""
    schema = DeliveryQuerySchema()
    query = _held_first(
        subscription_id, lambda: loaded(schema, query_args(schema.load_fields), "query")
    )
    with _yours(subscription_id):
        rows = subscriptions.delivery_log(
            services(),
            current_client_id(),
            subscription_id,
            limit=query["limit"],
            before=query["before"],
        )
    return {"deliveries": DeliverySchema(many=True).dump(rows)}
