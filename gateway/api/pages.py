"""`/verify`: the employers' web page, server-rendered HTML that needs no JavaScript."""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from gateway import lookup
from gateway.api.apidoc import html, operation
from gateway.api.context import services
from gateway.api.problems import DATABASE_UNAVAILABLE, database_unavailable
from gateway.ratelimit import TooManyLookups

bp = Blueprint("pages", __name__)

STATUS_WORDS = {
    "active": "Active",
    "inactive": "Inactive — not in good standing",
    "lapsed": "Lapsed",
    "revoked": "Revoked",
}


@bp.app_template_filter("long_date")
def long_date(day: date) -> str:
    """`2015-06-03` as `3 June 2015`."""
    return f"{day.day} {day:%B %Y}"


@bp.app_template_filter("utc_time")
def utc_time(moment: datetime) -> str:
    """A UTC time as `24 November 2026, 12:51:10 UTC`."""
    return f"{long_date(moment.date())}, {moment:%H:%M:%S} UTC"


@bp.get("/verify")
@operation(
    "The employers' verification web page",
    tags=["verifications"],
    parameters=[
        {
            "in": "query",
            "name": "certification_id",
            # not only whitespace (Python's str.strip() whitespace, in any regex dialect)
            "schema": {"type": "string", "pattern": r"[^\s\x1c-\x1f\x85]"},
            "description": "The number to look up; without it, just the form.",
        }
    ],
    responses={
        200: html("The form, and the result card when a number was given."),
        400: html("An empty number."),
        404: html("The number is not on record."),
        429: html("Over the rate limit."),
        503: html("The register cannot be read right now (`Retry-After`)."),
    },
)
def verify_page() -> ResponseReturnValue:
    """The form, and the result card of the number asked for (404 when it is not on record)."""
    number = request.args.get("certification_id")
    if number is None:
        return render_template("verify.html", number="")
    number = number.strip()
    if not number:
        return render_template("verify.html", number="", error="Enter a certification number."), 400
    [found] = lookup.verify(services().db, [number])
    return render_template(
        "verify.html",
        number=number,
        result=found,
        status_words=STATUS_WORDS,
        checked_at=found.verified_at if found else lookup.check_time(),
    ), (200 if found else 404)


@bp.errorhandler(TooManyLookups)
def too_many_lookups(exc: TooManyLookups) -> ResponseReturnValue:
    """Over the limit: the page again, saying so, with status 429 and Retry-After."""
    return render_template("verify.html", number="", notice=exc.detail), 429, exc.headers


def unavailable(exc: Exception) -> ResponseReturnValue:
    """The register cannot be read: the page again, saying so, with status 503 and Retry-After."""
    problem = database_unavailable(exc)
    number = request.args.get("certification_id", "").strip()
    notice = "The register cannot be reached right now."
    return render_template("verify.html", number=number, notice=notice), 503, problem.headers


for _error in DATABASE_UNAVAILABLE:
    bp.register_error_handler(_error, unavailable)
