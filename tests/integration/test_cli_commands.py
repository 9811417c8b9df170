"""The operators' commands: on the `gateway` script and on the app's `flask` command alike."""

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from flask.cli import ScriptInfo
from flask.cli import cli as flask_cli
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import OperationalError

from connectors.credly.wire import BadgeRequest
from gateway import rules
from gateway.bootstrap import create_app
from gateway.cli.group import database_error
from gateway.cli.main import cli
from gateway.platform import clock, metrics
from gateway.platform.config import ConfigError, Settings
from gateway.store.db import MIGRATIONS, Database, alembic_config
from gateway.store.models import Base, OutboxItem
from gateway.usecases import intake, queries, subscriptions
from gateway.usecases.queries import job_outcomes
from jobs.engine import dispatch
from jobs.engine.claim import ended, record_end
from jobs.reconcile import REPAIRS
from tests.support.clients import fetch_token
from tests.support.database import pg_conninfo
from tests.support.events import granted, revoked
from tests.support.serving import free_port


def test_the_commands_are_on_the_apps_flask_cli_too(database_url, make_app):
    app = make_app(database_url=database_url)
    runner = app.test_cli_runner()
    assert set(app.cli.commands) >= {"db", "clients", "jobs", "sweep", "badges", "worker", "keys"}
    answer = runner.invoke(args=["jobs", "failed"])
    assert answer.exit_code == 0, answer.output
    assert "no failed jobs" in answer.output
    nothing = runner.invoke(args=["jobs", "requeue", "--all"])
    assert (nothing.exit_code, nothing.output) == (0, "no failed jobs\n")
    for job_id in ("outbox-99999999999999999999", "outbox-0", "outbox--5"):
        unheard = runner.invoke(args=["jobs", "requeue", "--", job_id])
        assert unheard.exit_code == 2 and "job ids look like outbox-123" in unheard.output


def test_db_current_history_and_downgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))  # not the checkout's
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    head = runner.invoke(cli, ["db", "current"])
    assert head.exit_code == 0 and "(head)" in head.stdout
    history = runner.invoke(cli, ["db", "history"]).stdout
    assert "<base> -> 0001, initial schema" in history and "(current)" in history
    down = runner.invoke(cli, ["db", "downgrade", "0001"])
    assert down.exit_code == 0, down.output
    assert runner.invoke(cli, ["db", "current"]).stdout.split()[0] == "0001"
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert "(head)" in runner.invoke(cli, ["db", "current"]).stdout


def test_db_current_of_a_database_never_migrated_says_base(empty_database, tmp_path):
    """Alembic prints nothing there: an empty answer, exit status 0, told the operator nothing."""
    env = {"DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    runner = CliRunner()
    for _ in range(2):
        current = runner.invoke(cli, ["db", "current"], env=env)
        assert (current.exit_code, current.stdout) == (0, "base (no migration applied)\n")
        assert runner.invoke(cli, ["db", "upgrade", "--revision", "0001"], env=env).exit_code == 0
        assert runner.invoke(cli, ["db", "current"], env=env).stdout == "0001\n"
        down = runner.invoke(cli, ["db", "downgrade", "base"], env=env)
        assert (down.exit_code, down.stdout) == (
            0,
            "database downgraded to base (no migration applied)\n",
        )


def test_db_downgrade_minus_one_undoes_the_last_migration_and_says_where_it_is(
    tmp_path, monkeypatch
):
    """`-1`, as the docs and --help write it, is a revision, not an unknown option."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    scripts = ScriptDirectory.from_config(alembic_config(os.environ["DATABASE_URL"]))
    [head] = scripts.get_heads()
    before = scripts.get_revision(head).down_revision
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    down = runner.invoke(cli, ["db", "downgrade", "-1"])
    assert (down.exit_code, down.stdout) == (0, f"database downgraded to {before}\n"), down.output
    assert runner.invoke(cli, ["db", "current"]).stdout.split()[0] == before
    to_base = runner.invoke(cli, ["db", "downgrade", "base"])
    assert to_base.stdout == "database downgraded to base (no migration applied)\n"


def test_db_downgrade_to_where_the_database_is_says_nothing_changed(tmp_path, monkeypatch):
    """It said `database downgraded to 0001` of a database already at 0001."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--revision", "0002"]).exit_code == 0
    for revision, reached in (("0001", "0001"), ("base", "base (no migration applied)")):
        down = runner.invoke(cli, ["db", "downgrade", revision])
        assert (down.exit_code, down.stdout) == (0, f"database downgraded to {reached}\n")
        again = runner.invoke(cli, ["db", "downgrade", revision])
        assert (again.exit_code, again.stdout) == (
            0,
            f"database already at {reached}: nothing to downgrade\n",
        ), again.output


