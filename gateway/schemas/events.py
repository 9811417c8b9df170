"""The event envelope and one schema per event type (docs/api.md), loading into domain events."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from math import isinf
from typing import Any, ClassVar

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from gateway.rules import (
    AUDIT_RESULTS,
    RECERTIFICATION_METHODS,
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    Member,
    MemberUpdated,
    Recertified,
    Revoked,
    ids,
    in_hundredths,
    json_number,
    to_points,
)
from gateway.rules.events import EMPLOYMENT
from gateway.rules.periods import EARLIEST_DAY, LATEST_DAY, parse_day

MAX_EVENTS = 100  # in one `POST /v1/events/batch`
#: The example event of the API documentation (and of the tests that send it).
EXAMPLE_EVENT: dict[str, Any] = {
    "event_id": "evt-0001",
    "type": "certification.granted",
    "occurred_at": "2025-03-01T12:00:00Z",
    "certification_id": "CERT-123",
    "data": {
        "member": {
            "member_id": "M-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
        },
        "credential": "RMA",
        "certified_on": "2025-03-01",
    },
}
_ID = validate.Length(min=1, max=128)
_NAME = validate.Length(min=1, max=200)


class Pattern(validate.Regexp):
    """A regular expression the whole value must match (marshmallow's `Regexp` lets a `$` match
    before a final newline). The pattern stays one the OpenAPI document can show."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Text PostgreSQL can store: no NUL. (A lone surrogate never gets here: see gateway.web.security.)
TEXT = Pattern(r"^[^\x00]*$", error="Must not contain NUL characters.")
#: What a certification id is made of (an empty one is its length's to refuse).
CERTIFICATION_ID = Pattern(
    r"^(?![._-])[A-Za-z0-9._-]*$", error="Use ASCII letters, digits, . _ - (not . _ - first)."
)


def _not_blank(value: str) -> None:
    if value.isspace():  # an empty one is too short
        raise ValidationError("Must not be blank.")


#: Unicode categories of characters that text shown as a name may not hold: controls, format
#: characters (such as a right-to-left override, which shows the name reversed), line and
#: paragraph separators, private-use characters and surrogates.
UNPRINTED = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


def unprinted(text: str) -> bool:
    """Whether `text` holds a character of the UNPRINTED categories."""
    return any(unicodedata.category(c) in UNPRINTED for c in text)


def _printed(value: str) -> None:
    """Text of printed characters only (none of the UNPRINTED categories)."""
    if unprinted(value):
        raise ValidationError("No control, formatting or line-separator characters.")


def _person_name(value: str) -> None:
    """A member's name as a badge shows it: printed characters, a letter among them."""
    _printed(value)
    _not_blank(value)
    if value and not any(unicodedata.category(c).startswith("L") for c in value):  # "": too short
        raise ValidationError("Must contain a letter.")


# RFC 5321, 4.5.3.1: a local part of at most 64 octets; a path of at most 256 octets, so an
# address (without the path's angle brackets) of at most 254.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


def _address_lengths(value: str) -> None:
    local = value.rpartition("@")[0]
    if len(local.encode()) > MAX_LOCAL_PART:
        raise ValidationError(f"The part before @ is at most {MAX_LOCAL_PART} octets.")
    if len(value.encode()) > MAX_ADDRESS:
        raise ValidationError(f"An address is at most {MAX_ADDRESS} octets.")


def _email(**kwargs: Any) -> fields.Email:
    """A member's e-mail address as SMTP can carry it: printed characters, within its lengths."""
    return fields.Email(
        validate=[_printed, _address_lengths], metadata={"maxLength": MAX_ADDRESS}, **kwargs
    )


def _name(**kwargs: Any) -> fields.String:
    """A member's first or last name (sent to Credly as the badge's recipient)."""
    return fields.String(validate=[_NAME, _person_name], **kwargs)


