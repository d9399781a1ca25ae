"""The worker's queries per order: a fixed number whatever the size of the pool, and a batch of
orders cheaper per order than the same orders one by one.

Each order is claimed (the gate's input read once per claim), sent to the test broker over
HTTP and answered (the fill booked), and the queries of the whole ``process_order`` (or
``process_orders``) are counted, transaction statements (``BEGIN``, ``COMMIT``, savepoints)
aside. The account the gate reads is the read model's (``account_as_of``): its own queries are
counted by its own docstring and measured here, so these counts are the worker's.
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
from execution.worker import process_order, process_orders
from portfolio.models import Commitment, Fill, Pool, PoolRiskConfig, TelemetryCounter
from portfolio.selectors import account_as_of
from tests import factories
from tests.broker_server import FakeBroker

#: Before the claim's transaction: the pool of the first queued order, the pool (its adapter
#: and the broker account read from them; the cache that keeps the account costs no query
#: here, see the ``broker`` fixture).
PRE_CLAIM_QUERIES = 2
#: A claim besides the account: the orders with their entities, the entities' unsettled
#: orders (unknown or submitting), the pool with its limits, the orders sent in the last
#: minute, the evaluations (one insert), the orders (one update), their events (one insert).
CLAIM_QUERIES = 7
#: Answers besides the booking: the orders, the pool with its configuration.
ANSWERS_QUERIES = 2
#: What the buys booked take their levels from, read once per answer transaction: the tier,
#: the bars for the ATRs (``portfolio.books.buy_levels_inputs``).
LEVELS_QUERIES = 2
#: Each answer with a fill: the commitment, its write, the cash, the fill, the order, its
#: events (answered and filled: one insert).
ANSWER_QUERIES = 6
#: A lone buy's answer; a sell books no levels: no tier, no bars.
BUY_ANSWER_QUERIES = LEVELS_QUERIES + ANSWER_QUERIES
SELL_ANSWER_QUERIES = ANSWER_QUERIES
#: A batch's buys booked together (``portfolio.books.book_fills``), whatever its size: the
#: open commitments (one read), the new commitments, the cash, the fills (one write each).
BATCH_BOOKING_QUERIES = 4
#: A batch's answers besides the booking, whatever its size: the orders (one update), their
#: events (one insert).
BATCH_ANSWER_QUERIES = 2

SYMBOLS = [f"WQ{i:02d}" for i in range(12)]
PRICE = Decimal("100")


@pytest.fixture
def broker(settings):
    # The cache in memory: the broker account kept between claims and the client-side rate
    # limit's counters are the cache's round trips (Redis in production), not the worker's
    # queries; with the database cache they would be counted here.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
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


@pytest.fixture
def account_queries(http_pool, session_now) -> int:
    """The queries of the account the gate reads (``account_as_of``)."""
    with CaptureQueriesContext(connection) as captured:
        account_as_of(http_pool, session_now)
    return len(_data_queries(captured.captured_queries))


def _one_order(account_queries: int, answer: int) -> int:
    return PRE_CLAIM_QUERIES + CLAIM_QUERIES + account_queries + ANSWERS_QUERIES + answer


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


def test_a_buy_takes_the_same_queries_whatever_the_number_of_commitments(
    http_pool, session_now, account_queries
):
    counts = []
    for n, symbol in enumerate(SYMBOLS[:-1]):
        status, queries = _process_counted(_queue(http_pool, symbol, session_now, n=n), session_now)
        assert status == "filled"
        counts.append(len(queries))

    assert counts == [_one_order(account_queries, BUY_ANSWER_QUERIES)] * (len(SYMBOLS) - 1)
    assert Commitment.objects.filter(pool=http_pool, status="open").count() == len(SYMBOLS)
    assert Fill.objects.filter(pool=http_pool).count() == len(SYMBOLS)
    assert RiskEvaluation.objects.filter(pool=http_pool, passed=True).count() == len(SYMBOLS)


def test_an_add_and_a_sell_take_a_fixed_number_of_queries(http_pool, session_now, account_queries):
    symbol = SYMBOLS[0]
    for n in range(3):
        status, queries = _process_counted(_queue(http_pool, symbol, session_now, n=n), session_now)
        assert status == "filled"
        assert len(queries) == _one_order(account_queries, BUY_ANSWER_QUERIES), queries
    commitment = Commitment.objects.get(pool=http_pool, entity_id=symbol, status="open")
    assert commitment.units == Decimal("6") and commitment.risk_threshold is not None

    status, queries = _process_counted(
        _queue(http_pool, symbol, session_now, side="sell"), session_now
    )

    assert status == "filled"
    assert len(queries) == _one_order(account_queries, SELL_ANSWER_QUERIES), queries
    commitment.refresh_from_db()
    assert commitment.units == Decimal("4")


def test_an_order_of_a_recommendation_adds_one_upsert_for_its_latency(
    http_pool, session_now, account_queries
):
    counts = []
    for n, symbol in enumerate(SYMBOLS[:4]):
        recommendation = factories.make_recommendation(symbol, session_now)
        Recommendation.objects.filter(pk=recommendation.pk).update(received_at=session_now)
        order = _queue(http_pool, symbol, session_now, n=n, recommendation_id=recommendation.pk)
        status, queries = _process_counted(order, session_now + timedelta(seconds=1))
        assert status == "filled"
        counts.append(len(queries))

    assert counts == [_one_order(account_queries, BUY_ANSWER_QUERIES) + 1] * 4, counts
    observed = TelemetryCounter.objects.get(
        pool=http_pool, metric="recommendation_to_order_seconds", le="+Inf"
    )
    assert observed.total == 4


def test_a_batch_observes_the_latency_of_each_recommendation_in_one_upsert(
    http_pool, session_now, account_queries
):
    orders = []
    for n, symbol in enumerate(SYMBOLS[:3]):
        recommendation = factories.make_recommendation(symbol, session_now)
        # Answered at session_now + 1 s: latencies of 1, 2 and 3 seconds.
        Recommendation.objects.filter(pk=recommendation.pk).update(
            received_at=session_now - timedelta(seconds=n)
        )
        orders.append(
            _queue(http_pool, symbol, session_now, n=n, recommendation_id=recommendation.pk)
        )

    statuses, queries = _batch_counted(orders, session_now + timedelta(seconds=1))

    assert statuses == ["filled"] * 3
    fixed = PRE_CLAIM_QUERIES + CLAIM_QUERIES + account_queries + ANSWERS_QUERIES + LEVELS_QUERIES
    assert len(queries) == fixed + BATCH_BOOKING_QUERIES + BATCH_ANSWER_QUERIES + 1, queries
    counted = dict(
        TelemetryCounter.objects.filter(
            pool=http_pool, metric="recommendation_to_order_seconds"
        ).values_list("le", "total")
    )
    assert (counted["0.5"], counted["1.0"], counted["2.0"], counted["3.0"]) == (0, 1, 2, 3)
    assert counted["+Inf"] == 3
    observed = TelemetryCounter.objects.get(
        pool=http_pool, metric="recommendation_to_order_seconds", le="+Inf"
    )
    assert observed.sum_seconds == pytest.approx(6.0)


def test_a_gate_rejection_stops_after_the_claim(http_pool, session_now, broker, account_queries):
    Pool.objects.filter(pk=http_pool.pk).update(halted=True, halt_reason="test")
    sent = len(broker.received)

    status, queries = _process_counted(_queue(http_pool, SYMBOLS[0], session_now), session_now)

    assert status == "risk_rejected"
    # The reads before the claim and the claim's, the evaluation, the order and its event:
    # nothing sent, nothing booked.
    assert len(queries) == PRE_CLAIM_QUERIES + CLAIM_QUERIES + account_queries, queries
    assert len(broker.received) == sent


def _batch_counted(orders: list[Order], now) -> tuple[list[str], list[str]]:
    with CaptureQueriesContext(connection) as captured:
        results = process_orders([order.pk for order in orders], now)
    return [r.status for r in results], _data_queries(captured.captured_queries)


@pytest.mark.parametrize("size", [2, 5, 11])
def test_a_batch_costs_one_claim_and_one_answer_transaction_plus_the_bookings(
    http_pool, session_now, account_queries, broker, size
):
    orders = [
        _queue(http_pool, SYMBOLS[n % len(SYMBOLS)], session_now, n=100 + n) for n in range(size)
    ]

    statuses, queries = _batch_counted(orders, session_now)

    assert statuses == ["filled"] * size
    # One claim and one answer transaction for the batch, whatever its size, where a lone
    # order takes 19 plus the account.
    fixed = PRE_CLAIM_QUERIES + CLAIM_QUERIES + account_queries + ANSWERS_QUERIES + LEVELS_QUERIES
    assert len(queries) == fixed + BATCH_BOOKING_QUERIES + BATCH_ANSWER_QUERIES, [
        str(q)[:100] for q in queries
    ]
    assert len([r for r in broker.received if r.method == "POST"]) == size + 1
    assert RiskEvaluation.objects.filter(order__in=orders).count() == size


def test_a_batch_of_refusals_is_claimed_in_the_claim_queries_alone(
    http_pool, session_now, account_queries, broker
):
    Pool.objects.filter(pk=http_pool.pk).update(halted=True, halt_reason="test")
    orders = [_queue(http_pool, symbol, session_now, n=200) for symbol in SYMBOLS[:6]]

    statuses, queries = _batch_counted(orders, session_now)

    assert statuses == ["risk_rejected"] * 6
    # Refused orders take the claim's update of the refused (one), no answer transaction.
    assert len(queries) == PRE_CLAIM_QUERIES + CLAIM_QUERIES + account_queries, queries
