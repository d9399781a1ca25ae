"""The decision cycle (the source, 'The Decision Execution Engine Loop', ``_decision_loop``):
orchestration around the pure rules.

One cycle for one pool, as of ``now``:

0. when the pool's ``market_data_fallback`` is on, fetch and store the latest trade of each
   candidate entity without a current value (``decisions.market_data``), outside the lock;
1. lock the pool row (a second engine on the same pool waits for the first to commit);
2. load everything once: configuration (and its version, ``portfolio.config_versions``),
   tier, candidates, open commitments, pending orders, bars (current values, ATR, the
   correlation matrix), report dates, breakers;
3. evaluate each candidate with the pure rules, highest confidence first, updating the
   in-memory pool after every ``act`` exactly as the source says;
4. write the decision records, the repeat-skip updates and the queued orders in the same
   transaction, then hand the orders to the execution worker once it has committed.

The number of queries does not depend on the number of candidates (tests assert it).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet

from decisions.market_data import fetch_missing_values
from decisions.models import (
    EXECUTABLE_ACTIONS,
    DecisionRecord,
    Recommendation,
    RecommendationAction,
)
from decisions.rules import (
    Candidate,
    CheckConfig,
    Evaluation,
    PoolView,
    apply_act,
    evaluate_act,
    evaluate_defer,
)
from decisions.sizing import ZERO, SizingConfig
from execution.dispatch import enqueue_orders, queued_order
from execution.events import record_order_events
from execution.models import Order, OrderEventKind, OrderReason, OrderSide
from execution.selectors import pool_as_of
from portfolio.config_versions import version_digest
from portfolio.correlation import compute_return_correlations, weighted_average_correlation
from portfolio.market_calendar import get_market_calendar
from portfolio.models import EngineConfig, PerformanceReport, Pool
from portfolio.selectors import get_engine_config, rule_config
from portfolio.telemetry import records_decision_cycle
from project.bulk import bulk_insert

logger = logging.getLogger(__name__)

DEDUPE_KEY = "app:dedupe:execution:{pool}:{recommendation}"


@dataclass
class CycleResult:
    """What one decision cycle did, for logs, commands and the demo summary."""

    pool: str
    now: datetime
    candidates: int = 0
    outcomes: Counter = field(default_factory=Counter)
    skip_reasons: Counter = field(default_factory=Counter)
    new_records: int = 0
    repeat_records: int = 0
    order_ids: list[int] = field(default_factory=list)


def check_config(config: EngineConfig) -> CheckConfig:
    return rule_config(CheckConfig, config)


def sizing_config(config: EngineConfig) -> SizingConfig:
    return rule_config(SizingConfig, config)


def candidate_rows(
    pool: Pool,
    config: EngineConfig,
    now: datetime,
    recommendations: QuerySet[Recommendation] | None = None,
) -> list[dict]:
    """Fresh executable recommendations not yet processed for the pool. One query.

    ``action in (act, defer)``, a mode the pool accepts, generated within the age limit and
    not after ``now``, highest confidence first, at most the per-cycle cap. ``recommendations``
    narrows the rows looked at (a replay passes those already received at ``now``); default
    every stored recommendation.
    """
    processed = DecisionRecord.objects.filter(
        pool=pool, recommendation=OuterRef("pk"), processed=True
    )
    oldest = now - timedelta(minutes=config.recommendation_max_age_minutes)
    source = Recommendation.objects.all() if recommendations is None else recommendations
    return list(
        source.filter(
            action__in=EXECUTABLE_ACTIONS,
            mode__in=pool.accepted_modes,
            generated_at__gt=oldest,
            generated_at__lte=now,
        )
        .filter(~Exists(processed))
        .order_by("-confidence", "generated_at", "id")
        .values("id", "entity_id", "entity__sector", "action", "confidence")[
            : config.max_recommendations_per_cycle
        ]
    )


def lock_pool(pool_id: int) -> Pool:
    """Lock the pool row for the cycle: a second engine on the same pool waits, then sees the
    first one's processed decisions. SQLite has no row locks: its IMMEDIATE transactions
    serialise the writers instead."""
    return Pool.objects.select_for_update().get(pk=pool_id)


@records_decision_cycle
def run_decision_cycle(
    pool_id: int,
    now: datetime,
    *,
    dispatch: bool = True,
    recommendations: QuerySet[Recommendation] | None = None,
) -> CycleResult:
    """Run one decision cycle for a pool as of ``now``; see the module docstring.
    ``recommendations`` narrows the candidates' source (``candidate_rows``)."""
    calendar = get_market_calendar(now)
    # The pool's market data fallback, before the lock: no pool row is held during an HTTP
    # call, and the values it stores are found by the read model like any snapshot.
    try:
        fetch_missing_values(pool_id, now, calendar=calendar)
    except Exception:  # the fallback only adds values: never lose a cycle over it
        logger.exception("pool %s: market data fallback failed; cycle runs without it", pool_id)
    with transaction.atomic():
        pool = lock_pool(pool_id)
        result = CycleResult(pool=pool.name, now=now)
        config = get_engine_config(pool)
        if config.market_data_fallback and not settings.MARKET_DATA_API_URL:
            logger.warning(
                "pool %s: market_data_fallback is on but MARKET_DATA_API_URL is not set",
                pool.name,
            )
        rows = candidate_rows(pool, config, now, recommendations)
        result.candidates = len(rows)
        if not rows:
            return result
        lookback = max(config.correlation_lookback_sessions, config.atr_period) + 1
        state = pool_as_of(
            pool,
            now,
            sessions=lookback,
            extra_symbols={r["entity_id"] for r in rows},
            config=config,
            calendar=calendar,
        )
        market = state.market
        breakers = state.breakers
        current_session = state.session
        # Descending dates, so the dict keeps each entity's nearest report ahead.
        report_dates = dict(
            PerformanceReport.objects.filter(
                entity_id__in={r["entity_id"] for r in rows},
                report_date__gte=current_session,
                report_date__lte=calendar.next_session(current_session) + timedelta(days=31),
            )
            .order_by("entity_id", "-report_date")
            .values_list("entity_id", "report_date")
        )
        report_symbols = list(report_dates)
        away = dict(
            zip(
                report_symbols,
                calendar.sessions_until_many(
                    current_session, [report_dates[s] for s in report_symbols]
                ),
                strict=True,
            )
        )
        existing_skips = {
            (rec, reason): pk
            for pk, rec, reason in DecisionRecord.objects.filter(
                pool=pool, recommendation_id__in=[r["id"] for r in rows], processed=False
            ).values_list("id", "recommendation_id", "skip_reason")
        }
        cached = (
            cache.get_many([DEDUPE_KEY.format(pool=pool.pk, recommendation=r["id"]) for r in rows])
            if settings.DEDUPE_CACHE
            else {}
        )

        # The pool as the rules see it: the read model, pending entry orders counted as
        # commitments.
        view = PoolView(
            tier=state.tier,
            total_value=state.total_value,
            reserve_balance=state.reserve_balance,
            cash=state.spendable_cash,
            halted=state.halted,
            active_breakers=breakers.pool_wide,
            breaker_until=breakers.until,
            entity_cooldowns=breakers.entity_cooldowns,
            in_execution_window=calendar.is_open(now),
            active_commitments=state.active_commitments,
            declining_commitments=state.declining(config.declining_loss_pct),
            sector_values=state.sector_values,
            pool_exposure=state.pool_exposure + state.pending_heat,
            commitment_values=state.commitment_values,
            reduce_only=state.reduce_only,
            unsettled=state.unsettled,
        )
        held = state.held
        open_units = {symbol: p.units for symbol, p in held.items()}
        exits_pending = set(state.exits_pending)

        # Correlation of every candidate with the holdings, from one matrix.
        correlations = compute_return_correlations(
            market.closes, window=config.correlation_lookback_sessions
        )
        weights = np.zeros(len(market.symbols))
        for symbol, value in state.commitment_values.items():
            weights[market.index[symbol]] = float(value)

        # The configuration version every record of this cycle carries (one query: the tiers).
        version = version_digest(pool, config)
        checks_cfg = check_config(config)
        sizing_cfg = sizing_config(config)
        new_records: list[DecisionRecord] = []
        repeats: list[DecisionRecord] = []
        orders: list[tuple[DecisionRecord, str, Decimal, Decimal, int | None]] = []
        processed_ids: list[str] = []
        seen: set[str] = set()
        for row in rows:
            symbol = row["entity_id"]
            i = market.index[symbol]
            own = weights[i]
            weights[i] = 0.0
            corr, holdings = weighted_average_correlation(correlations[i], weights)
            weights[i] = own
            key = DEDUPE_KEY.format(pool=pool.pk, recommendation=row["id"])
            candidate = Candidate(
                recommendation_id=row["id"],
                symbol=symbol,
                sector=row["entity__sector"],
                action=row["action"],
                confidence=row["confidence"],
                current_value=market.latest.get(symbol),
                atr=market.atr(symbol, config.atr_period),
                correlation=corr,
                correlation_holdings=holdings,
                report_sessions_away=away.get(symbol),
                already_processed=row["id"] in seen or key in cached,
                open_units=open_units.get(symbol, ZERO),
                exit_pending=symbol in exits_pending,
            )
            if candidate.action == RecommendationAction.ACT:
                evaluation = evaluate_act(candidate, view, checks_cfg, sizing_cfg, now)
            else:
                evaluation = evaluate_defer(candidate, view)
            record = _record(pool, candidate, evaluation, view, breakers.active, now)
            record.config_version_id = version
            if evaluation.processed:
                seen.add(candidate.recommendation_id)
                processed_ids.append(candidate.recommendation_id)
            result.outcomes[evaluation.outcome] += 1
            if evaluation.skip_reason:
                result.skip_reasons[evaluation.skip_reason] += 1
            existing = existing_skips.get((candidate.recommendation_id, evaluation.skip_reason))
            if not evaluation.processed and existing is not None:
                record.pk = existing
                repeats.append(record)
                continue
            new_records.append(record)
            if evaluation.outcome == "act":
                sizing = evaluation.sizing
                commitment_id = held[symbol].commitment_id if symbol in held else None
                orders.append(
                    (record, OrderSide.BUY, sizing.units, candidate.current_value, commitment_id)
                )
                view = apply_act(view, candidate, sizing)
                weights[i] += float(sizing.dollar_amount)
            elif evaluation.outcome == "defer":
                commitment_id = held[symbol].commitment_id
                estimate = candidate.current_value or held[symbol].entry_value
                orders.append(
                    (record, OrderSide.SELL, evaluation.exit_units, estimate, commitment_id)
                )
                exits_pending.add(symbol)

        bulk_insert(DecisionRecord, new_records)
        if repeats:
            DecisionRecord.objects.filter(pk__in=[r.pk for r in repeats]).update(
                last_evaluated_at=now, evaluations=F("evaluations") + 1
            )
        order_rows = [
            _order(pool, record, side, units, estimate, commitment_id, now)
            for record, side, units, estimate, commitment_id in orders
        ]
        Order.objects.bulk_create(order_rows, batch_size=1000)
        record_order_events(order_rows, OrderEventKind.QUEUED, now)
        result.new_records = len(new_records)
        result.repeat_records = len(repeats)
        result.order_ids = [o.pk for o in order_rows]

        ttl = config.dedupe_ttl_hours * 3600
        dedupe = (
            {DEDUPE_KEY.format(pool=pool.pk, recommendation=r): 1 for r in processed_ids}
            if settings.DEDUPE_CACHE
            else {}
        )
        order_ids = list(result.order_ids)
        transaction.on_commit(lambda: _after_commit(dedupe, ttl, order_ids, dispatch))
    logger.info(
        "pool %s cycle at %s: %s candidates, outcomes %s, skips %s, %s orders",
        result.pool,
        now.isoformat(),
        result.candidates,
        dict(result.outcomes),
        dict(result.skip_reasons),
        len(result.order_ids),
    )
    return result


