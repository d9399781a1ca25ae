"""project.bulk: bulk_insert writes what bulk_create writes (COPY on PostgreSQL), bulk_update
what an update of each row writes (UPDATE … FROM VALUES on PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from decisions.models import DecisionRecord
from execution.dispatch import queued_order
from execution.models import Order
from project.bulk import bulk_insert, bulk_update
from tests import factories


def _record(pool, rec, reason: str, now) -> DecisionRecord:
    return DecisionRecord(
        pool=pool,
        recommendation=rec,
        entity_id=rec.entity_id,
        action="act",
        outcome="skip",
        skip_reason=reason,
        processed=False,
        confidence=Decimal("0.71234"),
        commitment_value=Decimal("1234.5678"),
        units=Decimal("12"),
        allocation_pct=Decimal("0.012346"),
        current_value=None,
        risk_tier="moderate",
        pool_exposure=Decimal("10.5"),
        active_pool=Decimal("99999.9999"),
        reserve_balance=Decimal("0"),
        circuit_breaker_active=True,
        correlation=Decimal("-0.4321"),
        correlation_check="passed",
        report_sessions_away=None,
        decision_trace={"checks": [{"check": "x", "note": 'quote " and \\ and ünïcode'}], "n": 1.5},
        evaluated_at=now,
        last_evaluated_at=now,
    )


def _columns(record: DecisionRecord) -> dict:
    skip = {"id", "created_at", "skip_reason"}
    return {
        f.attname: getattr(record, f.attname)
        for f in DecisionRecord._meta.concrete_fields
        if f.attname not in skip
    }


def test_bulk_insert_sets_keys_and_stores_the_same_values_as_bulk_create(pool, session_now):
    factories.add_bars("BLK", session_now)
    rec = factories.make_recommendation("BLK", session_now)
    fast = [_record(pool, rec, f"fast-{i}", session_now) for i in range(3)]
    slow = [_record(pool, rec, f"slow-{i}", session_now) for i in range(3)]

    bulk_insert(DecisionRecord, fast)
    DecisionRecord.objects.bulk_create(slow)

    assert all(r.pk for r in fast) and len({r.pk for r in fast}) == 3
    stored_fast = DecisionRecord.objects.filter(pk__in=[r.pk for r in fast]).order_by("pk")
    stored_slow = DecisionRecord.objects.filter(pk__in=[r.pk for r in slow]).order_by("pk")
    assert [_columns(r) for r in stored_fast] == [_columns(r) for r in stored_slow]
    assert all(r.created_at is not None for r in stored_fast)
    # The sequence moves on: a later ordinary insert does not collide.
    later = _record(pool, rec, "later", session_now)
    later.save()
    assert later.pk not in {r.pk for r in fast}


def test_bulk_insert_of_nothing_does_nothing(db):
    bulk_insert(DecisionRecord, [])
    assert not DecisionRecord.objects.exists()


def _orders(pool, now, tag: str, count: int) -> list[Order]:
    factories.make_entity("BLK")
    orders = Order.objects.bulk_create(
        [
            queued_order(
                pool=pool,
                entity_id="BLK",
                action="act",
                side="buy",
                reason="entry",
                quantity=Decimal(n + 1),
                estimated_value=Decimal("12.3400"),
                reference=f"{tag}:{n}",
                now=now,
            )
            for n in range(count)
        ]
    )
    return list(Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("pk"))


def _change(order: Order, n: int, now) -> None:
    order.status = "filled" if n % 2 else "unknown"
    order.status_reason = "" if n % 2 else 'timeout "quoted" ünïcode'
    order.response_payload = {"id": f"b-{n}", "filled_avg_price": "12.5", "legs": None, "n": n}
    order.filled_quantity = Decimal(n + 1) if n % 2 else Decimal("0")
    order.fill_value = Decimal("12.5001") if n % 2 else None
    order.filled_at = now + timedelta(seconds=n) if n % 2 else None
    order.attempts = n
    order.lease_owner = ""
    order.lease_expires_at = None
    order.updated_at = now + timedelta(minutes=n)


FIELDS = [
    "status",
    "status_reason",
    "response_payload",
    "filled_quantity",
    "fill_value",
    "filled_at",
    "attempts",
    "lease_owner",
    "lease_expires_at",
    "updated_at",
]


def _stored(orders: list[Order]) -> list[dict]:
    skip = {"id", "reference", "idempotency_key", "quantity", "created_at"}
    return [
        {
            f.attname: getattr(o, f.attname)
            for f in Order._meta.concrete_fields
            if f.attname not in skip
        }
        for o in Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("pk")
    ]


def test_bulk_update_stores_what_save_stores_for_each_object(pool, session_now):
    fast, slow = _orders(pool, session_now, "fast", 4), _orders(pool, session_now, "slow", 4)
    for n, (a, b) in enumerate(zip(fast, slow, strict=True)):
        _change(a, n, session_now)
        _change(b, n, session_now)
        a.quantity = b.quantity = Decimal("999")  # changed in memory, not named: not written

    assert bulk_update(Order, fast, FIELDS) == 4
    for order in slow:
        Order.objects.filter(pk=order.pk).update(**{f: getattr(order, f) for f in FIELDS})

    assert _stored(fast) == _stored(slow)
    assert [
        o.quantity for o in Order.objects.filter(pk__in=[o.pk for o in fast]).order_by("pk")
    ] == [Decimal(n + 1) for n in range(4)]
    assert Order.objects.get(pk=fast[0].pk).status_reason == 'timeout "quoted" ünïcode'


def test_bulk_update_counts_only_the_rows_there(pool, session_now):
    orders = _orders(pool, session_now, "gone", 3)
    Order.objects.filter(pk=orders[1].pk).delete()
    for n, order in enumerate(orders):
        _change(order, n, session_now)

    assert bulk_update(Order, orders, FIELDS) == 2
    assert bulk_update(Order, [], FIELDS) == 0
