"""The jobs benchmark's ceiling: an RQ job making the badge-issue HTTP call, nothing else."""

from __future__ import annotations

import os
import uuid

import requests

_session = requests.Session()  # one keep-alive pool per worker process, as the connector keeps


def issue(key: str) -> str:
    """POST a badge for earner `key` (unique in the run) to the Credly stand-in (CREDLY_*)."""
    base = os.environ["CREDLY_API_BASE"]
    organization = os.environ["CREDLY_ORGANIZATION_ID"]
    response = _session.post(
        f"{base}/organizations/{organization}/badges",
        json={
            "recipient_email": f"m{key}@example.org",
            "issued_to_first_name": "Pat",
            "issued_to_last_name": f"Member{key}",
            "badge_template_id": str(uuid.UUID(int=1)),
            "issued_at": "2026-11-01 00:00:00 +0000",
            "issuer_earner_id": f"B{key}",
            "locale": "en",
        },
        auth=(os.environ["CREDLY_AUTH_TOKEN"], ""),
        headers={"Accept": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["data"]["id"]
