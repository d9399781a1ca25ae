"""The four loops beside the decision loop (the source, 'The Decision Execution Engine Loop'):
orchestration around the pure rules of ``portfolio``.

- ``run_risk_threshold_monitor``: levels from ATR (re-evaluation, trailing, tightening), exits at
  the risk threshold or the gain target, the single-commitment and volatility breakers;
- ``run_performance_loop``: commitment sync and the reserve siphon, metrics and the daily
  snapshot, the daily-loss breaker, emergency liquidation, gain-taking;
- ``run_risk_tier_scheduler``: once per session at the close, the tier controller;
- ``run_rebalancer``: once a week, 15 minutes after the first open of the week.

Each takes a pool id and ``now``, locks the pool row (so loops and decision cycles of one pool
never interleave), writes its state changes with their audit rows in one transaction, and hands
the orders it creates to the worker once that transaction has committed. Each is safe to run
twice: a second run at the same ``now`` finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Sum

from execution.dispatch import enqueue_orders, queued_order
from execution.events import record_order_events
from execution.models import Order, OrderEventKind, OrderReason, OrderSide
from execution.selectors import pool_as_of
from portfolio.books import levels_of, refresh_levels
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import (
    BreakerConfig,
    check_daily_loss,
    check_single_position,
    check_volatility,
)
from portfolio.heartbeat import records_loop_run
from portfolio.market_calendar import MarketCalendar, get_market_calendar
from portfolio.metrics import current_drawdown, daily_returns, sharpe_ratio, success_rate
from portfolio.models import (
    Commitment,
    CommitmentStatus,
    EngineConfig,
    LedgerTrigger,
    Pool,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.rebalancer import RebalanceHolding, RebalanceLimits, plan_rebalance
from portfolio.reserve import (
    ReserveConfig,
    emergency_liquidate,
    is_high_water,
    reserve_fraction,
    should_emergency_liquidate,
    siphon_profit,
)
from portfolio.risk_thresholds import Crossing, ThresholdConfig, check_crossing
from portfolio.selectors import PoolState, get_engine_config, rule_config
from portfolio.tier_controller import TierMetrics, TierRules, evaluate_tier

logger = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
#: Value history the metrics read: about a year of sessions.
HISTORY_SESSIONS = 252


@dataclass
class LoopResult:
    """What one loop did for one pool: for logs, ``run_engine`` and the demo."""

    loop: str
    pool: str
    now: datetime
    ran: bool = True
    detail: str = ""
    order_ids: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [self.detail] if self.detail else []
        parts += self.events
        if self.order_ids:
            parts.append(f"{len(self.order_ids)} order(s)")
        return f"{self.loop}: " + ("; ".join(parts) or "nothing to do")


def breaker_config(config: EngineConfig) -> BreakerConfig:
    return rule_config(BreakerConfig, config)


def _lock(pool_id: int) -> Pool:
    return Pool.objects.select_for_update().get(pk=pool_id)


def _dispatch_on_commit(order_ids: list[int], dispatch: bool) -> None:
    if dispatch and order_ids:
        ids = list(order_ids)
        transaction.on_commit(lambda: enqueue_orders(ids))


def _exit_order(
    pool: Pool,
    commitment: Commitment,
    units: Decimal,
    value: Decimal,
    reason: str,
    reference: str,
    note: str,
    now: datetime,
) -> Order:
    return queued_order(
        pool=pool,
        entity_id=commitment.entity_id,
        action="defer",
        side=OrderSide.SELL,
        reason=reason,
        quantity=units,
        estimated_value=value,
        reference=reference,
        now=now,
        commitment=commitment,
        note=note[:500],
    )


def state_exits(state: PoolState) -> set[int]:
    """Commitments with an exit order pending, and those of an entity with an order whose
    outcome is not known yet (``unknown``, ``submitting``: ``PoolState.unsettled``): the
    loops never add another order for them until it is settled."""
    unsettled = state.unsettled
    return {o.commitment_id for o in state.pending if not o.is_entry} | {
        p.commitment_id for p in state.positions if p.symbol in unsettled
    }


def _exit_attempts(commitment_ids: list[int]) -> dict[int, int]:
    """How many exit orders each commitment already had (a rejected exit may be retried, under
    a new reference)."""
    counts: dict[int, int] = {}
    for cid in Order.objects.filter(
        commitment_id__in=commitment_ids, side=OrderSide.SELL
    ).values_list("commitment_id", flat=True):
        counts[cid] = counts.get(cid, 0) + 1
    return counts


# --- risk threshold monitor -------------------------------------------------------------------


@records_loop_run("risk_threshold_monitor")
def run_risk_threshold_monitor(
    pool_id: int,
    now: datetime,
    *,
    exits: tuple[str, ...] = (Crossing.RISK_THRESHOLD, Crossing.GAIN_TARGET),
    dispatch: bool = True,
) -> LoopResult:
    """Update every open commitment's levels and exit those whose value crossed one.

    Runs only while the exchange is open (an exit order needs a session). One full-quantity
    exit per commitment, never two: a commitment with a pending exit is left alone. Every
    risk-threshold exit counts as a hit for the volatility breaker; a commitment down more than
    ``single_position_loss_pct`` trips its entity's cooldown.
    """
    calendar = get_market_calendar(now)
    with transaction.atomic():
        pool = _lock(pool_id)
        result = LoopResult("risk threshold monitor", pool.name, now)
        if not calendar.is_open(now):
            result.ran, result.detail = False, "exchange closed"
            return result
        config = get_engine_config(pool)
        commitments = list(
            Commitment.objects.select_for_update().filter(pool=pool, status=CommitmentStatus.OPEN)
        )
        if not commitments:
            return result
        state = pool_as_of(
            pool, now, sessions=config.atr_period * 3, config=config, calendar=calendar
        )
        tier = state.tier
        market = state.market
        heat_ratio = state.exposure_ratio
        thresholds = rule_config(ThresholdConfig, config, keep_defaults=("tighten_factor",))
        breakers = breaker_config(config)
        pending = state_exits(state)
        attempts = _exit_attempts([c.pk for c in commitments])
        changed: list[Commitment] = []
        orders: list[Order] = []
        for commitment in commitments:
            value = market.latest.get(commitment.entity_id)
            if value is None:
                continue
            # A crossing is judged by the levels in force before this observation: levels set
            # from earlier information. The update below serves the next observation (a bar
            # that reaches the target and also lifts the ATR must not move the target away
            # before the crossing is tested).
            crossing = (
                check_crossing(levels_of(commitment), value)
                if commitment.risk_threshold is not None
                else None
            )
            level = (
                commitment.risk_threshold
                if crossing == Crossing.RISK_THRESHOLD
                else commitment.gain_target
            )
            atr = market.atr(commitment.entity_id, config.atr_period)
            if refresh_levels(commitment, value, atr, tier, heat_ratio, thresholds):
                changed.append(commitment)
            trigger = check_single_position(
                commitment.entity_id, commitment.entry_value, value, now, breakers
            )
            if trigger is not None and record_trigger(pool, trigger, now):
                result.events.append(f"single-commitment breaker on {commitment.entity_id}")
            if crossing is None or crossing not in exits or commitment.pk in pending:
                continue
            attempt = attempts.get(commitment.pk, 0) + 1
            orders.append(
                _exit_order(
                    pool,
                    commitment,
                    commitment.units,
                    value,
                    str(crossing),
                    f"commitment:{commitment.pk}:{crossing}:{attempt}",
                    f"{commitment.entity_id} at {value} crossed its "
                    f"{crossing.replace('_', ' ')} {level}",
                    now,
                )
            )
        Commitment.objects.bulk_update(
            changed,
            ["risk_threshold", "gain_target", "atr", "highest_value", "trailing_active"],
        )
        Order.objects.bulk_create(orders)
        record_order_events(orders, OrderEventKind.QUEUED, now)
        result.order_ids = [o.pk for o in orders]
        result.events += [o.note for o in orders]
        if any(o.reason == OrderReason.RISK_THRESHOLD for o in orders):
            window = timedelta(minutes=config.stop_loss_window_minutes)
            hits = Order.objects.filter(
                pool=pool,
                reason=OrderReason.RISK_THRESHOLD,
                created_at__gte=now - window,
                created_at__lte=now,
            ).values_list("created_at", flat=True)
            trigger = check_volatility(list(hits), now, breakers)
            if trigger is not None and record_trigger(pool, trigger, now):
                result.events.append("volatility breaker")
        _dispatch_on_commit(result.order_ids, dispatch)
    return result


# --- performance loop -------------------------------------------------------------------------


def last_started_session(calendar: MarketCalendar, now: datetime) -> date:
    """The session a snapshot taken at ``now`` belongs to: today's once it has opened,
    otherwise the previous one (a weekend or a pre-open run updates the last session)."""
    today = now.astimezone(NEW_YORK).date()
    if calendar.is_session(today) and now >= calendar.session_open(today):
        return today
    return calendar.previous_session(today)


@dataclass(frozen=True)
class PoolMetrics:
    """Pool-wide performance as of one instant (currency, fractions, an annualized ratio)."""

    session: date
    state: PoolState
    closed_in_window: int
    unrealized_gain: Decimal
    realized_gain: Decimal
    success_rate: Decimal | None
    risk_adjusted_return: float | None
    peak_to_trough: Decimal
    reserve_pct: Decimal


def compute_pool_metrics(
    pool: Pool, now: datetime, config: EngineConfig, calendar: MarketCalendar
) -> PoolMetrics:
    """Load what the metrics need (a fixed number of queries) and compute them."""
    state = pool_as_of(pool, now, config=config, calendar=calendar)
    session = last_started_session(calendar, now)
    closed = Commitment.objects.filter(
        pool=pool, status=CommitmentStatus.CLOSED, closed_at__lte=now
    )
    since = now - timedelta(days=config.success_rate_lookback_days)
    recent = list(closed.filter(closed_at__gt=since).values_list("realized_gain", flat=True))
    realized = Commitment.objects.filter(pool=pool, opened_at__lte=now).aggregate(
        total=Sum("realized_gain")
    )["total"] or Decimal("0")
    history = list(
        PoolSnapshot.objects.filter(pool=pool, session__lt=session)
        .order_by("-session")
        .values_list("total_value", flat=True)[:HISTORY_SESSIONS]
    )[::-1]
    values = [*history, state.total_value]
    returns = daily_returns(values) if len(values) > 1 and min(values) > 0 else None
    risk_free_daily = float(config.risk_free_rate) / 252
    return PoolMetrics(
        session=session,
        state=state,
        closed_in_window=len(recent),
        unrealized_gain=state.unrealized_gain,
        realized_gain=realized,
        success_rate=success_rate(recent),
        risk_adjusted_return=(
            sharpe_ratio(returns, risk_free_daily) if returns is not None else None
        ),
        peak_to_trough=current_drawdown(values),
        reserve_pct=reserve_fraction(pool.reserve_balance, state.total_value),
    )


def _save_snapshot(pool: Pool, metrics: PoolMetrics, now: datetime) -> PoolSnapshot:
    v = metrics.state
    snapshot, _ = PoolSnapshot.objects.update_or_create(
        pool=pool,
        session=metrics.session,
        defaults={
            "taken_at": now,
            "total_value": v.total_value,
            "cash": pool.cash,
            "reserve_balance": pool.reserve_balance,
            "active_pool": v.active_pool,
            "unrealized_gain": metrics.unrealized_gain,
            "realized_gain": metrics.realized_gain,
            "daily_gain": v.daily_gain,
            "success_rate": metrics.success_rate,
            "risk_adjusted_return": metrics.risk_adjusted_return,
            "peak_to_trough": metrics.peak_to_trough.quantize(Decimal("0.000001")),
            "pool_exposure": v.pool_exposure,
            "open_commitments": len(v.positions),
            "risk_tier": pool.risk_tier,
        },
    )
    return snapshot


def sync_commitments(pool: Pool, now: datetime, config: EngineConfig) -> list[str]:
    """Settle the commitments closed since the last sync: siphon a share of each positive
    realized gain into the reserve (with its ledger row), trip the entity's cooldown when a
    commitment closed more than ``single_position_loss_pct`` down. Losses never touch the
    reserve. Each closed commitment is settled once (``siphoned``)."""
    events: list[str] = []
    reserve = rule_config(ReserveConfig, config)
    breakers = breaker_config(config)
    closed = list(
        Commitment.objects.select_for_update().filter(
            pool=pool, status=CommitmentStatus.CLOSED, siphoned=False, closed_at__lte=now
        )
    )
    entries: list[ReserveLedgerEntry] = []
    for commitment in sorted(closed, key=lambda c: (c.closed_at, c.pk)):
        siphon = siphon_profit(commitment.realized_gain, pool.reserve_balance, reserve)
        if siphon is not None:
            pool.reserve_balance = siphon.balance_after
            entries.append(
                ReserveLedgerEntry(
                    pool=pool,
                    trigger=LedgerTrigger.PROFIT_SIPHON,
                    amount=siphon.amount,
                    balance_after=siphon.balance_after,
                    entity_id=commitment.entity_id,
                    commitment=commitment,
                    note=siphon.note,
                    created_at=now,
                )
            )
            events.append(f"siphoned {siphon.amount} from {commitment.entity_id}")
        if commitment.exit_value is not None:
            trigger = check_single_position(
                commitment.entity_id,
                commitment.entry_value,
                commitment.exit_value,
                commitment.closed_at,
                breakers,
            )
            if trigger is not None and record_trigger(pool, trigger, now):
                events.append(f"single-commitment breaker on {commitment.entity_id}")
        commitment.siphoned = True
    if closed:
        ReserveLedgerEntry.objects.bulk_create(entries)
        Commitment.objects.bulk_update(closed, ["siphoned"])
        pool.save(update_fields=["reserve_balance", "updated_at"])
    return events


@records_loop_run("performance_loop")
def run_performance_loop(pool_id: int, now: datetime, *, dispatch: bool = True) -> LoopResult:
    """Sync commitments and the reserve, compute the metrics and the session's snapshot, check
    the daily-loss breaker and emergency liquidation, and take gains at their targets."""
    calendar = get_market_calendar(now)
    with transaction.atomic():
        pool = _lock(pool_id)
        result = LoopResult("performance loop", pool.name, now)
        config = get_engine_config(pool)
        result.events += sync_commitments(pool, now, config)
        metrics = compute_pool_metrics(pool, now, config, calendar)
        v = metrics.state
        trigger = check_daily_loss(v.daily_gain, v.total_value, now, breaker_config(config))
        if trigger is not None and record_trigger(pool, trigger, now):
            result.events.append(f"daily-loss breaker ({v.daily_gain:,.2f})")
        reserve = rule_config(ReserveConfig, config)
        if should_emergency_liquidate(metrics.peak_to_trough, pool.reserve_balance, reserve):
            released = emergency_liquidate(pool.reserve_balance)
            pool.reserve_balance = Decimal("0")
            pool.save(update_fields=["reserve_balance", "updated_at"])
            ReserveLedgerEntry.objects.create(
                pool=pool,
                trigger=LedgerTrigger.EMERGENCY_LIQUIDATION,
                amount=-released,
                balance_after=Decimal("0"),
                note=f"decline {metrics.peak_to_trough:.4f} above "
                f"{config.emergency_drawdown_pct}: reserve released to the active pool",
                created_at=now,
            )
            result.events.append(f"emergency liquidation released {released}")
            metrics = compute_pool_metrics(pool, now, config, calendar)
        snapshot = _save_snapshot(pool, metrics, now)
        high_water = is_high_water(pool.reserve_balance, v.total_value, reserve)
        result.detail = (
            f"value {snapshot.total_value:,.2f}, decline {snapshot.peak_to_trough:.2%}, "
            f"reserve {snapshot.reserve_balance:,.2f}" + (" (high water)" if high_water else "")
        )
        if calendar.is_open(now):
            gains = run_risk_threshold_monitor(
                pool_id, now, exits=(Crossing.GAIN_TARGET,), dispatch=dispatch
            )
            result.order_ids += gains.order_ids
            result.events += gains.events
    return result


# --- risk tier scheduler ----------------------------------------------------------------------


@records_loop_run("risk_tier_scheduler")
def run_risk_tier_scheduler(pool_id: int, now: datetime) -> LoopResult:
    """At the session close (16:00 ET, 13:00 on early closes), let the tier controller decide.

    Runs once per session: a second call after the same close does nothing. Not on a day
    without a session, and not before its close. The metrics are refreshed (and the session's
    snapshot saved) first, so the decision reads the latest figures.
    """
    calendar = get_market_calendar(now)
    today = now.astimezone(NEW_YORK).date()
    with transaction.atomic():
        pool = _lock(pool_id)
        result = LoopResult("risk tier scheduler", pool.name, now)
        if not calendar.is_session(today):
            result.ran, result.detail = False, f"{today} is not a session"
            return result
        if now < calendar.session_close(today):
            result.ran, result.detail = False, "before the session close"
            return result
        if pool.last_tier_evaluation == today:
            result.ran, result.detail = False, f"already evaluated at the close of {today}"
            return result
        config = get_engine_config(pool)
        metrics = compute_pool_metrics(pool, now, config, calendar)
        _save_snapshot(pool, metrics, now)
        decision = evaluate_tier(
            pool.risk_tier,
            TierMetrics(
                success_rate=metrics.success_rate,
                peak_to_trough=metrics.peak_to_trough,
                reserve_pct=metrics.reserve_pct,
                risk_adjusted_return=metrics.risk_adjusted_return,
                closed_in_window=metrics.closed_in_window,
            ),
            rule_config(TierRules, config, prefix="tier_"),
        )
        pool.last_tier_evaluation = today
        if decision.changed:
            RiskTierHistory.objects.create(
                pool=pool,
                previous_tier=pool.risk_tier,
                new_tier=decision.new,
                trigger=TierTrigger.AUTO,
                metrics=decision.metrics,
                reason="; ".join(decision.reasons)[:500],
                actor="risk tier scheduler",
                changed_at=now,
            )
            pool.risk_tier = decision.new
            result.events.append(f"tier {decision.current} → {decision.new}")
        result.detail = f"{decision.direction}: " + "; ".join(decision.reasons)
        pool.save(update_fields=["risk_tier", "last_tier_evaluation", "updated_at"])
    return result


# --- rebalancer -------------------------------------------------------------------------------


def rebalance_due(calendar: MarketCalendar, now: datetime) -> tuple[bool, str, date]:
    """Whether ``now`` is in the first session of its week, at least 15 minutes after the open."""
    today = now.astimezone(NEW_YORK).date()
    if not calendar.is_session(today):
        return False, f"{today} is not a session", today
    if calendar.first_session_of_week(today) != today:
        return False, "not the first session of the week", today
    if now < calendar.session_open(today) + timedelta(minutes=15):
        return False, "before open + 15 minutes", today
    if now >= calendar.session_close(today):
        return False, "after the close", today
    return True, "", today


@records_loop_run("rebalancer")
def run_rebalancer(pool_id: int, now: datetime, *, dispatch: bool = True) -> LoopResult:
    """Trim commitments that break the active tier's limits, once a week.

    Skipped entirely, and recorded as skipped, while any breaker is in force.
    """
    calendar = get_market_calendar(now)
    due, why, today = rebalance_due(calendar, now)
    with transaction.atomic():
        pool = _lock(pool_id)
        result = LoopResult("rebalancer", pool.name, now)
        if not due:
            result.ran, result.detail = False, why
            return result
        if pool.last_rebalance_session == today:
            result.ran, result.detail = False, f"already ran in the session of {today}"
            return result
        pool.last_rebalance_session = today
        pool.save(update_fields=["last_rebalance_session", "updated_at"])
        state = pool_as_of(pool, now, calendar=calendar)
        active = sorted({e.type for e in state.breakers.events})
        if active:
            result.detail = f"skipped: breaker(s) in force: {', '.join(active)}"
            logger.info("pool %s: rebalance %s", pool.name, result.detail)
            return result
        tier = state.tier
        pending = state_exits(state)
        commitments = {
            c.pk: c for c in Commitment.objects.filter(pool=pool, status=CommitmentStatus.OPEN)
        }
        holdings = [
            RebalanceHolding(
                commitment_id=p.commitment_id,
                symbol=p.symbol,
                sector=p.sector,
                units=p.units,
                current_value=p.mark,
                risk_threshold=p.risk_threshold,
            )
            for p in state.positions
        ]
        plan = plan_rebalance(
            holdings,
            RebalanceLimits(
                max_position_pct=tier.max_position_pct,
                max_sector_pct=tier.max_sector_pct,
                max_portfolio_heat=tier.max_portfolio_heat,
                active_pool=state.active_pool,
            ),
        )
        marks = {p.commitment_id: p.mark for p in state.positions}
        orders = [
            _exit_order(
                pool,
                commitments[trim.commitment_id],
                trim.units,
                marks[trim.commitment_id],
                OrderReason.REBALANCE,
                f"commitment:{trim.commitment_id}:rebalance:{today.isoformat()}",
                f"{trim.reason}: {trim.note}",
                now,
            )
            for trim in plan.trims
            if trim.commitment_id not in pending
        ]
        Order.objects.bulk_create(orders)
        record_order_events(orders, OrderEventKind.QUEUED, now)
        result.order_ids = [o.pk for o in orders]
        result.detail = "; ".join(plan.notes) or (
            f"{len(orders)} trim(s)" if orders else "within the tier's limits"
        )
        result.events += [o.note for o in orders]
        _dispatch_on_commit(result.order_ids, dispatch)
    return result
