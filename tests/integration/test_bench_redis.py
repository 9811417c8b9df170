"""The benches flush only a Redis database they hold, never one a test session holds."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import redis

from tests.support.database import REDIS_CLAIM, REDIS_DATABASES

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    monkeypatch.syspath_prepend(str(BENCH))
    return {name: importlib.import_module(name) for name in ("bench_sweep", "bench_service")}


@pytest.fixture
def redis_db(bench: dict[str, ModuleType]) -> ModuleType:
    return importlib.import_module("redis_db")


def test_the_benches_default_to_a_database_no_test_session_takes(bench):
    for name, module in bench.items():
        number = redis.Redis.from_url(module.REDIS_URL).connection_pool.connection_kwargs["db"]
        assert number not in REDIS_DATABASES, name


def test_a_bench_refuses_the_database_a_test_session_holds_and_leaves_it(
    redis_db, redis_url, redis_client
):
    assert redis_db.CLAIM == REDIS_CLAIM
    bench = redis_db.HeldDatabase(redis_url, "BENCH_REDIS_URL")
    assert bench.number == redis_client.connection_pool.connection_kwargs["db"]
    # held by this session already, unless GATEWAY_TEST_REDIS_URL named it: then held here
    taken = bench.claims.set(bench.key, "a test session", nx=True)
    redis_client.set("the session's", "kept")
    try:
        with pytest.raises(SystemExit, match="held by a test session"):
            bench.__enter__()
    finally:
        if taken:
            bench.claims.delete(bench.key)
    assert redis_client.get("the session's") == b"kept"


def test_a_bench_holds_its_database_for_the_run_and_flushes_it_only_while_it_does(
    redis_db, redis_url, redis_client, monkeypatch
):
    """On the session's own database, claimed under a key of this test only."""
    monkeypatch.setattr(redis_db, "CLAIM", "gateway-tests:bench-check:{number}")
    redis_client.set("left over", "1")
    with redis_db.HeldDatabase(redis_url, "BENCH_REDIS_URL") as held:
        assert redis_client.dbsize() == 0 and held.claims.get(held.key)
        with pytest.raises(SystemExit, match="held by"):  # two runs never share one
            redis_db.HeldDatabase(redis_url, "BENCH_REDIS_URL").__enter__()
        redis_client.set("queued", "1")
        ours = held.claims.get(held.key)
        held.claims.set(held.key, "someone else")
        with pytest.raises(SystemExit, match="no longer held"):
            held.flush()
        assert redis_client.get("queued") == b"1"
        held.claims.set(held.key, ours)
    assert redis_client.dbsize() == 0 and held.claims.get(held.key) is None