#: The days the rules compute with (see gateway.rules.periods); outside them a date is malformed.
IN_RANGE = f"Must be from {EARLIEST_DAY.isoformat()} to {LATEST_DAY.isoformat()}."
DAYS = validate.Range(min=EARLIEST_DAY, max=LATEST_DAY, error=IN_RANGE)
MOMENTS = validate.Range(
    min=datetime.combine(EARLIEST_DAY, time.min, UTC),
    max=datetime.combine(LATEST_DAY, time.max, UTC),
    error=IN_RANGE,
)


# RFC 3339, 5.6 (with its note: T and Z may be written t and z); ASCII digits only.
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
#: What a `lenient` Moment reads besides: a space for `T`, no seconds, an offset without its colon
#: or after a space (Credly writes its times `2014-04-01 09:41:00 -0500`).
_LENIENT_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
    r" ?(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)


class Moment(fields.DateTime):
    """A time written as RFC 3339 says, `YYYY-MM-DDTHH:MM:SS[.fraction]` and `Z` or `±HH:MM`,
    not the other forms Python reads (week dates, a space for `T`, no seconds); fractions past
    microseconds are cut. `lenient` (a time another service wrote, believed by no one): also a
    space for `T`, no seconds, `±HHMM`, and no offset at all, read as UTC. `bare_is_utc`: the
    offset may be left out, and is then UTC."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not an RFC 3339 date-time: use YYYY-MM-DDTHH:MM:SSZ or an offset (+02:00).",
    }

    def __init__(self, *, lenient: bool = False, bare_is_utc: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lenient = lenient
        self.bare_is_utc = lenient or bare_is_utc
        self.pattern = _LENIENT_DATE_TIME if lenient else _DATE_TIME

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        found = self.pattern.fullmatch(value) if isinstance(value, str) else None
        if found is None:
            raise self.make_error("invalid")
        *parts, fraction, zulu, sign, hours, minutes = found.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes)) if sign else timedelta()
        if not (zulu or sign or self.bare_is_utc) or (sign and (int(minutes) > 59 or offset.days)):
            raise self.make_error("invalid")
        zone = timezone(-offset if sign == "-" else offset) if offset else UTC
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            return datetime(*(int(part or 0) for part in parts), micro, tzinfo=zone)
        except ValueError as exc:  # no such day or time (a leap second among them)
            raise self.make_error("invalid") from exc


class Day(fields.Date):
    """A day written YYYY-MM-DD (not the other forms Python reads, such as 20250501)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        try:
            return parse_day(value)
        except ValueError as exc:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from exc


def _day(**kwargs: Any) -> fields.Date:
    """A date field taking only the days the rules compute with."""
    return Day(validate=DAYS, **kwargs)


class WrittenFloat(float):
    """A JSON number with a fraction or an exponent as the gateway parses request bodies: the
    float (so hashing and storing the body are unchanged) and `text`, the number as written,
    whose decimals the float may have rounded away (1.999999999999999999999 reads as 2.0)."""

    text: str

    def __new__(cls, text: str) -> WrittenFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number


class LongInteger(WrittenFloat):
    """A JSON integer of more digits than Python reads as an int (`sys.get_int_max_str_digits()`,
    4,300 by default): the float it reads as, infinite, and its text. Out of every range a field
    gives, it is refused by the field, as any number out of range is."""


def written_integer(text: str) -> int | LongInteger:
    """A JSON integer as the gateway parses request bodies: an int, or a LongInteger."""
    try:
        return int(text)
    except ValueError:  # too many digits to read (a JSON integer is otherwise always an int)
        return LongInteger(text)


class Integer(fields.Integer):
    """A JSON integer, strictly (2026.0 is not one); a LongInteger is refused by the field's
    validators, as the infinity it reads as."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, LongInteger):
            self._validate(float(value))
            raise self.make_error("invalid", input=value)  # no validator bounds the field
        return super()._deserialize(value, attr, data, **kwargs)


_QUERY_INTEGER = re.compile(r"-?[0-9]+")


class QueryInteger(fields.Integer):
    """An integer of a query string, written in ASCII digits (a `-` before them at most): not the
    other forms Python's int() reads, `+5`, ` 5`, `1_000` or digits of other scripts (U+0661)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or _QUERY_INTEGER.fullmatch(value) is None:
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _hundredths(points: Decimal) -> None:
    if not in_hundredths(points):
        raise ValidationError("Use at most 2 decimal places.")


