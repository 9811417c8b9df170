"""`/v1/certifications` and `/v1/credentials`: the internal read of standing and policy."""

from __future__ import annotations

from datetime import date

from flask import Blueprint
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from gateway import rules
from gateway.rules.periods import EARLIEST_DAY, LATEST_DAY, parse_day
from gateway.schemas import responses as r
from gateway.schemas.events import DAYS, IN_RANGE
from gateway.store import models
from gateway.usecases.queries import UnknownCertification, standing_on
from gateway.web.apidoc import json_answer, operation
from gateway.web.auth import require_scope
from gateway.web.context import services
from gateway.web.problems import Problem, query_args, unknown_certification

bp = Blueprint("certifications", __name__)


def _as_of() -> date:
    raw = query_args(("as_of",), 400).get("as_of")
    if raw is None:
        return models.clock.now().date()
    try:
        as_of = parse_day(raw)
    except ValueError as exc:
        raise Problem(
            400,
            "Bad Request",
            "as_of must be a date.",
            errors=[{"field": "as_of", "message": "Use YYYY-MM-DD."}],
        ) from exc
    try:
        DAYS(as_of)
    except ValidationError as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            "as_of is outside the days the rules compute with.",
            errors=[{"field": "as_of", "message": IN_RANGE}],
        ) from exc
    return as_of


@bp.get("/v1/certifications/<certification_id>")
@require_scope("certifications:read")
@operation(
    "The standing of a certification",
    tags=["certifications"],
    parameters=[
        {
            "in": "query",
            "name": "as_of",
            "schema": {"type": "string", "format": "date"},
            "description": "Evaluate the history on this day (default: today, UTC); "
            f"from {EARLIEST_DAY} to {LATEST_DAY}, else 422.",
        }
    ],
    responses={200: json_answer(r.StandingSchema, "The standing on `as_of`.")},
    errors=("BadRequest", "NotFound", "Unprocessable"),
)
def get_certification(certification_id: str) -> ResponseReturnValue:
    """The standing of a certification on `as_of` (default today, UTC), from its whole history."""
    as_of = _as_of()
    try:
        return standing_on(services(), certification_id, as_of)
    except UnknownCertification as exc:
        raise unknown_certification(certification_id) from exc
    except rules.NotCertified as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            f"Certification {certification_id} did not exist on {as_of.isoformat()}.",
            errors=[{"field": "as_of", "message": "Before the certification was granted."}],
        ) from exc


@bp.get("/v1/credentials")
@require_scope("certifications:read")
@operation(
    "The credential policy table",
    tags=["certifications"],
    responses={200: json_answer(r.CredentialsSchema, "Every credential.")},
)
def list_credentials() -> ResponseReturnValue:
    """The credential policy table."""
    return {
        "credentials": [
            {
                "code": c.code,
                "name": c.name,
                "points_per_cycle": rules.json_number(c.points_per_cycle),
                "eligibility_criteria": c.eligibility_criteria,
            }
            for c in services().policy.credentials.values()
        ]
    }
