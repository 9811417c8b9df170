"""CCP points are exact decimals: read from JSON, stored, summed, compared and answered."""

import itertools
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules import in_hundredths, json_number, validate
from gateway.schemas.events import ShapeError, load_envelope
from gateway.store.history import decode_event
from tests.support.rules_factories import (
    NOW,
    POLICY,
    activity,
    ccp_recert,
    fees,
    granted,
    rules_broken,
    standing,
)

START = date(2015, 6, 3)  # first cycle 2015-06-03..2018-06-30
CYCLE_END = date(2018, 6, 30)


def activity_body(n: int, points_text: str, completed_on: date) -> dict:
    """An activity as the API reads it: JSON text parsed the way Flask parses it (floats)."""
    text = (
        f'{{"event_id": "ccp-{n}", "type": "ccp.activity_recorded", "certification_id": "C-1",'
        f' "occurred_at": "{completed_on}T12:00:00Z", "data": {{"activity_id": "A-{n}",'
        f' "category": "amt_online_ce", "completed_on": "{completed_on}",'
        f' "points": {points_text}}}}}'
    )
    return json.loads(text)


def through_the_service(bodies: list[dict]) -> list:
    """Each body loaded by the schema, then read back from its stored JSON as the sweep does."""
    events = []
    for body in bodies:
        load_envelope(body)  # refused bodies never reach storage
        stored = json.loads(json.dumps(body))
        events.append(decode_event(stored))
    return events


def paid_up(credential: str = "RMA") -> list:
    return [granted(START, credential), *fees(START.year + 1, 2030, START.month)]


def test_ccp_points_of_1_13_9_04_and_19_83_make_30_and_keep_the_cycle_active():
    bodies = [
        activity_body(1, "1.13", date(2016, 1, 1)),
        activity_body(2, "9.04", date(2017, 1, 1)),
        activity_body(3, "19.83", date(2018, 1, 1)),
    ]
    history = [*paid_up(), *through_the_service(bodies)]
    after = standing(history, CYCLE_END)
    assert after.ccp.points_earned == 30
    assert standing(history, CYCLE_END + timedelta(days=1)).status == "active"
    answer = json.dumps(after.to_dict())
    assert '"points_earned": 30,' in answer
    assert '"points_by_category": {"amt_online_ce": 30}' in answer


def test_ccp_points_short_by_a_hundredth_read_exactly_in_the_reason():
    history = [*paid_up(), activity(date(2016, 1, 1), "1.13"), activity(date(2017, 1, 1), "28.86")]
    short = standing(history, CYCLE_END + timedelta(days=1))
    assert short.status == "inactive"
    assert short.reasons[0].message.endswith("ended with 29.99 of 30 points")


def test_ccp_points_answer_exact_numbers_in_json():
    numbers = [json_number(Decimal(text)) for text in ("30.00", "12.50", "29.99", "0")]
    assert json.dumps(numbers) == "[30, 12.5, 29.99, 0]"


@pytest.mark.parametrize("text", ["1.005", "0.001", "10.125"])
def test_ccp_points_with_more_than_two_decimals_are_refused_naming_the_field(text):
    with pytest.raises(ShapeError) as refused:
        load_envelope(activity_body(1, text, date(2016, 1, 1)))
    assert refused.value.errors == [
        {"field": "data.points", "message": "Use at most 2 decimal places."}
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.13", True),
        ("1.130", True),  # two places, however many zeros follow
        ("0.000", True),
        ("1E+5", True),
        ("123456789012345678901234567890", True),  # past the 28 digits arithmetic keeps
        ("12345678901234567890123456789.01", True),
        ("1.131", False),
        ("1E-400", False),
        ("123456789012345678901234567890.001", False),
        ("NaN", False),
        ("-Infinity", False),
    ],
)
def test_hundredths_are_read_from_the_digits_at_any_size(text, expected):
    assert in_hundredths(Decimal(text)) is expected


def test_recert_ccp_points_compare_exactly_with_the_points_per_cycle():
    lapsing = [granted(date(2005, 6, 3))]
    done = date(2012, 3, 1)
    assert rules_broken(lapsing, ccp_recert(done, "30.00")) == []
    [short] = validate(lapsing, ccp_recert(done, "29.99"), policy=POLICY, received_at=NOW)
    assert (short.rule, short.message) == (
        "RECERT-CCP-POINTS",
        "a recertification by CCP needs 30 points, not 29.99",
    )


@st.composite
def splits(draw) -> tuple[str, list[str]]:
    """A credential and its points per cycle cut at random into amounts with two decimals."""
    codes = sorted(code for code, row in POLICY.credentials.items() if row.points_per_cycle)
    code = draw(st.sampled_from(codes))
    cents = int(POLICY.credentials[code].points_per_cycle * 100)
    cuts = sorted(draw(st.lists(st.integers(1, cents - 1), max_size=12, unique=True)))
    bounds = [0, *cuts, cents]
    return code, [f"{Decimal(b - a) / 100:.2f}" for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(splits())
def test_property_any_split_of_the_requirement_into_hundredths_meets_it(split):
    code, amounts = split
    bodies = [
        activity_body(n, text, START + timedelta(days=1 + 80 * n)) for n, text in enumerate(amounts)
    ]
    history = [*paid_up(code), *through_the_service(bodies)]
    required = POLICY.credentials[code].points_per_cycle
    assert standing(history, CYCLE_END).ccp.points_earned == required
    after = standing(history, CYCLE_END + timedelta(days=1))
    assert after.status == "active", (amounts, after.reasons)
