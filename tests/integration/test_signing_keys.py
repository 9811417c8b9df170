"""The published signing keys and the `gateway keys` commands."""

import importlib
import json
import logging
import os
import signal
import sys
from contextlib import suppress

import jwt
import pytest
import requests
from click.testing import CliRunner
from gunicorn.errors import AppImportError
from joserfc.jwk import ECKey

from gateway.cli.main import cli
from gateway.platform import metrics, signing
from gateway.platform.config import ConfigError
from gateway.usecases import openbadges, receipts
from tests.support.events import granted
from tests.support.serving import (
    free_port,
    hang_up_refused,
    kill_web_process,
    logged_errors,
    serve_env,
    serving,
    wait_for,
)
from tests.support.verification import days_ago, record


def test_the_embedded_default_creates_its_keys_in_the_instance_folder_and_publishes_them(
    make_app, tmp_path
):
    app = make_app(instance_path=str(tmp_path / "instance"))
    assert (tmp_path / "instance" / "signing-keys.json").exists()
    answer = app.test_client().get("/.well-known/jwks.json")
    assert answer.status_code == 200
    assert answer.content_type == "application/jwk-set+json"
    assert "public" in answer.headers["Cache-Control"]
    keys = answer.get_json()["keys"]
    assert [key["kty"] for key in keys] == ["EC", "RSA"]
    assert not any("d" in key for key in keys)
    for key, alg in zip(keys, ["ES256", "RS256"], strict=True):
        token = app.extensions["gateway"].keys.sign({"sub": "CERT-1"}, typ="JWT", alg=alg)
        public = jwt.PyJWKSet.from_dict(answer.get_json())[key["kid"]].key
        assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "CERT-1"}


