"""`gateway serve`'s gunicorn settings."""

from __future__ import annotations

import gc
import importlib
import logging
import shutil
import socket
from types import SimpleNamespace

import pytest

from gateway import gunicorn_conf
from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.store.db import Database
from gateway.store.models import Receipt


def test_a_worker_puts_the_loaded_app_out_of_the_collectors_reach_then_says_it_is_ready(caplog):
    gc.collect()
    before = gc.get_freeze_count()
    worker = SimpleNamespace(pid=4321, log=logging.getLogger("gunicorn.error"))
    try:
        with caplog.at_level(logging.INFO, logger="gunicorn.error"):
            gunicorn_conf.post_worker_init(worker)
        assert gc.get_freeze_count() > before
        assert "Worker ready (pid: 4321)" in caplog.messages
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(("web_timeout", "graceful"), [("45", 45), ("0", 30)])
def test_a_stopping_process_has_web_timeout_to_finish_and_never_none(
    monkeypatch, web_timeout, graceful
):
    monkeypatch.setenv("WEB_TIMEOUT", web_timeout)
    conf = importlib.reload(gunicorn_conf)
    try:
        assert conf.graceful_timeout == graceful
        assert conf.timeout == int(web_timeout)
    finally:
        monkeypatch.undo()
        importlib.reload(gunicorn_conf)


@pytest.fixture
def conf(monkeypatch, tmp_path):
    """The settings module, its instance folder a test's own: the master reads (and, the first
    time, makes) the signing keys there as it starts."""
    monkeypatch.setattr(gunicorn_conf, "_settings", Settings(instance_path=str(tmp_path)))
    monkeypatch.setattr(gunicorn_conf, "_served", None)
    return gunicorn_conf


def _server(port: int) -> SimpleNamespace:
    """What `on_starting` uses of gunicorn's arbiter."""
    return SimpleNamespace(
        cfg=SimpleNamespace(address=[("127.0.0.1", port)]),
        log=logging.getLogger("gunicorn.error"),
        handle_hup=lambda: None,
    )


def test_a_server_does_not_start_on_a_port_another_one_shares_out_to_its_workers(conf, caplog):
    with socket.socket() as worker:  # another server's worker socket, shareable
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", 0))
        worker.listen()
        port = worker.getsockname()[1]
        with pytest.raises(SystemExit), caplog.at_level(logging.ERROR, logger="gunicorn.error"):
            conf.on_starting(_server(port))
    assert f"Cannot listen on 127.0.0.1:{port}" in caplog.text


def test_a_server_starts_on_a_free_port_and_leaves_it_to_its_workers(conf):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    conf.on_starting(_server(port))  # no exit
    with socket.socket() as worker:  # the check holds nothing: a worker's socket binds
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))
        assert worker.getsockname()[1] == port


def test_a_server_makes_no_keys_in_place_of_lost_ones_whose_receipts_the_database_records(
    conf, tmp_path, sqlite_migrated, caplog, monkeypatch
):
    """`gunicorn -c python:gateway.gunicorn_conf` without `gateway serve`: the master, which makes
    the keys at a first start, refuses to where the database records what lost keys signed."""
    path = tmp_path / "mounted" / "keys.json"
    settings = Settings(instance_path=str(tmp_path), signing_keys_file=str(path))
    monkeypatch.setattr(conf, "_settings", settings)
    shutil.copy(sqlite_migrated, tmp_path / "gateway.sqlite3")
    db = Database(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    with db.transaction() as session:
        session.add(
            Receipt(jti="rcpt_1", certification_id="C-1", status="active", issued_at=clock.now())
        )
    db.engine.dispose()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(SystemExit), caplog.at_level(logging.ERROR, logger="gunicorn.error"):
        conf.on_starting(_server(port))
    [refusal] = caplog.messages
    assert refusal.startswith(
        f"SIGNING_KEYS_FILE: {path} does not exist, but the database records 1 receipt its keys "
        "signed, "
    )
    assert not path.exists() and conf._served is None
