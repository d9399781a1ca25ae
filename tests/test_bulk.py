"""project.bulk.bulk_insert writes what bulk_create writes (COPY on PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

from decisions.models import DecisionRecord
from project.bulk import bulk_insert
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
