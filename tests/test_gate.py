"""The execution gate knows the trading state: the halt, the breakers in force, the cooldowns.

The pure rule (``execution.risk.evaluate_order``) is tested table-driven without a database;
the worker is tested end to end on the real database, against the HTTP test broker where what
reaches the broker is the point, on the paper broker otherwise.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decisions.engine import run_decision_cycle
from execution.account_rules import AccountCheck
from execution.keys import client_order_id_for
from execution.models import Order, RiskEvaluation
from execution.risk import GateReason, OrderRiskInput, PoolRiskLimits, evaluate_order
from execution.worker import process_order
from portfolio.actions import halt_pool
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.models import CircuitBreakerEvent, Commitment, Pool
from tests import factories
from tests.broker_server import FakeBroker

UNTIL = datetime(2026, 11, 18, 18, 0, tzinfo=UTC)
TRADING_STATE_CHECKS = ["trading_state", "circuit_breaker", "entity_cooldown"]

# --- the pure rule ----------------------------------------------------------------------------

LIMITS = PoolRiskLimits(
    max_open_commitments=10,
    max_sector_pct=Decimal("0.4"),
    max_daily_loss_pct=Decimal("0.05"),
    max_order_notional=Decimal("1000000"),
    max_orders_per_minute=120,
)

BASE = OrderRiskInput(
    side="buy",
    symbol="AAA",
    sector="Tech",
    quantity=Decimal("10"),
    estimated_value=Decimal("100"),
    opens_new_commitment=True,
    open_commitments=1,
    sector_value=Decimal("0"),
    total_value=Decimal("100000"),
    daily_gain=Decimal("0"),
    orders_last_minute=0,
    held_units=Decimal("0"),
    halted=False,
    breakers_in_force=(),
    breaker_until=None,
    entity_cooldown_until=None,
    account=AccountCheck(True, ""),
)


def _entry(**changes) -> OrderRiskInput:
    return replace(BASE, **changes)


def _exit(**changes) -> OrderRiskInput:
    exit_ = {"side": "sell", "opens_new_commitment": False, "held_units": Decimal("10")}
    return replace(BASE, **{**exit_, **changes})


def _check(result, name: str) -> dict:
    (check,) = [c for c in result.checks if c["check"] == name]
    return check


@pytest.mark.parametrize(
    ("order", "reasons"),
    [
        pytest.param(_entry(), (), id="entry-active-pool"),
        pytest.param(_entry(halted=True), ("pool_halted",), id="entry-halted"),
        pytest.param(_exit(halted=True), (), id="exit-covered-halted"),
        pytest.param(
            _exit(halted=True, quantity=Decimal("10"), held_units=Decimal("10")),
            (),
            id="exit-equal-to-held-halted",
        ),
        pytest.param(
            _exit(halted=True, quantity=Decimal("11"), held_units=Decimal("10")),
            ("pool_halted", "exit_exceeds_units_held"),
            id="exit-one-above-held-halted",
        ),
        pytest.param(
            _exit(halted=True, held_units=Decimal("0")),
            ("pool_halted", "exit_exceeds_units_held"),
            id="exit-nothing-held-halted",
        ),
        pytest.param(
            _exit(halted=True, quantity=Decimal("0")), ("pool_halted",), id="exit-zero-units-halted"
        ),
    ],
)
def test_halted_pool_lets_only_exits_of_units_held_through(order, reasons):
    result = evaluate_order(order, LIMITS)

    assert result.reasons == reasons
    assert result.passed is (not reasons)
    halt = _check(result, "trading_state")
    assert halt["passed"] is ("pool_halted" not in reasons)
    assert halt["observed"] == ("halted" if order.halted else "active")


@pytest.mark.parametrize(
    ("order", "passed"),
    [
        pytest.param(_entry(breakers_in_force=()), True, id="entry-no-breaker"),
        pytest.param(
            _entry(breakers_in_force=("volatility",), breaker_until=UNTIL), False, id="entry"
        ),
        pytest.param(
            _entry(breakers_in_force=("daily_loss", "volatility"), breaker_until=UNTIL),
            False,
            id="entry-two-breakers",
        ),
        pytest.param(
            _exit(breakers_in_force=("volatility",), breaker_until=UNTIL), True, id="exit"
        ),
    ],
)
def test_pool_wide_breaker_stops_entries_not_exits(order, passed):
    result = evaluate_order(order, LIMITS)

    check = _check(result, "circuit_breaker")
    assert check["passed"] is passed and result.passed is passed
    assert check["observed"] == (", ".join(order.breakers_in_force) or "none")
    if not passed:
        assert result.reasons == ("circuit_breaker_active",)
        assert check["reason"] == "circuit_breaker_active"
        assert str(UNTIL) in check["limit"]


@pytest.mark.parametrize(
    ("order", "passed"),
    [
        # A cooldown that expired (even exactly now) reaches the rule as None: not in force.
        pytest.param(_entry(entity_cooldown_until=None), True, id="entry-no-cooldown"),
        pytest.param(_entry(entity_cooldown_until=UNTIL), False, id="entry-cooling"),
        pytest.param(_exit(entity_cooldown_until=UNTIL), True, id="exit-cooling"),
    ],
)
def test_entity_cooldown_stops_entries_in_that_entity(order, passed):
    result = evaluate_order(order, LIMITS)

    check = _check(result, "entity_cooldown")
    assert check["passed"] is passed and result.passed is passed
    if not passed:
        assert result.reasons == ("entity_cooldown_active",)
        assert check["observed"] == "AAA" and str(UNTIL) in check["limit"]


@pytest.mark.parametrize("order", [_entry(), _exit()], ids=["entry", "exit"])
def test_every_order_records_the_trading_state_it_saw(order):
    result = evaluate_order(order, LIMITS)

    assert [c["check"] for c in result.checks][:3] == TRADING_STATE_CHECKS
    assert all(c["passed"] and c["reason"] == "" for c in result.checks[:3])


def test_every_failed_check_is_reported_in_order():
    order = _entry(
        halted=True,
        breakers_in_force=("daily_loss",),
        breaker_until=UNTIL,
        entity_cooldown_until=UNTIL,
        quantity=Decimal("100000"),
    )

    result = evaluate_order(order, LIMITS)

    assert result.reasons == (
        "pool_halted",
        "circuit_breaker_active",
        "entity_cooldown_active",
        "sector_share",
        "order_notional",
    )
    assert all(isinstance(reason, GateReason) for reason in result.reasons)


@given(
    halted=st.booleans(),
    breakers=st.lists(st.sampled_from(["daily_loss", "volatility"]), unique=True),
    cooling=st.booleans(),
    held=st.integers(min_value=1, max_value=1000),
    data=st.data(),
)
def test_trading_state_never_traps_a_covered_exit_and_always_stops_entries(
    halted, breakers, cooling, held, data
):
    state = {
        "halted": halted,
        "breakers_in_force": tuple(sorted(breakers)),
        "breaker_until": UNTIL if breakers else None,
        "entity_cooldown_until": UNTIL if cooling else None,
    }
    units = Decimal(data.draw(st.integers(min_value=1, max_value=held)))
    exit_ = evaluate_order(_exit(quantity=units, held_units=Decimal(held), **state), LIMITS)
    entry = evaluate_order(_entry(**state), LIMITS)

    assert exit_.passed
    assert entry.passed is (not halted and not breakers and not cooling)


# --- the worker -------------------------------------------------------------------------------

HTTP_SYMBOL = "GATEX"
OTHER_SYMBOL = "GATEY"


def _queue(pool, now, *recs) -> list[Order]:
    """Decide ``recs`` (symbol, action) in one cycle and return the orders it queued."""
    for symbol, action in recs:
        factories.make_recommendation(symbol, now, action=action)
    run_decision_cycle(pool.pk, now, dispatch=False)
    return list(Order.objects.filter(pool=pool, status="queued").order_by("id"))


def _evaluation(order: Order) -> RiskEvaluation:
    return RiskEvaluation.objects.get(order=order)


def _failed(evaluation: RiskEvaluation) -> list[str]:
    return [c["check"] for c in evaluation.checks if not c["passed"]]


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={HTTP_SYMBOL: "101.25"}) as server:
        yield server.configure(settings, timeout=1)


@pytest.fixture
def http_pool(db, session_now, broker) -> Pool:
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    factories.add_bars(HTTP_SYMBOL, session_now)
    return Pool.objects.get(pk=pool.pk)


def test_entry_queued_before_a_halt_never_reaches_the_broker(http_pool, broker, session_now):
    (entry,) = _queue(http_pool, session_now, (HTTP_SYMBOL, "act"))
    later = session_now + timedelta(minutes=1)
    halt_pool(http_pool, actor="ops", reason="broker incident", now=later)

    result = process_order(entry.pk, later)

    assert result.status == "risk_rejected" and result.detail == "pool_halted"
    assert broker.count("POST", "/v2/orders") == 0 and broker.orders == {}
    entry.refresh_from_db()
    assert entry.status == "risk_rejected" and entry.status_reason == "pool_halted"
    evaluation = _evaluation(entry)
    assert not evaluation.passed and evaluation.reasons == ["pool_halted"]
    assert _failed(evaluation) == ["trading_state"]
    assert not Commitment.objects.exists()


def test_exit_of_a_halted_pool_reaches_the_broker(http_pool, broker, session_now):
    (entry,) = _queue(http_pool, session_now, (HTTP_SYMBOL, "act"))
    assert process_order(entry.pk, session_now).status == "filled"
    later = session_now + timedelta(hours=1)
    (exit_,) = _queue(http_pool, later, (HTTP_SYMBOL, "defer"))
    halt_pool(http_pool, actor="ops", reason="broker incident", now=later)

    result = process_order(exit_.pk, later)

    assert result.status == "filled"
    sell = [r for r in broker.received if r.method == "POST"][-1]
    assert sell.body["side"] == "sell"
    assert sell.body["client_order_id"] == client_order_id_for(exit_.idempotency_key)
    evaluation = _evaluation(exit_)
    assert evaluation.passed
    halt = next(c for c in evaluation.checks if c["check"] == "trading_state")
    assert halt["observed"] == "halted" and halt["passed"]
    assert Commitment.objects.get(entity_id=HTTP_SYMBOL).status == "closed"


def _two_entities(now) -> tuple[str, str]:
    factories.add_bars("GATEA", now, sector="Tech", start=50)
    factories.add_bars("GATEB", now, sector="Energy", start=60)
    return "GATEA", "GATEB"


def test_entry_under_a_pool_wide_breaker_is_stopped_and_an_exit_passes(pool, session_now):
    a, b = _two_entities(session_now)
    (first,) = _queue(pool, session_now, (a, "act"))
    assert process_order(first.pk, session_now).status == "filled"
    later = session_now + timedelta(hours=1)
    entry, exit_ = sorted(_queue(pool, later, (b, "act"), (a, "defer")), key=lambda o: o.side)
    assert (entry.side, exit_.side) == ("buy", "sell")
    tripped = later + timedelta(minutes=1)
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="volatility",
        triggered_at=tripped,
        expires_at=tripped + timedelta(hours=2),
    )

    stopped = process_order(entry.pk, tripped)
    passed = process_order(exit_.pk, tripped)

    assert stopped.status == "risk_rejected" and stopped.detail == "circuit_breaker_active"
    evaluation = _evaluation(entry)
    assert evaluation.reasons == ["circuit_breaker_active"]
    breaker = next(c for c in evaluation.checks if c["check"] == "circuit_breaker")
    assert breaker["observed"] == "volatility"
    assert passed.status == "filled"
    assert Commitment.objects.get(entity_id=a).status == "closed"
    assert not Commitment.objects.filter(entity_id=b).exists()


def test_entry_in_a_cooling_entity_is_stopped_while_another_entity_passes(pool, session_now):
    a, b = _two_entities(session_now)
    orders = {o.entity_id: o for o in _queue(pool, session_now, (a, "act"), (b, "act"))}
    tripped = session_now + timedelta(minutes=1)
    record_trigger(
        pool,
        BreakerTrigger(
            type=BreakerType.SINGLE_POSITION,
            triggered_at=tripped,
            expires_at=tripped + timedelta(hours=48),
            entity=a,
        ),
        tripped,
    )

    cooling = process_order(orders[a].pk, tripped)
    other = process_order(orders[b].pk, tripped)

    assert cooling.status == "risk_rejected" and cooling.detail == "entity_cooldown_active"
    assert _failed(_evaluation(orders[a])) == ["entity_cooldown"]
    assert other.status == "filled" and _evaluation(orders[b]).passed
    assert list(Commitment.objects.values_list("entity_id", flat=True)) == [b]


@pytest.mark.parametrize(
    ("expires_after_now", "status"),
    [
        (timedelta(0), "filled"),  # expired exactly now: no longer in force
        (timedelta(microseconds=1), "risk_rejected"),
    ],
)
def test_breaker_is_in_force_until_exactly_its_expiry(pool, session_now, expires_after_now, status):
    a, _ = _two_entities(session_now)
    (entry,) = _queue(pool, session_now, (a, "act"))
    later = session_now + timedelta(minutes=30)
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="daily_loss",
        triggered_at=session_now,
        expires_at=later + expires_after_now,
    )

    assert process_order(entry.pk, later).status == status


def test_cleared_breaker_no_longer_stops_an_entry(pool, session_now):
    a, _ = _two_entities(session_now)
    (entry,) = _queue(pool, session_now, (a, "act"))
    later = session_now + timedelta(minutes=5)
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="volatility",
        triggered_at=session_now,
        expires_at=later + timedelta(hours=2),
        cleared_at=later,
        cleared_by="ops",
        clear_reason="false alarm",
    )

    assert process_order(entry.pk, later).status == "filled"


# --- the reconciliation hold (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "reasons"),
    [
        pytest.param(_entry(reduce_only=False), (), id="entry-not-held"),
        pytest.param(_entry(reduce_only=True), ("reconciliation_hold",), id="entry-held"),
        pytest.param(
            _entry(reduce_only=True, opens_new_commitment=False, held_units=Decimal("10")),
            ("reconciliation_hold",),
            id="add-to-a-held-commitment",
        ),
        pytest.param(_exit(reduce_only=True), (), id="exit-covered-held"),
        pytest.param(
            _exit(reduce_only=True, quantity=Decimal("11")),
            ("exit_exceeds_units_held",),
            id="exit-beyond-units-held",
        ),
        pytest.param(
            _entry(reduce_only=True, halted=True),
            ("pool_halted", "reconciliation_hold"),
            id="entry-held-and-halted",
        ),
    ],
)
def test_reconciliation_hold_stops_buys_of_a_held_entity_not_sells(order, reasons):
    result = evaluate_order(order, LIMITS)

    assert result.reasons == reasons
    check = _check(result, "reconciliation")
    held = "reconciliation_hold" in reasons
    assert check["passed"] is not held
    assert check["observed"] == ("AAA" if order.reduce_only else "none")
    assert check["limit"] == ("reduce_only" if order.reduce_only else "none")
    assert check["reason"] == ("reconciliation_hold" if held else "")


def test_the_hold_is_recorded_with_the_trading_state_for_every_order():
    for order in (_entry(), _exit()):
        names = [c["check"] for c in evaluate_order(order, LIMITS).checks]
        assert names[:4] == [*TRADING_STATE_CHECKS, "reconciliation"]
    assert BASE.reduce_only is False  # the default: no caller has to know about holds


@given(held=st.integers(min_value=1, max_value=1000), data=st.data())
def test_a_hold_never_traps_a_covered_exit(held, data):
    units = Decimal(data.draw(st.integers(min_value=1, max_value=held)))

    order = _exit(quantity=units, held_units=Decimal(held), reduce_only=True)

    assert evaluate_order(order, LIMITS).passed
