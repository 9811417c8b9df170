"""The policy table: the packaged default and the checks on an operator's file."""

from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.rules import load_policy
from gateway.rules.policy import DEFAULT_POLICY_FILE

RULES_MD_TABLE = {
    "RMA": ("Registered Medical Assistant", 30),
    "RPT": ("Registered Phlebotomy Technician", 24),
    "RDA": ("Registered Dental Assistant", 30),
    "CMAS": ("Certified Medical Administrative Specialist", 30),
    "CMLA": ("Certified Medical Laboratory Assistant", 30),
    "AHI": ("Allied Health Instructor", 30),
    "MT": ("Medical Technologist", 45),
    "MLT": ("Medical Laboratory Technician", 45),
    "CLC": ("Certified Laboratory Consultant", 45),
    "MDT": ("Molecular Diagnostics Technologist", 36),
}


def test_policy_default_lists_the_credentials_of_rules_md():
    policy = load_policy()
    assert {c.code: (c.name, c.points_per_cycle) for c in policy.credentials.values()} == (
        RULES_MD_TABLE
    )
    assert {c.eligibility_criteria for c in policy.credentials.values()} == {"EC-2026"}
    assert all(c.category_caps == {} for c in policy.credentials.values())


def test_policy_default_holds_every_number_of_rules_md():
    policy = load_policy()
    assert (policy.cycle_years, policy.fee_lapse_years, policy.ccp_lapse_years) == (3, 3, 3)
    assert policy.fee_years_ahead == 1
    assert policy.exam_only_years == 10
    assert policy.recert_ccp_window_years == 3
    assert policy.grandfather_cutoff == date(2006, 1, 1)
    assert policy.employment_cutoff == date(2020, 12, 31)
    assert policy.future_tolerance == timedelta(minutes=5)
    assert policy.categories == (
        "professional_education",
        "amt_online_ce",
        "formal_education",
        "employment",
        "authorship",
        "instructional_presentation",
        "organizational_participation",
    )


def _write(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_policy_operator_file_sets_criteria_and_caps(tmp_path: Path):
    path = _write(
        tmp_path,
        'points_per_cycle = 30\neligibility_criteria = "EC-2026"',
        'points_per_cycle = 30\neligibility_criteria = "EC-2027"\n'
        "category_caps = { employment = 10, authorship = 7.5 }",
    )
    rma = load_policy(path).credentials["RMA"]
    assert rma.eligibility_criteria == "EC-2027"
    assert rma.category_caps == {"employment": 10.0, "authorship": 7.5}
    assert load_policy(str(path)).credentials["RPT"].eligibility_criteria == "EC-2026"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("cycle_years = 3 ", "", r"\[rules\]: 'cycle_years' is missing"),
        ("cycle_years = 3 ", 'cycle_years = "3" ', "'cycle_years' has the wrong type"),
        ("cycle_years = 3 ", "cycle_years = 0 ", "'cycle_years' must be from 1 to 10, not 0"),
        ("cycle_years = 3 ", "cycle_yeras = 3 ", "unknown key"),
        ("grandfather_cutoff = 2006-01-01", 'grandfather_cutoff = "2006"', "wrong type"),
        ("points_per_cycle = 24", "points_per_cycle = true", "'points_per_cycle' has the wrong"),
        (
            'name = "Allied Health Instructor"',
            'name = " "',
            r"\[credentials.AHI\]: 'name' is empty",
        ),
        (
            'eligibility_criteria = "EC-2026"',
            'eligibility_criteria = "EC-2026"\ncategory_caps = { hobbies = 5 }',
            "'hobbies' is not one of the categories",
        ),
        (
            'eligibility_criteria = "EC-2026"',
            'eligibility_criteria = "EC-2026"\ncategory_caps = { employment = 0 }',
            "'employment' must be above 0",
        ),
        ('"authorship",', '"authorship", "authorship",', "lists a name twice"),
        ("[rules]", "[rules", "not valid TOML"),
    ],
)
def test_policy_bad_file_names_the_problem(tmp_path: Path, old: str, new: str, problem: str):
    with pytest.raises(ValueError, match=problem):
        load_policy(_write(tmp_path, old, new))


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("cycle_years = 3 ", "cycle_years = 99999 ", "'cycle_years' must be from 1 to 10, not"),
        ("cycle_years = 3 ", "cycle_years = 11 ", "'cycle_years' must be from 1 to 10"),
        ("fee_lapse_years = 3 ", "fee_lapse_years = 51 ", "'fee_lapse_years' must be from 1 to 50"),
        ("fee_years_ahead = 1 ", "fee_years_ahead = 0 ", "'fee_years_ahead' must be from 1 to 10"),
        ("ccp_lapse_years = 3 ", "ccp_lapse_years = 100 ", "'ccp_lapse_years' must be from 1 to"),
        ("exam_only_years = 10 ", "exam_only_years = 51 ", "'exam_only_years' must be from 1 to"),
        (
            "recert_ccp_window_years = 3 ",
            "recert_ccp_window_years = 11 ",
            "'recert_ccp_window_years' must be from 1 to 10",
        ),
        (
            "future_tolerance_minutes = 5 ",
            "future_tolerance_minutes = 99999999999999999 ",  # past what a timedelta holds
            "'future_tolerance_minutes' must be from 0 to 1440, not 99999999999999999",
        ),
        (
            "future_tolerance_minutes = 5 ",
            "future_tolerance_minutes = -1 ",
            "'future_tolerance_minutes' must be from 0 to 1440",
        ),
        ("points_per_cycle = 24", "points_per_cycle = 1000.01", "from 0 up to 1000, not 1000.01"),
        ("points_per_cycle = 24", "points_per_cycle = -1", "'points_per_cycle' must be from 0 up"),
        (
            'eligibility_criteria = "EC-2026"',
            'eligibility_criteria = "EC-2026"\ncategory_caps = { employment = 1001 }',
            "'employment' must be above 0 and up to 1000, not 1001",
        ),
    ],
)
def test_policy_numbers_have_bounds(tmp_path: Path, old: str, new: str, problem: str):
    """Checked when the file is read: a cycle of 99999 years was accepted, then every evaluation
    failed computing a date past the calendar."""
    with pytest.raises(ValueError, match=problem):
        load_policy(_write(tmp_path, old, new))


def test_policy_numbers_at_their_bounds_are_taken(tmp_path: Path):
    path = _write(tmp_path, "cycle_years = 3 ", "cycle_years = 10 ")
    text = path.read_text(encoding="utf-8")
    for old, new in [
        ("exam_only_years = 10 ", "exam_only_years = 50 "),
        ("future_tolerance_minutes = 5 ", "future_tolerance_minutes = 0 "),
        ("points_per_cycle = 24", "points_per_cycle = 1000"),
        ("points_per_cycle = 30", "points_per_cycle = 0"),
    ]:
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert (policy.cycle_years, policy.exam_only_years) == (10, 50)
    assert policy.future_tolerance == timedelta(0)
    assert policy.credentials["RPT"].points_per_cycle == 1000
    assert policy.credentials["RMA"].points_per_cycle == 0


def test_policy_missing_file_is_a_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot be read"):
        load_policy(tmp_path / "nowhere.toml")
