"""The kinds of outbox items: each job's name, defined once for every layer that queues or runs it.

Stored outbox rows and queued RQ jobs hold these strings, so their values never change.
"""

#: Issue the badge of a certification's current period (`rules.IssueBadge`).
ISSUE_BADGE = "issue_badge"
#: Replace the live badge, which names the member otherwise (`rules.ReplaceBadge`).
REPLACE_BADGE = "replace_badge"
#: Revoke the badge, giving the deciding rule (`rules.RevokeBadge`).
REVOKE_BADGE = "revoke_badge"
#: Revoke a second live badge of one certification (reconciliation).
REVOKE_DUPLICATE = "revoke_duplicate"
#: Write the public verification record and fan out its deliveries (`rules.SyncVerification`).
SYNC_VERIFICATION = "sync_verification"
#: Schedule or cancel a certification's advance notices.
REVIEW_NOTICES = "review_notices"
#: Check a Credly notification with Credly, then act on it.
CREDLY_NOTIFICATION = "credly_notification"
#: Send a record to an employer's webhook.
DELIVER_WEBHOOK = "deliver_webhook"
#: Send a record to the verification directory.
PUSH_DIRECTORY = "push_directory"
