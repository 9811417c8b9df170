"""Liveness and readiness probes, and the Prometheus metrics (`/metrics`)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from gateway.schemas.responses import HealthSchema, ReadinessSchema
from gateway.usecases.credly_token import credly_status, token_state
from gateway.web import observability
from gateway.web.apidoc import json_answer, operation, text
from gateway.web.context import services
from gateway.web.problems import UNAVAILABLE_RETRY_SECONDS, Problem

bp = Blueprint("health", __name__)

#: How long readiness waits for the database's answer before it says the database is down.
READINESS_TIMEOUT_SECONDS = 2


@bp.get("/healthz")
@operation(
    "Liveness",
    tags=["operations"],
    responses={200: json_answer(HealthSchema, "The process is alive.")},
)
def healthz() -> ResponseReturnValue:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
@operation(
    "Readiness: the database and Redis are reachable",
    tags=["operations"],
    responses={200: json_answer(ReadinessSchema, "Ready.")},
    errors=("Unavailable",),
)
def readyz() -> ResponseReturnValue:
    """The database and Redis (when configured) are reachable; Credly's token expiry as detail."""
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.db.ping(timeout=READINESS_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "down"
        current_app.logger.warning("readiness: database down: %s", exc)
        checks["database"] = f"down: {type(exc).__name__}"
    if svc.redis is None:
        checks["redis"] = "not configured (jobs run in-process)"
    else:
        try:
            svc.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            current_app.logger.warning("readiness: redis down: %s", exc)
            checks["redis"] = f"down: {type(exc).__name__}"
    # Credly's token state lives in Redis: not read again when Redis did not answer
    redis_down = checks["redis"].startswith("down")
    credly = credly_status(svc.settings, state=None if redis_down else token_state(svc))
    down = sorted(name for name, state in checks.items() if state.startswith("down"))
    if down:
        raise Problem(
            503,
            "Service Unavailable",
            f"not ready: {', '.join(down)} unreachable",
            errors=[{"field": name, "message": checks[name]} for name in down],
            headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
            checks=checks,
            credly=credly,
        )
    return jsonify(status="ready", checks=checks, credly=credly)


@bp.get("/metrics")
@operation(
    "Prometheus metrics",
    tags=["operations"],
    responses={200: text("Prometheus text exposition.")},
)
def metrics_exposition() -> ResponseReturnValue:
    """Prometheus text exposition of the request, event and job metrics."""
    return observability.exposition(current_app)