def _after_commit(dedupe: dict, ttl: int, order_ids: list[int], dispatch: bool) -> None:
    """Mark the processed recommendations in the cache (a fast path only; the database is the
    truth) and hand the new orders to the execution worker."""
    try:
        if dedupe:
            cache.set_many(dedupe, timeout=ttl)
    except Exception:  # the cache is an optimisation: never lose a cycle over it
        logger.warning("could not write %s dedupe keys to the cache", len(dedupe), exc_info=True)
    if dispatch and order_ids:
        enqueue_orders(order_ids)


def _record(
    pool: Pool,
    candidate: Candidate,
    evaluation: Evaluation,
    view: PoolView,
    breaker_active: bool,
    now: datetime,
) -> DecisionRecord:
    sizing = evaluation.sizing
    correlation = (
        Decimal(str(round(candidate.correlation, 4))) if candidate.correlation is not None else None
    )
    return DecisionRecord(
        pool=pool,
        recommendation_id=candidate.recommendation_id,
        entity_id=candidate.symbol,
        action=candidate.action,
        outcome=evaluation.outcome,
        skip_reason=evaluation.skip_reason,
        processed=evaluation.processed,
        confidence=candidate.confidence,
        commitment_value=(
            sizing.dollar_amount
            if sizing and not sizing.rejected
            else (evaluation.exit_units * candidate.current_value)
            if evaluation.exit_units and candidate.current_value
            else None
        ),
        units=(sizing.units if sizing and not sizing.rejected else evaluation.exit_units or None),
        allocation_pct=sizing.allocation_pct if sizing and not sizing.rejected else None,
        current_value=candidate.current_value,
        risk_tier=view.tier.name,
        pool_exposure=view.pool_exposure,
        active_pool=view.active_pool,
        reserve_balance=view.reserve_balance,
        circuit_breaker_active=breaker_active,
        correlation=correlation,
        correlation_check=sizing.correlation_check if sizing else "not_reached",
        sector_exposure=sizing.sector_exposure_after if sizing else None,
        sector_check=sizing.sector_check if sizing else "not_reached",
        report_sessions_away=candidate.report_sessions_away,
        report_proximity=sizing.report_proximity if sizing else "not_reached",
        decision_trace=evaluation.trace(candidate, view),
        evaluated_at=now,
        last_evaluated_at=now,
    )


