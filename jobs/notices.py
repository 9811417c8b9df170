"""The advance notice jobs: review a certification's notices after its standing moved, and the
daily review after the sweep (`gateway.usecases.notices`, which queues their messages as
deliveries)."""

from __future__ import annotations

from datetime import date
from functools import partial

from gateway.usecases import notices
from gateway.usecases.services import Services
from jobs.engine.claim import ClaimedItem


def review_job(svc: Services, item: ClaimedItem) -> None:
    """Outbox handler: review one certification's advance notices after its standing moved."""
    notices.review_certification(
        svc,
        item.certification_id,
        partial(item.finish, svc.db),
        request_id=item.request_id,
        event_pk=item.event_pk,
    )


def review_due(svc: Services, today: date) -> int:
    """The daily review, run by the cron after the sweep; how many messages it queued."""
    return notices.review_due(svc, today)
