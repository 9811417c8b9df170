"""What a member's Credly badge says and what Credly tells the member of it: the badge's evidence
and the reasons sent when a badge is revoked (docs/credly.md). The badge jobs (`jobs.badges`) send
them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from connectors.credly.wire import id_evidence, url_evidence
from gateway.rules import Policy, ids
from gateway.usecases.services import Services

#: What Credly e-mails the member when their badge is revoked (docs/credly.md, "Revoking"): why,
#: in the member's words, naming the deciding rule of docs/rules.md (`member_reason`).
LAPSED_REASON = (
    "Your certification has lapsed because {because} ({rule}), so this badge no longer shows a "
    "current certification. It will be issued again when your certification is restored."
)
#: The `because` of LAPSED_REASON for each lapse rule; `{...}` are the policy's numbers.
LAPSED_BECAUSE = {
    ids.FEE_LAPSED: "annual renewal fees went unpaid for more than {fee_lapse_years}",
    ids.CCP_LAPSED: "CCP points were not documented within {ccp_lapse_years} of the end of a cycle",
    ids.AUDIT_FAILED: "the CCP audit was not passed",
}
REVOKED_REASON = (
    f"Your certification has been revoked ({ids.CERT_REVOKED}), so this badge no longer shows a "
    "current certification. Please contact the certifying body with any questions."
)
#: The reason when the standing names none of those rules.
MEMBER_REASON = "This badge no longer shows a current certification."
#: Said to the member when an unclaimed badge is issued again to their new e-mail address.
NEW_ADDRESS_REASON = "This badge was issued again to your new e-mail address."
#: Said (the e-mail suppressed) of a second live badge of a certification that keeps another.
DUPLICATE_REASON = "This badge duplicates the badge you hold for the same certification."


def evidence(svc: Services, certification_id: str) -> tuple[dict[str, str], ...]:
    """The badge's evidence: the certification number (ID evidence, shown on the badge) and,
    with PUBLIC_BASE_URL, a link to its public verification page."""
    shown = [id_evidence("Certification number", certification_id)]
    if svc.settings.public_base_url:
        query = urlencode({"certification_id": certification_id})
        url = f"{svc.settings.public_base_url}/verify?{query}"
        shown.append(url_evidence("Verify this certification", url))
    return tuple(shown)


def member_reason(policy: Policy, standing: dict[str, Any]) -> str:
    """The revoke reason Credly e-mails the member: the standing's deciding rule (its first
    reason that ends the badge) in the member's words, with the policy's numbers."""
    for reason in standing.get("reasons", ()):
        rule = reason["rule"]
        if rule == ids.CERT_REVOKED:
            return REVOKED_REASON
        if rule in LAPSED_BECAUSE:
            because = LAPSED_BECAUSE[rule].format(
                fee_lapse_years=_years(policy.fee_lapse_years),
                ccp_lapse_years=_years(policy.ccp_lapse_years),
            )
            return LAPSED_REASON.format(because=because, rule=rule)
    return MEMBER_REASON


def _years(count: int) -> str:
    return f"{count} year" if count == 1 else f"{count} years"
