"""Our states of a badge, beyond the ones Credly reports."""

from __future__ import annotations

from connectors.credly.wire import ACCEPTED, PENDING, REJECTED

LIVE = (PENDING, ACCEPTED)

#: Our state of a badge its earner deleted in Credly (`badge.deleted`): not reissued by itself.
DELETED = "deleted"

#: Our states of a badge its earner deleted or rejected: the gateway does not issue the period's
#: badge again on its own (docs/credly.md, "Revoking and deleting").
EARNERS_CHOICE = (DELETED, REJECTED)