class Points(fields.Decimal):
    """CCP points: an exact decimal in hundredths (1.13 + 9.04 + 19.83 makes 30), at most 1000."""

    def __init__(self, *, min_inclusive: bool, **kwargs: Any) -> None:
        limits = validate.Range(min=0, min_inclusive=min_inclusive, max=1000)
        super().__init__(
            allow_nan=False,
            validate=[limits, _hundredths],
            metadata={"multipleOf": 0.01},
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):  # a number
            raise self.make_error("invalid")
        if isinstance(value, WrittenFloat):  # its decimals as written: the float may round them
            written = Decimal(value.text)
            _hundredths(written)
            if isinf(value):  # too large for a float: out of range as written
                value = written
        return super()._deserialize(value, attr, data, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        # Only the OpenAPI document serializes with it (its limits): as JSON numbers.
        return None if value is None else json_number(to_points(value))


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class RuleMessage(str):
    """A field's message that a certification rule also states: its item names both."""

    rule: str

    def __new__(cls, text: str, rule: str) -> RuleMessage:
        message = super().__new__(cls, text)
        message.rule = rule
        return message


def _required(*names: str, when: str, rule: str, data: dict[str, Any]) -> None:
    missing = {
        name: [RuleMessage(f"Required when {when}.", rule)]
        for name in names
        if data.get(name) is None
    }
    if missing:
        raise ValidationError(missing)


def _only_for(*names: str, when: str, data: dict[str, Any]) -> None:
    if given := [name for name in names if data.get(name) is not None]:
        raise ValidationError({name: [f"Only for {when}."] for name in given})


class MemberSchema(_Strict):
    """The member a certification belongs to."""

    member_id = fields.String(required=True, validate=[_ID, TEXT, _not_blank])
    first_name = _name(required=True)
    last_name = _name(required=True)
    email = _email(required=True)

    @post_load
    def make(self, data: dict[str, Any], **_: Any) -> Member:
        return Member(**data)


class GrantedData(_Strict):
    """`certification.granted`: a new certification."""

    member = fields.Nested(MemberSchema, required=True)
    credential = fields.String(required=True, validate=[validate.Length(min=1, max=32), TEXT])
    certified_on = _day(required=True)


class FeePaidData(_Strict):
    """`renewal.fee_paid`: the annual renewal fee of one membership year."""

    membership_year = Integer(
        required=True,
        validate=validate.Range(min=EARLIEST_DAY.year, max=LATEST_DAY.year),
    )
    paid_on = _day(required=True)


class CcpActivityData(_Strict):
    """`ccp.activity_recorded`: documented CCP points."""

    activity_id = fields.String(required=True, validate=[_ID, TEXT])
    category = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=64), TEXT],
        metadata={
            "description": "One of the credential policy's `categories`; another is refused (422)."
        },
    )
    completed_on = _day(required=True)
    points = Points(required=True, min_inclusive=False)
    employment_start = _day(load_default=None)
    employment_end = _day(load_default=None)

    @validates_schema
    def employment_period(self, data: dict[str, Any], **_: Any) -> None:
        names = ("employment_start", "employment_end")
        if data.get("category") == EMPLOYMENT:
            _required(
                *names, when="category is employment", rule=ids.CCP_EMPLOYMENT_2021, data=data
            )
            begin, end = data["employment_start"], data["employment_end"]
            if begin > end:
                said = f"Must not be after employment_end ({end.isoformat()})."
                raise ValidationError(
                    {"employment_start": [RuleMessage(said, ids.CCP_EMPLOYMENT_2021)]}
                )
        else:
            _only_for(*names, when=f"category {EMPLOYMENT}", data=data)


