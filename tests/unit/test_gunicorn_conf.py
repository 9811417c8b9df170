"""`gateway serve`'s gunicorn settings."""

from __future__ import annotations

import gc
import logging
from types import SimpleNamespace

from gateway import gunicorn_conf


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
