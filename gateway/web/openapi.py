"""`/openapi.json` and `/docs`: the OpenAPI 3.1 document, built from the routes themselves.

The builder walks the app's routes: each view declares its operation with `@operation`
(`gateway.web.apidoc`, which says how), and the scopes its `require_scope`/`allow_scope` decorator
enforces become the operation's `security`. apispec's marshmallow plugin turns the schema classes
into components: request bodies reference the very schemas that load them (`gateway.schemas`),
answers those of `gateway.schemas.responses`. Every JSON body and answer carries an example, built
from the fields' `example` metadata unless the route gives its own.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue
from markdown_it import MarkdownIt
from markupsafe import Markup
from marshmallow import fields, validate

from gateway.schemas import responses as r
from gateway.schemas.events import DATA_SCHEMAS, EnvelopeSchema
from gateway.schemas.verifications import DayOrMoment
from gateway.usecases.clients import SCOPES
from gateway.web.apidoc import (
    ERROR_HEADERS,
    ERRORS,
    PATH_PARAMETERS,
    PATH_SCHEMAS,
    REQUEST_ERRORS,
    TOKEN_ERRORS,
    declared_operation,
    html,
    json_answer,
    operation,
)
from gateway.web.auth import scope_rule
from gateway.web.problems import PROBLEM_TYPE, status_title
from gateway.web.security import PATH_SEGMENT

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
#: Endpoints that are not operations of the API: Flask's stylesheets of the pages.
UNDOCUMENTED_ENDPOINTS = frozenset({"static"})
_METHODS = ("get", "post", "put", "patch", "delete")
_RULE_ARGUMENT = re.compile(r"<(?:[^:>]+:)?([^>]+)>")

SCOPE_DESCRIPTIONS = {
    "events:write": "Internal systems post events (and read what became of them).",
    "certifications:read": "Internal: standing, the policy table and members' credentials.",
    "verifications:read": "Employers: higher lookup rate limit and batch lookups.",
    "admin": "Operations.",
}


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/v1/events/<path:event_id>` -> `/v1/events/{event_id}`."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def _path_parameter(name: str, rule: str) -> dict[str, Any]:
    if name not in PATH_PARAMETERS:
        raise LookupError(f"route {rule}: describe path parameter {name} in PATH_PARAMETERS")
    description, example = PATH_PARAMETERS[name]
    param = {
        "in": "path",
        "name": name,
        "required": True,
        "schema": PATH_SCHEMAS.get(name, {"type": "string", "pattern": f"^{PATH_SEGMENT}+$"}),
        "description": description,
    }
    return param | ({"example": example} if example else {})


def _operation(view: Callable[..., Any], rule: str) -> dict[str, Any]:
    """The OpenAPI operation of `view` served at `rule`, from its own declarations."""
    declared = declared_operation(view, rule)
    scopes = scope_rule(view)
    op: dict[str, Any] = {"tags": list(declared.tags), "summary": declared.summary}
    if declared.description:
        op["description"] = declared.description
    op["security"] = scopes.security() if scopes else list(declared.security) or [{}]
    parameters = [_path_parameter(name, rule) for name in _RULE_ARGUMENT.findall(rule)]
    if parameters or declared.parameters:
        op["parameters"] = parameters + copy.deepcopy(list(declared.parameters))
    if declared.request is not None:
        media: dict[str, Any] = {"schema": copy.deepcopy(declared.request)}
        if declared.request_example is not None:
            media["example"] = declared.request_example
        op["requestBody"] = {"required": True, "content": {declared.request_media: media}}
    answers = {status: copy.deepcopy(a) for status, a in declared.responses.items()}
    for name in (*(TOKEN_ERRORS if scopes else ()), *declared.errors):
        answers[ERRORS[name][0]] = name  # a reference to the shared answer
    for name in REQUEST_ERRORS:
        status = ERRORS[name][0]
        own = answers.setdefault(status, name)
        if isinstance(own, dict):
            answers[status] = _or_problem(own, name)
    op["responses"] = {str(status): answers[status] for status in sorted(answers)}
    return op


def _or_problem(answer: dict[str, Any], name: str) -> dict[str, Any]:
    """A route's own `answer` at the status of the shared error `name`, which any request may
    answer too: either body."""
    status, description = ERRORS[name]
    example = _problem_example(status, HTTPStatus(status).phrase)  # /docs shows it raw: no Markdown
    problem = {"schema": r.ProblemSchema, "example": example}
    return {
        **answer,
        "description": f"{answer['description']} As problem+json: {description}",
        "content": {**answer.get("content", {}), PROBLEM_TYPE: problem},
    }


def _problem_example(status: int, detail: str) -> dict[str, Any]:
    """The example of a shared error answer: its status and `detail`, no `errors`."""
    return {
        "type": "about:blank",
        "title": status_title(status, HTTPStatus(status).phrase),  # the answer's own
        "status": status,
        "detail": detail,
        "errors": [],
    }


def _event_name(event_type: str) -> str:
    """`renewal.fee_paid` -> `RenewalFeePaidEvent`."""
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type)) + "Event"


def _exclusive_range(_converter: object, field: fields.Field, **_: Any) -> dict[str, Any]:
    """apispec drops `Range(min_inclusive=False)`: say it (JSON Schema 2020-12 numeric form)."""
    out: dict[str, Any] = {}
    for v in field.validators:
        if isinstance(v, validate.Range):
            if v.min is not None and not v.min_inclusive:
                out["exclusiveMinimum"] = v.min
            if v.max is not None and not v.max_inclusive:
                out["exclusiveMaximum"] = v.max
    return out


def _add_events(spec: APISpec) -> None:
    """`Event`: the envelope with each type's `data`, one of them by `type` (a discriminator)."""
    spec.components.schema("EventEnvelope", schema=EnvelopeSchema)
    mapping = {}
    for event_type, (data_schema, _) in DATA_SCHEMAS.items():
        spec.components.schema(data_schema.__name__, schema=data_schema)
        name = _event_name(event_type)
        spec.components.schema(
            name,
            {
                "allOf": [spec.components.get_ref("schema", "EventEnvelope")],
                "properties": {
                    "type": {"type": "string", "enum": [event_type]},
                    "data": spec.components.get_ref("schema", data_schema.__name__),
                },
                "description": data_schema.__doc__,
            },
        )
        mapping[event_type] = spec.components.get_ref("schema", name)["$ref"]
    spec.components.schema(
        "Event",
        {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
        },
    )


