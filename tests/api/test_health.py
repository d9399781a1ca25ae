"""``/healthz``: 200 when every part is up, 503 naming the failing parts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.engine import run_decision_cycle
from decisions.loops import (
    run_performance_loop,
    run_rebalancer,
    run_risk_threshold_monitor,
    run_risk_tier_scheduler,
)
from portfolio.heartbeat import LOOPS, record_loop_run
from portfolio.models import LoopRun, Pool
from project.api import health
from tests import factories
from tests.broker_server import FakeBroker

#: Saturday 2026-11-21, noon in New York: no session.
WEEKEND = datetime(2026, 11, 21, 17, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch, session_now):
    """The health checks judge ages as of ``session_now`` (a regular session)."""
    moment = {"now": session_now}
    monkeypatch.setattr(health, "clock", lambda: moment["now"])
    return moment


def fresh_cycle(pool: Pool, now: datetime, age: timedelta = timedelta(seconds=5)) -> None:
    record_loop_run(pool.pk, "decision_cycle", now - age - timedelta(seconds=1), now - age)


def healthz(client):
    response = client.get("/healthz")
    return response.status_code, response.json()


def test_every_part_up_answers_200(anonymous, pool, cluster, clock, session_now):
    fresh_cycle(pool, session_now)

    status, body = healthz(anonymous)

    assert status == 200, body
    assert body["status"] == "ok"
    assert {"database", "cache", "task_queue", f"cycle:{pool.name}"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["task_queue"]["detail"] == "1 cluster(s) running"


def test_no_authentication_is_needed_even_with_a_bad_token(pool, cluster, clock, session_now):
    from rest_framework.test import APIClient

    fresh_cycle(pool, session_now)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")

    assert healthz(client)[0] == 200


def test_no_cluster_heartbeat_fails_the_task_queue(anonymous, pool, clock, session_now):
    fresh_cycle(pool, session_now)

    status, body = healthz(anonymous)

    assert status == 503
    assert body["status"] == "failing"
    assert [name for name, c in body["checks"].items() if not c["ok"]] == ["task_queue"]


def test_a_stale_cycle_in_session_fails_the_pool(anonymous, pool, cluster, clock, session_now):
    # polling_interval_seconds is 60: older than 180 s fails.
    fresh_cycle(pool, session_now, age=timedelta(seconds=181))
    other = factories.make_pool(now=session_now)
    fresh_cycle(other, session_now, age=timedelta(seconds=179))

    status, body = healthz(anonymous)

    assert status == 503
    assert [name for name, c in body["checks"].items() if not c["ok"]] == [f"cycle:{pool.name}"]
    assert "older than 180 s" in body["checks"][f"cycle:{pool.name}"]["detail"]


def test_the_limit_follows_the_pool_polling_interval(anonymous, cluster, clock, session_now):
    pool = factories.make_pool(now=session_now, polling_interval_seconds=300)
    fresh_cycle(pool, session_now, age=timedelta(seconds=600))

    assert healthz(anonymous)[0] == 200


def test_a_stale_cycle_is_fine_while_the_exchange_is_closed(anonymous, pool, cluster, clock):
    clock["now"] = WEEKEND
    fresh_cycle(pool, WEEKEND, age=timedelta(days=1))

    status, body = healthz(anonymous)

    assert status == 200
    assert body["checks"][f"cycle:{pool.name}"]["detail"].startswith("exchange closed")


def test_a_pool_that_never_cycled_fails_once_older_than_the_limit(anonymous, pool, cluster, clock):
    clock["now"] = pool.created_at + timedelta(minutes=10)
    calendar_open = health.get_market_calendar(clock["now"]).is_open(clock["now"])

    status, body = healthz(anonymous)

    check = body["checks"][f"cycle:{pool.name}"]
    assert "no cycle yet" in check["detail"]
    assert check["ok"] is (not calendar_open)
    assert status == (503 if calendar_open else 200)


def test_a_decision_cycle_leaves_the_heartbeat_the_check_reads(
    anonymous, pool, cluster, clock, session_now
):
    # The heartbeat is wall-clock time: judge it against the wall clock, in session or not.
    clock["now"] = datetime.now(UTC)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    run = LoopRun.objects.get(pool=pool, loop="decision_cycle")
    assert run.last_detail.startswith("0 candidate(s)")
    assert healthz(anonymous)[1]["checks"][f"cycle:{pool.name}"]["ok"] is True


def test_every_loop_leaves_its_heartbeat(pool, session_now):
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    run_risk_threshold_monitor(pool.pk, session_now, dispatch=False)
    run_performance_loop(pool.pk, session_now, dispatch=False)
    run_risk_tier_scheduler(pool.pk, session_now)
    run_rebalancer(pool.pk, session_now, dispatch=False)

    runs = dict(LoopRun.objects.filter(pool=pool).values_list("loop", "last_detail"))
    assert set(runs) == set(LOOPS)
    assert runs["risk_tier_scheduler"] == "risk tier scheduler: before the session close"


def test_a_second_run_updates_the_one_heartbeat_row(pool, session_now):
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    first = LoopRun.objects.get(pool=pool, loop="decision_cycle").last_finished_at
    run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert LoopRun.objects.filter(pool=pool, loop="decision_cycle").count() == 1
    assert LoopRun.objects.get(pool=pool, loop="decision_cycle").last_finished_at >= first


# --- the execution API ------------------------------------------------------------------------


@pytest.fixture
def broker(settings) -> Iterator[FakeBroker]:
    with FakeBroker() as server:
        yield server.configure(settings)


def http_pool(session_now) -> Pool:
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    return pool


def test_a_reachable_execution_api_is_up(anonymous, broker, cluster, clock, session_now):
    pool = http_pool(session_now)
    fresh_cycle(pool, session_now)

    status, body = healthz(anonymous)

    assert status == 200, body
    assert body["checks"][f"execution_api:{pool.name}"] == {"ok": True, "detail": "account read"}
    assert broker.count("GET", "/v2/account") == 1


def test_pools_on_one_execution_api_share_one_request(
    anonymous, broker, cluster, clock, session_now
):
    pools = [http_pool(session_now) for _ in range(3)]
    for pool in pools:
        fresh_cycle(pool, session_now)

    assert healthz(anonymous)[0] == 200
    assert broker.count("GET", "/v2/account") == 1


def test_an_execution_api_that_is_down_fails_its_pools(
    anonymous, broker, cluster, clock, session_now
):
    pool = http_pool(session_now)
    paper = factories.make_pool(now=session_now)
    for p in (pool, paper):
        fresh_cycle(p, session_now)
    broker.stop()

    status, body = healthz(anonymous)

    assert status == 503
    failing = [name for name, c in body["checks"].items() if not c["ok"]]
    assert failing == [f"execution_api:{pool.name}"]
    assert "connection_error" in body["checks"][failing[0]]["detail"]
    assert f"execution_api:{paper.name}" not in body["checks"]


def test_an_execution_api_answering_503_fails(anonymous, broker, cluster, clock, session_now):
    pool = http_pool(session_now)
    fresh_cycle(pool, session_now)
    broker.inject("respond", status=503, method="GET", path="/v2/account")

    status, body = healthz(anonymous)

    assert status == 503
    assert body["checks"][f"execution_api:{pool.name}"]["ok"] is False
    assert "http_503" in body["checks"][f"execution_api:{pool.name}"]["detail"]


def test_an_http_pool_without_an_execution_api_url_fails(
    anonymous, settings, cluster, clock, session_now
):
    settings.EXECUTION_API_URL = ""
    pool = http_pool(session_now)
    fresh_cycle(pool, session_now)

    status, body = healthz(anonymous)

    assert status == 503
    assert body["checks"][f"execution_api:{pool.name}"]["detail"] == "EXECUTION_API_URL is not set"


# --- queries ----------------------------------------------------------------------------------


def test_queries_do_not_grow_with_the_pools(anonymous, cluster, clock, session_now):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert healthz(anonymous)[0] == 200
        return len(ctx.captured_queries)

    pools = [factories.make_pool(now=session_now)]
    fresh_cycle(pools[0], session_now)
    one = queries()
    for _ in range(4):
        pools.append(factories.make_pool(now=session_now))
        fresh_cycle(pools[-1], session_now)

    assert queries() == one
    # The test cache is the database cache: its reads and writes (the cache check, the
    # cluster heartbeats) are counted here too.
    assert one <= 16
