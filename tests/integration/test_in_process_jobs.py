"""The embedded default's in-process jobs: a retry waits for its time, not on the job thread."""

from __future__ import annotations

import re
import time

import responses

from gateway import intake
from gateway.store.models import Badge, OutboxItem
from tests.events_helpers import granted
from tests.integration.test_badge_jobs import BADGES, CREDLY, EMPTY_LIST, ORG, badge_json


@responses.activate
def test_a_retrying_job_does_not_hold_up_the_others(make_app, tmp_path):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=503, json={})
    responses.post(BADGES, status=201, json=badge_json("b-second"))
    responses.post(BADGES, status=201, json=badge_json("b-first-retried"))
    app = make_app(
        database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}",
        credly_api_base=CREDLY,
        credly_organization_id=ORG,
        credly_auth_token="tok",
        credly_badge_templates={"RMA": "tmpl-rma"},
        job_retry_base_seconds=1,
    )
    svc = app.extensions["gateway"]
    for cert in ("A-1", "B-1"):
        answer = intake.submit_event(svc, granted("2026-03-01", cert=cert))
        svc.dispatcher.dispatch(answer.outbox_ids)
    worker = svc.dispatcher._thread
    deadline = time.monotonic() + 20
    while True:
        with svc.db.sessions() as session:
            states = [i.state for i in session.query(OutboxItem)]
            badges = {b.certification_id: b.credly_badge_id for b in session.query(Badge)}
        if all(s == "done" for s in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)
    assert badges == {"B-1": "b-second", "A-1": "b-first-retried"}
    worker.join(timeout=10)  # nothing unsettled is left: the jobs thread stops until woken again
    assert not worker.is_alive()
