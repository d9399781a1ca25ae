"""The audited operator actions (``portfolio.actions``): each change writes its ``OperatorAction``
row (actor, reason, via, before → after) in the same transaction, a refusal writes nothing, and
an action that would change nothing leaves no row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from portfolio import actions
from portfolio.actions import ActionError
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.config import EngineConfigError
from portfolio.models import (
    CircuitBreakerEvent,
    EngineConfig,
    OperatorAction,
    Pool,
    PoolRiskConfig,
    RiskTierConfig,
    RiskTierHistory,
)
from tests import factories

D = Decimal


def trip(pool: Pool, now: datetime, kind: BreakerType = BreakerType.DAILY_LOSS):
    trigger = BreakerTrigger(kind, now - timedelta(minutes=1), now + timedelta(hours=2), None)
    return record_trigger(pool, trigger, now)


def only_row(pool: Pool | None, action: str) -> OperatorAction:
    return OperatorAction.objects.get(pool=pool, action=action)


def everything() -> dict[str, list[dict]]:
    """Every row an action could write or change, to compare before and after a refusal."""
    return {
        model.__name__: [model_to_dict(row) for row in model.objects.order_by("pk")]
        for model in (
            Pool,
            EngineConfig,
            PoolRiskConfig,
            RiskTierConfig,
            RiskTierHistory,
            CircuitBreakerEvent,
            OperatorAction,
        )
    }


# --- each action writes its audit row ---------------------------------------------------------


def test_create_pool_writes_its_audit_row(db, session_now):
    pool = actions.create_pool(
        "book-a",
        mode="simulation",
        cash=D("2500.50"),
        tier="moderate",
        actor="ops",
        reason="new book",
        now=session_now,
        via="command",
    )

    row = only_row(pool, "create_pool")
    assert (row.actor, row.reason, row.via, row.created_at) == (
        "ops",
        "new book",
        "command",
        session_now,
    )
    assert row.before == {}
    assert row.after == {
        "mode": "simulation",
        "cash": "2500.5",
        "risk_tier": "moderate",
        "adapter": "paper",
    }


def test_halt_pool_writes_its_audit_row(pool, session_now):
    result = actions.halt_pool(
        pool, actor="ops", reason="broker incident", now=session_now, via="admin"
    )

    pool.refresh_from_db()
    assert result.changed and pool.halted
    row = only_row(pool, "halt")
    assert result.record == row
    assert (row.actor, row.reason, row.via) == ("ops", "broker incident", "admin")
    assert row.before == {"halted": False, "halt_reason": ""}
    assert row.after == {"halted": True, "halt_reason": "broker incident (ops)"}


def test_halt_of_a_halted_pool_keeps_its_first_reason_and_writes_nothing(pool, session_now):
    actions.halt_pool(pool, actor="ops", reason="first", now=session_now, via="command")

    result = actions.halt_pool(pool, actor="someone", reason="second", now=session_now, via="admin")

    assert not result.changed and result.record is None
    pool.refresh_from_db()
    assert pool.halt_reason == "first (ops)"
    assert OperatorAction.objects.filter(action="halt").count() == 1


def test_resume_pool_writes_its_audit_row_with_the_lifted_halt(pool, session_now):
    actions.halt_pool(pool, actor="ops", reason="maintenance", now=session_now, via="command")

    result = actions.resume_pool(
        pool, actor="lead", reason="broker back", now=session_now, via="command"
    )

    pool.refresh_from_db()
    assert result.changed and not pool.halted and pool.halt_reason == ""
    row = only_row(pool, "resume")
    assert (row.actor, row.reason, row.via) == ("lead", "broker back", "command")
    assert row.before == {"halted": True, "halt_reason": "maintenance (ops)"}
    assert row.after == {"halted": False, "halt_reason": ""}


def test_resume_of_a_running_pool_writes_nothing(pool, session_now):
    result = actions.resume_pool(pool, actor="ops", reason="x", now=session_now, via="command")

    assert not result.changed
    assert not OperatorAction.objects.filter(action="resume").exists()


def test_the_resume_command_keeps_its_reason(pool):
    out = StringIO()
    call_command("halt", "--pool", pool.name, "--reason", "maintenance", "--actor", "ops")

    call_command(
        "resume", "--pool", pool.name, "--reason", "vendor fixed it", "--actor", "ops", stdout=out
    )

    assert out.getvalue().strip() == f"Pool {pool.name} is running."
    row = only_row(pool, "resume")
    assert (row.reason, row.via, row.actor) == ("vendor fixed it", "command", "ops")


def test_set_risk_tier_writes_its_audit_row_and_the_tier_history(pool, session_now):
    result = actions.set_risk_tier(
        pool, "aggressive", actor="ops", reason="strong month", now=session_now, via="command"
    )

    pool.refresh_from_db()
    assert result.changed and pool.risk_tier == "aggressive"
    row = only_row(pool, "set_risk_tier")
    assert (row.actor, row.reason, row.via) == ("ops", "strong month", "command")
    assert (row.before, row.after) == ({"risk_tier": "moderate"}, {"risk_tier": "aggressive"})
    history = RiskTierHistory.objects.get(pool=pool, trigger="manual")
    assert (history.previous_tier, history.new_tier, history.actor) == (
        "moderate",
        "aggressive",
        "ops",
    )


def test_clear_breaker_writes_its_audit_row(pool, session_now):
    event = trip(pool, session_now)

    result = actions.clear_breaker(
        pool, "daily_loss", actor="ops", reason="bad feed", now=session_now, via="admin"
    )

    event.refresh_from_db()
    assert result.changed and event.cleared_at == session_now
    row = only_row(pool, "clear_breaker")
    assert (row.actor, row.reason, row.via) == ("ops", "bad feed", "admin")
    assert row.before == {
        "type": "daily_loss",
        "in_force": [
            {"event": event.pk, "entity": None, "expires_at": event.expires_at.isoformat()}
        ],
    }
    assert row.after == {"type": "daily_loss", "in_force": []}


def test_change_engine_config_writes_its_audit_row(pool, session_now):
    result = actions.change_engine_config(
        pool,
        {"daily_loss_pct": "0.04", "atr_period": 20, "siphon_pct": "0.2"},
        actor="ops",
        reason="calmer market",
        now=session_now,
        via="command",
    )

    config = EngineConfig.objects.get(pool=pool)
    assert (config.daily_loss_pct, config.atr_period) == (D("0.04"), 20)
    row = only_row(pool, "change_engine_config")
    assert result.record == row
    assert (row.actor, row.reason, row.via) == ("ops", "calmer market", "command")
    # Only what changed: siphon_pct was already 0.2.
    assert row.before == {"daily_loss_pct": "0.05", "atr_period": 14}
    assert row.after == {"daily_loss_pct": "0.04", "atr_period": 20}


def test_change_pool_risk_limits_writes_its_audit_row(pool, session_now):
    actions.change_pool_risk_limits(
        pool,
        {"max_orders_per_minute": "30"},
        actor="ops",
        reason="broker rate limit",
        now=session_now,
        via="api",
    )

    assert PoolRiskConfig.objects.get(pool=pool).max_orders_per_minute == 30
    row = only_row(pool, "change_pool_risk_limits")
    assert (row.actor, row.reason, row.via) == ("ops", "broker rate limit", "api")
    assert (row.before, row.after) == (
        {"max_orders_per_minute": 120},
        {"max_orders_per_minute": 30},
    )


def test_change_tier_params_writes_an_audit_row_of_no_pool(db, session_now):
    actions.change_tier_params(
        "moderate",
        {"max_portfolio_heat": "0.25"},
        actor="risk",
        reason="more room",
        now=session_now,
        via="admin",
    )

    assert RiskTierConfig.objects.get(name="moderate").max_portfolio_heat == D("0.25")
    row = only_row(None, "change_tier_config")
    assert (row.actor, row.reason, row.via) == ("risk", "more room", "admin")
    assert row.before == {"tier": "moderate", "max_portfolio_heat": "0.2"}
    assert row.after == {"tier": "moderate", "max_portfolio_heat": "0.25"}


def test_a_change_to_the_stored_values_writes_nothing(pool, session_now):
    result = actions.change_engine_config(
        pool, {"siphon_pct": "0.20"}, actor="ops", reason="x", now=session_now, via="command"
    )

    assert not result.changed
    assert not OperatorAction.objects.filter(action="change_engine_config").exists()


# --- the change and its audit row commit together ---------------------------------------------

Action = Callable[[Pool, datetime | None], object]

#: Each action as it changes the ``pool`` fixture (halted, with a daily_loss breaker in force).
#: Called with ``now=None``, the audit row cannot be written (``created_at`` is NOT NULL).
ACTIONS: dict[str, Action] = {
    "halt": lambda pool, now: actions.resume_pool(
        pool, actor="ops", reason="x", now=now, via="command"
    ),
    "set_risk_tier": lambda pool, now: actions.set_risk_tier(
        pool, "aggressive", actor="ops", reason="x", now=now, via="command"
    ),
    "clear_breaker": lambda pool, now: actions.clear_breaker(
        pool, "daily_loss", actor="ops", reason="x", now=now, via="command"
    ),
    "change_engine_config": lambda pool, now: actions.change_engine_config(
        pool, {"siphon_pct": "0.1"}, actor="ops", reason="x", now=now, via="command"
    ),
    "change_pool_risk_limits": lambda pool, now: actions.change_pool_risk_limits(
        pool, {"max_open_commitments": "3"}, actor="ops", reason="x", now=now, via="command"
    ),
    "change_tier_params": lambda pool, now: actions.change_tier_params(
        "moderate", {"min_confidence": "0.6"}, actor="ops", reason="x", now=now, via="command"
    ),
    "create_pool": lambda pool, now: actions.create_pool(
        "book-b", mode="simulation", cash=D("1"), actor="ops", reason="x", now=now, via="command"
    ),
}


@pytest.fixture
def busy_pool(pool, session_now) -> Pool:
    """The pool halted, with a daily_loss breaker in force: every action has work to do."""
    actions.halt_pool(pool, actor="ops", reason="maintenance", now=session_now, via="command")
    trip(pool, session_now)
    pool.refresh_from_db()
    return pool


@pytest.mark.parametrize("name", sorted(set(ACTIONS) - {"clear_breaker"}))
def test_the_change_is_undone_when_its_audit_row_cannot_be_written(busy_pool, name):
    before = everything()

    with pytest.raises(IntegrityError):
        ACTIONS[name](busy_pool, None)

    assert everything() == before


def test_a_cleared_breaker_and_its_audit_row_roll_back_together(busy_pool, session_now):
    """``clear_breaker`` needs ``now`` to find the breakers in force, so its rollback is shown
    from the caller's transaction."""
    before = everything()

    with pytest.raises(RuntimeError), transaction.atomic():
        ACTIONS["clear_breaker"](busy_pool, session_now)
        assert OperatorAction.objects.filter(action="clear_breaker").exists()
        assert not CircuitBreakerEvent.objects.filter(cleared_at__isnull=True).exists()
        raise RuntimeError("rolled back")

    assert everything() == before


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_action_writes_exactly_one_audit_row(busy_pool, session_now, name):
    count = OperatorAction.objects.count()

    ACTIONS[name](busy_pool, session_now)

    assert OperatorAction.objects.count() == count + 1
    assert OperatorAction.objects.latest("id").created_at == session_now


