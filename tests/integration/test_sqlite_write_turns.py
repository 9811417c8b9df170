"""SQLite's writers of one process take turns in the order they asked: one that has waited is not
starved by a steady stream of later writers until SQLite's wait for the lock gives up (a 503)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from gateway.store.db import Database


def test_a_writer_that_waited_goes_before_a_stream_of_later_ones(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    with db.begin() as connection:
        connection.execute(text("CREATE TABLE writes (who TEXT)"))
    stop = threading.Event()
    done: dict[str, float] = {}

    def write(who: str, hold: float) -> None:
        with db.begin() as connection:
            connection.execute(text("INSERT INTO writes VALUES (:who)"), {"who": who})
            time.sleep(hold)

    def stream() -> None:  # a busy server's other requests: one write after another
        while not stop.is_set():
            write("stream", 0.02)

    def waiter() -> None:
        write("waiter", 0)
        done["waiter"] = time.monotonic()

    first = threading.Thread(target=write, args=("first", 2.0))
    first.start()
    time.sleep(0.2)  # the first holds the write lock
    waiting = threading.Thread(target=waiter)
    waiting.start()
    time.sleep(1.4)  # the waiter asked long before the stream began, which then asks often
    streams = [threading.Thread(target=stream) for _ in range(4)]
    for thread in streams:
        thread.start()
    first.join()
    ended = time.monotonic()
    waiting.join(timeout=15)
    stop.set()
    for thread in streams:
        thread.join()
    assert done.get("waiter", float("inf")) - ended < 2, "the waiter was overtaken by later writers"
    db.dispose()
