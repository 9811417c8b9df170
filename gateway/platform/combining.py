"""Flat combining: the work of concurrent threads of one process done together, by one of them."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: What a group's run answers for each of its items: the result, or the exception to raise.
Outcome = R | BaseException


class _Waiter(Generic[T, R]):
    """A caller's item, and its outcome once a run has decided it."""

    __slots__ = ("done", "item", "outcome", "signal")

    def __init__(self, item: T) -> None:
        self.item = item
        self.outcome: Outcome[R] | None = None
        self.done = False
        self.signal = threading.Event()  # set when done, or when it may be the next to run


class Combiner(Generic[T, R]):
    """Hands the items of concurrent `submit` calls of one process to `run` in groups.

    A caller with no run in flight runs its item at once, alone. Callers arriving while a run is
    in flight wait for it; then the first of them runs every waiting item (up to `limit`, oldest
    first) in one call, and each caller gets its own item's outcome as soon as its run ends.
    Runs never overlap.
    A forked child starts with fresh locks and nothing waiting (the waiting threads are not in it).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._reset()
        _COMBINERS.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _waiting
        self._running = threading.Lock()  # held by the caller running a group
        self._waiting: list[_Waiter[T, R]] = []

    def submit(self, item: T, run: Callable[[list[T]], Sequence[Outcome[R]]]) -> R:
        """`item`'s result from `run` (called with a group of items, it answers one outcome for
        each, in order), or its exception raised here. Every caller of one combiner passes the
        same `run`."""
        waiter: _Waiter[T, R] = _Waiter(item)
        with self._lock:
            self._waiting.append(waiter)
        while not waiter.done:
            if not self._running.acquire(blocking=False):
                waiter.signal.wait()  # a run decides it, or ends and hands the next run over
                waiter.signal.clear()
                continue
            try:
                while not waiter.done:  # more than `limit` waited before it: a group at a time
                    with self._lock:
                        group = self._waiting[: self.limit]
                        del self._waiting[: self.limit]
                    _run_group(group, run)
            finally:
                self._running.release()
            with self._lock:  # who came during the run: the first of them runs next
                if self._waiting:
                    self._waiting[0].signal.set()
        if isinstance(waiter.outcome, BaseException):
            raise waiter.outcome
        return waiter.outcome  # type: ignore[return-value]  # set by the run: an R


def _run_group(group: list[_Waiter[T, R]], run: Callable[[list[T]], Sequence[Outcome[R]]]) -> None:
    """Run a group and give each waiter its outcome (a run's own failure is every waiter's)."""
    try:
        outcomes: Sequence[Outcome[R]] = run([waiter.item for waiter in group])
        if len(outcomes) != len(group):
            raise ValueError(f"{len(outcomes)} outcomes for {len(group)} items")
    except BaseException as exc:
        outcomes = [exc] * len(group)
    for waiter, outcome in zip(group, outcomes, strict=True):
        waiter.outcome, waiter.done = outcome, True
        waiter.signal.set()


_COMBINERS: weakref.WeakSet[Combiner] = weakref.WeakSet()


def _after_fork() -> None:
    for combiner in list(_COMBINERS):
        combiner._reset()


os.register_at_fork(after_in_child=_after_fork)
