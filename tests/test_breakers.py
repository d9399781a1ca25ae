"""Circuit breaker state: events in the database, the cache mirror, and what the engine sees."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord, Recommendation
from portfolio.actions import ActionError, clear_breaker
from portfolio.breakers import execution_cb_key, mirror_breakers, record_trigger
from portfolio.circuit_breaker import (
    BreakerConfig,
    BreakerTrigger,
    BreakerType,
    check_daily_loss,
    check_single_position,
)
from portfolio.models import CircuitBreakerEvent, OperatorAction, Pool
from portfolio.selectors import breakers_in_force, in_force
from tests import factories

D = Decimal
CONFIG = BreakerConfig()


def daily_loss_trigger(at: datetime) -> BreakerTrigger:
    """What the performance loop records for a 6 % loss (expires two hours after ``at``)."""
    trigger = check_daily_loss(D("-6000"), D("100000"), at, CONFIG)
    assert trigger is not None
    return trigger


def cooldown_trigger(symbol: str, at: datetime) -> BreakerTrigger:
    """What the monitor records for a commitment down 20 % (48 hours on ``symbol``)."""
    trigger = check_single_position(symbol, D("100"), D("80"), at, CONFIG)
    assert trigger is not None
    return trigger


def entity_with_bars(symbol: str, now: datetime, sector: str = "Tech") -> str:
    factories.add_bars(symbol, now, closes=[100.0] * 20, sector=sector)
    return symbol


def act_once(pool: Pool, symbol: str, now: datetime) -> DecisionRecord:
    """One fresh ``act`` recommendation through one decision cycle at ``now``."""
    rec: Recommendation = factories.make_recommendation(symbol, now, confidence="0.90")
    run_decision_cycle(pool.pk, now, dispatch=False)
    return DecisionRecord.objects.filter(recommendation=rec).latest("id")


# --- record_trigger ---------------------------------------------------------------------------


def test_record_trigger_writes_one_event_with_its_figures(pool, session_now):
    event = record_trigger(pool, daily_loss_trigger(session_now), session_now)

    stored = CircuitBreakerEvent.objects.get()
    assert stored.pk == event.pk
    assert (stored.pool_id, stored.trigger_type, stored.entity_id) == (pool.pk, "daily_loss", None)
    assert (stored.triggered_at, stored.expires_at) == (
        session_now,
        session_now + timedelta(hours=2),
    )
    assert stored.figures == {
        "daily_gain": "-6000",
        "total_value": "100000",
        "loss_ratio": "0.06",
        "limit": "0.05",
    }
    assert stored.cleared_at is None


def test_record_trigger_does_not_duplicate_an_event_in_force(pool, session_now):
    record_trigger(pool, daily_loss_trigger(session_now), session_now)
    later = session_now + timedelta(minutes=30)

    assert record_trigger(pool, daily_loss_trigger(later), later) is None
    assert CircuitBreakerEvent.objects.count() == 1

    # Once the first has expired the same breaker may trip again.
    expired = session_now + timedelta(hours=2)
    assert record_trigger(pool, daily_loss_trigger(expired), expired) is not None
    assert CircuitBreakerEvent.objects.count() == 2


def test_entity_cooldowns_are_kept_apart_per_entity(pool, session_now):
    for symbol in ("AAA", "BBB"):
        factories.make_entity(symbol)
        assert record_trigger(pool, cooldown_trigger(symbol, session_now), session_now)

    assert record_trigger(pool, cooldown_trigger("AAA", session_now), session_now) is None
    events = CircuitBreakerEvent.objects.order_by("entity_id")
    assert [(e.trigger_type, e.entity_id) for e in events] == [
        ("single_position", "AAA"),
        ("single_position", "BBB"),
    ]


def test_a_breaker_of_another_pool_is_not_this_pools(pool, session_now):
    other = factories.make_pool(now=session_now)
    record_trigger(other, daily_loss_trigger(session_now), session_now)

    assert not breakers_in_force(pool, session_now).active
    assert record_trigger(pool, daily_loss_trigger(session_now), session_now) is not None


# --- what the engine sees ---------------------------------------------------------------------


def test_breakers_in_force_and_the_decision_cycle_see_a_recorded_breaker(pool, session_now):
    symbol = entity_with_bars("E0", session_now)
    factories.make_entity("COOL")
    record_trigger(pool, daily_loss_trigger(session_now), session_now)
    record_trigger(pool, cooldown_trigger("COOL", session_now), session_now)

    state = breakers_in_force(pool, session_now)
    assert state.pool_wide == ("daily_loss",) and state.active
    assert state.until == session_now + timedelta(hours=2)
    assert state.entity_cooldowns == {"COOL": session_now + timedelta(hours=48)}

    decision = act_once(pool, symbol, session_now + timedelta(minutes=1))
    assert (decision.outcome, decision.skip_reason) == ("skip", "circuit_breaker_active")
    assert decision.circuit_breaker_active and not decision.processed


@pytest.mark.parametrize(
    ("seconds_after_expiry", "active"),
    [(-1, True), (0, False), (1, False)],
)
def test_a_breaker_expires_at_the_exact_second(pool, session_now, seconds_after_expiry, active):
    symbol = entity_with_bars("E0", session_now)
    triggered = session_now - timedelta(hours=2)
    record_trigger(pool, daily_loss_trigger(triggered), triggered)
    now = session_now + timedelta(seconds=seconds_after_expiry)

    assert breakers_in_force(pool, now).active is active
    assert in_force(pool, now).exists() is active
    decision = act_once(pool, symbol, now)
    assert decision.skip_reason == ("circuit_breaker_active" if active else "")
    assert decision.outcome == ("skip" if active else "act")


def test_a_breaker_survives_a_restart_with_an_empty_cache(
    pool, session_now, django_capture_on_commit_callbacks
):
    symbol = entity_with_bars("E0", session_now)
    with django_capture_on_commit_callbacks(execute=True):
        record_trigger(pool, daily_loss_trigger(session_now), session_now)
    assert cache.get(execution_cb_key("daily_loss")) is not None

    cache.clear()

    assert cache.get(execution_cb_key("daily_loss")) is None
    decision = act_once(pool, symbol, session_now + timedelta(minutes=5))
    assert decision.skip_reason == "circuit_breaker_active"


# --- the cache mirror -------------------------------------------------------------------------


def test_the_cache_mirror_follows_triggers_and_clears(
    pool, session_now, django_capture_on_commit_callbacks
):
    factories.make_entity("COOL")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        record_trigger(pool, daily_loss_trigger(session_now), session_now)
        record_trigger(pool, cooldown_trigger("COOL", session_now), session_now)
    assert len(callbacks) == 2

    mirrored = cache.get(execution_cb_key("daily_loss"))
    expires = (session_now + timedelta(hours=2)).isoformat()
    assert mirrored == {
        "pools": {
            pool.name: [
                {"entity": None, "triggered_at": session_now.isoformat(), "expires_at": expires}
            ]
        },
        "expires_at": expires,
    }
    cooldowns = cache.get(execution_cb_key("single_position"))
    assert [e["entity"] for e in cooldowns["pools"][pool.name]] == ["COOL"]
    assert cache.get(execution_cb_key("volatility")) is None

    with django_capture_on_commit_callbacks(execute=True):
        cleared = clear_breaker(pool, "daily_loss", actor="ops", reason="checked", now=session_now)

    assert len(cleared.before["in_force"]) == 1
    assert cache.get(execution_cb_key("daily_loss")) is None
    assert cache.get(execution_cb_key("single_position")) is not None


def test_the_mirror_is_written_only_after_commit(
    pool, session_now, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        record_trigger(pool, daily_loss_trigger(session_now), session_now)

    assert len(callbacks) == 1
    assert cache.get(execution_cb_key("daily_loss")) is None


def test_the_mirror_holds_every_pool_in_force(db, session_now):
    first = factories.make_pool(now=session_now)
    second = factories.make_pool(now=session_now)
    record_trigger(first, daily_loss_trigger(session_now), session_now)
    later = session_now + timedelta(minutes=30)
    record_trigger(second, daily_loss_trigger(later), later)

    mirror_breakers(later)

    mirrored = cache.get(execution_cb_key("daily_loss"))
    assert set(mirrored["pools"]) == {first.name, second.name}
    assert mirrored["expires_at"] == (later + timedelta(hours=2)).isoformat()


def test_key_names_follow_the_source():
    assert execution_cb_key("daily_loss") == "app:execution:circuit_breaker:daily_loss"


# --- clear_breaker ----------------------------------------------------------------------------


def test_clear_breaker_records_who_and_why_and_the_next_cycle_acts(pool, session_now):
    symbol = entity_with_bars("E0", session_now)
    record_trigger(pool, daily_loss_trigger(session_now), session_now)
    blocked = act_once(pool, symbol, session_now + timedelta(minutes=1))
    assert blocked.skip_reason == "circuit_breaker_active"
    clear_at = session_now + timedelta(minutes=10)

    cleared = clear_breaker(
        pool, "daily_loss", actor="ops", reason="loss was a data error", now=clear_at
    )

    assert cleared.changed
    event = CircuitBreakerEvent.objects.get()
    assert (event.cleared_at, event.cleared_by, event.clear_reason) == (
        clear_at,
        "ops",
        "loss was a data error",
    )
    assert event.figures["loss_ratio"] == "0.06"  # the trigger's figures are kept
    assert not breakers_in_force(pool, clear_at).active
    run_decision_cycle(pool.pk, clear_at + timedelta(minutes=1), dispatch=False)
    retried = DecisionRecord.objects.filter(recommendation=blocked.recommendation).latest("id")
    assert (retried.outcome, retried.processed) == ("act", True)


def test_clearing_one_entity_leaves_the_other_cooldowns(pool, session_now):
    for symbol in ("AAA", "BBB"):
        factories.make_entity(symbol)
        record_trigger(pool, cooldown_trigger(symbol, session_now), session_now)

    cleared = clear_breaker(
        pool, "single_position", actor="ops", reason="news", now=session_now, entity="AAA"
    )

    assert [event["entity"] for event in cleared.before["in_force"]] == ["AAA"]
    assert breakers_in_force(pool, session_now).entity_cooldowns == {
        "BBB": session_now + timedelta(hours=48)
    }


def test_clearing_when_nothing_is_in_force_clears_nothing(pool, session_now):
    result = clear_breaker(pool, "volatility", actor="ops", reason="x", now=session_now)

    assert not result.changed
    assert not OperatorAction.objects.filter(action="clear_breaker").exists()


@pytest.mark.parametrize(
    ("kind", "reason", "message"),
    [
        ("daily_loss", "", "reason is required"),
        ("daily_loss", "   ", "reason is required"),
        ("meltdown", "x", "unknown breaker type"),
    ],
)
def test_clearing_needs_a_known_type_and_a_reason(pool, session_now, kind, reason, message):
    record_trigger(pool, daily_loss_trigger(session_now), session_now)

    with pytest.raises(ActionError, match=message):
        clear_breaker(pool, kind, actor="ops", reason=reason, now=session_now)

    assert breakers_in_force(pool, session_now).pool_wide == ("daily_loss",)
    assert CircuitBreakerEvent.objects.get().cleared_at is None
    assert not OperatorAction.objects.filter(action="clear_breaker").exists()


def test_breaker_types_agree_between_the_rules_and_the_models():
    from portfolio.models import BreakerType as StoredBreakerType

    assert sorted(BreakerType) == sorted(StoredBreakerType.values)