def test_keys_rotate_publishes_the_new_key_beside_the_old_one(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SIGNING_KEYS_FILE", str(tmp_path / "keys.json"))
    runner = CliRunner()
    first = runner.invoke(cli, ["keys", "list"])
    assert first.exit_code == 0, first.output
    old = [line.split()[0] for line in first.stdout.splitlines()]
    assert [line.split()[1:] for line in first.stdout.splitlines()] == [
        ["ES256", "signs"],
        ["RS256", "signs"],
    ]
    rotated = runner.invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    listed = runner.invoke(cli, ["keys", "list"]).stdout.splitlines()
    assert listed[2:] == [f"{old[0]}  ES256  verifies only", f"{old[1]}  RS256  verifies only"]
    assert [line.split()[1:] for line in listed[:2]] == [["ES256", "signs"], ["RS256", "signs"]]
    assert all(line.split()[0] in rotated.stdout for line in listed[:2])
    # `--`: a key id may begin with "-" (a base64url thumbprint)
    for signer in listed[:2]:
        refused = runner.invoke(cli, ["keys", "retire", "--", signer.split()[0]])
        assert refused.exit_code != 0 and "rotate first" in refused.output
    for kid in old:
        assert runner.invoke(cli, ["keys", "retire", "--", kid]).exit_code == 0
    assert len(runner.invoke(cli, ["keys", "list"]).stdout.splitlines()) == 2


def test_keys_rotate_without_a_key_set_makes_one_set_only(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SIGNING_KEYS_FILE", str(tmp_path / "keys.json"))
    rotated = CliRunner().invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    listed = CliRunner().invoke(cli, ["keys", "list"]).stdout.splitlines()
    assert [line.split()[1:] for line in listed] == [["ES256", "signs"], ["RS256", "signs"]]
    assert "no signing keys were at" in rotated.stdout
    assert all(line.split()[0] in rotated.stdout for line in listed)


def test_a_shared_database_without_a_keys_file_public_address_or_issuer_warns_at_start(
    make_app, postgres_url, tmp_path, caplog
):
    make_app(database_url=postgres_url)
    assert "SIGNING_KEYS_FILE is not set: this machine signs with keys of its own" in caplog.text
    assert "PUBLIC_BASE_URL is not set" in caplog.text
    assert "ISSUER_NAME is not set" in caplog.text
    caplog.clear()
    signing.SigningKeys.load(tmp_path / "shared-keys.json")  # the file every machine is given
    make_app(
        database_url=postgres_url,
        signing_keys_file=str(tmp_path / "shared-keys.json"),
        public_base_url="https://verify.example.org",
        issuer_name="Registry of Allied Health",
    )
    make_app()  # the embedded default: one machine
    for setting in ("SIGNING_KEYS_FILE", "PUBLIC_BASE_URL", "ISSUER_NAME"):
        assert setting not in caplog.text


def test_only_the_commands_that_sign_warn_of_a_keys_file_not_set(
    postgres_url, tmp_path, monkeypatch, caplog
):
    """A worker or an operator's command signs nothing: no keys of its own to warn of."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("SIGNING_KEYS_FILE", raising=False)
    unset = "SIGNING_KEYS_FILE is not set"
    assert CliRunner().invoke(cli, ["clients", "list"]).exit_code == 0
    assert "PUBLIC_BASE_URL is not set" in caplog.text and unset not in caplog.text
    caplog.clear()
    assert CliRunner().invoke(cli, ["keys", "list"]).exit_code == 0
    assert unset in caplog.text


def test_a_keys_file_named_but_missing_is_made_with_a_warning_to_give_it_to_every_machine(
    make_app, tmp_path, caplog
):
    path = tmp_path / "shared" / "keys.json"
    make_app(signing_keys_file=str(path))
    [warning] = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "SIGNING_KEYS_FILE" in record.getMessage()
    ]
    assert str(path) in warning and "new signing keys were made" in warning
    assert "every web machine this same file" in warning
    assert path.exists()
    caplog.clear()
    make_app(signing_keys_file=str(path))  # there now: read as it is
    make_app()  # the embedded default makes its own in the instance folder
    assert "SIGNING_KEYS_FILE" not in caplog.text


def _unfit_key_sets() -> dict[str, object]:
    p256 = signing.new_key().as_dict(private=True)
    return {
        "a P-384 key": {"keys": [ECKey.generate_key("P-384", auto_kid=True).as_dict()]},
        "alg ES512": {"keys": [{**p256, "alg": "ES512"}]},
        "two keys, one kid": {"keys": [p256, {**signing.new_key().as_dict(), "kid": p256["kid"]}]},
        "garbage": "{not json",
    }


@pytest.mark.parametrize("name", _unfit_key_sets())
def test_every_command_refuses_an_unfit_keys_file_at_start_in_one_line(name, tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    content = _unfit_key_sets()[name]
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    env = {"INSTANCE_PATH": str(tmp_path / "instance"), "SIGNING_KEYS_FILE": str(path)}

    def exec_gunicorn(*_: object) -> None:
        raise AssertionError("gunicorn started with an unfit keys file")

    monkeypatch.setattr(os, "execv", exec_gunicorn)
    monkeypatch.delenv(metrics.MULTIPROC_DIR, raising=False)
    for command in (["keys", "list"], ["serve"]):
        refused = CliRunner().invoke(cli, command, env=env)
        assert refused.exit_code == 1, refused.output
        [line] = refused.output.splitlines()
        assert line.startswith(f"Error: SIGNING_KEYS_FILE: {path} ")


def test_serve_refuses_an_unfit_keys_file_in_the_instance_folder_in_one_line(tmp_path, monkeypatch):
    """The default SIGNING_KEYS_FILE (no setting): the instance folder's signing-keys.json."""
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "signing-keys.json").write_text("{not json")

    def exec_gunicorn(*_: object) -> None:
        raise AssertionError("gunicorn started with an unfit keys file")

    monkeypatch.setattr(os, "execv", exec_gunicorn)
    monkeypatch.delenv(metrics.MULTIPROC_DIR, raising=False)
    monkeypatch.delenv("SIGNING_KEYS_FILE", raising=False)
    refused = CliRunner().invoke(cli, ["serve"], env={"INSTANCE_PATH": str(tmp_path / "instance")})
    assert refused.exit_code == 1, refused.output
    [line] = refused.output.splitlines()
    assert line.startswith("Error: SIGNING_KEYS_FILE: ") and "signing-keys.json" in line


def test_serve_onto_a_database_file_that_cannot_be_opened_says_so_in_one_line(
    tmp_path, monkeypatch
):
    """Where the key file is missing, the database is asked what was signed before gunicorn
    starts: an embedded default's that cannot be opened ends it in one line, no traceback."""
    (tmp_path / "gateway.sqlite3").mkdir()
    monkeypatch.setattr(os, "execv", lambda *_: pytest.fail("gunicorn started"))
    monkeypatch.delenv(metrics.MULTIPROC_DIR, raising=False)
    monkeypatch.delenv("SIGNING_KEYS_FILE", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    refused = CliRunner().invoke(cli, ["serve"], env={"INSTANCE_PATH": str(tmp_path)})
    assert refused.exit_code == 1, refused.output
    assert refused.output.splitlines() == [
        f"Error: the database {tmp_path / 'gateway.sqlite3'} cannot be opened (Is a directory): "
        "see DATABASE_URL, or INSTANCE_PATH for the embedded default's"
    ]
    assert not (tmp_path / "signing-keys.json").exists()


def test_a_keys_file_without_an_rsa_key_warns_that_credentials_are_signed_es256(
    make_app, tmp_path, caplog
):
    """A key set made before credentials were signed RS256 still works, and says how to move."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [signing.new_key(signing.ES256).as_dict(private=True)]}))
    make_app(signing_keys_file=str(path))
    assert f"SIGNING_KEYS_FILE {path} holds no RSA key" in caplog.text
    assert "gateway keys rotate" in caplog.text
    caplog.clear()
    signing.rotate(path)
    make_app(signing_keys_file=str(path))
    assert "holds no RSA key" not in caplog.text


def _published(port: int) -> list[str]:
    """The kids `gateway serve` on `port` publishes; none while it takes no connection."""
    with suppress(requests.ConnectionError):
        answer = requests.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=30)
        return [key["kid"] for key in answer.json()["keys"]]
    return []


def test_a_hang_up_onto_an_unfit_keys_file_keeps_serving_with_the_keys_it_had(
    tmp_path, postgres_url
):
    """SIGHUP has gunicorn start new web processes, which read the key file again, and stop the
    old ones: on a file the new ones refused, the whole server stopped. It keeps serving, with one
    ERROR naming the file and what is wrong; a HUP onto a fit file still brings in its keys."""
    path = tmp_path / "signing-keys.json"  # the instance folder's
    kids = [key.kid for key in signing.SigningKeys.load(path).keys]
    port, log = free_port(), tmp_path / "stderr.log"
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1")
    env.pop("SIGNING_KEYS_FILE", None)
    with serving(env, log) as proc:
        assert _published(port) == kids
        fit = path.read_text()
        path.write_text("{not json")
        hang_up_refused(proc, log)
        assert _published(port) == kids

        path.write_text(fit)
        new = signing.rotate(path)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _published(port) == [*new, *kids], log)
    assert logged_errors(log) == [
        f"SIGNING_KEYS_FILE: {path} cannot be read as JSON: Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1); not reloaded: the web processes keep serving "
        "with the keys and policy they had"
    ]


def _receipt_kid(port: int, keys: signing.SigningKeys, cert: str) -> str:
    """The kid of the key that signed a receipt of certification `cert` that `gateway serve` on
    `port` gives now, checked by PyJWT against that key of `keys`."""
    answer = requests.get(f"http://127.0.0.1:{port}/v1/verifications/{cert}/receipt", timeout=10)
    assert answer.status_code == 200, answer.text
    kid = jwt.get_unverified_header(answer.text)["kid"]
    public = jwt.PyJWKSet.from_dict(keys.public_jwks())[kid].key
    assert jwt.decode(answer.text, public, algorithms=["ES256"])["sub"] == cert
    return kid


def test_a_web_process_restarted_onto_an_unfit_keys_file_signs_with_the_keys_it_had(
    tmp_path, postgres_url, served_certification
):
    """A web process gunicorn starts in place of one that died read the key file again, and did
    not start on an unfit one: gunicorn then stopped the whole server. It serves with the keys the
    server had, and one ERROR names the file and what is wrong with it."""
    path = tmp_path / "signing-keys.json"
    keys = signing.SigningKeys.load(path)
    port, log = free_port(), tmp_path / "stderr.log"
    with serving(serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1"), log) as proc:
        assert _receipt_kid(port, keys, served_certification) == keys.signing_kid()
        path.write_text(json.dumps({"keys": [keys.signer().as_dict(private=False)]}))
        killed = kill_web_process(proc, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _receipt_kid(port, keys, served_certification) == keys.signing_kid()
        assert _published(port) == [key.kid for key in keys.keys]
    assert logged_errors(log) == [
        f"Worker (pid:{killed}) was sent SIGKILL! Perhaps out of memory?",
        f"SIGNING_KEYS_FILE: {path} is not a set of ES256 and RS256 signing keys: key 1 (kid "
        f'{keys.signing_kid()!r}) has no private part ("d"); a web process starting now serves '
        "with the keys and policy the server had",
    ]


def test_a_web_process_restarted_after_the_keys_file_changed_signs_with_the_keys_the_others_have(
    tmp_path, postgres_url, served_certification
):
    """A new key set put in place without SIGHUP is not taken by one web process that restarts
    on its own: what it signed would fail to verify against what the others publish."""
    path = tmp_path / "signing-keys.json"
    keys = signing.SigningKeys.load(path)
    port, log = free_port(), tmp_path / "stderr.log"
    with serving(serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1"), log) as proc:
        new = signing.rotate(path)
        kill_web_process(proc, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _receipt_kid(port, keys, served_certification) == keys.signing_kid()
        assert _published(port) == [key.kid for key in keys.keys]

        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _published(port)[:2] == new, log)
        assert _receipt_kid(port, signing.SigningKeys.load(path), served_certification) == new[0]


def _verifies(port: int, token: str) -> bool:
    """Whether `token` (ES256) verifies, by PyJWT, against the key set `gateway serve` on `port`
    publishes."""
    published = requests.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=30).json()
    kid = jwt.get_unverified_header(token)["kid"]
    try:
        jwt.decode(token, jwt.PyJWKSet.from_dict(published)[kid].key, algorithms=["ES256"])
    except (KeyError, jwt.PyJWTError):
        return False
    return True


def test_a_hang_up_onto_a_missing_keys_file_keeps_the_keys_what_was_signed_verifies_against(
    tmp_path, postgres_url, served_certification
):
    """A SIGHUP while the key file is missing (a volume not mounted, a file deleted) made a new
    key set, as at first start: every receipt and credential signed before stopped verifying
    against the published keys. It is refused as an unfit file is, and so is the file's absence
    for a web process gunicorn restarts: the keys stay, with one ERROR each naming the file and
    what to do. The file put back, a SIGHUP brings in its keys again."""
    path = tmp_path / "mounted" / "signing-keys.json"
    keys = signing.SigningKeys.load(path)
    kids = [key.kid for key in keys.keys]
    port, log = free_port(), tmp_path / "stderr.log"
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1", SIGNING_KEYS_FILE=str(path))
    receipt = f"http://127.0.0.1:{port}/v1/verifications/{served_certification}/receipt"
    with serving(env, log) as proc:
        signed = requests.get(receipt, timeout=10).text
        assert _verifies(port, signed)
        fit = path.read_text()
        path.unlink()
        hang_up_refused(proc, log)
        assert _published(port) == kids and _verifies(port, signed)
        assert _receipt_kid(port, keys, served_certification) == keys.signing_kid()
        killed = kill_web_process(proc, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _published(port) == kids and _verifies(port, signed)
        assert not path.exists()

        path.write_text(fit)
        new = signing.rotate(path)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _published(port) == [*new, *kids], log)
        assert _verifies(port, signed)
    missing = (
        f"SIGNING_KEYS_FILE: {path} does not exist: put the key set back (new keys in its place "
        "would not verify what its keys signed; to add keys: `gateway keys rotate`)"
    )
    assert logged_errors(log) == [
        f"{missing}; not reloaded: the web processes keep serving with the keys and policy they "
        "had",
        f"Worker (pid:{killed}) was sent SIGKILL! Perhaps out of memory?",
        f"{missing}; a web process starting now serves with the keys and policy the server had",
    ]


def _sign(app, receipt: bool = True, credential: bool = True) -> None:
    """Record an active certification CERT-1 and have `app` sign a receipt and a credential of
    it (either left out when not asked for)."""
    svc = app.extensions["gateway"]
    record(app, granted(days_ago(30), cert="CERT-1", event_id="cert-1-granted"))
    base = "https://verify.example.org"
    if receipt:
        receipts.issue_for(svc, "CERT-1", None, base, client_id=None, client_address="192.0.2.7")
    if credential:
        openbadges.issue_credential(svc, "CERT-1", base)


def test_a_start_onto_a_missing_keys_file_whose_keys_signed_what_the_database_records_is_refused(
    database_url, make_app, tmp_path, monkeypatch
):
    """A lost key file (a volume not mounted, a path changed) was taken for a first start: new
    keys were made, and every receipt and credential the lost keys signed stopped verifying. Every
    way of starting refuses in one line naming the file, what the database records, and the two
    ways out; `gateway keys new-set` is the deliberate one, after which the gateway starts."""
    path = tmp_path / "mounted" / "keys.json"
    app = make_app(database_url=database_url, signing_keys_file=str(path), jobs_synchronous=True)
    _sign(app)
    _sign(app, credential=False)  # a second receipt; the credential of the period is the same
    app.extensions["gateway"].db.engine.dispose()
    path.unlink()
    refusal = (
        f"SIGNING_KEYS_FILE: {path} does not exist, but the database records 2 receipts and 1 "
        "credential its keys signed, which new keys would leave unverifiable: put the key set "
        "back, or run `gateway keys new-set` to sign with a new set from now on (what the lost "
        "keys signed then fails to verify)"
    )
    with pytest.raises(ConfigError) as refused:
        make_app(database_url=database_url, signing_keys_file=str(path))
    assert str(refused.value) == refusal

    def exec_gunicorn(*_: object) -> None:
        raise AssertionError("gunicorn started without the keys that signed")

    monkeypatch.setattr(os, "execv", exec_gunicorn)
    monkeypatch.delenv(metrics.MULTIPROC_DIR, raising=False)
    env = {
        "DATABASE_URL": database_url,
        "SIGNING_KEYS_FILE": str(path),
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    for command in (["serve"], ["keys", "list"], ["keys", "rotate"]):
        answer = CliRunner().invoke(cli, command, env=env)
        assert answer.exit_code == 1, answer.output
        assert answer.output.splitlines() == [f"Error: {refusal}"]
    # a command that signs nothing (as a worker signs nothing) runs where the file is not
    for command in (["jobs", "failed"], ["receipts", "prune"]):
        answer = CliRunner().invoke(cli, command, env=env)
        assert answer.exit_code == 0, answer.output
    for name, value in env.items():  # `gunicorn wsgi:app`: gunicorn stops, "App failed to load"
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "wsgi", raising=False)
    with pytest.raises(AppImportError) as not_loaded:
        importlib.import_module("wsgi")
    assert str(not_loaded.value) == refusal
    assert not path.exists()

    made = CliRunner().invoke(cli, ["keys", "new-set"], env=env)
    assert made.exit_code == 0, made.output
    kids = [key.kid for key in signing.SigningKeys.load(path, create=False).keys]
    assert made.output == (
        f"new signing keys {' '.join(kids)} at {path}: what the keys before them signed no "
        "longer verifies; start the web processes\n"
    )
    listed = CliRunner().invoke(cli, ["keys", "list"], env=env)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == kids
    assert (
        make_app(database_url=database_url, signing_keys_file=str(path))
        .extensions["gateway"]
        .keys.keys
        == signing.SigningKeys.load(path, create=False).keys
    )
    again = CliRunner().invoke(cli, ["keys", "new-set"], env=env)
    assert again.exit_code == 1
    assert again.output.splitlines() == [
        f"Error: SIGNING_KEYS_FILE: {path} exists: a new set is made only where the file is "
        "missing (to add new keys to it: `gateway keys rotate`)"
    ]
    assert [key.kid for key in signing.SigningKeys.load(path, create=False).keys] == kids


@pytest.mark.parametrize(
    ("receipt", "credential", "said"),
    [(True, False, "1 receipt"), (False, True, "1 credential")],
)
def test_a_receipt_or_a_credential_alone_is_enough_to_refuse_new_keys(
    receipt, credential, said, database_url, make_app, tmp_path
):
    path = tmp_path / "keys.json"
    app = make_app(database_url=database_url, signing_keys_file=str(path), jobs_synchronous=True)
    _sign(app, receipt=receipt, credential=credential)
    path.unlink()
    with pytest.raises(ConfigError) as refused:
        make_app(database_url=database_url, signing_keys_file=str(path))
    assert f", but the database records {said} its keys signed, " in str(refused.value)
    assert not path.exists()


def test_a_machine_without_the_setting_makes_keys_of_its_own_whatever_was_signed(
    database_url, make_app, tmp_path, caplog
):
    """Without SIGNING_KEYS_FILE a machine signs with keys of its own, made in its instance folder
    when missing (and warned of on PostgreSQL): what other machines signed is no reason to stop."""
    _sign(make_app(database_url=database_url, jobs_synchronous=True))
    folder = tmp_path / "another-machine"
    started = make_app(database_url=database_url, instance_path=str(folder))
    assert started.extensions["gateway"].keys.created
    assert (folder / "signing-keys.json").exists()


def test_a_missing_keys_file_is_made_at_start_while_nothing_was_signed(
    database_url, make_app, tmp_path, caplog
):
    """Certifications recorded, but no receipt or credential signed: a first start as before."""
    app = make_app(database_url=database_url, jobs_synchronous=True)
    record(app, granted(days_ago(30), cert="CERT-1", event_id="cert-1-granted"))
    path = tmp_path / "keys.json"
    started = make_app(database_url=database_url, signing_keys_file=str(path))
    assert started.extensions["gateway"].keys.created and path.exists()
    assert "new signing keys were made" in caplog.text


def test_a_missing_keys_file_is_not_made_while_the_database_cannot_say_what_was_signed(
    make_app, tmp_path
):
    path = tmp_path / "keys.json"
    with pytest.raises(ConfigError) as refused:
        make_app(database_url="postgresql://postgres@127.0.0.1:1/none", signing_keys_file=str(path))
    message = str(refused.value)
    assert message.startswith(
        f"SIGNING_KEYS_FILE: {path} does not exist, and the database at 127.0.0.1:1 cannot say "
        "whether its keys signed anything ("
    )
    assert "Connection refused" in message and message.endswith(
        "): new keys are made only where nothing was signed; start again once it answers, or put "
        "the key set back"
    )
    assert not path.exists()
