"""`/openapi.json` and `/docs`: a valid OpenAPI 3 document of every route, from the routes'
own declarations (`@operation` and the scope decorators) and the schemas."""

from __future__ import annotations

import functools

import pytest
from flask import Blueprint, Flask
from openapi_spec_validator import validate

from gateway.schemas.events import DATA_SCHEMAS, EnvelopeSchema
from gateway.schemas.responses import HealthSchema
from gateway.schemas.verifications import BatchLookupSchema
from gateway.usecases.clients import SCOPES
from gateway.web.apidoc import JSON, UndocumentedRoute, json_answer, operation
from gateway.web.auth import allow_scope, require_scope, scope_rule
from gateway.web.openapi import UNDOCUMENTED_ENDPOINTS, build_spec, markdown, openapi_path
from tests.support.openapi_answers import mismatch, routes_only, validator


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
    spec = build_spec(app)
    assert _routes(app) - _documented(spec) == set(), "declare their @operation"
    assert _documented(spec) - _routes(app) == set(), "documented but not served"
    assert spec == build_spec(routes_only())  # the document does not depend on the settings


def test_the_security_of_every_operation_is_what_its_scope_decorator_enforces(app):
    spec = build_spec(app)
    scoped = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        recorded = scope_rule(app.view_functions[rule.endpoint])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation_ = spec["paths"][openapi_path(rule.rule)][method.lower()]
            if recorded is None:  # public: no oauth2 requirement at all
                assert {} in operation_["security"], rule.rule
                assert not any("oauth2" in req for req in operation_["security"]), rule.rule
                continue
            scoped += 1
            documented = {s for req in operation_["security"] for s in req.get("oauth2", [])}
            assert documented == set(recorded.scopes), rule.rule
            assert ({} in operation_["security"]) == recorded.optional, rule.rule
            assert {"401", "403"} <= set(operation_["responses"]), rule.rule
    assert scoped >= 12  # the API's protected operations were all compared


def _app_with(view_decorators: list, path: str = "/things/<certification_id>") -> Flask:
    """An app of the gateway's routes and one more, made with `view_decorators` (innermost last)."""
    bp = Blueprint("things", __name__)

    def thing(**_: str) -> dict:
        return {"status": "ok"}

    for decorate in reversed(view_decorators):
        thing = decorate(thing)
    bp.get(path)(thing)
    app = routes_only()
    app.register_blueprint(bp)
    return app


DECLARED = operation(
    "A thing",
    tags=["things"],
    responses={200: json_answer(HealthSchema, "The thing.")},
)


@pytest.mark.parametrize(
    ("decorators", "security"),
    [
        (
            [require_scope("events:write", "admin"), DECLARED],
            [{"oauth2": ["events:write"]}, {"oauth2": ["admin"]}],
        ),
        ([DECLARED, require_scope("admin")], [{"oauth2": ["admin"]}]),  # either order
        ([allow_scope("verifications:read"), DECLARED], [{"oauth2": ["verifications:read"]}, {}]),
        ([DECLARED], [{}]),
    ],
    ids=["required", "decorators-swapped", "optional", "public"],
)
def test_a_new_routes_security_comes_from_its_scope_decorator_alone(decorators, security):
    spec = build_spec(_app_with(decorators))
    assert spec["paths"]["/things/{certification_id}"]["get"]["security"] == security
    validate(spec)


def test_a_route_without_a_declaration_cannot_be_documented():
    with pytest.raises(UndocumentedRoute, match="/things/<certification_id>"):
        build_spec(_app_with([require_scope("admin")]))


def test_a_path_parameter_without_a_description_cannot_be_documented():
    with pytest.raises(LookupError, match="PATH_PARAMETERS"):
        build_spec(_app_with([DECLARED], path="/things/<certification_id>/<part>"))


def test_scopes_cannot_be_declared_beside_the_scope_decorator():
    with pytest.raises(ValueError, match="require_scope"):
        operation("x", tags=["x"], responses={}, security=[{"oauth2": ["admin"]}])
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("events:writ")(lambda: None)


def test_event_body_is_one_of_the_envelope_with_each_types_data_schema_by_type():
    spec = build_spec(routes_only())
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
    schemas = build_spec(routes_only())["components"]["schemas"]
    ids = schemas["BatchLookup"]["properties"]["certification_ids"]
    assert set(schemas["BatchLookup"]["properties"]) == set(BatchLookupSchema().fields)
    assert ids["maxItems"] == 100 and ids["items"]["maxLength"] == 128
    points = schemas["CcpActivityData"]["properties"]["points"]
    assert points["exclusiveMinimum"] == 0 and points["maximum"] == 1000
    assert points["multipleOf"] == 0.01 and points["type"] == "number"
    assert schemas["EventEnvelope"]["additionalProperties"] is False
    assert schemas["AuditData"]["properties"]["result"]["enum"] == ["passed", "failed"]


def test_a_time_that_may_be_a_day_is_a_date_or_a_date_time():
    """`since` of `GET /v1/receipts` takes a day too (docs/verification.md): not only a
    date-time."""
    parameters = build_spec(routes_only())["paths"]["/v1/receipts"]["get"]["parameters"]
    since = next(p["schema"] for p in parameters if p["name"] == "since")
    assert "format" not in since and "string" in since["type"]
    assert since["anyOf"] == [{"format": "date"}, {"format": "date-time"}]


def test_security_scheme_is_client_credentials_with_the_four_scopes():
    spec = build_spec(routes_only())
    flow = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == set(SCOPES)
    events = spec["paths"]["/v1/events"]["post"]
    assert events["security"] == [{"oauth2": ["events:write"]}]
    lookup = spec["paths"]["/v1/verifications/{certification_id}"]["get"]
    assert {} in lookup["security"]  # a token is optional there


