"""`/openapi.json` and `/docs`: a valid OpenAPI 3 document of every route, from the schemas."""

from __future__ import annotations

import re

from flask import Flask
from openapi_spec_validator import validate

from gateway.api.openapi import build_spec
from gateway.auth import SCOPES
from gateway.schemas.events import DATA_SCHEMAS, EnvelopeSchema
from gateway.schemas.verifications import BatchLookupSchema

UNDOCUMENTED_ENDPOINTS = {"static"}  # the stylesheets of the pages, not an API


def openapi_path(rule: str) -> str:
    """The OpenAPI form of a Flask rule: `/v1/x/<id>` is `/v1/x/{id}`."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def _routes(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route of `app`."""
    return {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def _documented(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, methods in spec["paths"].items() for method in methods}


def _component(spec: dict, ref: dict) -> dict:
    return spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]


def test_openapi_json_is_a_valid_openapi_3_document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_every_route_of_the_app_is_documented_and_nothing_else(app):
    spec = build_spec()
    assert _routes(app) - _documented(spec) == set(), "document these in gateway/api/openapi.py"
    assert _documented(spec) - _routes(app) == set(), "documented but not served"


def test_event_body_is_one_of_the_envelope_with_each_types_data_schema_by_type():
    spec = build_spec()
    event = spec["components"]["schemas"]["Event"]
    assert event["discriminator"]["propertyName"] == "type"
    assert set(event["discriminator"]["mapping"]) == set(DATA_SCHEMAS)
    for event_type, (data_schema, _) in DATA_SCHEMAS.items():
        variant = _component(spec, {"$ref": event["discriminator"]["mapping"][event_type]})
        assert variant["properties"]["type"]["enum"] == [event_type]
        data = _component(spec, variant["properties"]["data"])
        assert set(data["properties"]) == set(data_schema().fields)
        envelope = _component(spec, variant["allOf"][0])
        assert set(envelope["properties"]) == set(EnvelopeSchema().fields)
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Event"}


def test_request_schemas_carry_the_validators_of_the_marshmallow_schemas():
    schemas = build_spec()["components"]["schemas"]
    ids = schemas["BatchLookup"]["properties"]["certification_ids"]
    assert set(schemas["BatchLookup"]["properties"]) == set(BatchLookupSchema().fields)
    assert ids["maxItems"] == 100 and ids["items"]["maxLength"] == 128
    points = schemas["CcpActivityData"]["properties"]["points"]
    assert points["exclusiveMinimum"] == 0 and points["maximum"] == 1000
    assert schemas["EventEnvelope"]["additionalProperties"] is False
    assert schemas["AuditData"]["properties"]["result"]["enum"] == ["passed", "failed"]


def test_security_scheme_is_client_credentials_with_the_four_scopes():
    spec = build_spec()
    flow = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == set(SCOPES)
    events = spec["paths"]["/v1/events"]["post"]
    assert events["security"] == [{"oauth2": ["events:write"]}]
    lookup = spec["paths"]["/v1/verifications/{certification_id}"]["get"]
    assert {} in lookup["security"]  # a token is optional there


def test_every_error_answer_is_the_problem_json_component():
    spec = build_spec()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/verify":
                    assert answer["$ref"].startswith("#/components/responses/"), (path, method)
    for answer in spec["components"]["responses"].values():
        assert answer["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert {"type", "title", "status", "detail"} <= set(
        spec["components"]["schemas"]["Problem"]["required"]
    )


def test_docs_page_lists_every_operation_without_scripts(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path, method in _documented(build_spec()):
        assert f'<span class="method">{method.upper()}</span> <code>{path}</code>' in page
    assert "<script" not in page and "/openapi.json" in page
