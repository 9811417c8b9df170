"""`gateway sync backfill`: every current record pushed to a target, in batches, resumably.

On SQLite and PostgreSQL with jobs run synchronously in-process, so a push has happened when the
command returns; the directory is a stub on 127.0.0.1.
"""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.usecases import backfill, clients, subscriptions
from tests.support.events import granted
from tests.support.http_stubs import DirectoryStub, Received, scripted, serve
from tests.support.verification import days_ago, record

CERTS = [f"CERT-{n}" for n in range(1, 6)]


class Interrupted(Exception):
    """Stands in for Ctrl-C between two batches."""


@pytest.fixture
def directory():
    with serve(DirectoryStub()) as (url, received):
        yield url, received


@pytest.fixture
def env(database_url, directory, tmp_path):
    url, _ = directory
    return {
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path),
        "JOBS_SYNCHRONOUS": "1",
        "DIRECTORY_BASE_URL": url,
        "DIRECTORY_TOKEN_URL": f"{url}/token",
        "DIRECTORY_CLIENT_ID": "gateway",
        "DIRECTORY_CLIENT_SECRET": "s3cret",
    }


@pytest.fixture
def app(make_app, env):
    names = {
        "DIRECTORY_BASE_URL": "directory_base_url",
        "DIRECTORY_TOKEN_URL": "directory_token_url",
        "DIRECTORY_CLIENT_ID": "directory_client_id",
        "DIRECTORY_CLIENT_SECRET": "directory_client_secret",
    }
    settings = {names[k]: v for k, v in env.items() if k in names}
    app = make_app(database_url=env["DATABASE_URL"], jobs_synchronous=True, **settings)
    record(app, *(granted(days_ago(30), cert=cert) for cert in CERTS))
    return app


def pushes(received: list[Received]) -> Counter:
    return Counter(r.path.removeprefix("/records/") for r in received if r.method == "PUT")


def backfill_command(env, *args: str):
    result = CliRunner().invoke(cli, ["sync", "backfill", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_an_interrupted_backfill_resumes_after_its_last_batch(app, env, directory):
    _, received = directory
    assert pushes(received) == Counter(CERTS)  # the sync job pushed each record once
    received.clear()
    svc = app.extensions["gateway"]
    assert backfill.prepare(svc, "directory").remaining == 5

    def stop(_batch: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        backfill.run(svc, "directory", batch_size=2, on_batch=stop)
    assert pushes(received) == Counter(CERTS[:2])

    output = backfill_command(env, "--batch-size", "2")
    assert "resuming after CERT-2" in output and "queued 3 deliveries to directory" in output
    assert pushes(received) == Counter(CERTS)  # each record once: none twice, none left out
    assert "queued 0 deliveries" in backfill_command(env)

    assert "queued 5 deliveries" in backfill_command(env, "--restart")
    assert pushes(received) == Counter({cert: 2 for cert in CERTS})


def test_a_backfill_of_a_subscription_sends_the_records_it_watches(app, env):
    svc = app.extensions["gateway"]
    with serve(scripted()) as (url, received):
        with svc.db.transaction() as session:
            employer = clients.create_client(session, "employer", "verifications:read")
            subscription = subscriptions.create(
                session, employer.client_id, url, ["CERT-2", "CERT-4", "NOT-YET"]
            )
        env = {**env, "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "WEBHOOK_ALLOW_PLAIN_HTTP": "true"}
        assert "queued 2 deliveries" in backfill_command(env, "--target", subscription.id)
    sent = [r.json() for r in received]
    assert [(e["sequence"], e["data"]["certification_id"]) for e in sent] == [
        (1, "CERT-2"),
        (2, "CERT-4"),
    ]


def test_an_unknown_target_is_a_usage_error(app, env):
    result = CliRunner().invoke(cli, ["sync", "backfill", "--target", "sub_nope"], env=env)
    assert result.exit_code == 2 and "sub_nope" in result.output
