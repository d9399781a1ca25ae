"""execution.ratelimit against the real cache (the database cache here, Redis with REDIS_URL).

The limiter's clock is a parameter, so time moves without sleeping; the cache is the real one.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection

from execution.ratelimit import (
    DEFAULT_MARGIN,
    KEY_PREFIX,
    CacheRateLimiter,
    execution_api_limiter,
    key_hash,
)

pytestmark = pytest.mark.django_db

KEY = "PKTESTKEY0001"
SPAN = 60 + DEFAULT_MARGIN


class Clock:
    """Unix seconds that move only when told."""

    def __init__(self) -> None:
        # A whole second, so a datetime made from it (microseconds) converts back exactly.
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _limiter(clock: Clock, limit: int = 3, key: str = KEY) -> CacheRateLimiter:
    return CacheRateLimiter(key, limit=limit, window=60, cache=cache, clock=clock)


def test_up_to_the_limit_pass_then_the_wait_is_until_the_oldest_leaves(clock) -> None:
    limiter = _limiter(clock)

    assert [limiter.acquire() for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire() == pytest.approx(SPAN)
    assert limiter.in_window() == 3

    clock.move(SPAN - 0.01)
    assert limiter.acquire() == pytest.approx(0.01)
    clock.move(0.01)
    assert limiter.acquire() == 0


def test_the_window_slides(clock) -> None:
    limiter = _limiter(clock)
    assert limiter.acquire() == 0
    clock.move(30)
    assert [limiter.acquire(), limiter.acquire()] == [0, 0]

    clock.move(15)  # 45 s after the first
    assert limiter.acquire() == pytest.approx(SPAN - 45)

    clock.move(SPAN - 45)  # the first has left; the two of second 30 have not
    assert limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(30)
    assert limiter.in_window() == 3


def test_a_refused_acquire_takes_nothing(clock) -> None:
    limiter = _limiter(clock, limit=1)
    limiter.acquire()

    for _ in range(5):
        assert limiter.acquire() > 0

    clock.move(SPAN)
    assert limiter.acquire() == 0


def test_processes_with_the_same_key_share_one_budget(clock) -> None:
    one, two = _limiter(clock), _limiter(clock)

    assert [one.acquire(), two.acquire(), one.acquire()] == [0, 0, 0]
    assert two.acquire() > 0
    assert one.acquire() > 0


def test_each_key_has_its_own_budget_named_by_a_hash(clock) -> None:
    mine, theirs = _limiter(clock, limit=1), _limiter(clock, limit=1, key="PKOTHERKEY")

    assert [mine.acquire(), theirs.acquire()] == [0, 0]
    assert mine.acquire() > 0

    assert KEY not in repr(mine)
    assert key_hash(KEY) in repr(mine) and len(key_hash(KEY)) == 16
    assert cache.get(f"{KEY_PREFIX}{key_hash(KEY)}:t:0") == clock.now
    assert cache.get(f"{KEY_PREFIX}{KEY}:t:0") is None


def test_a_lost_head_does_not_reopen_the_budget(clock) -> None:
    limiter = _limiter(clock)
    for _ in range(3):
        limiter.acquire()

    cache.delete(f"{KEY_PREFIX}{key_hash(KEY)}:head")

    assert limiter.acquire() == pytest.approx(SPAN)


def test_a_long_budget_spans_many_probes(clock) -> None:
    limiter = _limiter(clock, limit=40)

    assert all(limiter.acquire() == 0 for _ in range(40))
    assert limiter.acquire() > 0
    assert limiter.in_window() == 40


def test_hold_until_stops_every_process_until_then(clock) -> None:
    one, two = _limiter(clock), _limiter(clock)
    moment = datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=20)

    one.hold_until(moment)
    one.hold_until(moment - timedelta(seconds=10))  # an earlier hold does not shorten it
    one.hold_until(moment - timedelta(seconds=60))  # nor does one in the past

    assert two.acquire() == pytest.approx(20)
    clock.move(20)
    assert two.acquire() == 0
    with pytest.raises(ValueError):
        one.hold_until(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": True}, {"limit": 2.5}, {"window": 0}, {"margin": -1}],
)
def test_bad_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        CacheRateLimiter(KEY, cache=cache, **kwargs)
    with pytest.raises(ValueError):
        CacheRateLimiter("", cache=cache)


def test_the_settings_name_the_key_and_the_limit(settings) -> None:
    settings.EXECUTION_API_KEY_ID = KEY
    settings.EXECUTION_API_RATE_LIMIT = 7

    limiter = execution_api_limiter()

    assert (limiter.limit, limiter.window) == (7, 60)
    assert key_hash(KEY) in repr(limiter)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_never_take_more_than_the_limit() -> None:
    """Threads with their own database connections (or Redis clients) race for the budget."""
    limit, threads, each = 10, 6, 4
    granted: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        limiter = CacheRateLimiter(KEY, limit=limit, cache=cache)
        try:
            start.wait(timeout=10)
            for _ in range(each):
                wait = limiter.acquire()
                with lock:
                    granted.append(wait)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert len(granted) == threads * each
    assert granted.count(0.0) == limit
