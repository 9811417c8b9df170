"""`/verify`: the employers' web pages, server-rendered HTML that needs no JavaScript: the lookup,
a printable proof of a check (a signed receipt), and the check of a receipt someone shows."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Any

import segno
from flask import Blueprint, abort, current_app, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from gateway.platform.signing import InvalidSignature
from gateway.store.db import UNAVAILABLE
from gateway.usecases import lookup, receipts
from gateway.usecases.issuer import issuer, logo_file
from gateway.web.api.verifications import receipt_for
from gateway.web.apidoc import html, operation
from gateway.web.context import services
from gateway.web.observability import public_base_url
from gateway.web.problems import database_unavailable
from gateway.web.ratelimit import TooManyRequests

bp = Blueprint("pages", __name__)

STATUS_WORDS = {
    "active": "Active",
    "inactive": "Inactive — not in good standing",
    "lapsed": "Lapsed",
    "revoked": "Revoked",
}
#: Each status in plain words, then what an employer should do; `{body}` is the issuer's name.
STATUS_EXPLAINED = {
    "active": (
        "The certification is current: the holder meets every requirement to keep it.",
        "No action is needed now. Its renewal fees are paid through the date shown; it can still "
        "become inactive before then if a requirement such as continuing education is not met, "
        "so check again before relying on it later.",
    ),
    "inactive": (
        "Not in good standing: renewal requirements are overdue, such as unpaid renewal fees. "
        "The certification has not lapsed, and the member can restore it by paying the missing "
        "fees or completing what is missing.",
        "Ask the member to contact {body} to bring the certification back into good standing, "
        "and check again before relying on it.",
    ),
    "lapsed": (
        "Not certified: the certification lapsed because its renewal requirements were not met. "
        "The member must recertify before it is valid again.",
        "Do not rely on this certification. The member can contact {body} about recertifying.",
    ),
    "revoked": (
        "Not certified: {body} withdrew this certification.",
        "Do not rely on this certification. Contact {body} with any questions.",
    ),
}

#: A number typed into a page: not only whitespace (str.strip() whitespace, in any regex dialect).
PAGE_NUMBER = {"type": "string", "pattern": r"[^\s\x1c-\x1f\x85]"}


def asked_number() -> str:
    """The certification number typed, trimmed; a control character (never part of a number,
    and not for an HTML page) is shown as U+FFFD, so it matches no record."""
    typed = request.args.get("certification_id", "").strip()
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in typed)


@bp.app_template_filter("long_date")
def long_date(day: date | str) -> str:
    """`2015-06-03` (a date, or its ISO text as a receipt's claim holds it) as `3 June 2015`."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return f"{day.day} {day:%B %Y}"


@bp.app_template_filter("utc_time")
def utc_time(moment: datetime) -> str:
    """A UTC time as `24 November 2026, 12:51:10 UTC`."""
    return f"{long_date(moment.date())}, {moment:%H:%M:%S} UTC"


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    """What every page shows: who vouches, and the words for each status."""
    if request.blueprint != bp.name:
        return {}
    return {
        "issuer": issuer(services().settings, public_base_url(services().settings)),
        "status_words": STATUS_WORDS,
        "explained": STATUS_EXPLAINED,
    }


@bp.get("/verify")
@operation(
    "The employers' verification web page",
    tags=["verifications"],
    parameters=[
        {
            "in": "query",
            "name": "certification_id",
            "schema": PAGE_NUMBER,
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
    if "certification_id" not in request.args:
        return render_template("verify.html", number="")
    number = asked_number()
    if not number:
        return render_template("verify.html", number="", error="Enter a certification number."), 400
    [found] = lookup.records_today(services().db, services().policy, [number])
    return render_template(
        "verify.html",
        number=number,
        result=found,
        checked_at=found.verified_at if found else lookup.check_time(),
    ), (200 if found else 404)


@bp.get("/verify/proof")
@operation(
    "A printable proof of a check: a signed receipt and a QR code",
    tags=["verifications"],
    parameters=[
        {
            "in": "query",
            "name": "certification_id",
            "required": True,
            "schema": PAGE_NUMBER,
            "description": "The number whose check to prove.",
        }
    ],
    responses={
        200: html("The receipt page."),
        400: html("An empty number."),
        404: html("The number is not on record."),
        429: html("Over the rate limit."),
        503: html("The register cannot be read right now (`Retry-After`)."),
    },
)
def proof_page() -> ResponseReturnValue:
    """A printable proof of the check of `certification_id`: a signed receipt, recorded."""
    number = asked_number()
    if not number:
        return render_template("verify.html", number="", error="Enter a certification number."), 400
    # PUBLIC_BASE_URL: printed, so never the Host header's
    base = public_base_url(services().settings)
    try:
        issued = receipt_for(number, None, base)  # for a HEAD, neither signed nor recorded
    except lookup.NotOnRecord:
        return verify_page()  # the lookup's own not-found card
    live = f"{base}{url_for('pages.verify_page', certification_id=number)}"
    return (
        render_template(
            "receipt.html",
            claims=issued.claims,
            result=lookup.Verification.from_public(issued.claims),
            token=issued.token,
            live_url=live,
            qr=_qr_svg(live),
            check_url=f"{base}{url_for('pages.receipt_check_page')}",
            keys_url=f"{base}{url_for('keys.jwks')}",
        ),
        200,
        {"Cache-Control": "no-store"},
    )


@bp.get("/verify/receipt")
@operation(
    "Check a receipt: genuine or not, what it said, what is true now",
    tags=["verifications"],
    parameters=[
        {
            "in": "query",
            "name": "receipt",
            "schema": {"type": "string"},
            "description": "The receipt (compact JWS); without it, just the form.",
        }
    ],
    responses={
        200: html("The form, or a genuine receipt's record then and now."),
        422: html("Not a genuine receipt."),
        429: html("Over the rate limit."),
        503: html("The register cannot be read right now (`Retry-After`)."),
    },
)
def receipt_check_page() -> ResponseReturnValue:
    """Paste or open a receipt: whether it is genuine, what it said, and what is true now."""
    token = (request.args.get("receipt") or "").strip()
    if not token:
        return render_template("receipt_check.html", token="")
    try:
        verified = receipts.verify(services(), token)
        said = lookup.Verification.from_public(verified.claims)
    except InvalidSignature as exc:  # what is wrong with the signature, said
        return render_template("receipt_check.html", token=token, genuine=False, why=exc), 422
    except (KeyError, TypeError, ValueError):
        return render_template("receipt_check.html", token=token, genuine=False), 422
    [now] = lookup.records_today(services().db, services().policy, [said.certification_id])
    return render_template(
        "receipt_check.html",
        token=token,
        genuine=True,
        claims=verified.claims,
        kid=verified.header.get("kid"),
        said=said,
        now=now,
        checked_at=lookup.check_time(),
    )


@bp.get("/verify/logo")
@operation(
    "The certifying body's logo (`ISSUER_LOGO`)",
    tags=["verifications"],
    responses={200: {"description": "The image (PNG, JPEG, SVG, GIF or WebP)."}},
    errors=("NotFound",),
)
def logo() -> ResponseReturnValue:
    """The certifying body's logo (ISSUER_LOGO in the instance folder), and nothing else."""
    found = logo_file(services().settings.issuer_logo, current_app.instance_path)
    if found is None:
        abort(404)
    path, content_type = found
    response = send_file(path, mimetype=content_type, max_age=3600)
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


def _qr_svg(url: str) -> Markup:
    """An inline SVG QR code of `url` (segno's output: markup it made, no user text in it)."""
    code = segno.make(url, error="m")
    svg = code.svg_inline(
        scale=4, svgclass="qr", lineclass=None, omitsize=True, title="QR code of the live check"
    )
    return Markup(svg)


def _page_again(notice: str) -> str:
    """The page asked for, with what was typed in its form and `notice` in place of a result."""
    if request.endpoint == "pages.receipt_check_page":
        token = (request.args.get("receipt") or "").strip()
        return render_template("receipt_check.html", token=token, notice=notice)
    return render_template("verify.html", number=asked_number(), notice=notice)


@bp.errorhandler(TooManyRequests)
def too_many_lookups(exc: TooManyRequests) -> ResponseReturnValue:
    """Over the limit: the page again, saying so, with status 429 and Retry-After."""
    return _page_again(exc.detail), 429, exc.headers


def unavailable(exc: Exception) -> ResponseReturnValue:
    """The register cannot be read: the page again, saying so, with status 503 and Retry-After."""
    problem = database_unavailable(exc)
    return _page_again("The register cannot be reached right now."), 503, problem.headers


for _error in UNAVAILABLE:
    bp.register_error_handler(_error, unavailable)