@pytest.mark.parametrize(
    ("rev_id", "status", "says"),
    [
        ("0001", 1, "Error: --rev-id 0001 is a migration already; give a new id\n"),
        ("bad id/..", 2, "Error: Invalid value for '--rev-id': 'bad id/..' is not made of digits"),
        ("0015-x", 2, "Error: Invalid value for '--rev-id': '0015-x' is not made of digits"),
    ],
)
def test_db_revision_takes_only_a_new_id_of_plain_characters(tmp_path, rev_id, status, says):
    """An id already used wrote a second migration of that id, which stopped every later command;
    one with a slash made a folder."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    versions = MIGRATIONS / "versions"
    before = sorted(versions.rglob("*"))
    answer = CliRunner().invoke(cli, ["db", "revision", "-m", "x", "--rev-id", rev_id], env=env)
    assert answer.exit_code == status, answer.output
    assert answer.output.splitlines()[-1].startswith(says.strip()), answer.output
    assert sorted(versions.rglob("*")) == before


def test_jobs_status_shows_the_outbox_backlog_that_rq_never_holds(database_url, make_app):
    app = make_app(database_url=database_url, jobs="IN_SERVER")  # nothing works the items here
    answer = intake.submit_event(app.extensions["gateway"], granted("2026-03-01"))
    assert answer.status == 202 and answer.outbox_ids
    shown = app.test_cli_runner().invoke(args=["jobs", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    pending = {row["kind"]: row["count"] for row in status["items"] if row["state"] == "pending"}
    assert pending == {"issue_badge": 1, "sync_verification": 1}
    assert status["due"] == 2 and status["oldest_due_seconds"] >= 0
    table = app.test_cli_runner().invoke(args=["jobs", "status"]).stdout
    assert "issue_badge" in table and "due now: 2" in table


def test_jobs_status_counts_done_jobs_as_they_ended_not_in_the_whole_outbox(database_url, make_app):
    """The outbox keeps its done items for good: `jobs status` counts its other items there, by
    state, and reads how many are done from `job_outcomes`, counted as each ended. Failed ones
    are those failed now: a failed item requeued since is pending."""
    app = make_app(database_url=database_url, jobs="IN_SERVER")  # nothing works the items here
    svc = app.extensions["gateway"]
    for cert in ("CERT-1", "CERT-2"):
        assert intake.submit_event(svc, granted("2026-03-01", cert=cert)).status == 202
    with svc.db.sessions() as session:
        item = {(i.certification_id, i.kind): i.id for i in session.scalars(select(OutboxItem))}
    with svc.db.engine.begin() as connection:
        for (cert, kind), state in [
            (("CERT-1", "issue_badge"), "done"),
            (("CERT-1", "sync_verification"), "failed"),
            (("CERT-2", "issue_badge"), "failed"),
        ]:
            error = "gave up" if state == "failed" else None
            record_end(svc.db, connection, kind, ended(item[cert, kind], state, error))
    assert dispatch.requeue(svc, [item["CERT-2", "issue_badge"]])
    read: list[str] = []
    event.listen(svc.db.engine, "before_cursor_execute", lambda *call: read.append(call[2]))
    shown = app.test_cli_runner().invoke(args=["jobs", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert {(row["kind"], row["state"]): row["count"] for row in status["items"]} == {
        ("issue_badge", "done"): 1,
        ("issue_badge", "pending"): 1,
        ("sync_verification", "failed"): 1,
        ("sync_verification", "pending"): 1,
    }
    assert status["due"] == 2
    table = app.test_cli_runner().invoke(args=["jobs", "status"]).stdout.splitlines()
    assert f"{'issue_badge':22} {'done':10} 1" in table and table[-1].startswith("due now: 2 ")
    outbox = [statement for statement in read if "FROM outbox" in statement]
    assert any("GROUP BY outbox.kind" in statement for statement in outbox)
    for statement in outbox:  # by state (its index), or due items (theirs): never every item
        assert "WHERE outbox.state IN" in statement or "WHERE outbox.due_at <=" in statement


#: The commands docs/operations.md lists (`routes` and `shell` are Flask's own).
COMMANDS = {
    "badges",
    "clients",
    "db",
    "jobs",
    "keys",
    "receipts",
    "routes",
    "run",
    "serve",
    "shell",
    "sweep",
    "sync",
    "worker",
}


def listed_commands(help_text: str) -> set[str]:
    """The command names under `Commands:` in a help text (not its wrapped descriptions)."""
    lines = help_text.partition("\nCommands:\n")[2].splitlines()
    return {line.split()[0] for line in lines if line.startswith("  ") and line[2] != " "}


def test_help_lists_the_commands_without_creating_anything(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()
    for args, status, commands in [
        (["--help"], 0, COMMANDS),
        ([], 2, COMMANDS),  # click exits 2 for a bare group, with its help
        (["clients", "--help"], 0, {"create", "list", "new-secret", "revoke"}),
    ]:
        answer = runner.invoke(cli, args)
        assert answer.exit_code == status, answer.output
        assert listed_commands(answer.output) == commands, answer.output
    assert not (tmp_path / "instance").exists()


def test_a_policy_table_without_a_credential_in_use_stops_every_command(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {"DATABASE_URL": database, "INSTANCE_PATH": str(tmp_path)}
    svc = create_app(Settings.from_env(env)).extensions["gateway"]
    assert intake.submit_event(svc, granted("2026-03-01")).status == 202  # an RMA
    packaged = (Path(rules.__file__).parent / "policy.toml").read_text()
    rma = packaged.index("[credentials.RMA]")
    without_rma = tmp_path / "policy.toml"
    without_rma.write_text(packaged[:rma] + packaged[packaged.index("[credentials.", rma + 1) :])
    refused = CliRunner().invoke(
        cli, ["jobs", "failed"], env={**env, "POLICY_FILE": str(without_rma)}
    )
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: POLICY_FILE: the credential policy table lacks RMA,")
    assert CliRunner().invoke(cli, ["jobs", "failed"], env=env).exit_code == 0


@pytest.mark.parametrize(
    ("args", "setting", "says"),
    [
        (["jobs", "failed"], "DATABASE_URL", "Error: the database cannot be reached: "),
        # nothing on stdout: "[" was written before the first row was read
        (["jobs", "failed", "--json"], "DATABASE_URL", "Error: the database cannot be reached: "),
        (["db", "current"], "DATABASE_URL", "Error: the database cannot be reached: "),
        (["sweep"], "REDIS_URL", "Error: Redis cannot be reached: "),
        (["db", "downgrade", "nosuchrev"], None, "Error: "),
    ],
)
@pytest.mark.parametrize("command", ["gateway", "flask"])
def test_what_cannot_be_reached_or_found_ends_a_command_in_one_line(
    tmp_path, args, setting, says, command
):
    """On Flask's own `flask` command too, which docs/operations.md says has the same commands:
    there a traceback told it, the `gateway` group's own handling left out."""
    closed = free_port()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    if setting == "DATABASE_URL":
        env[setting] = f"postgresql://postgres@127.0.0.1:{closed}/test"
    elif setting == "REDIS_URL":
        env[setting] = f"redis://127.0.0.1:{closed}/0"
    if command == "gateway":
        answer = CliRunner().invoke(cli, args, env=env)
    else:  # the app's commands, as `flask --app gateway.bootstrap:create_app` runs them
        answer = create_app(Settings.from_env(env)).test_cli_runner().invoke(args=args)
    assert answer.exit_code == 1, answer.output
    assert answer.output.startswith(says) and answer.output.count("\n") == 1, answer.output