def is_html_page(path: str) -> bool:
    """The employers' pages answer their errors as HTML."""
    return path.startswith("/verify")


def test_an_events_replayed_answers_document_the_idempotent_replayed_header():
    """A replay repeats an accepted event's 202 and a refused or malformed one's 422, each with
    `Idempotent-Replayed: true`: both answers of the document declare the header."""
    spec = build_spec(routes_only())
    answers = spec["paths"]["/v1/events"]["post"]["responses"]
    for status in ("202", "422"):
        answer = answers[status]
        if "$ref" in answer:
            answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        assert answer["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"], status


def test_every_error_answer_is_the_problem_json_component():
    spec = build_spec(routes_only())
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and not is_html_page(path):
                    assert answer["$ref"].startswith("#/components/responses/"), (path, method)
    for answer in spec["components"]["responses"].values():
        [(media_type, media)] = answer["content"].items()
        assert media_type == "application/problem+json"
        assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert {"type", "title", "status", "detail"} <= set(
        spec["components"]["schemas"]["Problem"]["required"]
    )


def test_the_problem_examples_carry_the_titles_the_answers_do():
    """RFC 9110's names, as the app and the server title those problems, not Python's older
    ones ("Request-URI Too Long", "Unprocessable Entity")."""
    spec = build_spec(routes_only())
    examples = [
        answer["content"]["application/problem+json"]["example"]
        for answer in spec["components"]["responses"].values()
    ]
    titles = {example["status"]: example["title"] for example in examples}
    assert titles[414] == "URI Too Long" and titles[422] == "Unprocessable Content"


def test_docs_page_lists_every_operation_without_scripts(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path, method in _documented(build_spec(routes_only())):
        assert f'<span class="method">{method.upper()}</span> <code>{path}</code>' in page
    assert "<script" not in page and "/openapi.json" in page


def test_docs_page_shows_request_and_answer_schemas_with_examples(client):
    page = client.get("/docs").get_data(as_text=True)
    batch = page[page.index('id="post-v1-verifications-batch"') :]
    batch = batch[: batch.index("</section>")]
    assert "<h3>Request body</h3>" in batch and "<code>certification_ids</code>" in batch
    assert "&#34;certification_ids&#34;: [" in batch  # the example, escaped
    assert '<a href="#schema-Verification">' in batch  # the answer's items, linked
    standing = page[page.index('id="get-v1-certifications-certification_id"') :]
    assert '<a href="#schema-Standing">Standing</a>' in standing[: standing.index("</section>")]
    schema = page[page.index('id="schema-Standing"') :]
    assert "<code>next_change_on</code>" in schema[: schema.index("</section>")]
    assert "<h3>Parameters</h3>" in standing and "<code>as_of</code>" in standing


def test_docs_page_renders_descriptions_as_markdown_and_no_html_of_theirs(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "Credly's <code>Content-Type</code> is not relied on." in page
    assert "`" not in page  # no description's Markdown is shown raw
    hostile = markdown("`a<b>` <script>alert(1)</script> & <img src=x> [l](javascript:alert(1))")
    assert hostile == (
        "<code>a&lt;b&gt;</code> &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x&gt; "
        "[l](javascript:alert(1))"
    )


def _media(spec: dict):
    """(where, media type object) of every request body and answer of the document."""
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            for media_type, media in op.get("requestBody", {}).get("content", {}).items():
                yield f"{method} {path} request {media_type}", media
            for status, answer in op["responses"].items():
                for media_type, media in answer.get("content", {}).items():
                    yield f"{method} {path} {status} {media_type}", media
    for name, answer in spec["components"]["responses"].items():
        for media_type, media in answer["content"].items():
            yield f"{name} {media_type}", media


def test_every_json_body_and_answer_has_an_example_that_matches_its_schema():
    spec = build_spec(routes_only())
    checked = 0
    for where, media in _media(spec):
        if "example" not in media:
            assert media["schema"].get("type") == "string", where  # pages and text only
            continue
        errors = list(validator(spec, media["schema"]).iter_errors(media["example"]))
        assert errors == [], (where, [e.message for e in errors])
        checked += 1
    assert checked >= 30


def test_answers_are_checked_against_the_document():
    spec = build_spec(routes_only())
    ok = b'{"status": "ok"}'
    assert mismatch(spec, "/healthz", "GET", 200, JSON, ok) is None
    assert "does not match" in mismatch(spec, "/healthz", "GET", 200, JSON, b'{"status": "up"}')
    assert "lists only" in mismatch(spec, "/healthz", "GET", 418, JSON, ok)
    assert "promises" in mismatch(spec, "/healthz", "GET", 200, "text/html", b"<p>ok</p>")
    gone = "/v1/subscriptions/{subscription_id}"
    assert mismatch(spec, gone, "DELETE", 204, "", b"") is None
    assert "no media type" in mismatch(spec, gone, "DELETE", 204, "text/html", b"")
    body = b'{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "x"}'
    problem = "application/problem+json"
    assert "errors" in mismatch(spec, "/v1/credentials", "GET", 401, problem, body)


def test_an_answer_the_document_does_not_promise_fails_the_test(make_app):
    app = make_app()

    @functools.wraps(app.view_functions["health.healthz"])  # its declaration too
    def healthz() -> dict:
        return {"status": "up"}

    app.view_functions["health.healthz"] = healthz
    with pytest.raises(AssertionError, match="GET /healthz answered 200"):
        app.test_client().get("/healthz")
