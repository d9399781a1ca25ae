"""django-q2 task entry points of the engine's five loops: every pool, each failure contained.

Schedules name these by path (``decisions.schedules``, ``setup_schedules``). Cron knows no
holidays, so every loop that belongs to a session checks the exchange calendar itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone

from portfolio.models import Pool
from portfolio.shadows import count_shadow_failure, cycle_order, run_with_shadows

logger = logging.getLogger(__name__)


def for_each_pool(name: str, run: Callable[[int], object]) -> list[str]:
    """Run ``run(pool_id)`` for every pool, each shadow pool right after the pool it follows
    (``portfolio.shadows.cycle_order``); an exception in one pool is logged (and counted for
    a shadow) and the others still run. Returns one line per pool for the task's result."""
    lines = []
    for pool_id, pool_name, follows in cycle_order():
        try:
            lines.append(f"{pool_name}: {run(pool_id)}")
        except Exception:
            logger.exception("%s failed for pool %s", name, pool_name)
            if follows is not None:
                count_shadow_failure(pool_id, name)
            lines.append(f"{pool_name}: failed (see the log)")
    return lines


def decision_cycle() -> list[str]:
    """One decision cycle for every pool; new orders go to the workers on commit."""
    from decisions.engine import run_decision_cycle

    now = timezone.now()

    def run(pool_id: int) -> str:
        result = run_decision_cycle(pool_id, now)
        return f"{result.candidates} candidate(s), {dict(result.outcomes)}"

    return for_each_pool("decision cycle", run)


def triggered_cycle(pool_id: int) -> str:
    """One decision cycle for one pool and then for each of its shadows at the same ``now``,
    queued by ``decisions.triggers.request_cycles`` when a recommendation arrived or an
    operator asked. The marker is released before the cycle starts, so whatever
    arrives during the cycle queues a follow-up."""
    from decisions.engine import run_decision_cycle
    from decisions.triggers import release_marker

    release_marker(pool_id)
    now = timezone.now()
    # The pool's shadows decide at the same instant, right after it (each failure contained).
    result, shadows = run_with_shadows(
        pool_id, lambda p: run_decision_cycle(p, now), loop="decision cycle"
    )
    line = f"{result.candidates} candidate(s), {dict(result.outcomes)}"
    for shadow in shadows:
        line += f"; shadow {shadow.pool_id}: " + (
            "failed (see the log)"
            if shadow.failed
            else f"{shadow.result.candidates} candidate(s), {dict(shadow.result.outcomes)}"
        )
    return line


def risk_threshold_monitor() -> list[str]:
    from decisions.loops import run_risk_threshold_monitor

    now = timezone.now()
    return for_each_pool("risk threshold monitor", lambda p: run_risk_threshold_monitor(p, now))


def performance_loop() -> list[str]:
    from decisions.loops import run_performance_loop

    now = timezone.now()
    return for_each_pool("performance loop", lambda p: run_performance_loop(p, now))


def risk_tier_scheduler() -> list[str]:
    from decisions.loops import run_risk_tier_scheduler

    now = timezone.now()
    return for_each_pool("risk tier scheduler", lambda p: run_risk_tier_scheduler(p, now))


def rebalancer() -> list[str]:
    from decisions.loops import run_rebalancer

    now = timezone.now()
    return for_each_pool("rebalancer", lambda p: run_rebalancer(p, now))


def refresh_daily_bars() -> str:
    """After the close: the daily bars of the last complete session of every entity held or
    recently recommended, from the market data API into ``market_snapshots``
    (``decisions.market_data.refresh_daily_bars``; idempotent). Does nothing when
    ``MARKET_DATA_API_URL`` is not set."""
    from decisions.market_data import data_client
    from decisions.market_data import refresh_daily_bars as refresh

    client = data_client()
    if client is None:
        return "MARKET_DATA_API_URL is not set: nothing to refresh"
    return str(refresh(timezone.now(), client=client))


def reconcile_positions_all() -> list[str]:
    """Position reconciliation of every pool (``execution.reconciliation``): the broker's
    positions and cash against the books, differences recorded as reconciliation events. A
    pool on the paper broker is not compared; a broker without an answer is reported for its
    pool and records nothing."""
    from execution.reconciliation import BrokerUnavailable, reconcile_positions

    now = timezone.now()

    def run(pool_id: int) -> str:
        pool = Pool.objects.get(pk=pool_id)
        try:
            result = reconcile_positions(pool, now)
        except BrokerUnavailable as exc:
            return f"broker unavailable ({exc})"
        return result.detail

    return for_each_pool("position reconciliation", run)


def export_order_events() -> str:
    """Export the order events not yet exported to ``EVENTS_EXPORT_DESTINATION`` in
    ``EVENTS_EXPORT_FORMAT`` (``execution.lakehouse.export_events``: files by day, each event
    exactly once). Does nothing when ``EVENTS_EXPORT_DESTINATION`` is not set; a destination
    that refuses a write fails the task, and the next run writes the same batch again."""
    from django.conf import settings

    from execution.lakehouse import export_events

    if not settings.EVENTS_EXPORT_DESTINATION:
        return "EVENTS_EXPORT_DESTINATION is not set: nothing to export"
    result = export_events(
        settings.EVENTS_EXPORT_DESTINATION,
        fmt=settings.EVENTS_EXPORT_FORMAT,
        now=timezone.now(),
    )
    return str(result)