@pytest.mark.parametrize(
    ("args", "setting", "value", "says"),
    [
        (
            ["jobs", "status"],
            "DATABASE_URL",
            "postgresql://postgres:s3cret@127.0.0.1:notaport/x",
            "Error: DATABASE_URL must be a URL such as",
        ),
        (
            ["jobs", "status"],
            "DATABASE_URL",
            "postgresql+psycopg2://postgres:s3cret@127.0.0.1:5432/x",
            "Error: DATABASE_URL: the gateway speaks to PostgreSQL with psycopg 3: use "
            "postgresql:// or postgresql+psycopg://",
        ),
        (
            ["jobs", "status"],
            "REDIS_URL",
            "redis://127.0.0.1:notaport/8",
            "Error: REDIS_URL is not a Redis URL",
        ),
        (
            ["jobs", "status"],
            "REDIS_URL",
            "redis://127.0.0.1:6379/8x",
            "Error: REDIS_URL's database must be a number 0 or more",
        ),
        (["serve"], "WEB_BIND", "127.0.0.1:99999", "Error: WEB_BIND's port must be from 1 to"),
        (["serve"], "WEB_BIND", "127.0.0.1:abc", "Error: WEB_BIND must be HOST:PORT"),
        (["serve"], "WEB_BIND", "abc", "Error: WEB_BIND must be HOST:PORT"),
        (["serve"], "WEB_BIND", "unix:", "Error: WEB_BIND: unix: must be followed by the socket's"),
        (
            ["jobs", "status"],
            "CREDLY_API_BASE",
            "http://127.0.0.1:99999/v1",
            "Error: CREDLY_API_BASE's port must be from 1 to 65535",
        ),
        (
            ["badges", "reconcile", "--dry-run"],
            "CREDLY_ORGANIZATION_ID",
            "org-1 ",
            "Error: CREDLY_ORGANIZATION_ID must not be blank or begin or end with whitespace",
        ),
        (["db", "current"], "INSTANCE_PATH", "a-file", "Error: INSTANCE_PATH: "),
        (["jobs", "status"], "INSTANCE_PATH", "a-file", "Error: INSTANCE_PATH: "),
        (["jobs", "status"], "INSTANCE_PATH", "/proc/gw-instance", "Error: INSTANCE_PATH: "),
        (["jobs", "status"], "DATABASE_URL", "sqlite:////proc/gw.db", "Error: DATABASE_URL: "),
        (["jobs", "status"], "INSTANCE_PATH", " ", "Error: INSTANCE_PATH is blank"),
        (["jobs", "status"], "SIGNING_KEYS_FILE", "  ", "Error: SIGNING_KEYS_FILE is blank"),
        (["jobs", "status"], "PUBLIC_BASE_URL", "https://[::1", "Error: PUBLIC_BASE_URL is not"),
        (["jobs", "status"], "ISSUER_URL", "https://[zz", "Error: ISSUER_URL is not a URL"),
        (["jobs", "status"], "REDIS_URL", "redis://[::1", "Error: REDIS_URL is not a URL"),
        (["serve"], "POLICY_FILE", "broken.toml", "Error: POLICY_FILE: policy file"),
        (
            ["jobs", "status"],
            "REDIS_URL",
            "redis://127.0.0.1:6379/99",  # of 16: the server answers, and refuses it
            "Error: REDIS_URL: the Redis server refused database 99: DB index is out of range",
        ),
        (
            ["serve"],
            "REDIS_URL",
            "redis://127.0.0.1:6379/99",
            "Error: REDIS_URL: the Redis server refused database 99: DB index is out of range",
        ),
        (["worker"], "SWEEP_TIME", "0002:0030", "Error: SWEEP_TIME must be HH:MM (UTC, 00:00 to"),
        (["serve"], "TIME_ZONE", "localtime", "Error: TIME_ZONE must be an IANA time zone name"),
        (
            ["worker"],
            "VERIFY_RATE_LIMIT",
            "10/0 seconds",
            "Error: VERIFY_RATE_LIMIT must count over a window of at least 1",
        ),
        (
            ["serve"],
            "ISSUER_CONTACT",
            "call the registry",
            "Error: ISSUER_CONTACT must be an e-mail address or an absolute http(s) URL",
        ),
        (
            ["serve"],
            "CREDLY_BADGE_TEMPLATES",
            "XYZ=tmpl-x",
            "Error: CREDLY_BADGE_TEMPLATES names XYZ, not in the credential policy table",
        ),
    ],
)
def test_a_setting_that_cannot_be_used_stops_a_command_in_one_line_naming_it(
    tmp_path, monkeypatch, args, setting, value, says
):
    """Not a traceback (ValueError, ModuleNotFoundError, OverflowError, FileExistsError), nor
    gunicorn's own line that names no setting."""

    def gunicorn(*_args: object) -> None:
        raise AssertionError("gunicorn was started")

    monkeypatch.setattr(os, "execv", gunicorn)
    env = {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": None, setting: value}
    if value == "a-file":  # the embedded default's instance folder is a file
        env[setting] = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("x")
    if value == "broken.toml":  # gunicorn's workers read the policy table: serve checks it first
        env[setting] = str(tmp_path / "broken.toml")
        (tmp_path / "broken.toml").write_text("x = \n")
    answer = CliRunner().invoke(cli, args, env=env)
    assert answer.exit_code == 1, answer.output
    assert answer.output.startswith(says) and answer.output.count("\n") == 1, answer.output
    assert "s3cret" not in answer.output


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("DATABASE_URL", "nonsense://x", "Error: DATABASE_URL must be a URL starting "),
        ("WEB_WORKERS", "abc", "Error: WEB_WORKERS must be a whole number, got 'abc'"),
    ],
)
def test_a_setting_that_cannot_be_used_stops_flasks_own_command_in_one_line(
    tmp_path, setting, value, says
):
    """`flask --app gateway.bootstrap:create_app ...` builds the app before it runs the command,
    outside the command's own handling: a traceback ended it."""
    env = {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": None, setting: value}
    args = ["--app", "gateway.bootstrap:create_app", "jobs", "status"]
    answer = CliRunner().invoke(flask_cli, args, env=env)
    assert answer.exit_code == 1, answer.output
    assert answer.output.startswith(says) and answer.output.count("\n") == 1, answer.output


def test_serve_starts_while_redis_is_down(tmp_path, monkeypatch):
    """Only a Redis that answers and refuses its database is a setting's fault: while Redis is
    away the web processes still take events, which wait in the outbox."""
    started = []
    monkeypatch.setattr(os, "execv", lambda *args: started.append(args))
    env = {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": None,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        # serve sets it for gunicorn: given, the runner puts it back after, so that this process's
        # metrics stay its own
        metrics.MULTIPROC_DIR: str(tmp_path / "metrics"),
    }
    answer = CliRunner().invoke(cli, ["serve"], env=env)
    assert answer.exit_code == 0, answer.output
    assert len(started) == 1


def test_a_dry_run_sweep_needs_no_redis_lock(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "INSTANCE_PATH": str(tmp_path),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    answer = CliRunner().invoke(cli, ["sweep", "--dry-run", "--json"], env=env)
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout.splitlines()[-1])["evaluated"] == 0


@pytest.mark.parametrize(
    ("args", "held"),
    [([], "gateway:sweep::"), (["--from-id", "A", "--to-id", "M"], "gateway:sweep:A:M")],
    ids=["whole-range", "id-range"],
)
def test_a_sweep_of_a_range_another_sweep_holds_ends_in_one_line(
    tmp_path, redis_client, redis_url, args, held
):
    """As docs/operations.md, *Commands*, says: whatever the day, and the other sweep's lock
    left as it was."""
    redis_client.set(held, "another sweep", px=60_000)  # as a running sweep holds its lock
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "INSTANCE_PATH": str(tmp_path),
        "REDIS_URL": redis_url,
    }
    answer = CliRunner().invoke(cli, ["sweep", "--as-of", "2026-01-05", *args], env=env)
    assert answer.exit_code == 1, answer.output
    assert answer.output == "Error: another sweep of this range is running\n"
    assert redis_client.get(held) == b"another sweep"


def test_a_sweep_range_out_of_the_databases_order_is_a_usage_error(database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    for first, last, code in (("Z", "A", 2), ("A", "Z", 0), ("CERT-1", "CERT-1", 0)):
        answer = CliRunner().invoke(
            cli, ["sweep", "--dry-run", "--from-id", first, "--to-id", last], env=env
        )
        assert answer.exit_code == code, (first, last, answer.output)
    refused = CliRunner().invoke(cli, ["sweep", "--from-id", "Z", "--to-id", "A"], env=env)
    assert "'Z' comes after --to-id 'A'" in refused.output


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--dry-run", "--as-of", "9999-12-31"],
        ["badges", "unclaimed", "--days", "99999999"],
    ],
)
def test_a_day_past_what_the_rules_compute_with_is_a_usage_error(tmp_path, args):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, args, env=env)
    assert answer.exit_code == 2, answer.output


