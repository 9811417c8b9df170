"""The current request's services: what the app was wired with."""

from __future__ import annotations

from flask import current_app

from gateway.usecases.services import Services


def services() -> Services:
    """The services of the current Flask app."""
    return current_app.extensions["gateway"]
