"""``export_audit``: the audit tables of one pool as JSON Lines, every column, streamed by id."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from decisions.exports import AUDIT_TABLES
from decisions.models import DecisionRecord
from execution.models import Order
from portfolio import actions
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    OperatorAction,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
)
from tests import factories

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
TRACE = {
    "checks": [
        {"name": "confidence", "value": "0.80", "limit": "0.55", "passed": True},
        {"name": "sector", "inputs": {"Technology": "1200.50"}, "passed": True},
    ],
    "sizing": {"notes": ["base 7.27 %", "capped"], "dollars": "5000.00", "units": 49},
    "unicode": "Δ → ✓",
}


def make_decision(pool, rec, at: datetime, **fields) -> DecisionRecord:
    values = {
        "pool": pool,
        "recommendation": rec,
        "entity_id": rec.entity_id,
        "action": "act",
        "outcome": "act",
        "processed": True,
        "confidence": Decimal("0.80000"),
        "commitment_value": Decimal("5000.1234"),
        "units": Decimal("49"),
        "risk_tier": "moderate",
        "active_pool": Decimal("100000"),
        "reserve_balance": Decimal("0"),
        "decision_trace": TRACE,
        "evaluated_at": at,
        "last_evaluated_at": at,
    }
    return DecisionRecord.objects.create(**(values | fields))


def make_order(pool, decision, at: datetime) -> Order:
    return Order.objects.create(
        pool=pool,
        entity_id=decision.entity_id,
        decision=decision,
        recommendation=decision.recommendation,
        action="act",
        side="buy",
        reason="entry",
        quantity=Decimal("49"),
        estimated_value=Decimal("101.2500"),
        idempotency_key=f"key-{decision.id}",
        broker="paper",
        request_payload={"qty": "49", "symbol": decision.entity_id},
        created_at=at,
    )


def make_commitment(pool, symbol: str, at: datetime) -> Commitment:
    return Commitment.objects.create(
        pool=pool,
        entity_id=symbol,
        units=Decimal("49"),
        entry_value=Decimal("101.25"),
        entry_cost=Decimal("4961.25"),
        risk_tier="moderate",
        risk_threshold=Decimal("97.5"),
        opened_at=at,
    )


@pytest.fixture
def audit(pool):
    """A decision, its order and its commitment in ``pool``, plus one of each in another pool."""
    factories.make_entity("AAPL")
    rec = factories.make_recommendation("AAPL", NOW, rec_id="rec-aapl")
    decision = make_decision(pool, rec, NOW)
    order = make_order(pool, decision, NOW)
    commitment = make_commitment(pool, "AAPL", NOW + timedelta(seconds=2))
    other = factories.make_pool(now=NOW, name="other")
    other_decision = make_decision(other, rec, NOW)
    make_order(other, other_decision, NOW)
    make_commitment(other, "AAPL", NOW)
    return {"decisions": decision, "orders": order, "commitments": commitment}


def export(*args: str) -> tuple[list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_audit", *args, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def columns(model) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


@pytest.mark.parametrize("table", ["decisions", "orders", "commitments"])
def test_export_writes_every_column_of_the_pool_rows(pool, audit, table):
    rows, summary = export(table, "--pool", pool.name)

    row = audit[table]
    assert len(rows) == 1
    assert list(rows[0]) == columns(type(row))
    assert rows[0]["id"] == row.id
    assert rows[0]["pool_id"] == pool.id
    assert f"{table} of pool {pool.name}: 1 rows exported" in summary


def test_export_decisions_serializes_values_and_round_trips_the_trace(pool, audit):
    decision = audit["decisions"]

    (row,), _ = export("decisions", "--pool", pool.name)

    assert row["decision_trace"] == TRACE
    assert row["recommendation_id"] == "rec-aapl"
    assert row["entity_id"] == "AAPL"
    assert row["commitment_value"] == "5000.1234"
    assert row["confidence"] == "0.80000"
    assert row["correlation"] is None
    assert row["processed"] is True
    assert row["evaluated_at"] == "2026-11-18T16:00:00+00:00"
    assert datetime.fromisoformat(row["created_at"]) == decision.created_at


def test_export_orders_keeps_foreign_keys_as_raw_ids(pool, audit):
    (row,), _ = export("orders", "--pool", pool.name)

    assert row["decision_id"] == audit["decisions"].id
    assert row["commitment_id"] is None
    assert row["request_payload"] == {"qty": "49", "symbol": "AAPL"}
    assert (row["quantity"], row["estimated_value"]) == ("49.0000", "101.2500")


@pytest.mark.parametrize(
    ("args", "expected_ids"),
    [
        (["--since", "2026-11-18T16:00:00Z"], ["first", "second"]),
        (["--since", "2026-11-18T16:00:00.000001+00:00"], ["second"]),
        (["--until", "2026-11-18T11:00:00-05:00"], []),
        (["--until", "2026-11-18T17:00:00Z"], ["first"]),
        (["--since", "2026-11-18", "--until", "2026-11-19"], ["first", "second"]),
        (["--since", "2026-11-19"], []),
    ],
)
def test_export_filters_on_the_table_time(pool, args, expected_ids):
    factories.make_entity("AAPL")
    first = factories.make_recommendation("AAPL", NOW, rec_id="first")
    second = factories.make_recommendation("AAPL", NOW, rec_id="second")
    make_decision(pool, first, NOW)
    make_decision(pool, second, NOW + timedelta(hours=2))

    rows, _ = export("decisions", "--pool", pool.name, *args)

    assert [row["recommendation_id"] for row in rows] == expected_ids


def test_export_orders_rows_by_id(pool):
    factories.make_entity("AAPL")
    for index in range(5):
        rec = factories.make_recommendation("AAPL", NOW, rec_id=f"r{index}")
        make_decision(pool, rec, NOW - timedelta(minutes=index))  # later ids, earlier times

    rows, _ = export("decisions", "--pool", pool.name)

    assert [row["recommendation_id"] for row in rows] == ["r0", "r1", "r2", "r3", "r4"]
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)


def test_export_to_file_writes_json_lines_and_prints_the_count(pool, audit, tmp_path):
    target = tmp_path / "decisions.jsonl"
    out = io.StringIO()

    call_command("export_audit", "decisions", "--pool", pool.name, "--output", target, stdout=out)

    lines = target.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["decision_trace"] == TRACE
    assert f"1 rows exported to {target}" in out.getvalue()
    assert [path.name for path in tmp_path.iterdir()] == ["decisions.jsonl"]


def make_pool_history(pool) -> None:
    factories.make_entity("AAPL")
    commitment = make_commitment(pool, "AAPL", NOW)
    PoolSnapshot.objects.create(
        pool=pool,
        session=NOW.date(),
        taken_at=NOW,
        total_value=Decimal("100000"),
        cash=Decimal("95000"),
        reserve_balance=Decimal("10"),
        active_pool=Decimal("99990"),
        unrealized_gain=Decimal("0"),
        realized_gain=Decimal("50"),
        risk_adjusted_return=float("nan"),
        risk_tier="moderate",
    )
    ReserveLedgerEntry.objects.create(
        pool=pool,
        trigger="profit_siphon",
        amount=Decimal("10"),
        balance_after=Decimal("10"),
        entity_id="AAPL",
        commitment=commitment,
        created_at=NOW,
    )
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="daily_loss",
        triggered_at=NOW,
        expires_at=NOW + timedelta(hours=2),
        figures={"loss_pct": "0.051"},
    )


@pytest.mark.parametrize(
    ("table", "model", "check"),
    [
        ("snapshots", PoolSnapshot, ("session", "2026-11-18")),
        ("snapshots", PoolSnapshot, ("risk_adjusted_return", None)),
        ("ledger", ReserveLedgerEntry, ("amount", "10.0000")),
        ("tier_history", RiskTierHistory, ("new_tier", "moderate")),
        ("breaker_events", CircuitBreakerEvent, ("figures", {"loss_pct": "0.051"})),
    ],
)
def test_export_pool_history_tables(pool, table, model, check):
    make_pool_history(pool)

    (row,), _ = export(table, "--pool", pool.name)

    assert list(row) == columns(model)
    field, expected = check
    assert row[field] == expected


def test_export_operator_actions_of_the_pool_with_before_and_after(pool):
    other = factories.make_pool(now=NOW, name="other")
    later = NOW + timedelta(minutes=5)
    actions.halt_pool(pool, actor="ops", reason="broker <incident>", now=later, via="command")
    actions.halt_pool(other, actor="ops", reason="elsewhere", now=later, via="admin")
    actions.change_pool_risk_limits(
        pool,
        {"max_order_notional": "25000"},
        actor="risk",
        reason="smaller orders",
        now=later + timedelta(minutes=1),
        via="admin",
    )

    rows, summary = export("operator_actions", "--pool", pool.name)

    assert [row["action"] for row in rows] == ["create_pool", "halt", "change_pool_risk_limits"]
    assert all(list(row) == columns(OperatorAction) for row in rows)
    assert {row["pool_id"] for row in rows} == {pool.id}
    halt = rows[1]
    assert (halt["actor"], halt["reason"], halt["via"]) == ("ops", "broker <incident>", "command")
    assert halt["before"] == {"halted": False, "halt_reason": ""}
    assert halt["after"] == {"halted": True, "halt_reason": "broker <incident> (ops)"}
    assert halt["created_at"] == "2026-11-18T16:05:00+00:00"
    assert rows[2]["before"] == {"max_order_notional": "1000000"}
    assert rows[2]["after"] == {"max_order_notional": "25000"}
    assert f"operator_actions of pool {pool.name}: 3 rows exported" in summary

    rows, _ = export("operator_actions", "--pool", pool.name, "--since", "2026-11-18T16:06:00Z")
    assert [row["action"] for row in rows] == ["change_pool_risk_limits"]


def test_every_registered_table_has_its_pool_and_time_columns():
    for spec in AUDIT_TABLES.values():
        spec.model._meta.get_field(spec.pool_lookup)
        spec.model._meta.get_field(spec.time_field)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["decisions", "--pool", "nowhere"], "no pool named 'nowhere'"),
        (["trades", "--pool", "x"], "invalid choice: 'trades'"),
        (["decisions"], "--pool"),
        (["decisions", "--pool", "x", "--since", "2026-11-18T16:00:00"], "has no UTC offset"),
        (["decisions", "--pool", "x", "--since", "soon"], "not an ISO-8601 date or timestamp"),
        (
            ["decisions", "--pool", "x", "--since", "2026-11-19", "--until", "2026-11-18"],
            "is not before --until",
        ),
    ],
)
def test_export_argument_errors(db, args, expected):
    with pytest.raises(CommandError) as info:
        export(*args)

    assert expected in str(info.value)


def test_export_to_unwritable_path_is_a_command_error(pool, tmp_path):
    with pytest.raises(CommandError) as info:
        export("decisions", "--pool", pool.name, "--output", str(tmp_path / "no" / "f.jsonl"))

    assert "cannot write" in str(info.value)
