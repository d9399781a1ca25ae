"""Circuit breaker state: events in the database, a mirror in the cache (orchestration).

The pure triggers live in ``portfolio.circuit_breaker``; this module records what they return.
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

logger = logging.getLogger(__name__)

CACHE_KEY = "app:execution:circuit_breaker:{type}"


def execution_cb_key(breaker_type: str) -> str:
    """The cache key of a breaker type (the source's ``execution_cb_key``)."""
    return CACHE_KEY.format(type=breaker_type)


def active_events(pool: Pool, now: datetime, breaker_type: str | None = None):
    """Events in force at ``now``: triggered, not expired, not cleared."""
    events = CircuitBreakerEvent.objects.filter(
        pool=pool, triggered_at__lte=now, expires_at__gt=now, cleared_at__isnull=True
    )
    if breaker_type is not None:
        events = events.filter(trigger_type=breaker_type)
    return events


def record_trigger(
    pool: Pool, trigger: BreakerTrigger, now: datetime
) -> CircuitBreakerEvent | None:
    """Store a trigger unless the same breaker (type, and entity for a cooldown) is already in
    force; the cache mirror is refreshed once the transaction commits."""
    in_force = active_events(pool, now, str(trigger.type)).filter(entity_id=trigger.entity)
    if in_force.exists():
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
    transaction.on_commit(lambda: mirror_breakers(now))
    return event


@transaction.atomic
def clear_breaker(
    pool: Pool,
    breaker_type: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    entity: str | None = None,
) -> int:
    """Clear the breakers of a type in force now (one entity's cooldown when given), recording
    who and why; returns how many were cleared."""
    if breaker_type not in BreakerType.values:
        raise ValueError(f"unknown breaker type {breaker_type!r}; one of {BreakerType.values}")
    if not reason.strip():
        raise ValueError("a reason is required to clear a breaker")
    events = active_events(pool, now, breaker_type)
    if entity:
        events = events.filter(entity_id=entity)
    cleared = events.update(cleared_at=now, cleared_by=actor, clear_reason=reason)
    transaction.on_commit(lambda: mirror_breakers(now))
    return cleared


def mirror_breakers(now: datetime) -> None:
    """Rewrite every breaker key of the cache from the database (one query).

    Each key holds ``{"pools": {pool: [{"entity", "triggered_at", "expires_at"}, …]}}`` and
    expires with the last of its events; a type with nothing in force has no key.
    """
    rows = CircuitBreakerEvent.objects.filter(
        triggered_at__lte=now, expires_at__gt=now, cleared_at__isnull=True
    ).values_list("trigger_type", "pool__name", "entity_id", "triggered_at", "expires_at")
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
