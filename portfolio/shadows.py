"""Shadow pools: a paper pool that follows another (docs/decisions.md, "Shadow pools").

A shadow (``Pool.shadow_of``) is offered the same recommendations as the pool it follows (it
takes its mode), decides them with its own settings, runs in the same cycles at the same
``now`` right after it, and trades on the paper broker only (the database refuses any other
adapter for a shadow). This module holds what the loops, the commands and the console need:

- ``create_pool_with_settings``: ``create_pool`` (a shadow with ``shadow_of=``) and then the
  changed settings of ``portfolio.config_overrides``, in one transaction;
- ``cycle_order`` / ``with_shadows`` / ``shadows_of``: the order pools run in, each shadow right
  after the pool it follows;
- ``run_with_shadows``: run something for a pool, then for each of its shadows, a shadow's
  failure logged and counted (``telemetry_counters``, metric ``shadow_failures``) and never
  raised;
- ``settings_that_differ``: what a shadow changes from the pool it follows, as the
  configuration versions' changes (``portfolio.config_versions``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.db import transaction

from portfolio.actions import create_pool
from portfolio.config_overrides import ConfigOverrides, apply_overrides
from portfolio.config_versions import Change, current_document, diff_documents, tier_rows
from portfolio.models import EngineConfig, Pool
from portfolio.selectors import get_engine_config
from portfolio.telemetry import add_to_counters

logger = logging.getLogger(__name__)

__all__ = [
    "SHADOW_FAILURES",
    "ShadowRun",
    "create_pool_with_settings",
    "cycle_order",
    "run_with_shadows",
    "settings_that_differ",
    "shadows_of",
    "with_shadows",
]

#: The telemetry counter of shadow runs that raised, by loop (``reason``).
SHADOW_FAILURES = "shadow_failures"

T = TypeVar("T")


@transaction.atomic
def create_pool_with_settings(
    name: str,
    *,
    overrides: ConfigOverrides | None = None,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
    **pool: Any,
) -> Pool:
    """``create_pool(name, **pool)`` (``shadow_of=`` makes a shadow), then ``overrides``
    applied through ``apply_overrides``: every audit row written, or nothing at all when any
    part is refused (``ActionError`` / ``ValidationError`` from the actions). Shared risk tier
    parameters are refused (``apply_overrides``): a shadow's settings are its own."""
    created = create_pool(name, actor=actor, reason=reason, now=now, via=via, **pool)
    if overrides:
        apply_overrides(created, overrides, actor=actor, reason=reason, now=now, via=via)
        created.refresh_from_db()
    return created


# --- the order pools run in -------------------------------------------------------------------


def _shadows_by_leader(leaders: Iterable[int] | None = None) -> dict[int, list[int]]:
    shadows = Pool.objects.filter(shadow_of__isnull=False)
    if leaders is not None:
        shadows = shadows.filter(shadow_of__in=list(leaders))
    by_leader: dict[int, list[int]] = defaultdict(list)
    for leader, shadow in shadows.order_by("name").values_list("shadow_of_id", "id"):
        by_leader[leader].append(shadow)
    return by_leader


def shadows_of(pool_id: int) -> list[int]:
    """The shadows of the pool, by name. One query."""
    return _shadows_by_leader([pool_id]).get(pool_id, [])


def with_shadows(pool_ids: Iterable[int]) -> list[int]:
    """``pool_ids`` in their order, each followed by its shadows (by name); a shadow given
    itself runs once, after the pool it follows when that one is given too. One query."""
    ids = list(dict.fromkeys(pool_ids))
    by_leader = _shadows_by_leader(ids)
    following = {shadow for shadows in by_leader.values() for shadow in shadows}
    ordered: list[int] = []
    for pool_id in ids:
        if pool_id in following:
            continue
        ordered.append(pool_id)
        ordered += by_leader.get(pool_id, [])
    ordered += [pool_id for pool_id in ids if pool_id in following and pool_id not in ordered]
    return ordered


