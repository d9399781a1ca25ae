"""A decision cycle as soon as a recommendation arrives, at most one queued per pool.

``request_cycles(pool_ids)`` runs on commit of whatever made a cycle worthwhile (a fresh
recommendation through the API, an operator's "run a cycle now"). For each pool it queues one
``decisions.tasks.triggered_cycle`` task unless one is already queued: the marker
``app:engine:cycle_queued:<pool>`` is added atomically (``cache.add``) and removed by the task
*before* its cycle starts, so a recommendation that commits while a cycle runs queues a
follow-up cycle and is never left for the next scheduled minute. The marker expires after
``MARKER_TTL`` so a task lost with a dead cluster cannot block the triggers for long (the
scheduled cycle every minute still runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from django.core.cache import cache
from django_q.tasks import async_task

from portfolio.models import EngineConfig, Pool, PoolMode

logger = logging.getLogger(__name__)

MARKER = "app:engine:cycle_queued:{pool}"
MARKER_TTL = 120
CYCLE_TASK = "decisions.tasks.triggered_cycle"


def cycle_marker(pool_id: int) -> str:
    return MARKER.format(pool=pool_id)


class Arriving(Protocol):
    """What ``pools_for`` reads of a recommendation (a model row or a validated input)."""

    action: str
    mode: str
    generated_at: datetime


def pools_for(recommendations: Iterable[Arriving], now: datetime) -> list[int]:
    """The pools that can take at least one of ``recommendations`` as of ``now``: an
    executable action, a mode the pool accepts, fresh under the pool's age limit and not
    dated after ``now``. Shadow pools are left out: ``decisions.tasks.triggered_cycle`` runs
    them with the pool they follow. Two queries."""
    newest: dict[str, datetime] = {}
    for r in recommendations:
        if r.action in ("act", "defer") and r.generated_at <= now:
            newest[r.mode] = max(r.generated_at, newest.get(r.mode, r.generated_at))
    if not newest:
        return []
    production = "production_eligible" in newest
    pools = Pool.objects.all() if production else Pool.objects.filter(mode=PoolMode.SIMULATION)
    # A shadow pool is no target of its own: its cycle runs right after the pool it follows.
    pools = pools.filter(shadow_of__isnull=True)
    ages = dict(
        EngineConfig.objects.filter(pool__in=pools).values_list(
            "pool_id", "recommendation_max_age_minutes"
        )
    )
    chosen = []
    for pool in pools.only("id", "mode"):
        modes = pool.accepted_modes
        generated = [g for mode, g in newest.items() if mode in modes]
        age = timedelta(minutes=ages.get(pool.pk, 120))
        if generated and max(generated) > now - age:
            chosen.append(pool.pk)
    return chosen


def request_cycles(pool_ids: Iterable[int]) -> list[int]:
    """Queue a decision cycle for each pool that has none queued; returns the pools queued.

    Call from ``transaction.on_commit``: the cycle must see what the caller wrote. A queueing
    failure is logged and swallowed: the scheduled cycle picks the recommendation up.
    """
    queued = []
    for pool_id in pool_ids:
        try:
            if not cache.add(cycle_marker(pool_id), 1, timeout=MARKER_TTL):
                continue
            async_task(CYCLE_TASK, pool_id, group="cycles", task_name=f"cycle-{pool_id}")
            queued.append(pool_id)
        except Exception:
            logger.exception("could not queue a decision cycle for pool %s", pool_id)
            cache.delete(cycle_marker(pool_id))
    return queued


def release_marker(pool_id: int) -> None:
    """Let the next request queue a cycle: called by the task before its cycle starts."""
    try:
        cache.delete(cycle_marker(pool_id))
    except Exception:  # the marker expires on its own
        logger.warning("could not clear the cycle marker of pool %s", pool_id, exc_info=True)


__all__ = ["pools_for", "release_marker", "request_cycles"]
