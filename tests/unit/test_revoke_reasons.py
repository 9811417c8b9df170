"""The reason Credly e-mails a member whose badge is revoked: the rule, in their words."""

from dataclasses import replace

import pytest

from gateway.rules import load_policy
from gateway.usecases.badge_wording import MEMBER_REASON, member_reason

POLICY = load_policy()


def standing_of(*rules: str) -> dict:
    return {"reasons": [{"rule": rule, "message": "for staff"} for rule in rules]}


@pytest.mark.parametrize(
    ("rule", "because"),
    [
        (
            "FEE-LAPSED",
            "because annual renewal fees went unpaid for more than 3 years (FEE-LAPSED)",
        ),
        (
            "CCP-LAPSED",
            "because CCP points were not documented within 3 years of the end of a cycle "
            "(CCP-LAPSED)",
        ),
        ("AUDIT-FAILED", "because the CCP audit was not passed (AUDIT-FAILED)"),
    ],
)
def test_a_lapse_names_its_rule_in_the_members_words(rule, because):
    reason = member_reason(POLICY, standing_of(rule))
    assert reason.startswith(f"Your certification has lapsed {because}, so this badge")
    assert "for staff" not in reason


def test_a_revocation_names_its_rule_and_never_the_staff_reason():
    reason = member_reason(POLICY, standing_of("CERT-REVOKED"))
    assert reason.startswith("Your certification has been revoked (CERT-REVOKED), so this badge")
    assert "for staff" not in reason


def test_the_numbers_are_the_policys():
    policy = replace(POLICY, fee_lapse_years=1, ccp_lapse_years=5)
    assert "more than 1 year (FEE-LAPSED)" in member_reason(policy, standing_of("FEE-LAPSED"))
    assert "within 5 years of" in member_reason(policy, standing_of("CCP-LAPSED"))


def test_the_deciding_rule_is_the_first_that_ends_the_badge():
    reason = member_reason(POLICY, standing_of("CCP-LAPSED", "FEE-LAPSED", "CCP-SHORT"))
    assert "(CCP-LAPSED)" in reason and "FEE" not in reason
    assert member_reason(POLICY, standing_of("FEE-OVERDUE")) == MEMBER_REASON
