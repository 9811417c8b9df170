"""Migrations on both databases, health probes, and the embedded default starting."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date

import pytest
import requests
from alembic import command
from sqlalchemy import insert, inspect, select, text

from connectors.credly.wire import BadgeRequest
from gateway.platform import clock
from gateway.store.db import Database, alembic_config
from gateway.store.models import Badge, Base, Certification, Member
from gateway.usecases import intake
from jobs.badges.notes import refused_request
from tests.support.events import granted
from tests.support.serving import free_port
from tests.support.verification import days_ago


def test_migrations_create_every_model_table(database_url):
    tables = set(inspect(Database(database_url).engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_migrations_go_down_and_up_again(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    db.upgrade()
    db.upgrade("head")  # idempotent
    from alembic import command

    from gateway.store.db import alembic_config

    with db.engine.begin() as conn:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert inspect(db.engine).get_table_names() == ["alembic_version"]
    db.upgrade()
    assert "events" in inspect(db.engine).get_table_names()


def test_badges_a_failed_job_set_to_error_get_credlys_state_back_and_keep_the_reason(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    db.upgrade("0005")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO members (member_id, first_name, last_name, email, updated_at)"
                " VALUES ('M-1', 'A', 'B', 'a@example.org', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO certifications (certification_id, member_id, credential, status,"
                " standing, evaluated_on, created_at, updated_at) VALUES ('C-1', 'M-1', 'RMA',"
                " 'active', '{}', '2026-01-01', '2026-01-01', '2026-01-01')"
            )
        )
        for n, credly_id, error in ((1, None, "no template"), (2, "b-2", "403 not allowed")):
            conn.execute(
                text(
                    "INSERT INTO badges (certification_id, period_start, state, credly_badge_id,"
                    " attempts, last_error, created_at, updated_at) VALUES ('C-1', :period,"
                    " 'error', :credly_id, 1, :error, '2026-01-01', '2026-01-01')"
                ),
                {"period": f"202{n}-01-01", "credly_id": credly_id, "error": error},
            )
    db.upgrade()
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT state, last_error FROM badges ORDER BY period_start"))
        assert [tuple(row) for row in rows] == [
            ("queued", "no template"),
            ("pending", "403 not allowed"),
        ]
    db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_upgrade_takes_what_the_badge_jobs_act_on_from_the_notes_of_the_release_before(
    backend, tmp_path, request
):
    url = (
        f"sqlite:///{tmp_path / 'm.sqlite3'}"
        if backend == "sqlite"
        else request.getfixturevalue("empty_database")
    )
    db = Database(url)
    db.upgrade("0023")
    member = {"first_name": "Ada Mary", "last_name": "Lovelace King", "email": "ada@example.org"}
    refused = (
        "Credly refused to issue this badge to ada@example.org as {} (badge template "
        "tmpl-rma); it is not issued again until one of these changes, or the failed job is "
        "requeued (`gateway jobs requeue`)"
    )
    notes = [
        "revoked unclaimed, to be issued again to the member's new e-mail address",
        refused.format("Ada Mary Lovelace King"),  # the member's names now, either with a space
        refused.format("Ada Byron King"),  # before a change of names: split at its first space
        "accepted in Credly: its e-mail address belongs to the earner's Credly account and is "
        "changed there by the earner, not by the gateway",
        None,
    ]
    with db.sessions.begin() as session:
        session.add(Member(member_id="M-1", **member))
        session.flush()
        session.execute(  # the columns of that release only
            insert(Certification).values(
                certification_id="C-1",
                credential="RMA",
                member_id="M-1",
                status="active",
                standing={"member": member},
                evaluated_on=date(2026, 1, 1),
            )
        )
        session.flush()
        for year, note in enumerate(notes, start=2020):
            session.execute(
                text(
                    "INSERT INTO badges (certification_id, period_start, state, attempts, note,"
                    " created_at, updated_at) VALUES ('C-1', :period, 'revoked', 1, :note,"
                    " '2026-01-01', '2026-01-01')"
                ),
                {"period": date(year, 1, 1), "note": note},
            )
    try:
        db.upgrade()
        with db.sessions() as session:
            rows = session.scalars(select(Badge).order_by(Badge.period_start)).all()
            assert [row.note for row in rows] == notes  # kept as they were
            assert [row.reissue_owed for row in rows] == [True, False, False, False, False]
            request_of = refused_request  # the form the jobs compare
            asked = BadgeRequest(
                "ada@example.org", "Ada Mary", "Lovelace King", "tmpl-rma", clock.now(), "C-1"
            )
            assert [row.refused_request for row in rows] == [
                None,
                request_of(asked),
                request_of(replace(asked, first_name="Ada", last_name="Byron King")),
                None,
                None,
            ]
        with db.engine.begin() as connection:
            config = alembic_config(db.url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0023")
        columns = {column["name"] for column in inspect(db.engine).get_columns("badges")}
        assert "note" in columns and not {"reissue_owed", "refused_request"} & columns
    finally:
        db.engine.dispose()


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database_and_redis(database_url, make_app, redis_url):
    app = make_app(database_url=database_url, redis_url=redis_url)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_problem_when_redis_is_down(make_app, database_url):
    app = make_app(database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 503 and "redis" in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down")


def test_readyz_is_503_problem_when_the_database_is_down(make_app):
    app = make_app(database_url="postgresql://postgres@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["errors"][0]["field"] == "database"


def test_unknown_route_and_wrong_method_answer_problem_json(client):
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.get_json()["title"] == "Not Found"
    wrong = client.post("/healthz")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"
    assert "GET" in wrong.headers["Allow"]
    for answer in (missing, wrong):  # docs/api.md: the five members, `errors` empty when none apply
        assert set(answer.get_json()) == {"type", "title", "status", "detail", "errors"}
        assert answer.get_json()["errors"] == []


def test_internal_error_is_problem_json_without_traceback(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_embedded_default_migrates_itself_and_says_so(make_app, tmp_path, caplog):
    caplog.set_level("INFO", logger="gateway")
    app = make_app(instance_path=str(tmp_path / "inst"))
    assert (tmp_path / "inst" / "gateway.sqlite3").exists()
    assert app.test_client().get("/readyz").status_code == 200
    said = [r for r in caplog.records if "EMBEDDED DEFAULT MODE" in r.getMessage()]
    assert said and said[0].levelname == "WARNING"  # seen with LOG_LEVEL=WARNING too


def test_a_live_credly_without_a_template_for_a_credential_is_a_warning_at_start(
    make_app, tmp_path, caplog
):
    caplog.set_level("INFO", logger="gateway")
    credly = {
        "credly_api_base": "https://sandbox-api.credly.com/v1",
        "credly_organization_id": "org-1",
        "credly_auth_token": "token-1",
    }
    make_app(instance_path=str(tmp_path / "a"), credly_badge_templates={"RMA": "t-rma"}, **credly)
    [said] = [r for r in caplog.records if "CREDLY_BADGE_TEMPLATES" in r.getMessage()]
    assert said.levelname == "WARNING"
    assert "no badge template for " in said.getMessage() and "RMA" not in said.getMessage()
    caplog.clear()
    make_app(instance_path=str(tmp_path / "b"))  # the dry-run backend has its placeholders
    assert not [r for r in caplog.records if "CREDLY_BADGE_TEMPLATES" in r.getMessage()]


def test_the_embedded_database_is_readable_by_its_owner_only(make_app, tmp_path):
    """It holds webhook signing secrets; its journal files take its mode."""
    make_app(instance_path=str(tmp_path / "inst"), webhook_allow_private_targets=True)
    files = list((tmp_path / "inst").glob("gateway.sqlite3*"))
    assert files and all(path.stat().st_mode & 0o077 == 0 for path in files), files


def test_the_dry_run_credly_store_is_readable_by_its_owner_only(make_app, tmp_path):
    """It holds members' names and e-mail addresses; its WAL files take its mode."""
    app = make_app(instance_path=str(tmp_path / "inst"), jobs_synchronous=True)
    assert intake.submit_event(app.extensions["gateway"], granted(days_ago(30))).status == 202
    files = list((tmp_path / "inst").glob("credly-dry-run.sqlite3*"))
    assert files and all(path.stat().st_mode & 0o077 == 0 for path in files), files


def test_gateway_run_serves_healthz_on_the_embedded_default_logging_json_on_stderr(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["INSTANCE_PATH"] = str(tmp_path / "instance")
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [gateway, "run", "--port", str(port)], env=env, stdout=stdout, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=(1, 30))
                break
            except requests.ConnectionError:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "gateway run did not start in 30 s"
                time.sleep(0.2)
        assert response.status_code == 200
        missing = requests.get(f"http://127.0.0.1:{port}/nothing-here", timeout=(1, 30))
        assert missing.status_code == 404  # a line werkzeug colours
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert out.read_text() == ""  # no banner
    lines = [json.loads(line) for line in err.read_text().splitlines()]
    messages = [str(line["msg"]) for line in lines]
    assert any("EMBEDDED DEFAULT MODE" in message for message in messages)
    assert any('"GET /nothing-here HTTP/1.1" 404' in message for message in messages), messages
    assert not any("\x1b" in message for message in messages), messages
