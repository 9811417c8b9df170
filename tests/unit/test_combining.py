"""The combiner: concurrent callers' items run in groups, each caller answered on its own."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from gateway.platform.combining import Combiner


class Recorder:
    """A run that records its groups; the first one waits for `release` (a run in flight)."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.groups.append(items)
        if len(self.groups) == 1:
            self.started.set()
            assert self.release.wait(10)
        return [ValueError(item) if item < 0 else item * 10 for item in items]


def _concurrently(combiner: Combiner, run: Recorder, items: list[int]) -> list[object]:
    """Each item's outcome: the first submitted while nothing runs, the others while it runs."""
    outcomes: list[object] = [None] * len(items)

    def submit(n: int) -> None:
        try:
            outcomes[n] = combiner.submit(items[n], run)
        except ValueError as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(len(items))]
    threads[0].start()
    assert run.started.wait(10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(combiner._waiting) < len(items) - 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    run.release.set()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_a_lone_item_runs_at_once_in_the_callers_thread() -> None:
    groups = []
    combiner: Combiner[int, int] = Combiner(limit=10)
    assert combiner.submit(4, lambda items: groups.append(items) or [40]) == 40
    assert groups == [[4]]


def test_items_arriving_during_a_run_are_run_together_next() -> None:
    run = Recorder()
    outcomes = _concurrently(Combiner(limit=10), run, [1, 2, 3, 4])
    assert outcomes == [10, 20, 30, 40]
    assert run.groups[0] == [1] and sorted(run.groups[1]) == [2, 3, 4] and len(run.groups) == 2


def test_a_caller_is_answered_when_its_run_ends_not_after_the_next_run() -> None:
    holds = {1: threading.Event(), 2: threading.Event(), 4: threading.Event()}
    started = {n: threading.Event() for n in holds}
    combiner: Combiner[int, int] = Combiner(limit=10)

    def run(items: list[int]) -> list[int]:
        first = min(items)
        if first in holds:
            started[first].set()
            assert holds[first].wait(10)
        return [item * 10 for item in items]

    def waiting(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(combiner._waiting) < count and time.monotonic() < deadline:
            time.sleep(0.001)

    combiner._running = running = WaitsRecorded()
    threads = {
        n: threading.Thread(target=combiner.submit, args=(n, run), name=f"caller-{n}")
        for n in (1, 2, 3, 4)
    }
    threads[1].start()
    assert started[1].wait(10)
    threads[2].start()
    waiting(1)
    threads[3].start()
    waiting(2)
    holds[1].set()  # the run of 1 ends; 2 and 3 run next, together
    assert started[2].wait(10)
    threads[4].start()
    waiting(1)
    holds[2].set()  # the run of 2 and 3 ends; 4 runs next and holds on
    assert started[4].wait(10)
    threads[3].join(5)
    assert not threads[3].is_alive()  # answered while the run of 4 is still in flight
    holds[4].set()
    for thread in threads.values():
        thread.join(10)
    assert "caller-3" not in running.waited  # its item ran in 2's group: it never queued to run


class WaitsRecorded:
    """A lock that records the threads that waited to take it."""

    def __init__(self) -> None:
        self.lock, self.waited = threading.Lock(), []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self.waited.append(threading.current_thread().name)
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_group_holds_at_most_limit_items() -> None:
    run = Recorder()
    outcomes = _concurrently(Combiner(limit=2), run, [1, 2, 3, 4, 5])
    assert outcomes == [10, 20, 30, 40, 50]
    assert [len(group) for group in run.groups] == [1, 2, 2]


def test_an_items_exception_is_raised_in_its_own_callers_thread_only() -> None:
    run = Recorder()
    outcomes = _concurrently(Combiner(limit=10), run, [1, 2, -3, 4])
    assert outcomes[:2] == [10, 20] and outcomes[3] == 40
    assert isinstance(outcomes[2], ValueError) and outcomes[2].args == (-3,)


def test_a_failing_run_fails_every_caller_of_its_group() -> None:
    def run(items: list[int]) -> list[int]:
        raise ValueError("no database")

    with pytest.raises(ValueError, match="no database"):
        Combiner(limit=10).submit(1, run)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_nothing_running_or_waiting() -> None:
    run = Recorder()
    combiner: Combiner[int, int] = Combiner(limit=10)
    parent = threading.Thread(target=combiner.submit, args=(1, run))
    parent.start()
    assert run.started.wait(10)  # the parent's run holds the lock at the fork
    pid = os.fork()
    if pid == 0:  # the child: its own run goes at once (killed in 10 s if it waits instead)
        signal.alarm(10)
        os._exit(0 if combiner.submit(2, lambda items: [item * 10 for item in items]) == 20 else 1)
    run.release.set()
    parent.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
