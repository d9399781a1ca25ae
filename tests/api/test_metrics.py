"""``/metrics``: the Prometheus text format, read from the database at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from decisions.engine import run_decision_cycle
from decisions.models import Recommendation
from execution.models import Order
from execution.worker import process_order
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger
from portfolio.models import BreakerType, EngineConfig, TelemetryCounter
from tests import factories

LOW_CARDINALITY = {"pool", "outcome", "reason", "status", "type", "loop", "le"}


def scrape(client, **extra) -> dict[str, dict[tuple, float]]:
    """Every sample by name, keyed by its sorted labels."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def labels(**values) -> tuple:
    return tuple(sorted(values.items()))


@pytest.fixture
def traded_pool(pool, session_now):
    """A pool with one commitment bought through the worker and one skipped recommendation
    evaluated twice."""
    factories.add_bars("AAA", session_now)
    factories.add_bars("BBB", session_now, start=70)
    acted = factories.make_recommendation("AAA", session_now, confidence="0.90")
    factories.make_recommendation("BBB", session_now, confidence="0.10")
    # Arrived 1.5 s before the worker stored the broker's answer.
    Recommendation.objects.filter(pk=acted.pk).update(
        received_at=session_now - timedelta(seconds=1.5)
    )
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    (order,) = Order.objects.filter(pool=pool)
    assert process_order(order.pk, session_now).status == "filled"
    return pool


def test_pool_gauges_counters_and_histograms(viewer, traded_pool):
    name = traded_pool.name
    samples = scrape(viewer)

    pool = labels(pool=name)
    assert samples["engine_pool_value_dollars"][pool] == pytest.approx(100000, rel=0.01)
    assert samples["engine_pool_open_commitments"][pool] == 1
    assert samples["engine_pool_exposure_dollars"][pool] > 0
    assert samples["engine_pool_exposure_cap_dollars"][pool] > 0
    assert samples["engine_pool_daily_loss_limit_ratio"][pool] == pytest.approx(0.05)
    assert pool in samples["engine_pool_daily_loss_ratio"]
    assert pool in samples["engine_pool_reserve_dollars"]
    assert pool in samples["engine_pool_active_dollars"]
    assert samples["engine_pool_halted"][pool] == 0
    assert samples["engine_breakers_in_force"][labels(pool=name, type="daily_loss")] == 0

    decisions = samples["engine_decisions_total"]
    assert decisions[labels(pool=name, outcome="act", reason="")] == 1
    # The low-confidence recommendation is evaluated (and skipped) by each cycle.
    assert decisions[labels(pool=name, outcome="skip", reason="insufficient_confidence")] == 2

    cycles = samples["engine_cycle_duration_seconds_count"][pool]
    assert cycles == 2
    buckets = samples["engine_cycle_duration_seconds_bucket"]
    assert sorted(dict(k)["le"] for k in buckets) == sorted(
        ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"]
    )
    assert buckets[labels(pool=name, le="+Inf")] == 2

    latency = samples["engine_recommendation_to_order_seconds_bucket"]
    assert latency[labels(pool=name, le="1.0")] == 0
    assert latency[labels(pool=name, le="2.0")] == 1
    assert latency[labels(pool=name, le="+Inf")] == 1
    assert samples["engine_recommendation_to_order_seconds_sum"][pool] == pytest.approx(1.5)

    heartbeats = samples["engine_loop_last_finished_timestamp_seconds"]
    assert labels(pool=name, loop="decision_cycle") in heartbeats


def test_every_label_is_low_cardinality(viewer, traded_pool):
    samples = scrape(viewer)

    names = {key for series in samples.values() for labelset in series for key, _ in labelset}
    assert names <= LOW_CARDINALITY


