"""`gateway serve`'s gunicorn settings."""

from __future__ import annotations

import gc

from gateway import gunicorn_conf


def test_a_worker_puts_the_loaded_app_out_of_the_collectors_reach():
    gc.collect()
    before = gc.get_freeze_count()
    try:
        gunicorn_conf.post_worker_init(worker=None)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
