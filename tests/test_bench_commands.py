"""``manage.py bench chaos|latency|worker``: the options are checked, and what cannot run here is
refused with a clear message, before any database or cluster is started; the latency bench reads
the broker's answer to the order it times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from decisions.tooling.bench_latency import LatencySpec, _wait_answered, session_refusal
from execution.adapters import AlpacaHttpAdapter, OrderRequest
from execution.dispatch import queued_order
from execution.keys import client_order_id_for
from tests import factories
from tests.broker_server import FakeBroker


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--noops", "0"], "--noops"),
        (["worker", "--noops", "1001"], "--noops"),
        (["worker", "--orders", "-1"], "--orders"),
        (["worker", "--workers", "0"], "--workers"),
        (["latency", "--n", "0"], "--n"),
        (["latency", "--n", "1001"], "--n"),
        (["latency", "--workers", "9"], "--workers"),
        (["chaos", "--kills", "-1"], "--kills"),
        (["chaos", "--kills", "101"], "--kills"),
        (["chaos", "--feed-seconds", "5"], "--feed-seconds"),
        (["chaos", "--settle-timeout", "7200"], "--settle-timeout"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("bench", *argv)


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the refusal of SQLite")
@pytest.mark.parametrize("benchmark", ["chaos", "latency", "worker"])
def test_cluster_benchmarks_refuse_sqlite(benchmark):
    with pytest.raises(CommandError, match="PostgreSQL"):
        call_command("bench", benchmark)


@pytest.mark.parametrize(
    ("now", "refused"),
    [
        pytest.param(datetime(2026, 11, 18, 16, 0, tzinfo=UTC), None, id="wednesday-11h-et"),
        pytest.param(datetime(2026, 11, 18, 14, 30, tzinfo=UTC), None, id="at-the-open"),
        pytest.param(
            datetime(2026, 11, 18, 14, 29, 59, tzinfo=UTC),
            "opens at 2026-11-18T14:30:00",
            id="a-second-before-the-open",
        ),
        pytest.param(
            datetime(2026, 11, 18, 20, 58, tzinfo=UTC), "closes at", id="two-minutes-before-close"
        ),
        pytest.param(
            datetime(2026, 11, 21, 16, 0, tzinfo=UTC),
            "opens at 2026-11-23T14:30:00",
            id="saturday",
        ),
        pytest.param(
            datetime(2026, 11, 18, 22, 0, tzinfo=UTC),
            "opens at 2026-11-19T14:30:00",
            id="after-the-close",
        ),
    ],
)
def test_latency_runs_only_inside_a_session_it_can_finish_in(now, refused):
    refusal = session_refusal(now, LatencySpec(n=50))

    if refused is None:
        assert refusal is None
    else:
        assert refused in refusal


@pytest.mark.django_db(transaction=True)
def test_latency_finds_the_answer_to_the_order_of_a_recommendation(source_tiers, session_now):
    """The latency is read off the broker's exchanges by the client order id the worker sends
    (``ik1-…``), not the idempotency key itself. Real transactions: the bench's wait closes
    old connections, as a process beside a cluster does."""
    pool = factories.make_pool(now=session_now)
    factories.make_entity("LATX")
    recommendation = factories.make_recommendation("LATX", session_now)
    order = queued_order(
        pool=pool,
        entity_id="LATX",
        action="act",
        side="buy",
        reason="entry",
        quantity=Decimal("2"),
        estimated_value=Decimal("50"),
        reference=f"rec:{recommendation.pk}",
        now=session_now,
        recommendation_id=recommendation.pk,
    )
    order.save()
    with FakeBroker(prices={"LATX": "50"}) as broker:
        adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key)
        adapter.submit(
            OrderRequest(
                client_order_id=client_order_id_for(order.idempotency_key),
                symbol="LATX",
                side="buy",
                quantity=Decimal("2"),
            )
        )

        answered = _wait_answered(broker, recommendation.pk, 2.0)
        other = factories.make_recommendation("LATX", session_now)
        unanswered = _wait_answered(broker, other.pk, 0.2)

    (post,) = [e for e in broker.exchanges if e.method == "POST"]
    assert answered is not None and answered == post.answered_at
    assert unanswered is None