def test_unknown_and_stuck_orders_are_visible(viewer, traded_pool, session_now):
    now = timezone.now()
    order = Order.objects.get(pool=traded_pool)
    Order.objects.filter(pk=order.pk).update(
        status="submitting", submitted_at=now - timedelta(minutes=5)
    )
    factories.make_recommendation("BBB", session_now, confidence="0.90")
    run_decision_cycle(traded_pool.pk, session_now, dispatch=False)
    Order.objects.filter(status="queued").update(status="unknown")

    samples = scrape(viewer)

    name = traded_pool.name
    assert samples["engine_orders"][labels(pool=name, status="unknown")] == 1
    assert samples["engine_orders"][labels(pool=name, status="submitting")] == 1
    assert samples["engine_orders"][labels(pool=name, status="queued")] == 0
    assert samples["engine_orders_stuck_submitting"][labels(pool=name)] == 1


def test_a_recently_submitted_order_is_not_stuck(viewer, traded_pool):
    Order.objects.filter(pool=traded_pool).update(
        status="submitting", submitted_at=timezone.now() - timedelta(seconds=30)
    )

    samples = scrape(viewer)

    assert samples["engine_orders_stuck_submitting"][labels(pool=traded_pool.name)] == 0


def test_breakers_in_force_and_the_halt_are_counted(viewer, pool):
    now = timezone.now()
    record_trigger(
        pool,
        BreakerTrigger(
            type=BreakerType.VOLATILITY,
            triggered_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(hours=1),
            entity=None,
        ),
        now,
    )
    pool.halted = True
    pool.save(update_fields=["halted"])

    samples = scrape(viewer)

    assert samples["engine_breakers_in_force"][labels(pool=pool.name, type="volatility")] == 1
    assert samples["engine_pool_halted"][labels(pool=pool.name)] == 1


def test_counters_add_up_across_cycles_in_one_row_per_label_set(pool, session_now):
    factories.add_bars("BBB", session_now)
    factories.make_recommendation("BBB", session_now, confidence="0.10")
    for _ in range(3):
        run_decision_cycle(pool.pk, session_now, dispatch=False)

    (row,) = TelemetryCounter.objects.filter(pool=pool, metric="decisions")
    assert (row.outcome, row.reason, row.total) == ("skip", "insufficient_confidence", 3)


# --- who may read -----------------------------------------------------------------------------


@pytest.mark.parametrize("client_name", ["viewer", "operator"])
def test_a_reader_token_works(request, pool, client_name):
    scrape(request.getfixturevalue(client_name))


@pytest.mark.parametrize("client_name", ["ingest", "no_role"])
def test_a_user_without_a_reading_role_gets_403(request, pool, client_name):
    assert request.getfixturevalue(client_name).get("/metrics").status_code == 403


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.3", "192.168.0.0/16"])
@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.7.8"])
def test_anonymous_from_an_allowed_address_gets_200(anonymous, pool, address):
    scrape(anonymous, REMOTE_ADDR=address)


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.3"])
@pytest.mark.parametrize("address", ["10.1.2.4", "127.0.0.1"])
def test_anonymous_from_elsewhere_gets_401(anonymous, pool, address):
    response = anonymous.get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == 401
    assert set(response.json()) == {"detail", "errors"}


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.3"])
def test_a_forwarded_header_does_not_open_the_metrics(anonymous, pool):
    response = anonymous.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.1.2.3")

    assert response.status_code == 401


# --- queries ----------------------------------------------------------------------------------


def test_queries_grow_only_by_the_read_model_of_each_pool(viewer, traded_pool, session_now):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            scrape(viewer)
        return len(ctx.captured_queries)

    one_pool = queries()
    factories.make_pool(now=session_now)
    two_pools = queries()
    # More decisions, orders and buckets cost nothing more.
    factories.make_recommendation("AAA", session_now, confidence="0.10")
    EngineConfig.objects.update(max_active_commitments=100)
    run_decision_cycle(traded_pool.pk, session_now, dispatch=False)

    assert queries() == two_pools
    assert two_pools - one_pool <= 7
    assert one_pool <= 16
