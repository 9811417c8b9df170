"""The benchmarks' ceiling: a bare Flask app (constant JSON) served by `gateway.gunicorn_conf`."""

from __future__ import annotations

from flask import Flask, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)

ANSWER = {"certification_id": "C00000000", "status": "active", "valid_through": "2027-03-31"}


@app.get("/bare/<item_id>")
def bare_get(item_id: str) -> ResponseReturnValue:
    """A constant JSON object: what serving any GET costs in this stack."""
    return ANSWER


@app.post("/bare")
def bare_post() -> ResponseReturnValue:
    """Parse the JSON body and answer 202 with a constant: what accepting any POST costs."""
    request.get_json()
    return ANSWER, 202
