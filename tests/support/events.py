"""Builders of event bodies for API tests."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from gateway.platform import clock

_ids = itertools.count(1)


def event(
    type_: str,
    data: dict[str, Any],
    *,
    cert: str = "CERT-1",
    occurred_at: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An event envelope; occurred_at defaults to noon of the latest date found in `data`,
    or to now when that noon is still ahead (an event dated today, posted in the morning) or
    `data` has no date (a member.updated: sent now, after the grant it changes)."""
    if occurred_at is None:
        dates = [v for v in data.values() if isinstance(v, str) and len(v) == 10 and v[4] == "-"]
        now = clock.now()
        noon = datetime.fromisoformat(f"{max(dates)}T12:00:00+00:00") if dates else now
        occurred_at = min(noon, now).isoformat().replace("+00:00", "Z")
    return {
        "event_id": event_id or f"ev-{next(_ids)}",
        "type": type_,
        "occurred_at": occurred_at,
        "certification_id": cert,
        "data": data,
    }


def granted(certified_on: str, *, credential: str = "RMA", cert: str = "CERT-1", **kw: Any) -> dict:
    """certification.granted for member M-<cert>."""
    member = {
        "member_id": f"M-{cert}",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
    }
    body = {"member": member, "credential": credential, "certified_on": certified_on}
    return event("certification.granted", body, cert=cert, **kw)


def fee(year: int, paid_on: str, **kw: Any) -> dict:
    """renewal.fee_paid."""
    return event("renewal.fee_paid", {"membership_year": year, "paid_on": paid_on}, **kw)


def ccp(
    activity_id: str,
    completed_on: str,
    points: float = 10,
    category: str = "formal_education",
    **kw: Any,
) -> dict:
    """ccp.activity_recorded."""
    data = {
        "activity_id": activity_id,
        "category": category,
        "completed_on": completed_on,
        "points": points,
    }
    data.update(kw.pop("extra", {}))
    return event("ccp.activity_recorded", data, **kw)


def recert(method: str, completed_on: str, **fields: Any) -> dict:
    """recertification.completed (pass cert=/occurred_at= through `fields`)."""
    kw = {k: fields.pop(k) for k in ("cert", "occurred_at", "event_id") if k in fields}
    data = {
        "method": method,
        "completed_on": completed_on,
        "application_id": "APP-1",
        "eligibility_criteria": "EC-2026",
        **fields,
    }
    return event("recertification.completed", data, **kw)


def revoked(revoked_on: str, **kw: Any) -> dict:
    """certification.revoked."""
    return event("certification.revoked", {"reason": "misconduct", "revoked_on": revoked_on}, **kw)
