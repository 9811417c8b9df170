"""The sync job: bring a certification's public verification record in step with its stored
standing, fanning a change out to the delivery targets (`gateway.usecases.verification_sync`)."""

from __future__ import annotations

from functools import partial

from gateway.usecases import verification_sync
from gateway.usecases.services import Services
from jobs.engine.claim import ClaimedItem


def sync(svc: Services, item: ClaimedItem) -> None:
    """Outbox handler: bring the public record in step with the certification's current stored
    standing."""
    verification_sync.sync(
        svc,
        item.certification_id,
        partial(item.finish, svc.db),
        request_id=item.request_id,
        event_pk=item.event_pk,
    )