def _order(
    pool: Pool,
    record: DecisionRecord,
    side: str,
    units: Decimal,
    estimate: Decimal,
    commitment_id: int | None,
    now: datetime,
) -> Order:
    return queued_order(
        pool=pool,
        entity_id=record.entity_id,
        action=record.action,
        side=side,
        reason=OrderReason.ENTRY if side == OrderSide.BUY else OrderReason.EXIT_SIGNAL,
        quantity=units,
        estimated_value=estimate,
        reference=str(record.pk),
        now=now,
        decision=record,
        recommendation_id=record.recommendation_id,
        commitment_id=commitment_id,
    )


@dataclass
class PassResult:
    """One pass of the engine for a pool: every loop, in order, and the orders processed."""

    cycle: CycleResult
    orders: list = field(default_factory=list)
    loops: list = field(default_factory=list)

    @property
    def order_statuses(self) -> Counter:
        return Counter(str(o.status) for o in self.orders)


def run_engine_pass(
    pool_id: int, now: datetime, *, recommendations: QuerySet[Recommendation] | None = None
) -> PassResult:
    """Run every loop once for the pool, in this process, as of ``now``:

    risk threshold monitor → performance loop (sync, siphon, breakers, snapshot) → decision
    cycle → worker → risk tier scheduler (at the close) → rebalancer (weekly) → worker.

    Used by ``run_engine --once`` and the demo, where a simulated clock drives everything; in
    production the django-q2 cluster runs the same functions on their schedules.
    ``recommendations`` narrows the decision cycle's candidates (``candidate_rows``): the
    replay passes those received by ``now``.
    """
    from decisions.loops import (
        run_performance_loop,
        run_rebalancer,
        run_risk_threshold_monitor,
        run_risk_tier_scheduler,
    )
    from execution.worker import drain_queued_orders

    loops = [
        run_risk_threshold_monitor(pool_id, now, dispatch=False),
        run_performance_loop(pool_id, now, dispatch=False),
    ]
    cycle = run_decision_cycle(pool_id, now, dispatch=False, recommendations=recommendations)
    pool = Pool.objects.get(pk=pool_id)
    orders = drain_queued_orders(pool, now)
    loops.append(run_risk_tier_scheduler(pool_id, now))
    loops.append(run_rebalancer(pool_id, now, dispatch=False))
    orders += drain_queued_orders(pool, now)
    return PassResult(cycle=cycle, orders=orders, loops=loops)
