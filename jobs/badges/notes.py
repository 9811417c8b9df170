"""The sentences recorded on badge rows (their `note`) and in the errors of the badge jobs, and the
record of an issue Credly refused for good."""

from __future__ import annotations

import json

from connectors.credly.wire import BadgeRequest

#: Recorded on an unclaimed badge the gateway revoked to issue it again to a new e-mail address
#: (with `badges.reissue_owed`, what the jobs read), until the new one is recorded (or Credly's
#: refusal of it, `refused_note`): a later attempt issues it, whatever the address is by then.
REISSUE_NOTE = "revoked unclaimed, to be issued again to the member's new e-mail address"

#: Recorded on a badge whose member changed e-mail after accepting it.
OWN_EMAIL_NOTE = (
    "accepted in Credly: its e-mail address belongs to the earner's Credly account and is "
    "changed there by the earner, not by the gateway"
)

#: Recorded on an unclaimed badge whose member changed e-mail, with CREDLY_REVOKED_IS_DUPLICATE.
KEPT_ADDRESS_NOTE = (
    "unclaimed in Credly: kept at the e-mail address it was issued to, since Credly counts a "
    "revoked badge as a duplicate and would refuse to issue it again to the new address "
    "(CREDLY_REVOKED_IS_DUPLICATE)"
)

#: Recorded on an unclaimed, expired badge (BADGE_EXPIRES) whose member changed e-mail.
EXPIRED_ADDRESS_NOTE = (
    "unclaimed and expired in Credly: kept at the e-mail address it was issued to, since issued "
    "again to the new address it would be expired on arrival; it is issued there when a renewal "
    "makes it current again"
)

#: Why an issue fails when Credly refuses it as a duplicate of an ended badge of the certification.
ENDED_DUPLICATE = (
    "Credly refused to issue the badge as a duplicate of the certification's {state} badge {id}: "
    "it counts ended badges as duplicates. Allow duplicates on badge template {template} in "
    "Credly, then requeue the job (`gateway jobs requeue`); with CREDLY_REVOKED_IS_DUPLICATE=true "
    "an unclaimed badge whose member changes e-mail is kept instead of being revoked and issued "
    "again"
)

#: Recorded on a badge whose issue Credly refused for good (its duplicate refusal, a 422, with no
#: badge to adopt), with the request in `badges.refused_request` (`refused_request`): the same
#: request is refused again, so reconciliation does not queue it again until what it sends
#: changes (docs/credly.md, "Duplicates").
REFUSED_NOTE = (
    "Credly refused to issue this badge to {email} as {first_name} {last_name} (badge template "
    "{template}); it is not issued again until one of these changes, or the failed job is "
    "requeued (`gateway jobs requeue`)"
)

#: Why an issue fails when Credly refuses it as a duplicate of another certification's live badge
#: at the recipient's e-mail address (docs/credly.md, "Duplicates").
ANOTHER_HOLDER = (
    "Credly refused to issue the badge to {email}: that address holds certification {other}'s "
    "live badge {id} of badge template {template}, and Credly issues one badge of a template to "
    "an address"
)


def refused_note(recipient: BadgeRequest) -> str:
    """The note shown on a badge whose issue to `recipient` Credly refused for good."""
    return REFUSED_NOTE.format(
        email=recipient.recipient_email,
        first_name=recipient.first_name,
        last_name=recipient.last_name,
        template=recipient.badge_template_id,
    )


def refused_request(recipient: BadgeRequest) -> str:
    """What `badges.refused_request` records of an issue to `recipient` that Credly refused for
    good: the address, names and badge template it sent, in one canonical form (compared as it
    is, so the same request gives the same text)."""
    return json.dumps(
        {
            "email": recipient.recipient_email,
            "first_name": recipient.first_name,
            "last_name": recipient.last_name,
            "badge_template_id": recipient.badge_template_id,
        }
    )
