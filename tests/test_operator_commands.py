"""Operator commands: schedules, clearing a breaker, the manual tier, halt and resume; each change
goes through its audited action with ``via="command"``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord, Recommendation
from decisions.schedules import SCHEDULES
from execution.worker import drain_queued_orders
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    OperatorAction,
    Pool,
    RiskTierHistory,
)
from tests import factories

NEW_YORK = ZoneInfo("America/New_York")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def schedule_rows() -> set[tuple]:
    return set(Schedule.objects.values_list("name", "func", "schedule_type", "minutes", "cron"))


def breaker_in_force_now(pool: Pool, kind: BreakerType, entity: str | None = None):
    """A breaker in force at the wall clock, since the commands act as of ``timezone.now()``."""
    now = timezone.now()
    trigger = BreakerTrigger(kind, now - timedelta(minutes=1), now + timedelta(hours=2), entity)
    return record_trigger(pool, trigger, now)


def decision_for(rec: Recommendation) -> DecisionRecord:
    return DecisionRecord.objects.filter(recommendation=rec).latest("id")


# --- setup_schedules --------------------------------------------------------------------------


def test_setup_schedules_twice_leaves_the_same_rows(db):
    first = run("setup_schedules")
    rows = schedule_rows()
    count = Schedule.objects.count()

    second = run("setup_schedules")

    assert schedule_rows() == rows and Schedule.objects.count() == count == len(SCHEDULES)
    assert [line.split()[0] for line in first.splitlines()] == ["created"] * len(SCHEDULES)
    assert [line.split()[0] for line in second.splitlines()] == ["unchanged"] * len(SCHEDULES)
    assert rows == {(s.name, s.func, s.schedule_type, s.minutes, s.cron) for s in SCHEDULES}


def test_setup_schedules_restores_an_edited_schedule(db):
    run("setup_schedules")
    Schedule.objects.filter(name="engine: rebalancer").update(cron="0 12 * * *")
    expected = {(s.name, s.func, s.schedule_type, s.minutes, s.cron) for s in SCHEDULES}

    output = run("setup_schedules")

    assert schedule_rows() == expected
    lines = {line.split()[0] for line in output.splitlines() if "engine: rebalancer" in line}
    assert lines == {"updated"}


def test_the_cluster_reads_cron_in_new_york_time_and_does_not_catch_up():
    assert settings.Q_CLUSTER["time_zone"] == "America/New_York"
    assert settings.Q_CLUSTER["catch_up"] is False
    crons = {s.name: s.cron for s in SCHEDULES if s.cron}
    assert crons == {
        "engine: risk tier scheduler": "0,5 13,16 * * 1-5",
        "engine: rebalancer": "45,50 9 * * 1-5",
        "market data: daily bar refresh": "20 16 * * 1-5",
        "execution: position reconciliation": "*/15 9-16 * * 1-5",
    }


def test_cron_schedules_next_run_falls_on_new_york_hours(db):
    run("setup_schedules")

    # django-q2 computes a cron schedule's next run in Q_CLUSTER["time_zone"].
    tier = Schedule.objects.get(name="engine: risk tier scheduler")
    local = tier.next_run.astimezone(NEW_YORK)
    assert (local.hour, local.minute) in {(13, 0), (13, 5), (16, 0), (16, 5)}
    assert local.weekday() < 5
    rebalancer = Schedule.objects.get(name="engine: rebalancer")
    local = rebalancer.next_run.astimezone(NEW_YORK)
    assert (local.hour, local.minute) in {(9, 45), (9, 50)} and local.weekday() < 5


# --- clear_circuit_breaker --------------------------------------------------------------------


def test_clear_circuit_breaker_clears_and_says_so(pool):
    breaker_in_force_now(pool, BreakerType.DAILY_LOSS)

    output = run(
        "clear_circuit_breaker",
        "--pool",
        pool.name,
        "--type",
        "daily_loss",
        "--reason",
        "bad data feed",
        "--actor",
        "ops",
    )

    assert output.strip() == f"Cleared 1 daily_loss breaker(s) of {pool.name}."
    event = CircuitBreakerEvent.objects.get()
    assert (event.cleared_by, event.clear_reason) == ("ops", "bad data feed")
    assert event.cleared_at is not None
    audit = OperatorAction.objects.get(pool=pool, action="clear_breaker")
    assert (audit.actor, audit.reason, audit.via) == ("ops", "bad data feed", "command")


def test_clear_circuit_breaker_clears_one_entity_given_in_lower_case(pool):
    for symbol in ("AAA", "BBB"):
        factories.make_entity(symbol)
        breaker_in_force_now(pool, BreakerType.SINGLE_POSITION, symbol)

    run(
        "clear_circuit_breaker",
        *("--pool", pool.name, "--type", "single_position", "--entity", "aaa"),
        *("--reason", "news was false", "--actor", "ops"),
    )

    cleared = CircuitBreakerEvent.objects.filter(cleared_at__isnull=False)
    assert list(cleared.values_list("entity_id", flat=True)) == ["AAA"]


@pytest.mark.parametrize(
    ("pool_name", "kind", "reason", "message"),
    [
        ("no-such-pool", "daily_loss", "x", "--pool: no pool named 'no-such-pool'"),
        (None, "volatility", "x", "No volatility breaker is in force"),
        (None, "daily_loss", "  ", "--reason: a reason is required"),
    ],
)
def test_clear_circuit_breaker_refuses(pool, pool_name, kind, reason, message):
    breaker_in_force_now(pool, BreakerType.DAILY_LOSS)

    with pytest.raises(CommandError, match=message):
        run(
            "clear_circuit_breaker",
            *("--pool", pool_name or pool.name, "--type", kind, "--reason", reason),
        )

    assert not CircuitBreakerEvent.objects.filter(cleared_at__isnull=False).exists()
    assert not OperatorAction.objects.filter(action="clear_breaker").exists()


# --- set_risk_tier ----------------------------------------------------------------------------


def test_set_risk_tier_command_writes_history_and_says_so(pool):
    args = ("--pool", pool.name, "--tier", "conservative", "--reason", "weekly review")

    output = run("set_risk_tier", *args, "--actor", "ops")
    again = run("set_risk_tier", *args, "--actor", "ops")

    assert output.strip() == f"Pool {pool.name} is now conservative."
    assert again.strip() == f"Pool {pool.name} is already conservative: unchanged."
    row = RiskTierHistory.objects.get(pool=pool, trigger="manual")
    assert (row.previous_tier, row.new_tier, row.actor, row.reason) == (
        "moderate",
        "conservative",
        "ops",
        "weekly review",
    )
    assert Pool.objects.get(pk=pool.pk).risk_tier == "conservative"
    audit = OperatorAction.objects.get(pool=pool, action="set_risk_tier")
    assert (audit.actor, audit.reason, audit.via) == ("ops", "weekly review", "command")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pool", "no-such-pool", "--tier", "aggressive", "--reason", "x"), "no pool named"),
        (("--tier", "aggressive", "--reason", " "), "--reason: a reason is required"),
        (("--tier", "reckless", "--reason", "x"), "invalid choice"),
    ],
)
def test_set_risk_tier_command_refuses(pool, args, message):
    if "--pool" not in args:
        args = ("--pool", pool.name, *args)

    with pytest.raises(CommandError, match=message):
        run("set_risk_tier", *args)

    assert Pool.objects.get(pk=pool.pk).risk_tier == "moderate"
    assert not OperatorAction.objects.filter(action="set_risk_tier").exists()


# --- halt and resume --------------------------------------------------------------------------


def test_halt_skips_entries_while_a_defer_still_exits(pool, session_now):
    for symbol, sector in (("HELD", "Tech"), ("NEW", "Energy")):
        factories.add_bars(symbol, session_now, closes=[100.0] * 20, sector=sector)
    factories.make_recommendation("HELD", session_now, confidence="0.90")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    drain_queued_orders(pool, session_now)

    output = run("halt", "--pool", pool.name, "--reason", "broker incident", "--actor", "ops")

    assert output.strip() == f"Pool {pool.name} is halted."
    pool.refresh_from_db()
    assert pool.halted and pool.halt_reason == "broker incident (ops)"
    later = session_now + timedelta(minutes=10)
    entry = factories.make_recommendation("NEW", later, confidence="0.95")
    exit_ = factories.make_recommendation("HELD", later, action="defer")
    run_decision_cycle(pool.pk, later, dispatch=False)
    drain_queued_orders(pool, later)

    assert decision_for(entry).skip_reason == "pool_halted"
    assert not decision_for(entry).processed
    assert decision_for(exit_).outcome == "defer"
    assert Commitment.objects.get(entity_id="HELD").status == "closed"
    assert not Commitment.objects.filter(entity_id="NEW").exists()


def test_resume_lets_the_pool_enter_again(pool, session_now):
    factories.add_bars("NEW", session_now, closes=[100.0] * 20)
    run("halt", "--pool", pool.name, "--reason", "maintenance", "--actor", "ops")
    rec = factories.make_recommendation("NEW", session_now, confidence="0.90")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert decision_for(rec).skip_reason == "pool_halted"

    output = run("resume", "--pool", pool.name, "--reason", "broker back", "--actor", "ops")
    again = run("resume", "--pool", pool.name, "--reason", "broker back", "--actor", "ops")

    assert output.strip() == f"Pool {pool.name} is running."
    assert again.strip() == f"Pool {pool.name} was already running."
    pool.refresh_from_db()
    assert not pool.halted and pool.halt_reason == ""
    audit = OperatorAction.objects.get(pool=pool, action="resume")
    assert (audit.actor, audit.reason, audit.via) == ("ops", "broker back", "command")
    assert audit.before["halt_reason"] == "maintenance (ops)"
    run_decision_cycle(pool.pk, session_now + timedelta(minutes=1), dispatch=False)
    assert decision_for(rec).outcome == "act"


def test_halting_twice_says_it_was_already_halted(pool):
    run("halt", "--pool", pool.name, "--reason", "first", "--actor", "ops")

    output = run("halt", "--pool", pool.name, "--reason", "second", "--actor", "ops")

    assert output.strip() == f"Pool {pool.name} was already halted."
    assert Pool.objects.get(pk=pool.pk).halt_reason == "first (ops)"
    assert OperatorAction.objects.filter(pool=pool, action="halt").count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --reason"),
        (("--reason", "  "), "--reason: a reason is required"),
    ],
)
def test_halt_needs_a_reason(pool, args, message):
    with pytest.raises(CommandError, match=message):
        run("halt", "--pool", pool.name, *args)

    assert not Pool.objects.get(pk=pool.pk).halted
    assert not OperatorAction.objects.filter(action="halt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --reason"),
        (("--reason", "  "), "--reason: a reason is required"),
    ],
)
def test_resume_needs_a_reason(pool, args, message):
    run("halt", "--pool", pool.name, "--reason", "maintenance", "--actor", "ops")

    with pytest.raises(CommandError, match=message):
        run("resume", "--pool", pool.name, *args)

    assert Pool.objects.get(pk=pool.pk).halted
    assert not OperatorAction.objects.filter(action="resume").exists()


def test_the_actor_defaults_to_the_os_user(pool):
    import getpass

    run("halt", "--pool", pool.name, "--reason", "maintenance")

    audit = OperatorAction.objects.get(pool=pool, action="halt")
    assert (audit.actor, audit.via) == (getpass.getuser(), "command")


@pytest.mark.parametrize("command", ["halt", "resume"])
def test_halt_and_resume_refuse_an_unknown_pool(db, command):
    with pytest.raises(CommandError, match="--pool: no pool named 'ghost'"):
        run(command, "--pool", "ghost", "--reason", "x")
