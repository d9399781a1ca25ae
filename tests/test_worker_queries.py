"""The worker's queries per order: a fixed number whatever the size of the pool.

Each order is claimed (the gate's input read once), sent to the test broker over HTTP and
answered (the fill booked), and the queries of the whole ``process_order`` are counted,
transaction statements (``BEGIN``, ``COMMIT``, savepoints) aside.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.models import Recommendation
from execution.dispatch import queued_order
from execution.models import Order, RiskEvaluation
from execution.worker import process_order
from portfolio.models import Commitment, Fill, Pool, PoolRiskConfig, TelemetryCounter
from tests import factories
from tests.broker_server import FakeBroker

#: A buy: claim (the order with its entity, the pool with its limits, the open commitments,
#: the bars, the session's fills, the breakers, the orders of the last minute, the
#: evaluation, the order) and answer (the order, the pool with its configuration, the
#: commitment, the tier, the bars for the ATR, the commitment, the cash, the fill, the order).
BUY_QUERIES = 18
#: A sell books no ATR: the tier and the bars are not read.
SELL_QUERIES = 16
#: An order of a recommendation also adds its latency to the histogram (one upsert).
RECOMMENDED_BUY_QUERIES = BUY_QUERIES + 1

SYMBOLS = [f"WQ{i:02d}" for i in range(12)]
PRICE = Decimal("100")


@pytest.fixture
def broker(settings):
    with FakeBroker(prices=dict.fromkeys(SYMBOLS, str(PRICE))) as server:
        yield server.configure(settings, timeout=5)


@pytest.fixture
def http_pool(db, session_now, broker) -> Pool:
    pool = factories.make_pool(now=session_now, cash="10000000")
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    PoolRiskConfig.objects.filter(pool=pool).update(
        max_open_commitments=100, max_sector_pct=Decimal("1")
    )
    for n, symbol in enumerate(SYMBOLS):
        factories.add_bars(symbol, session_now, sessions=20, sector=f"Sector {n % 4}")
    # The first order of an empty pool reads no bars (no position to value): start with one.
    first = _queue(pool, SYMBOLS[-1], session_now, n=-1)
    assert process_order(first.pk, session_now).status == "filled"
    return Pool.objects.get(pk=pool.pk)


def _queue(pool: Pool, symbol: str, now, *, side: str = "buy", n: int = 0, **links) -> Order:
    order = queued_order(
        pool=pool,
        entity_id=symbol,
        action="act" if side == "buy" else "exit",
        side=side,
        reason="entry" if side == "buy" else "exit",
        quantity=Decimal("2"),
        estimated_value=PRICE,
        reference=f"queries:{symbol}:{side}:{n}",
        now=now,
        **links,
    )
    order.save()
    return order


def _data_queries(captured) -> list[str]:
    transaction_statements = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [q["sql"] for q in captured if not q["sql"].upper().startswith(transaction_statements)]


def _process_counted(order: Order, now) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = process_order(order.pk, now)
    return result.status, _data_queries(captured.captured_queries)


def test_a_buy_takes_the_same_queries_whatever_the_number_of_commitments(http_pool, session_now):
    counts = []
    for n, symbol in enumerate(SYMBOLS[:-1]):
        status, queries = _process_counted(_queue(http_pool, symbol, session_now, n=n), session_now)
        assert status == "filled"
        counts.append(len(queries))

    assert counts == [BUY_QUERIES] * (len(SYMBOLS) - 1), counts
    assert Commitment.objects.filter(pool=http_pool, status="open").count() == len(SYMBOLS)
    assert Fill.objects.filter(pool=http_pool).count() == len(SYMBOLS)
    assert RiskEvaluation.objects.filter(pool=http_pool, passed=True).count() == len(SYMBOLS)


def test_an_add_and_a_sell_take_a_fixed_number_of_queries(http_pool, session_now):
    symbol = SYMBOLS[0]
    for n in range(3):
        status, queries = _process_counted(_queue(http_pool, symbol, session_now, n=n), session_now)
        assert status == "filled" and len(queries) == BUY_QUERIES, queries
    commitment = Commitment.objects.get(pool=http_pool, entity_id=symbol, status="open")
    assert commitment.units == Decimal("6") and commitment.risk_threshold is not None

    status, queries = _process_counted(
        _queue(http_pool, symbol, session_now, side="sell"), session_now
    )

    assert status == "filled"
    assert len(queries) == SELL_QUERIES, queries
    commitment.refresh_from_db()
    assert commitment.units == Decimal("4")


def test_an_order_of_a_recommendation_adds_one_upsert_for_its_latency(http_pool, session_now):
    counts = []
    for n, symbol in enumerate(SYMBOLS[:4]):
        recommendation = factories.make_recommendation(symbol, session_now)
        Recommendation.objects.filter(pk=recommendation.pk).update(received_at=session_now)
        order = _queue(http_pool, symbol, session_now, n=n, recommendation_id=recommendation.pk)
        status, queries = _process_counted(order, session_now + timedelta(seconds=1))
        assert status == "filled"
        counts.append(len(queries))

    assert counts == [RECOMMENDED_BUY_QUERIES] * 4, counts
    observed = TelemetryCounter.objects.get(
        pool=http_pool, metric="recommendation_to_order_seconds", le="+Inf"
    )
    assert observed.total == 4


def test_a_gate_rejection_stops_after_the_claim(http_pool, session_now, broker):
    Pool.objects.filter(pk=http_pool.pk).update(halted=True, halt_reason="test")
    sent = len(broker.received)

    status, queries = _process_counted(_queue(http_pool, SYMBOLS[0], session_now), session_now)

    assert status == "risk_rejected"
    # The claim's reads, the evaluation and the order: nothing sent, nothing booked.
    assert len(queries) == 9, queries
    assert len(broker.received) == sent