class AuditData(_Strict):
    """`audit.completed`: the result of a CCP audit."""

    result = fields.String(required=True, validate=validate.OneOf(AUDIT_RESULTS))
    audited_on = _day(required=True)
    cycle_start = _day(
        required=True,
        metadata={"description": "The first day of the audited CCP cycle, not after `audited_on`."},
    )

    @validates_schema
    def cycle_begun(self, data: dict[str, Any], **_: Any) -> None:
        """An audit is of a cycle that had begun by `audited_on`."""
        audited_on, cycle_start = data.get("audited_on"), data.get("cycle_start")
        if audited_on is not None and cycle_start is not None and cycle_start > audited_on:
            raise ValidationError(
                {"cycle_start": [f"Must not be after audited_on ({audited_on.isoformat()})."]}
            )


class RecertifiedData(_Strict):
    """`recertification.completed`: a lapsed member recertified by CCP or exam."""

    method = fields.String(required=True, validate=validate.OneOf(RECERTIFICATION_METHODS))
    completed_on = _day(required=True)
    application_id = fields.String(required=True, validate=[_ID, TEXT])
    eligibility_criteria = fields.String(required=True, validate=[_ID, TEXT])
    exam_passed_on = _day(load_default=None)
    ccp_points = Points(load_default=None, min_inclusive=True)
    earliest_activity_on = _day(load_default=None)

    @validates_schema
    def method_fields(self, data: dict[str, Any], **_: Any) -> None:
        """Each method's fields are required with it and refused with the other."""
        method = data.get("method")
        if method == "exam":
            _required(
                "exam_passed_on", when="method is exam", rule=ids.RECERT_EXAM_RESULT, data=data
            )
            _only_for("ccp_points", "earliest_activity_on", when="method ccp", data=data)
        elif method == "ccp":
            _required(
                "ccp_points",
                "earliest_activity_on",
                when="method is ccp",
                rule=ids.RECERT_CCP_POINTS,
                data=data,
            )
            _only_for("exam_passed_on", when="method exam", data=data)


class RevokedData(_Strict):
    """`certification.revoked`: withdrawn by the certifying body."""

    reason = fields.String(
        required=True, validate=[validate.Length(min=1, max=2000), TEXT, _not_blank]
    )
    revoked_on = _day(required=True)


class MemberUpdatedData(_Strict):
    """`member.updated`: any of the member's name and e-mail."""

    # A field left out stays as it is (MemberUpdated's None); null is no value for it.
    first_name = _name()
    last_name = _name()
    email = _email()

    @validates_schema
    def something_changed(self, data: dict[str, Any], **_: Any) -> None:
        if not any(data.get(k) for k in ("first_name", "last_name", "email")):
            raise ValidationError("Give at least one of first_name, last_name, email.", "_schema")


DATA_SCHEMAS: dict[str, tuple[type[Schema], type]] = {
    "certification.granted": (GrantedData, Granted),
    "renewal.fee_paid": (FeePaidData, FeePaid),
    "ccp.activity_recorded": (CcpActivityData, CcpActivity),
    "audit.completed": (AuditData, AuditCompleted),
    "recertification.completed": (RecertifiedData, Recertified),
    "certification.revoked": (RevokedData, Revoked),
    "member.updated": (MemberUpdatedData, MemberUpdated),
}


class EnvelopeSchema(_Strict):
    """The envelope every event arrives in."""

    event_id = fields.String(
        required=True,
        validate=[
            _ID,
            # It ends the URL of GET /v1/events/{event_id}, where such parts would be rewritten.
            Pattern(  # an empty id is the length's to refuse
                r"^(?!/|.*//|.*/$|(?:.*/)?\.\.?(?:/|$))[^\x00-\x1f\x7f-\x9f]*$",
                error="No control characters; no / at the start or end, no //, "
                "no . or .. between slashes.",
            ),
            _not_blank,
        ],
    )
    type = fields.String(required=True, validate=validate.OneOf(list(DATA_SCHEMAS)))
    occurred_at = Moment(required=True, validate=MOMENTS)
    certification_id = fields.String(required=True, validate=[_ID, CERTIFICATION_ID])
    data = fields.Dict(required=True)