# --- a refusal writes nothing -----------------------------------------------------------------

REFUSALS: dict[str, tuple[Action, str]] = {
    "create_pool without a reason": (
        lambda pool, now: actions.create_pool(
            "book-c", mode="simulation", cash=D("1"), actor="ops", reason=" ", now=now
        ),
        "reason",
    ),
    "create_pool with a taken name": (
        lambda pool, now: actions.create_pool(
            pool.name, mode="simulation", cash=D("1"), actor="ops", reason="x", now=now
        ),
        "name",
    ),
    "halt without a reason": (
        lambda pool, now: actions.halt_pool(pool, actor="ops", reason="", now=now),
        "reason",
    ),
    "halt without an actor": (
        lambda pool, now: actions.halt_pool(pool, actor=" ", reason="x", now=now),
        "actor",
    ),
    "resume without a reason": (
        lambda pool, now: actions.resume_pool(pool, actor="ops", reason="  ", now=now),
        "reason",
    ),
    "resume of an unknown pool": (
        lambda pool, now: actions.resume_pool("ghost", actor="ops", reason="x", now=now),
        "pool",
    ),
    "set_risk_tier to an unknown tier": (
        lambda pool, now: actions.set_risk_tier(pool, "reckless", actor="ops", reason="x", now=now),
        "tier",
    ),
    "set_risk_tier of an unknown pool": (
        lambda pool, now: actions.set_risk_tier(
            "ghost", "aggressive", actor="ops", reason="x", now=now
        ),
        "pool",
    ),
    "clear_breaker of an unknown type": (
        lambda pool, now: actions.clear_breaker(pool, "weather", actor="ops", reason="x", now=now),
        "breaker_type",
    ),
    "clear_breaker without a reason": (
        lambda pool, now: actions.clear_breaker(
            pool, "daily_loss", actor="ops", reason="", now=now
        ),
        "reason",
    ),
    "engine config with a bad value beside a good one": (
        lambda pool, now: actions.change_engine_config(
            pool, {"atr_period": "20", "siphon_pct": "5"}, actor="ops", reason="x", now=now
        ),
        "siphon_pct",
    ),
    "engine config with an unknown setting": (
        lambda pool, now: actions.change_engine_config(
            pool, {"colour": "blue"}, actor="ops", reason="x", now=now
        ),
        "colour",
    ),
    "engine config of an unknown pool": (
        lambda pool, now: actions.change_engine_config(
            "ghost", {"atr_period": "20"}, actor="ops", reason="x", now=now
        ),
        "pool",
    ),
    "pool risk limits with a bad value": (
        lambda pool, now: actions.change_pool_risk_limits(
            pool, {"max_order_notional": "0"}, actor="ops", reason="x", now=now
        ),
        "max_order_notional",
    ),
    "pool risk limits without a reason": (
        lambda pool, now: actions.change_pool_risk_limits(
            pool, {"max_order_notional": "5"}, actor="ops", reason="", now=now
        ),
        "reason",
    ),
    "tier params with a bad value": (
        lambda pool, now: actions.change_tier_params(
            "moderate", {"min_confidence": "1.5"}, actor="ops", reason="x", now=now
        ),
        "min_confidence",
    ),
    "tier params of an unknown tier": (
        lambda pool, now: actions.change_tier_params(
            "reckless", {"min_confidence": "0.5"}, actor="ops", reason="x", now=now
        ),
        "tier",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_refused_action_writes_nothing(busy_pool, session_now, name):
    apply, field = REFUSALS[name]
    # Halting needs a running pool to have anything to refuse.
    if name.startswith("halt"):
        actions.resume_pool(busy_pool, actor="ops", reason="x", now=session_now, via="command")
    before = everything()

    with pytest.raises(ActionError) as info:
        apply(busy_pool, session_now)

    assert field in info.value.errors
    assert everything() == before


def test_an_engine_config_refusal_is_an_engine_config_error(pool, session_now):
    with pytest.raises(EngineConfigError) as info:
        actions.change_engine_config(
            pool,
            {"correlation_reduce_threshold": "0.9"},
            actor="ops",
            reason="x",
            now=session_now,
        )

    assert (
        "must be below correlation_reject_threshold"
        in info.value.errors["correlation_reduce_threshold"]
    )
    assert not OperatorAction.objects.filter(action="change_engine_config").exists()


def test_a_pool_made_by_the_factories_has_its_create_row(db, session_now):
    pool = factories.make_pool(now=session_now)

    assert only_row(pool, "create_pool").reason == "test pool"


def test_the_create_pool_command_records_its_default_reason(db):
    call_command(
        "create_pool",
        "book-d",
        "--mode",
        "simulation",
        "--cash",
        "10",
        "--actor",
        "ops",
        stdout=StringIO(),
    )

    row = OperatorAction.objects.get(pool__name="book-d", action="create_pool")
    assert (row.actor, row.reason, row.via) == (
        "ops",
        "created with manage.py create_pool",
        "command",
    )


def test_the_create_pool_command_refuses_a_taken_name_and_writes_nothing(pool):
    before = everything()

    with pytest.raises(CommandError, match="name: a pool named .* already exists"):
        call_command(
            "create_pool", pool.name, "--mode", "simulation", "--cash", "10", "--reason", "again"
        )

    assert everything() == before
