"""The outbox kinds: stored outbox rows and queued RQ jobs hold these names, which never change."""

from gateway.rules import IssueBadge, ReplaceBadge, RevokeBadge, SyncVerification, kinds
from jobs.engine.outbox import HANDLERS

STORED = {
    "issue_badge",
    "replace_badge",
    "revoke_badge",
    "revoke_duplicate",
    "sync_verification",
    "review_notices",
    "credly_notification",
    "deliver_webhook",
    "push_directory",
}


def test_every_kind_keeps_its_stored_name_and_has_a_handler():
    names = {value for name, value in vars(kinds).items() if name.isupper()}
    assert names == STORED
    assert set(HANDLERS) == STORED


def test_the_actions_queue_their_kinds():
    assert IssueBadge.kind == "issue_badge"
    assert ReplaceBadge.kind == "replace_badge"
    assert RevokeBadge.kind == "revoke_badge"
    assert SyncVerification.kind == "sync_verification"
