"""``portfolio.books.book_fills`` books a batch of fills exactly as ``book_fill`` once per fill.

The property: any sequence of buys and sells (several entities, one without bars so without
levels, partial sells, closing sells, sells without a commitment, several increments of one
order, on books that already hold commitments) booked by ``book_fills`` into one pool leaves
the same commitments, cash, fills rows, realized gains and levels as ``book_fill`` called once
per fill, in order, on a twin pool; a fill increment booked twice is refused by both, with
nothing written. And the batch's queries do not grow with the number of fills.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from execution.models import Order
from portfolio.books import BookedFill, FillToBook, book_fill, book_fills, buy_levels_inputs
from portfolio.models import Commitment, Fill, FillSide, Pool
from tests import factories

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
#: Entities with bars (their buys get levels) and one without (its commitment has none).
WITH_BARS = ("BKA", "BKB", "BKC")
WITHOUT_BARS = "BKN"
ENTITIES = (*WITH_BARS, WITHOUT_BARS)
ORDERS_PER_POOL = 4

#: Amounts as a broker sends them: up to four decimals for units, up to six for values, so
#: the products and averages need the columns' rounding.
units = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("60"), places=4)
values = st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("900"), places=2),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("900"), places=6),
)


@dataclass(frozen=True)
class Step:
    entity: int
    side: str  # "buy", "sell" (these units), "close" (every unit held)
    units: Decimal
    value: Decimal
    order: int | None  # the index of the order it fills, or None
    repeat: bool  # books the order's previous increment again (refused)
    minutes: int


steps = st.builds(
    Step,
    entity=st.integers(0, len(ENTITIES) - 1),
    side=st.sampled_from(["buy", "buy", "sell", "close"]),
    units=units,
    value=values,
    order=st.one_of(st.none(), st.integers(0, ORDERS_PER_POOL - 1)),
    repeat=st.integers(0, 9).map(lambda n: n == 0),
    minutes=st.integers(0, 600),
)


def _fills(history: list[Step], batch: list[Step], orders: list[Order]) -> list[FillToBook]:
    """The fills of ``history + batch`` for the pool of ``orders`` (the same for both pools)."""
    held = dict.fromkeys(ENTITIES, Decimal("0"))
    filled: dict[int, Decimal] = {}
    fills = []
    for step in [*history, *batch]:
        entity = ENTITIES[step.entity]
        side = FillSide.BUY if step.side == "buy" else FillSide.SELL
        quantity = held[entity] if step.side == "close" and held[entity] > 0 else step.units
        held[entity] = max(
            held[entity] + (quantity if side == FillSide.BUY else -quantity), Decimal("0")
        )
        order_id = cumulative = None
        if step.order is not None:
            if step.repeat and step.order in filled:
                cumulative = filled[step.order]
            else:
                cumulative = filled.get(step.order, Decimal("0")) + quantity
                filled[step.order] = cumulative
            order_id = orders[step.order].pk
        fills.append(
            FillToBook(
                entity_id=entity,
                side=side,
                units=quantity,
                value=step.value,
                filled_at=NOW - timedelta(minutes=step.minutes),
                reason="entry" if side == FillSide.BUY else "exit",
                order_id=order_id,
                order_filled_quantity=cumulative,
            )
        )
    return fills


def _one_by_one(pool: Pool, fills: list[FillToBook], levels) -> list[BookedFill]:
    return [
        book_fill(
            pool,
            entity_id=fill.entity_id,
            side=fill.side,
            units=fill.units,
            value=fill.value,
            filled_at=fill.filled_at,
            now=NOW,
            reason=fill.reason,
            order_id=fill.order_id,
            order_filled_quantity=fill.order_filled_quantity,
            levels_inputs=levels,
        )
        for fill in fills
    ]


def _locked(pool: Pool) -> Pool:
    return (
        Pool.objects.select_for_update(of=("self",)).select_related("engine_config").get(pk=pool.pk)
    )


def _commitment_fields(commitment: Commitment) -> dict:
    return {
        field.attname: getattr(commitment, field.attname)
        for field in Commitment._meta.concrete_fields
        if field.attname not in ("id", "pool_id", "updated_at")
    }


def _books(pool: Pool, orders: list[Order]) -> dict:
    """Every row the books hold for ``pool``, with its own ids replaced by positions."""
    commitments = list(Commitment.objects.filter(pool=pool).order_by("pk"))
    position = {c.pk: i for i, c in enumerate(commitments)}
    order_position = {o.pk: i for i, o in enumerate(orders)}
    fills = [
        {
            field.attname: getattr(fill, field.attname)
            for field in Fill._meta.concrete_fields
            if field.attname not in ("id", "pool_id", "commitment_id", "order_id")
        }
        | {
            "commitment": position.get(fill.commitment_id),
            "order": order_position.get(fill.order_id),
        }
        for fill in Fill.objects.filter(pool=pool).order_by("pk")
    ]
    return {
        "cash": Pool.objects.get(pk=pool.pk).cash,
        "commitments": [_commitment_fields(c) for c in commitments],
        "fills": fills,
    }


def _results(booked: list[BookedFill], pool: Pool) -> list[tuple]:
    position = {c.pk: i for i, c in enumerate(Commitment.objects.filter(pool=pool).order_by("pk"))}
    return [
        (
            b.realized_gain,
            b.fill.pk is not None,
            None if b.commitment is None else position[b.commitment.pk],
            None if b.commitment is None else _commitment_fields(b.commitment),
        )
        for b in booked
    ]


def _orders(pool: Pool) -> list[Order]:
    return [
        Order.objects.create(
            pool=pool,
            entity_id=ENTITIES[i % len(ENTITIES)],
            action="act",
            side="buy",
            reason="entry",
            quantity=Decimal("1"),
            estimated_value=Decimal("100"),
            status="filled",
            idempotency_key=f"books-bulk-{pool.pk}-{i}",
            broker="paper",
            created_at=NOW,
        )
        for i in range(ORDERS_PER_POOL)
    ]


class BookFillsAsBookFillOneByOne(TestCase):
    @classmethod
    def setUpTestData(cls):
        for symbol in WITH_BARS:
            factories.add_bars(symbol, NOW)
        factories.make_entity(WITHOUT_BARS)

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        history=st.lists(steps, max_size=8),
        batch=st.lists(steps, min_size=1, max_size=25),
        levels_for=st.one_of(st.none(), st.sets(st.sampled_from(ENTITIES))),
    )
    def test_same_books_as_one_fill_at_a_time(self, history, batch, levels_for):
        pools = [factories.make_pool(now=NOW, cash="1000000") for _ in range(2)]
        orders = [_orders(pool) for pool in pools]
        history = [replace(step, repeat=False) for step in history]
        outcomes = []
        for pool, pool_orders, bulk in zip(pools, orders, (True, False), strict=True):
            fills = _fills(history, batch, pool_orders)
            with transaction.atomic():
                _one_by_one(_locked(pool), fills[: len(history)], None)
            levels = (
                None if levels_for is None else buy_levels_inputs(pool, sorted(levels_for), NOW)
            )
            try:
                with transaction.atomic():
                    locked = _locked(pool)
                    if bulk:
                        booked = book_fills(
                            locked, fills[len(history) :], now=NOW, levels_inputs=levels
                        )
                    else:
                        booked = _one_by_one(locked, fills[len(history) :], levels)
                    outcomes.append((locked.cash, _results(booked, pool)))
            except IntegrityError:
                outcomes.append("refused")
            outcomes.append(_books(pool, pool_orders))
        bulk_result, bulk_books, one_result, one_books = outcomes
        assert bulk_books == one_books
        assert bulk_result == one_result

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        batch=st.lists(
            steps.filter(lambda s: s.order is not None).map(lambda s: replace(s, repeat=True)),
            min_size=2,
            max_size=10,
        )
    )
    def test_an_increment_booked_again_is_refused_by_both(self, batch):
        """Filling an order twice with the same cumulative quantity books nothing."""
        pools = [factories.make_pool(now=NOW, cash="1000000") for _ in range(2)]
        orders = [_orders(pool) for pool in pools]
        fills = [_fills([], batch, pool_orders) for pool_orders in orders]
        increments = [(f.order_id, f.order_filled_quantity) for f in fills[0]]
        twice = len(set(increments)) < len(increments)
        refused = []
        for pool, pool_fills, bulk in zip(pools, fills, (True, False), strict=True):
            try:
                with transaction.atomic():
                    locked = _locked(pool)
                    cash = locked.cash
                    if bulk:
                        book_fills(locked, pool_fills, now=NOW)
                    else:
                        _one_by_one(locked, pool_fills, None)
            except IntegrityError:
                refused.append(True)
                if bulk:
                    assert locked.cash == cash
            else:
                refused.append(False)
        assert refused == [twice, twice]
        assert _books(pools[0], orders[0]) == _books(pools[1], orders[1])


@pytest.mark.django_db
@pytest.mark.parametrize("size", [2, 10, 40])
def test_the_queries_do_not_grow_with_the_batch(size, django_assert_num_queries):
    """The open commitments, the tier and the bars (once), a savepoint around the changed
    commitments' update, the new commitments' insert, the cash and the fills' insert."""
    for symbol in WITH_BARS:
        factories.add_bars(symbol, NOW)
    pool = factories.make_pool(now=NOW, cash="1000000")
    with transaction.atomic():
        _one_by_one(
            _locked(pool),
            [FillToBook("BKA", FillSide.BUY, Decimal("100"), Decimal("10"), NOW)],
            None,
        )
    fills = [
        FillToBook(
            WITH_BARS[i % 3],
            FillSide.SELL if i % 3 == 0 else FillSide.BUY,
            Decimal("1"),
            Decimal("11"),
            NOW,
        )
        for i in range(size)
    ]
    with transaction.atomic():
        locked = _locked(pool)
        with django_assert_num_queries(9):
            booked = book_fills(locked, fills, now=NOW)
    assert len(booked) == size
    assert Fill.objects.filter(pool=pool).count() == size + 1
    assert Commitment.objects.filter(pool=pool).count() == len({f.entity_id for f in fills})