def cycle_order() -> list[tuple[int, str, int | None]]:
    """Every pool as (id, name, id of the pool it follows or None): the pools that follow none
    by name, each followed by its shadows by name. One query."""
    rows = list(Pool.objects.order_by("name").values_list("id", "name", "shadow_of_id"))
    shadows: dict[int, list[tuple[int, str, int | None]]] = defaultdict(list)
    for row in rows:
        if row[2] is not None:
            shadows[row[2]].append(row)
    ordered = []
    for row in rows:
        if row[2] is None:
            ordered.append(row)
            ordered += shadows.get(row[0], [])
    return ordered


# --- running beside the followed pool ---------------------------------------------------------


@dataclass(frozen=True)
class ShadowRun(Generic[T]):
    """What one shadow's run gave: its result, or ``failed`` (logged and counted)."""

    pool_id: int
    result: T | None
    failed: bool = False


def count_shadow_failure(pool_id: int, loop: str) -> None:
    """Add one to the shadow's ``shadow_failures`` counter of ``loop``; never raises."""
    try:
        add_to_counters([(pool_id, SHADOW_FAILURES, "", loop[:40], "", 1, 0.0)])
    except Exception:  # a counter must never fail the pool it counts for
        logger.warning("could not count a failure of shadow pool %s", pool_id, exc_info=True)


def run_shadow(pool_id: int, run: Callable[[int], T], *, loop: str) -> ShadowRun[T]:
    """``run(pool_id)`` for a shadow: an exception is logged and counted, not raised."""
    try:
        return ShadowRun(pool_id, run(pool_id))
    except Exception:
        logger.exception("%s failed for shadow pool %s", loop, pool_id)
        count_shadow_failure(pool_id, loop)
        return ShadowRun(pool_id, None, failed=True)


def run_with_shadows(
    pool_id: int, run: Callable[[int], T], *, loop: str
) -> tuple[T, list[ShadowRun[T]]]:
    """``run(pool_id)``, then ``run(shadow_id)`` for each of its shadows (by name), in this
    process. A shadow's exception is logged and counted (``shadow_failures``) and the next
    shadow still runs; the pool's own exception is raised once its shadows have run."""
    error: Exception | None = None
    result = None
    try:
        result = run(pool_id)
    except Exception as exc:
        error = exc
    shadows = [run_shadow(shadow, run, loop=loop) for shadow in shadows_of(pool_id)]
    if error is not None:
        raise error
    return result, shadows


# --- what a shadow changes --------------------------------------------------------------------


@dataclass(frozen=True)
class SettingsDifference:
    """What a shadow changes from the pool it follows: the configuration versions' changes
    (engine settings; tier parameters are shared and never differ), and the risk tier each
    is in now when they differ."""

    changes: tuple[Change, ...]
    tiers: tuple[str, str] | None = None

    @property
    def sentences(self) -> list[str]:
        lines = [c.sentence for c in self.changes]
        if self.tiers:
            lines.append(f"in the {self.tiers[1]} tier (the pool it follows: {self.tiers[0]})")
        return lines

    def __bool__(self) -> bool:
        return bool(self.changes or self.tiers)


def settings_that_differ(
    shadow: Pool,
    followed: Pool,
    *,
    tiers: list[dict[str, Any]] | None = None,
    shadow_config: EngineConfig | None = None,
    followed_config: EngineConfig | None = None,
) -> SettingsDifference:
    """The settings of ``shadow`` that differ from ``followed``'s. Two queries (the two engine
    configurations, read afresh; the tiers' rows), none when the configurations and ``tiers``
    (``config_versions.tier_rows()``) are given."""
    tiers = tier_rows() if tiers is None else tiers
    if shadow_config is None or followed_config is None:
        # Read afresh: a pool object may carry a configuration cached before a change.
        stored = {c.pool_id: c for c in EngineConfig.objects.filter(pool__in=[shadow, followed])}
        shadow_config = shadow_config or stored.get(shadow.pk) or get_engine_config(shadow)
        followed_config = followed_config or stored.get(followed.pk) or get_engine_config(followed)
    before = current_document(followed, followed_config, tiers=tiers)
    after = current_document(shadow, shadow_config, tiers=tiers)
    tier_pair = (
        (followed.risk_tier, shadow.risk_tier) if followed.risk_tier != shadow.risk_tier else None
    )
    return SettingsDifference(tuple(diff_documents(before, after)), tier_pair)
