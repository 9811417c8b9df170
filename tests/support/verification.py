"""A certification in each status of docs/rules.md, made by the intake and the sync job."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from gateway.platform import clock
from gateway.usecases import intake
from tests.support.events import granted, revoked

#: The keys of a verification answer: the public record, the time of the check, who vouches.
ANSWER_KEYS = {
    "certification_id",
    "name",
    "credential",
    "credential_name",
    "status",
    "certified_since",
    "valid_through",
    "verified_at",
    "issuer",
}


def days_ago(days: int) -> str:
    """The ISO date `days` days before today (UTC)."""
    return (clock.now().date() - timedelta(days=days)).isoformat()


def histories() -> dict[str, list[dict]]:
    """Event bodies that leave certification `<STATUS>-1` in each status today."""
    return {
        "active": [granted(days_ago(30), cert="ACTIVE-1")],
        "inactive": [granted(days_ago(2 * 365), cert="INACTIVE-1")],  # fees one year overdue
        "lapsed": [granted(days_ago(6 * 365), cert="LAPSED-1")],  # fees 3+ years overdue
        "revoked": [
            granted(days_ago(60), cert="REVOKED-1"),
            revoked(days_ago(10), cert="REVOKED-1"),
        ],
    }


def record(app: Flask, *bodies: dict) -> list[intake.Answer]:
    """Submit events and run their jobs (the app must have `jobs_synchronous=True`)."""
    svc = app.extensions["gateway"]
    answers = []
    for body in bodies:
        answer = intake.submit_event(svc, body)
        assert answer.status == 202, answer.body
        answers.append(answer)
    return answers


def record_every_status(app: Flask) -> dict[str, intake.Answer]:
    """One certification in each status; returns the last answer of each, by status."""
    return {status: record(app, *bodies)[-1] for status, bodies in histories().items()}
