"""Circuit breaker state: events in the database, a mirror in the cache (orchestration).

The pure triggers live in ``portfolio.circuit_breaker``; this module records what they return
(an operator clears them through ``portfolio.actions.clear_breaker``).
The database (``circuit_breaker_events``) is the truth: the engine reads active breakers from
it, so they survive a restart with an empty cache. The cache keys
``app:execution:circuit_breaker:<type>`` are a mirror for external monitors, rebuilt from the
database after every change: each holds the active events of that type for every pool.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.cache import cache
from django.db import transaction

from portfolio.circuit_breaker import BreakerTrigger
from portfolio.models import BreakerType, CircuitBreakerEvent, Pool
from portfolio.selectors import in_force

logger = logging.getLogger(__name__)

CACHE_KEY = "app:execution:circuit_breaker:{type}"


def execution_cb_key(breaker_type: str) -> str:
    """The cache key of a breaker type (the source's ``execution_cb_key``)."""
    return CACHE_KEY.format(type=breaker_type)


def record_trigger(
    pool: Pool, trigger: BreakerTrigger, now: datetime
) -> CircuitBreakerEvent | None:
    """Store a trigger unless the same breaker (type, and entity for a cooldown) is already in
    force; the cache mirror is refreshed once the transaction commits."""
    same = in_force(pool, now).filter(trigger_type=str(trigger.type), entity_id=trigger.entity)
    if same.exists():
        return None
    event = CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type=str(trigger.type),
        entity_id=trigger.entity,
        triggered_at=trigger.triggered_at,
        expires_at=trigger.expires_at,
        figures=trigger.figures,
    )
    logger.warning(
        "pool %s: %s breaker%s until %s (%s)",
        pool.name,
        trigger.type,
        f" on {trigger.entity}" if trigger.entity else "",
        trigger.expires_at.isoformat(),
        trigger.figures,
    )
    mirror_breakers_on_commit(now)
    return event


def mirror_breakers_on_commit(now: datetime) -> None:
    """Refresh the cache mirror once the current transaction has committed."""
    transaction.on_commit(lambda: mirror_breakers(now))


def mirror_breakers(now: datetime) -> None:
    """Rewrite every breaker key of the cache from the database (one query).

    Each key holds ``{"pools": {pool: [{"entity", "triggered_at", "expires_at"}, …]}}`` and
    expires with the last of its events; a type with nothing in force has no key.
    """
    rows = in_force(None, now).values_list(
        "trigger_type", "pool__name", "entity_id", "triggered_at", "expires_at"
    )
    state: dict[str, dict] = {}
    for kind, pool_name, entity, triggered, expires in rows:
        entry = state.setdefault(kind, {"pools": {}, "expires_at": expires})
        entry["expires_at"] = max(entry["expires_at"], expires)
        entry["pools"].setdefault(pool_name, []).append(
            {
                "entity": entity,
                "triggered_at": triggered.isoformat(),
                "expires_at": expires.isoformat(),
            }
        )
    try:
        for kind in BreakerType.values:
            key = execution_cb_key(kind)
            if kind not in state:
                cache.delete(key)
                continue
            value = state[kind]
            timeout = max(int((value["expires_at"] - now).total_seconds()), 1)
            value["expires_at"] = value["expires_at"].isoformat()
            cache.set(key, value, timeout=timeout)
    except Exception:  # the mirror is for monitors; the database stays the truth
        logger.warning("could not mirror circuit breakers to the cache", exc_info=True)