def test_reconcile_on_the_embedded_default_compares_the_dry_run_backends_badges(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    app = create_app(replace(Settings.from_env(env), jobs_synchronous=True))
    svc = app.extensions["gateway"]
    event = granted("2026-03-01")
    assert intake.submit_event(svc, event).status == 202  # badge issued
    answer = CliRunner().invoke(cli, ["badges", "reconcile", "--json"], env=env)
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout) | {"seconds": 0} == {
        "dry_run": False,
        "badges_checked": 1,
        "certifications_checked": 1,
        "in_step": 1,
        "repaired": dict.fromkeys(REPAIRS, 0),
        "successors_unknown": 0,
        "no_template": 0,
        "refused": 0,
        "failed_jobs_superseded": 0,
        "seconds": 0,
    }
    assert answer.stderr.splitlines()[-1] == (
        "compared with the dry-run Credly backend's badges "
        f"({tmp_path / 'credly-dry-run.sqlite3'}): "
        "the ones this machine pretended to issue, not Credly's"
    )
    headers = {"Authorization": f"Bearer {fetch_token(app, 'certifications:read')}"}
    standing = app.test_client().get(
        f"/v1/certifications/{event['certification_id']}", headers=headers
    )
    assert standing.get_json()["badge"]["state"] == "pending"  # nothing marked deleted
    [badge] = svc.credly.list_badges({})
    svc.credly.revoke_badge(badge.id, reason="by hand")  # drift: revoked on the backend
    drift = CliRunner().invoke(cli, ["badges", "reconcile", "--dry-run", "--json"], env=env)
    assert drift.exit_code == 0, drift.output
    repaired = json.loads(drift.stdout)["repaired"]  # Credly's state taken, the badge issued again
    assert (repaired["taken_from_credly"], repaired["issued"]) == (1, 1)