def _add_components(spec: APISpec) -> None:
    """The shared error answers, the security schemes and the event bodies."""
    spec.components.schema("Problem", schema=r.ProblemSchema)
    for name, (status, description) in ERRORS.items():
        example = _problem_example(status, description)
        spec.components.response(
            name,
            {
                "description": description,
                "content": {PROBLEM_TYPE: {"schema": "Problem", "example": example}},
                "headers": ERROR_HEADERS.get(name, {}),
            },
        )
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/oauth/token",
                    "scopes": {scope: SCOPE_DESCRIPTIONS[scope] for scope in SCOPES},
                }
            },
        },
    )
    spec.components.security_scheme(
        "clientBasic",
        {"type": "http", "scheme": "basic", "description": "client_id:client_secret"},
    )
    _add_events(spec)


def _routes(app: Flask) -> tuple[tuple[str, str, Callable[..., Any]], ...]:
    """(rule, method, view) of every documented route of `app`."""
    return tuple(
        (rule.rule, method, app.view_functions[rule.endpoint])
        for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in _METHODS
        if method.upper() in (rule.methods or ())
    )


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes (built once for a given set of routes)."""
    return _build(_routes(app))


@functools.cache
def _build(routes: tuple[tuple[str, str, Callable[..., Any]], ...]) -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="credential-gateway",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "Certification events in, standing out, Credly badges and employer "
            "verification in step. Every error is `application/problem+json` (RFC 9457)."
        },
    )
    plugin.converter.add_attribute_function(_exclusive_range)
    plugin.map_to_openapi_type(fields.Url, "string", "uri")  # "url" is no JSON Schema format
    plugin.map_to_openapi_type(DayOrMoment, "string", None)  # a day or a time: its anyOf says which
    _add_components(spec)
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, view in routes:
        paths.setdefault(openapi_path(rule), {})[method] = _operation(view, rule)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _add_examples(document)
    return document


# --- examples -------------------------------------------------------------------------------

_FORMAT_EXAMPLES = {
    "date": "2025-03-01",
    "date-time": "2025-03-01T12:00:00Z",
    "uri": "https://hooks.example.org/certifications",
    "email": "ada@example.org",
}


def schema_at(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the component it references."""
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example_of(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """An example value of `schema`: the fields' declared examples, else a plain value."""
    schema = schema_at(document, schema)
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return example_of(document, schema[key][0])
    value: Any = {}
    for part in schema.get("allOf", []):
        value.update(example_of(document, part))
    kind = schema.get("type", "object")
    kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties", {})
        value.update({name: example_of(document, p) for name, p in properties.items()})
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict):
            value["key"] = example_of(document, extra)
        return value
    if kind == "array":
        return [example_of(document, schema.get("items", {}))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return True
    return _FORMAT_EXAMPLES.get(schema.get("format", ""), "string")


def _bodies(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every media type object of a request body or an answer (shared answers included)."""
    found = []
    for methods in document["paths"].values():
        for op in methods.values():
            found.extend(op.get("requestBody", {}).get("content", {}).values())
            for answer in op["responses"].values():
                found.extend(answer.get("content", {}).values())
    for answer in document["components"]["responses"].values():
        found.extend(answer["content"].values())
    return found


def _add_examples(document: dict[str, Any]) -> None:
    for media in _bodies(document):
        schema = media.get("schema", {})
        if "example" not in media and schema_at(document, schema).get("type") != "string":
            media["example"] = example_of(document, schema)


# --- the routes -----------------------------------------------------------------------------


@bp.get("/openapi.json")
@operation(
    "This OpenAPI document",
    tags=["operations"],
    responses={200: json_answer({"type": "object"}, "The OpenAPI 3 document.")},
)
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3 document."""
    return jsonify(build_spec(current_app))


@bp.get("/docs")
@operation(
    "The operations of this document as a web page",
    tags=["operations"],
    responses={200: html("The API documentation.")},
)
def docs_page() -> ResponseReturnValue:
    """Every operation of the document as a server-rendered page (no JavaScript, works offline):
    parameters, request body and answers with their fields and an example, then every schema."""
    document = build_spec(current_app)
    return render_template("docs.html", spec=document, **docs_view(document))


# CommonMark with raw HTML off: a description's `<`, `&` and tags show as text, never as markup.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


@bp.app_template_filter("markdown")
@functools.lru_cache(maxsize=1024)
def markdown(text: str) -> Markup:
    """A summary or description of the document (OpenAPI says CommonMark) as inline HTML."""
    return Markup(_MARKDOWN.renderInline(text))


def _answer_view(document: dict[str, Any], status: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An answer as the page shows it; a shared error answer by its description alone."""
    if "$ref" in answer:
        shared = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        return {"status": status, "description": shared["description"], "problem": True}
    bodies = [_body(document, t, m) for t, m in answer.get("content", {}).items()]
    return {"status": status, "description": answer["description"], "bodies": bodies}


def type_label(schema: dict[str, Any]) -> tuple[str, str | None]:
    """How a field's type reads on the page, and the schema it names (for a link)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return name, name
    for key, word in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
        if key in schema:
            labels = [type_label(part) for part in schema[key]]
            named = next((ref for _, ref in labels if ref), None)
            return word.join(label for label, _ in labels), named
    kind = schema.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if "items" in schema:
        label, named = type_label(schema["items"])
        return f"{kind} of {label}", named
    if "enum" in schema:
        return f"{kind}: one of {', '.join(json.dumps(v) for v in schema['enum'])}", None
    if "format" in schema:
        return f"{kind} ({schema['format']})", None
    return kind, None


def _fields(schema: dict[str, Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of an object schema (with those of the schemas it is `allOf`)."""
    rows = []
    for part in schema.get("allOf", []):
        rows.extend(_fields(schema_at(document, part), document))
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        label, named = type_label(prop)
        rows.append(
            {
                "name": name,
                "type": label,
                "ref": named,
                "required": name in required,
                "description": prop.get("description", ""),
            }
        )
    return rows


def _body(document: dict[str, Any], media_type: str, media: dict[str, Any]) -> dict[str, Any]:
    """A request body or an answer body as the page shows it."""
    schema = media.get("schema", {})
    label, named = type_label(schema)
    resolved = schema_at(document, schema)
    return {
        "media_type": media_type,
        "type": label,
        "ref": named,
        "fields": _fields(resolved, document),
        "example": json.dumps(media["example"], indent=2) if "example" in media else None,
    }


def _anchor(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", "-".join(parts)).strip("-")


def docs_view(document: dict[str, Any]) -> dict[str, Any]:
    """What the docs page shows: each operation, then each schema, from the document."""
    operations = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            request = op.get("requestBody", {}).get("content", {})
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": _anchor(method, path),
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "scopes": sorted({s for req in op["security"] for s in req.get("oauth2", [])}),
                    "public": {} in op["security"],
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_label(p.get("schema", {}))[0],
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "request": [_body(document, t, m) for t, m in request.items()],
                    "responses": [
                        _answer_view(document, status, a) for status, a in op["responses"].items()
                    ],
                }
            )
    schemas = [
        {
            "name": name,
            "anchor": f"schema-{name}",
            "description": schema.get("description", ""),
            "variants": [type_label(v)[1] for v in schema.get("oneOf", [])],
            "fields": _fields(schema, document),
        }
        for name, schema in sorted(document["components"]["schemas"].items())
    ]
    return {"operations": operations, "schemas": schemas}