@dataclass(frozen=True)
class Envelope:
    """A well-formed event: the certification it is about and the domain event."""

    certification_id: str
    event: Event


class ShapeError(ValueError):
    """The body does not have the shape of an event; `errors` name each field by dotted path."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def field_errors(messages: Any, prefix: str = "", *, given: Any = None) -> list[dict[str, str]]:
    """Flatten marshmallow's nested error messages into `{field, message}` items; the unknown
    keys of an object last, in the order of the `given` data (by name without it), where
    marshmallow's order changes from process to process."""
    if isinstance(messages, dict):
        out: list[dict[str, str]] = []
        for key, value in _known_first(messages, given):
            name = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            inner = given.get(key) if isinstance(given, dict) else None
            out.extend(field_errors(value, name, given=inner))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [_item(prefix or "body", m) for m in messages]
    if isinstance(messages, list):
        return [e for m in messages for e in field_errors(m, prefix)]
    return [{"field": prefix or "body", "message": str(messages)}]


#: marshmallow's messages for a key no field takes.
_UNKNOWN = [Schema().error_messages["unknown"]]


def _known_first(messages: dict[Any, Any], given: Any) -> list[tuple[Any, Any]]:
    """The items of `messages`: the known fields' in their order, then the unknown keys'."""
    unknown = _UNKNOWN
    known = [(key, value) for key, value in messages.items() if value != unknown]
    if len(known) == len(messages):
        return known
    position = {key: n for n, key in enumerate(given)} if isinstance(given, dict) else {}
    rest = [(key, value) for key, value in messages.items() if value == unknown]
    rest.sort(key=lambda item: (position.get(item[0], len(position)), str(item[0])))
    return known + rest


def _item(field: str, message: str) -> dict[str, str]:
    if isinstance(message, RuleMessage):
        return {"field": field, "rule": message.rule, "message": str(message)}
    return {"field": field, "message": message}


# Loading does not change a schema, so one instance of each serves every request (building one
# deep-copies its fields).
_ENVELOPE = EnvelopeSchema()
_DATA = {event_type: schema() for event_type, (schema, _) in DATA_SCHEMAS.items()}


def load_envelope(body: Any) -> Envelope:
    """Validate `body` and build the domain event; raise ShapeError naming every bad field."""
    if not isinstance(body, dict):
        raise ShapeError([{"field": "body", "message": "The body must be a JSON object."}])
    errors: list[dict[str, str]] = []
    try:
        envelope = _ENVELOPE.load(body)
    except ValidationError as exc:
        errors, envelope = field_errors(exc.messages, given=body), body
    event_type, raw_data = envelope.get("type"), envelope.get("data")
    data = None
    if isinstance(event_type, str) and event_type in DATA_SCHEMAS and isinstance(raw_data, dict):
        try:
            data = _DATA[event_type].load(raw_data)
        except ValidationError as exc:
            errors += field_errors(exc.messages, "data", given=raw_data)
    if errors or data is None:
        raise ShapeError(errors)
    event_class = DATA_SCHEMAS[event_type][1]
    event = event_class(event_id=envelope["event_id"], occurred_at=envelope["occurred_at"], **data)
    return Envelope(certification_id=envelope["certification_id"], event=event)


def envelope_field(body: dict[str, Any], name: str) -> Any:
    """`body`'s envelope field `name` as the envelope loads it (an `event_id`, an `occurred_at`
    as a datetime), whatever else is wrong with `body`; None if the field refuses it."""
    try:
        return _ENVELOPE.fields[name].deserialize(body.get(name))
    except ValidationError:
        return None


class EventBatchSchema(_Strict):
    """`POST /v1/events/batch`: 1 to MAX_EVENTS events; each is checked as one event is."""

    events = fields.List(
        fields.Raw(allow_none=True), required=True, validate=validate.Length(min=1, max=MAX_EVENTS)
    )