def test_a_revocation_on_the_embedded_default_revokes_the_successor_of_a_replaced_badge(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    app = create_app(replace(Settings.from_env(env), jobs_synchronous=True))
    svc = app.extensions["gateway"]
    assert intake.submit_event(svc, granted("2026-03-01")).status == 202  # badge issued
    [first] = svc.credly.list_badges({})
    request = BadgeRequest(
        "ada@example.org", "Ada", "King", first.badge_template_id, first.issued_at, "CERT-1"
    )
    second = svc.credly.replace_badge(first.id, request)  # replaced on the backend, twice
    third = svc.credly.replace_badge(second.id, request)
    assert intake.submit_event(svc, revoked("2026-06-01")).status == 202
    states = {badge.id: badge.state for badge in svc.credly.list_badges({})}
    assert states == {first.id: "replaced", second.id: "replaced", third.id: "revoked"}


def test_clients_create_takes_every_scope_given(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    args = ["clients", "create", "--name", "hr", "--scope", "admin"]
    created = CliRunner().invoke(
        cli, [*args, "--scope", "events:write certifications:read", "--scope", "admin"], env=env
    )
    assert created.exit_code == 0, created.output
    [client] = json.loads(CliRunner().invoke(cli, ["clients", "list", "--json"], env=env).stdout)
    assert client["scope"] == "admin events:write certifications:read"
    refused = CliRunner().invoke(cli, [*args, "--scope", "root"], env=env)
    assert refused.exit_code == 2 and "unknown scope(s) root" in refused.output
    shown = CliRunner().invoke(cli, ["clients", "create", "--help"], env=env).output
    assert "repeat it for more" in " ".join(shown.split())


def test_revoking_a_client_again_says_it_was_already_revoked(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    created = CliRunner().invoke(
        cli, ["clients", "create", "--name", "hr", "--scope", "admin"], env=env
    )
    client_id = json.loads(created.stdout)["client_id"]
    svc = create_app(Settings.from_env(env)).extensions["gateway"]
    with svc.db.transaction() as session:
        subscriptions.create(session, client_id, "https://192.0.2.1/h", ["C-1"])
    revoked = CliRunner().invoke(cli, ["clients", "revoke", client_id], env=env)
    assert (revoked.exit_code, revoked.stdout) == (
        0,
        f"revoked {client_id}; 1 webhook subscription deleted\n",
    )
    again = CliRunner().invoke(cli, ["clients", "revoke", client_id], env=env)
    [client] = json.loads(CliRunner().invoke(cli, ["clients", "list", "--json"], env=env).stdout)
    assert (again.exit_code, again.stdout) == (
        0,
        f"{client_id} was already revoked ({client['revoked_at']})\n",
    )


def test_help_says_what_each_option_and_command_does(tmp_path):
    env = {"INSTANCE_PATH": str(tmp_path / "instance")}

    def shown(*args: str) -> str:
        answer = CliRunner().invoke(cli, [*args, "--help"], env=env)
        assert answer.exit_code == 0, answer.output
        return " ".join(answer.output.split())

    worker = shown("worker")
    no_scheduler = worker.split("--no-scheduler ")[1].split(" --")[0]
    assert "cron" not in no_scheduler.replace("--no-cron", "") and "retries" in no_scheduler
    no_cron = worker.split("--no-cron ")[1].split(" --")[0]
    assert all(job in no_cron for job in ("sweep", "reconciliation", "pruning", "token check"))
    assert "downgrade Undo migrations, down to REVISION. history" in shown("db")
    # each names what the command takes: no argument it does not have (DAYS, REVISION)
    assert "(outbox-12, as `jobs failed` prints it, or 12)" in shown("jobs", "requeue")
    assert "claimed for --days days or more" in shown("badges", "unclaimed")
    assert "up to --revision (default: all)" in shown("db", "upgrade")


def test_version_is_the_gateways(tmp_path):
    answer = CliRunner().invoke(cli, ["--version"], env={"INSTANCE_PATH": str(tmp_path)})
    assert answer.exit_code == 0
    assert answer.output.startswith("gateway, version ") and "Flask" not in answer.output


def test_the_group_has_none_of_flasks_options_that_fail_or_do_not_apply(tmp_path):
    env = {"INSTANCE_PATH": str(tmp_path / "instance")}
    shown = CliRunner().invoke(cli, ["--help"], env=env)
    assert shown.exit_code == 0, shown.output
    options = shown.output.split("Options:")[1].split("Commands:")[0]
    assert "--version" in options and "--help" in options
    for option in ("--env-file", "-e,", "--app", "-A,", "--debug"):
        assert option not in options, options
    for args in (["-e", "x.env", "jobs", "status"], ["--app", "wsgi", "jobs", "status"]):
        refused = CliRunner().invoke(cli, args, env=env)
        assert refused.exit_code == 2 and "No such option" in refused.output, refused.output
    assert "--debug / --no-debug" in CliRunner().invoke(cli, ["run", "--help"], env=env).output


def test_a_database_without_the_schema_stops_commands_and_processes_until_upgraded(
    empty_database, make_app, tmp_path, monkeypatch
):
    """A database never migrated answers, so it is refused at start (in one line), as one a
    release behind is: not taken for one the process cannot check (down)."""
    scripts = ScriptDirectory.from_config(alembic_config(empty_database))
    every = ", ".join(sorted(script.revision for script in scripts.walk_revisions()))
    expected = (
        f"Error: DATABASE_URL: the database lacks migrations {every} of this release; run "
        "`gateway db upgrade` first\n"
    )
    env = {"DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    monkeypatch.setattr(os, "execv", lambda *_: pytest.fail("gunicorn was started"))
    for command in (["jobs", "failed"], ["worker"], ["serve"]):  # serve: before gunicorn
        answer = CliRunner().invoke(cli, command, env={**env, "REDIS_URL": "redis://127.0.0.1:1"})
        assert (answer.exit_code, answer.output) == (1, expected), command
    with pytest.raises(ConfigError) as refused:  # a web process
        make_app(database_url=empty_database)
    assert f"Error: {refused.value}\n" == expected


def test_a_schema_behind_this_release_stops_commands_until_it_is_upgraded(empty_database, tmp_path):
    scripts = ScriptDirectory.from_config(alembic_config(empty_database))
    [head] = scripts.get_heads()
    database = Database(empty_database)
    database.upgrade(scripts.get_revision(head).down_revision)  # one migration behind
    env = {"DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["clients", "list"], env=env)
    assert answer.exit_code == 1
    assert answer.output == (
        f"Error: DATABASE_URL: the database lacks migrations {head} of this release; run "
        "`gateway db upgrade` first\n"
    )
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert CliRunner().invoke(cli, ["clients", "list"], env=env).exit_code == 0
    with database.engine.begin() as connection:  # a newer release migrated it further
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    assert CliRunner().invoke(cli, ["clients", "list"], env=env).exit_code == 0
    with database.engine.begin() as connection:  # a version table that names no revision
        connection.exec_driver_sql("DELETE FROM alembic_version")
    unknown = CliRunner().invoke(cli, ["clients", "list"], env=env)
    assert unknown.exit_code == 1 and "lacks migrations 0001, " in unknown.output
    database.engine.dispose()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_db_upgrade_counts_the_jobs_that_ended_before_it(engine, request, tmp_path):
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    else:
        url = request.getfixturevalue("empty_database")
    database = Database(url)
    database.upgrade("0013")  # the release before job outcomes were counted
    with database.transaction() as session:
        for kind, state in [("issue_badge", "done")] * 2 + [
            ("issue_badge", "failed"),
            ("sync_verification", "done"),
            ("sync_verification", "pending"),
        ]:
            session.add(OutboxItem(kind=kind, state=state, payload={}))
    env = {"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert answer.exit_code == 0, answer.output
    assert job_outcomes(database) == {
        ("issue_badge", "done"): 2,
        ("issue_badge", "failed"): 1,
        ("sync_verification", "done"): 1,
        ("sync_verification", "failed"): 0,
    }
    database.engine.dispose()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
@pytest.mark.parametrize("under", ["0006", "0007"])  # where 0010 came, before 0007 and 0009 did
def test_db_upgrade_adds_the_schema_of_the_migrations_put_under_0010(
    engine, under, request, tmp_path
):
    """A release had 0010 right after 0006, the next after 0007: a database it migrated is stamped
    0010 without the tables and columns of 0007 and 0009, which the upgrade then adds."""
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    else:
        url = request.getfixturevalue("empty_database")
    database = Database(url)
    database.upgrade(under)
    migration = ScriptDirectory.from_config(alembic_config(url)).get_revision("0010")
    with database.engine.begin() as connection:
        with Operations.context(MigrationContext.configure(connection)):
            migration.module.upgrade()
        connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    assert "receipts" not in inspect(database.engine).get_table_names()
    env = {"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert answer.exit_code == 0, answer.output
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []  # the schema of this release
    database.engine.dispose()


def test_a_migration_refusing_the_database_says_why_in_one_line(tmp_path):
    """0018 refuses a database that holds some of 0009's objects only: `gateway db upgrade`, and
    any command of the embedded default (which migrates at start), end in one line, and none of
    the migrations stays."""
    instance = tmp_path / "instance"
    instance.mkdir()
    url = f"sqlite:///{instance / 'gateway.sqlite3'}"
    database = Database(url)
    database.upgrade("0006")
    migration = ScriptDirectory.from_config(alembic_config(url)).get_revision("0010")
    with database.engine.begin() as connection:  # a release that put 0010 right after 0006
        with Operations.context(MigrationContext.configure(connection)):
            migration.module.upgrade()
        connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
        connection.execute(text("CREATE TABLE receipts (jti varchar(40) PRIMARY KEY)"))
    for args in (["db", "upgrade"], ["jobs", "status"]):
        answer = CliRunner().invoke(cli, args, env={"INSTANCE_PATH": str(instance)})
        assert answer.exit_code == 1 and "Traceback" not in answer.output, answer.output
        [line] = answer.output.splitlines()
        assert line.startswith("Error: ") and "lacks advance_notices" in line, line
    with database.engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0010"
    database.engine.dispose()


def test_db_upgrade_of_a_new_database_runs_no_jobs_and_makes_no_keys(
    empty_database, tmp_path, caplog
):
    """It read the outbox before making it (a warning with an SQL error on every new
    deployment), and left signing keys on the operator's machine."""
    env = {"DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert answer.exit_code == 0, answer.output
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [message for message in warned if "outbox" in message] == []
    assert not (tmp_path / "signing-keys.json").exists()


def test_upgrades_started_at_once_on_a_new_database_take_their_turns(empty_database, tmp_path):
    """A deployment may run `gateway db upgrade` on every machine at once: each waits for the one
    before it and finds the database at head, where all but one ended in a traceback
    (UniqueViolation on alembic_version). A version table the test holds uncommitted keeps the
    first from finishing until every one has started."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    env = {**os.environ, "DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    waiting = (  # each in a transaction of its own: the activity as it is now
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    conninfo = pg_conninfo(empty_database)
    with psycopg.connect(conninfo) as holder, psycopg.connect(conninfo, autocommit=True) as watch:
        holder.execute("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)")
        runs = [
            subprocess.Popen(
                [gateway, "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        deadline = time.monotonic() + 60
        while watch.execute(waiting).fetchone()[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch.execute(waiting).fetchone()[0] == 3
        holder.rollback()
    answers = [run.communicate(timeout=60) for run in runs]
    for run, (_out, err) in zip(runs, answers, strict=True):
        assert run.returncode == 0 and "Traceback" not in err, err
    said = sorted(out for out, _err in answers)
    [head] = ScriptDirectory.from_config(alembic_config(empty_database)).get_heads()
    assert said == [f"database already at {head}: nothing to upgrade\n"] * 2 + [
        f"database upgraded to {head}\n"
    ]
    database = Database(empty_database)
    assert database.missing_migrations() == []
    database.engine.dispose()


def test_a_migration_the_database_refuses_ends_the_upgrade_in_one_line(empty_database, tmp_path):
    with psycopg.connect(pg_conninfo(empty_database)) as conn:
        conn.execute("CREATE TABLE certifications (x int)")  # in the way of the first migration
    env = {"DATABASE_URL": empty_database, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert answer.exit_code == 1, answer.output
    assert answer.output.startswith("Error: the database refused the migration: ")
    assert answer.output.count("\n") == 1 and "certifications" in answer.output, answer.output


def test_an_upgrade_to_a_revision_the_database_is_past_says_so(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    [head] = ScriptDirectory.from_config(alembic_config(env["DATABASE_URL"])).get_heads()
    before = ScriptDirectory.from_config(alembic_config("")).get_revision(head).down_revision
    runner = CliRunner()
    up = runner.invoke(cli, ["db", "upgrade", "--revision", before], env=env)
    assert (up.exit_code, up.stdout) == (0, f"database upgraded to {before}\n"), up.output
    assert runner.invoke(cli, ["db", "upgrade"], env=env).stdout == (
        f"database upgraded to {head}\n"
    )
    again = runner.invoke(cli, ["db", "upgrade", "--revision", before], env=env)
    assert (again.exit_code, again.stdout) == (
        0,
        f"database already at {head}, past {before}: nothing to upgrade "
        f"(`gateway db downgrade {before}` goes back to it)\n",
    )
    at_head = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert at_head.stdout == f"database already at {head}: nothing to upgrade\n"
    assert runner.invoke(cli, ["db", "current"], env=env).stdout.split()[0] == head


def failed_items(svc, number: int, kind: str = "issue_badge") -> list[int]:
    """The ids of `number` new items that failed for good, with a done and a pending one
    (neither put back by a requeue) among them."""
    ended = {"state": "failed", "attempts": 3, "last_error": "gave up", "finished_at": clock.now()}
    with svc.db.transaction() as session:
        items = [OutboxItem(kind=kind, payload={}, due_at=None, **ended) for _ in range(number)]
        others = [
            OutboxItem(kind=kind, payload={}, state="done", due_at=None),
            OutboxItem(kind=kind, payload={}),
        ]
        session.add_all([*items[: number // 2], *others, *items[number // 2 :]])
    return sorted(item.id for item in items)


def outbox_states(svc) -> dict[int, tuple[str, int, str | None]]:
    with svc.db.sessions() as session:
        rows = session.execute(
            select(OutboxItem.id, OutboxItem.state, OutboxItem.attempts, OutboxItem.last_error)
        )
        return {outbox_id: (state, attempts, error) for outbox_id, state, attempts, error in rows}


def limit_variables(svc, number: int) -> None:
    """On SQLite: at most `number` variables a statement from now on (32,766 unless the build
    of SQLite says otherwise; Debian's: 250,000). PostgreSQL's limit is 65,535 parameters."""
    if not svc.db.is_sqlite:
        return

    def limited(connection, _record) -> None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, number)

    event.listen(svc.db.engine, "connect", limited)
    svc.db.engine.dispose()  # its connections are made afresh, so limited


def test_requeue_all_puts_back_every_failed_job_a_chunk_a_transaction(
    database_url, make_app, monkeypatch
):
    """However many have failed: they are put back REQUEUE_CHUNK at a time (3 here), each chunk
    waking the workers once committed. Every id was a parameter of one statement, which failed
    past the database's limit: SQLite's lowered to 10 here, so that eleven jobs show it."""
    app = make_app(database_url=database_url, jobs="IN_SERVER")
    svc = app.extensions["gateway"]
    failed = failed_items(svc, 11)
    before = outbox_states(svc)
    monkeypatch.setattr(dispatch, "REQUEUE_CHUNK", 3)
    woken: list[list[int]] = []
    monkeypatch.setattr(svc.db, "on_commit", woken.append)
    limit_variables(svc, 10)
    answer = app.test_cli_runner().invoke(args=["jobs", "requeue", "--all"])
    assert answer.exit_code == 0, answer.output
    assert answer.stdout == "".join(f"requeued outbox-{i}\n" for i in failed)
    assert woken == [failed[:3], failed[3:6], failed[6:9], failed[9:]]
    assert outbox_states(svc) == before | dict.fromkeys(failed, ("pending", 0, None))
    again = app.test_cli_runner().invoke(args=["jobs", "requeue", "--all"])
    assert (again.exit_code, again.stdout) == (0, "no failed jobs\n")


def test_requeue_takes_any_number_of_job_ids(database_url, make_app, monkeypatch):
    """Each id was a parameter of one statement, which failed past PostgreSQL's 65,535 and
    SQLite's 32,766 (its default): 70,000 are put back REQUEUE_CHUNK at a time."""
    app = make_app(database_url=database_url, jobs="IN_SERVER")
    svc = app.extensions["gateway"]
    first, *failed = failed_items(svc, 3)
    done = next(i for i, (state, _, _) in outbox_states(svc).items() if state == "done")
    woken: list[int] = []
    monkeypatch.setattr(svc.db, "on_commit", woken.extend)
    limit_variables(svc, 32_766)
    answer = app.test_cli_runner().invoke(
        args=["jobs", "requeue", f"outbox-{done}", f"outbox-{first}"]
    )
    assert (answer.exit_code, answer.stdout) == (1, f"requeued outbox-{first}\n"), answer.output
    assert answer.stderr == f"Error: not failed (or unknown): outbox-{done}\n"
    assert woken == [first]
    woken.clear()
    assert dispatch.requeue(svc, [*range(1, 70_001), *failed, first]) == failed
    assert woken == failed


def test_a_statement_psycopg_does_not_send_is_no_database_out_of_reach(postgres_url):
    """Refused by psycopg before it was sent, a statement is not said to find the database out
    of reach (no connection failed); one whose connection could not be made is."""
    database = Database(postgres_url)
    with pytest.raises(OperationalError) as refused, database.engine.connect() as connection:
        connection.execute(select(OutboxItem.id).where(OutboxItem.id.in_(range(70_000))))
    assert database_error(refused.value) == (
        "the command could not be sent to the database: sending query and params failed: "
        "number of parameters must be between 0 and 65535"
    )
    database.engine.dispose()
    closed = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    for read in (
        lambda: closed.read(select(OutboxItem.id)),  # a single statement, on psycopg itself
        lambda: closed.sessions().execute(select(OutboxItem.id)),  # through SQLAlchemy
    ):
        with pytest.raises(OperationalError) as unreachable:
            read()
        assert database_error(unreachable.value).startswith("the database cannot be reached: ")


def test_requeue_refuses_job_ids_with_all(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    both = CliRunner().invoke(cli, ["jobs", "requeue", "outbox-1", "--all"], env=env)
    assert both.exit_code == 2
    assert "Error: JOB_ID(s) and --all cannot be combined" in both.output, both.output
    neither = CliRunner().invoke(cli, ["jobs", "requeue"], env=env)
    assert neither.exit_code == 2 and "Error: give JOB_ID(s) or --all" in neither.output


def test_reconciling_a_certification_not_recorded_fails_in_one_line(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["badges", "reconcile", "--certification", "NOPE"], env=env)
    assert (answer.exit_code, answer.stdout) == (1, ""), answer.output
    assert answer.stderr == "Error: no certification 'NOPE'\n"


def test_a_worker_started_with_redis_away_stops_before_its_threads_say_anything(
    database_url, tmp_path
):
    """It said "daily cron stopped ...; it starts again in 5 s" and warned from its token check
    before the one line that stops it."""
    lines = _worker_stopped(database_url, tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    assert lines[-1].startswith("Error: Redis cannot be reached: "), lines
    logged = [json.loads(line)["msg"] for line in lines[:-1]]
    assert not [msg for msg in logged if "cron" in msg or "relay" in msg], logged
    assert sum("Credly token state unreadable" in msg for msg in logged) <= 1, logged


def _worker_stopped(database_url: str, tmp_path: Path, redis_url: str) -> list[str]:
    """The lines `gateway worker` writes on stderr as it stops at start (exit status 1)."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path),
        "REDIS_URL": redis_url,
    }
    run = subprocess.run(
        [gateway, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 1, run.stderr
    return run.stderr.splitlines()


def test_a_worker_on_a_redis_database_the_server_lacks_stops_in_one_line(database_url, tmp_path):
    lines = _worker_stopped(database_url, tmp_path, "redis://127.0.0.1:6379/99")  # of 16
    assert lines[-1] == (
        "Error: REDIS_URL: the Redis server refused database 99: DB index is out of range"
    ), lines
    assert not [line for line in lines if "Traceback" in line], lines


def test_jobs_failed_lists_in_pages_with_limit_and_after(database_url, make_app, monkeypatch):
    """Oldest first; --limit stops a listing (saying where the next starts), --after takes it on.
    The rows stream from the database a few at a time (2 here), so any number of them fit."""
    app = make_app(database_url=database_url)
    svc = app.extensions["gateway"]
    failed = [f"outbox-{i}" for i in failed_items(svc, 5)]
    monkeypatch.setattr(queries, "STREAM_ROWS", 2)
    runner = app.test_cli_runner()

    every = runner.invoke(args=["jobs", "failed", "--json"])
    assert every.exit_code == 0, every.output
    assert [row["job_id"] for row in json.loads(every.stdout)] == failed
    assert {row["error"] for row in json.loads(every.stdout)} == {"gave up"}

    first = runner.invoke(args=["jobs", "failed", "--limit", "2"])
    assert first.exit_code == 0, first.output
    assert [line.split()[0] for line in first.stdout.splitlines()[::2]] == failed[:2]
    assert first.stdout.splitlines()[1] == "    gave up"
    assert first.stderr == f"(more may follow: --after {failed[1]})\n"

    then = runner.invoke(args=["jobs", "failed", "--after", failed[1], "--limit", "2", "--json"])
    assert [row["job_id"] for row in json.loads(then.stdout)] == failed[2:4]
    assert then.stderr == f"(more may follow: --after {failed[3]})\n"  # with --json too
    last = runner.invoke(args=["jobs", "failed", "--after", failed[3]])
    assert [line.split()[0] for line in last.stdout.splitlines()[::2]] == failed[4:]
    assert last.stderr == ""
    past = runner.invoke(args=["jobs", "failed", "--after", failed[4], "--json"])
    assert (past.exit_code, past.stdout) == (0, "[]\n")

    for bad in (["--after", "outbox-0"], ["--after", "five"], ["--limit", "0"]):
        refused = runner.invoke(args=["jobs", "failed", *bad])
        assert refused.exit_code == 2, (bad, refused.output)


def test_run_on_a_port_in_use_fails_in_one_line_before_anything_starts(tmp_path, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        loaded = []
        monkeypatch.setattr(ScriptInfo, "load_app", lambda self: loaded.append(1))
        env = {"INSTANCE_PATH": str(tmp_path)}
        answer = CliRunner().invoke(cli, ["run", "--port", str(port)], env=env)
    assert answer.exit_code == 1 and loaded == []  # no app, so no jobs thread
    assert answer.output == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


@pytest.mark.parametrize(
    "args",
    [
        [b"clients", b"revoke", b"\xff"],
        [b"clients", b"new-secret", b"id-\xfe"],
        [b"sweep", b"--dry-run", b"--from-id", b"\xff"],
        [b"badges", b"reconcile", b"--certification", b"C-\xff"],
        [b"sync", b"backfill", b"--target", b"\xff"],
    ],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error_in_one_line(postgres_url, tmp_path, args):
    """Bytes no text encodes (a mistyped id in a Latin-1 terminal, say) were sent to the
    database as they were and ended the command in a traceback, on Flask's `flask` too."""
    scripts = os.path.dirname(sys.executable)
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": postgres_url}
    flask = [os.path.join(scripts, "flask"), "--app", "gateway.bootstrap:create_app"]
    for command in ([os.path.join(scripts, "gateway")], flask):
        run = subprocess.run(
            [*command, *args], env=env, capture_output=True, timeout=60, check=False
        )
        assert run.returncode == 2, run.stderr
        assert run.stdout == b""
        last = run.stderr.decode().splitlines()[-1]
        assert last.startswith("Error: an argument is not UTF-8 text: b'"), run.stderr
        assert b"Traceback" not in run.stderr


@pytest.mark.parametrize("job_id", ["1_2", "+12", " 12", "outbox-\u0661\u0662", "outbox-12 "])
def test_a_job_id_is_outbox_and_ascii_digits_or_the_digits_alone(database_url, make_app, job_id):
    """int() took `1_2`, `+12`, spaces and other scripts' digits as job 12: a typo requeued
    another job than the one meant."""
    app = make_app(database_url=database_url)
    svc = app.extensions["gateway"]
    failed = failed_items(svc, 2)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["jobs", "requeue", job_id])
    assert refused.exit_code == 2, refused.output
    assert f"{job_id!r}: job ids look like outbox-123 (or 123)" in refused.stderr
    assert runner.invoke(args=["jobs", "failed", "--after", job_id]).exit_code == 2
    taken = runner.invoke(args=["jobs", "requeue", str(failed[0]), f"outbox-{failed[1]}"])
    assert (taken.exit_code, taken.stdout) == (
        0,
        f"requeued outbox-{failed[0]}\nrequeued outbox-{failed[1]}\n",
    )


def test_jobs_failed_indents_every_line_of_an_error(database_url, make_app):
    """A receiver's answer of several lines ran back to the first column, where it read as
    rows of the table."""
    app = make_app(database_url=database_url)
    svc = app.extensions["gateway"]
    (failed,) = failed_items(svc, 1)
    with svc.db.transaction() as session:
        session.get(OutboxItem, failed).last_error = "POST https://x answered 500\n<html>\n</html>"
    answer = app.test_cli_runner().invoke(args=["jobs", "failed"])
    assert answer.exit_code == 0, answer.output
    assert answer.stdout.splitlines()[1:] == [
        "    POST https://x answered 500",
        "    <html>",
        "    </html>",
    ]


def test_jobs_failed_keeps_its_columns_whatever_a_value_is_long(database_url, make_app):
    """A long certification id pushed the columns after it out of line, and a long error ran on
    past the screen's edge back to the first column; `--json` still has both whole."""
    app = make_app(database_url=database_url)
    svc = app.extensions["gateway"]
    failed = failed_items(svc, 2)
    error = "Credly answered 422: " + "a detail " * 60
    with svc.db.transaction() as session:
        item = session.get(OutboxItem, failed[0])
        item.certification_id, item.last_error = "CERT-" + "X" * 100, error
    answer = app.test_cli_runner().invoke(args=["jobs", "failed"])
    assert answer.exit_code == 0, answer.output
    rows = [line for line in answer.stdout.splitlines() if line.startswith("outbox-")]
    assert len(rows) == 2 and len({row.index("attempts=") for row in rows}) == 1, rows
    assert "CERT-XXXXXXXXXXXXXX… " in rows[0]
    wrapped = answer.stdout.split(rows[0])[1].split(rows[1])[0].splitlines()[1:]
    assert len(wrapped) > 1 and all(len(line) <= 100 and line[:4] == "    " for line in wrapped)
    assert " ".join(line.strip() for line in wrapped) == error.strip()
    listed = app.test_cli_runner().invoke(args=["jobs", "failed", "--json"])
    assert json.loads(listed.stdout)[0]["certification_id"] == "CERT-" + "X" * 100
    assert json.loads(listed.stdout)[0]["error"] == error


def run_gateway(
    args: list[str], env: dict[str, str], stdout: str = ""
) -> subprocess.CompletedProcess:
    """The `gateway` script run with `args` in a process of its own, its stdout redirected as
    the shell's `stdout` says (`>&-` closes it), and its output taken."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {stdout}', "sh", gateway, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_burst_worker_whose_database_is_down_fails(tmp_path, redis_url):
    """It ended with status 0, having worked nothing: its relay could not look at the outbox."""
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": closed}
    env["REDIS_URL"] = redis_url  # answers: only the database is down
    run = run_gateway(["worker", "--burst", "--no-cron", "--name", f"burst-{free_port()}"], env)
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines()[-1].startswith("Error: the database cannot be reached: ")
    assert "Traceback" not in run.stderr


#: The commands that look up an id they are given, and say so when none is found.
LOOKING_UP = [
    ["clients", "revoke"],
    ["clients", "new-secret"],
    ["badges", "reconcile", "--certification"],
    ["sync", "backfill", "--target"],
    ["keys", "retire"],
]


@pytest.mark.parametrize("args", LOOKING_UP)
def test_an_unknown_id_of_10000_characters_is_named_in_a_short_line(tmp_path, args):
    """The whole argument was echoed in the error: a line of 10,000 characters."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, [*args, "9" * 10_000], env=env)
    assert answer.exit_code in (1, 2), answer.output
    last = answer.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and "999…" in last and len(last) < 600, last


@pytest.mark.parametrize("args", LOOKING_UP)
def test_an_unknown_id_is_named_with_the_white_space_it_was_given(tmp_path, args):
    """An id pasted with a space or a tab around it (a padded column of `clients list`) was
    named without them: `Error: no client 0a1b...` of a client that exists."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, [*args, " ID-1\t"], env=env)
    assert answer.exit_code in (1, 2), answer.output
    assert "' ID-1\\t'" in answer.stderr.splitlines()[-1], answer.stderr


@pytest.mark.parametrize(
    "option", [["--ttl", "0"], ["--ttl", "-1"], ["--maintenance-interval", "-5"]]
)
def test_a_worker_takes_no_ttl_or_maintenance_interval_below_a_second(tmp_path, option):
    """--ttl 0 was RQ's default (420 s) unsaid, a negative one kept the worker in Redis 59 s."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["worker", "--burst", *option], env=env)
    assert answer.exit_code == 2, answer.output
    assert f"Invalid value for '{option[0]}'" in answer.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "failed", "--limit"],
        ["badges", "unclaimed", "--limit"],
        ["sweep", "--dry-run", "--batch-size"],
        ["sync", "backfill", "--batch-size"],
        ["worker", "--burst", "--ttl"],
    ],
)
def test_a_count_past_what_the_database_takes_is_a_usage_error(postgres_url, tmp_path, args):
    """PostgreSQL refused a LIMIT past its bigint (a traceback): a count is 2**31 - 1 at most."""
    env = {"DATABASE_URL": postgres_url, "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, [*args, "99999999999999999999"], env=env)
    assert answer.exit_code == 2, answer.output
    assert "is not in the range 1<=x<=2147483647" in answer.stderr, answer.stderr
    if args[0] in ("jobs", "badges", "sweep"):  # the largest is read as any other
        fits = CliRunner().invoke(cli, [*args, "2147483647"], env=env)
        assert fits.exit_code == 0, fits.output


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_reconcile_shows_its_counts_in_one_column(tmp_path, dry_run):
    """WOULD REPAIR (DUPLICATES_REVOKED) was wider than the column, its count out of line."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INSTANCE_PATH": str(tmp_path)}
    answer = CliRunner().invoke(cli, ["badges", "reconcile", *dry_run], env=env)
    assert answer.exit_code == 0, answer.output
    lines = answer.stdout.splitlines()
    assert any("(DUPLICATES_REVOKED)" in line for line in lines), lines
    assert all(line[34] == " " and line[35] != " " for line in lines), lines


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_run_on_a_port_out_of_range_is_a_usage_error(tmp_path, monkeypatch, port):
    """99999 listened on 34463 (the port modulo 65536) as if it had been asked for."""
    loaded = []
    monkeypatch.setattr(ScriptInfo, "load_app", lambda self: loaded.append(1))
    answer = CliRunner().invoke(cli, ["run", "--port", port], env={"INSTANCE_PATH": str(tmp_path)})
    assert answer.exit_code == 2 and loaded == [], answer.output
    assert answer.stderr.endswith(
        f"Error: Invalid value for --port: {port} is not a port from 0 to 65535\n"
    )


@pytest.mark.parametrize("stdout", ["/dev/full", "closed"])
@pytest.mark.parametrize(
    "args",
    [["clients", "list"], ["jobs", "failed"], ["db", "current"], ["keys", "list"], ["--help"]],
)
def test_output_stdout_does_not_take_ends_a_command_in_one_line(
    database_url, tmp_path, stdout, args
):
    """A full disk ended every command but `clients create`/`new-secret` with a traceback (an
    `OSError` out of `click.echo`; `db current` exited 0, Alembic swallowing it); a closed stdout
    let them write nowhere and exit 0."""
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": database_url}
    env.pop("PYTHONUNBUFFERED", None)  # a buffered stdout fails when flushed at exit, if at all
    run = run_gateway(args, env, ">/dev/full" if stdout == "/dev/full" else ">&-")
    assert run.returncode == 1, run.stderr
    reason = "No space left on device" if stdout == "/dev/full" else "it is closed"
    [line] = [line for line in run.stderr.splitlines() if not line.startswith("{")]
    assert line == f"Error: the output could not be written on stdout ({reason})", run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("stdout", ["/dev/full", "closed"])
def test_a_secret_that_cannot_be_shown_is_not_stored(database_url, tmp_path, stdout):
    """The client was created (or its secret changed) before its secret was written: a full
    disk left an active client whose secret no one had, after a traceback; a closed stdout
    did the same with exit status 0. For `new-secret`, the client was locked out."""
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": database_url}
    created = run_gateway(["clients", "create", "--name", "kept", "--scope", "admin"], env)
    kept = json.loads(created.stdout)["client_id"]
    redirect = ">/dev/full" if stdout == "/dev/full" else ">&-"
    for args, says in (
        (["create", "--name", "lost", "--scope", "admin"], "no client was created"),
        (["new-secret", kept], f"{kept} keeps its secret"),
    ):
        run = run_gateway(["clients", *args], env, redirect)
        assert run.returncode == 1, run.stderr
        [line] = run.stderr.splitlines()[-1:]
        assert line.startswith("Error: the secret could not be written on stdout"), run.stderr
        assert line.endswith(says) and "Traceback" not in run.stderr, run.stderr
    listed = CliRunner().invoke(cli, ["clients", "list", "--json"], env=env)
    assert [client["name"] for client in json.loads(listed.stdout)] == ["kept"]
    secret = json.loads(created.stdout)["client_secret"]
    answer = (
        create_app(Settings.from_env(env))
        .test_client()
        .post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(kept, secret))
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)  # the old secret still works
