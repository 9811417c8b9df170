"""The next change of a certification's public status that happens without any event: a pure
function of its history, for advance notice (fees overdue -> inactive, a lapse)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from .events import Event
from .policy import Policy
from .standing import evaluate


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    """On `on`, with no further event, the status becomes `status` (it is `current` until then)."""

    on: date
    current: str
    status: str


def scheduled_change(
    history: Sequence[Event], today: date, until: date, policy: Policy
) -> ScheduledChange | None:
    """The first day after `today`, up to `until`, on which the status changes if no event arrives;
    None when it stays the same through `until` (or the history is not certified `today`).

    Follows the standings' own next days of change, so days when only the reasons change (another
    year of fees overdue) are stepped over.
    """
    standing = evaluate(history, today, policy)
    day = standing.next_change_on
    while day is not None and today < day <= until:
        later = evaluate(history, day, policy)
        if later.status != standing.status:
            return ScheduledChange(day, standing.status, later.status)
        if later.next_change_on is None or later.next_change_on <= day:
            return None
        day = later.next_change_on
    return None
