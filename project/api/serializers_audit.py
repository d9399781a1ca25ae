"""Serializers of the audit endpoints: the audit tables as they are stored, and the read model.

Read-only. Money and quantities travel as strings (``COERCE_DECIMAL_TO_STRING``), fractions as
fractions (0.05 = 5 %), times as ISO 8601 in UTC (``Z``). A pool is named by its ``name`` and an
entity by its symbol. The pool state is ``execution.selectors.pool_as_of`` rendered field by
field (``PoolState``, ``PositionView``, ``PendingOrder``, ``BreakersInForce``): no number is
computed here except the daily loss limit in currency, ``daily_loss_pct`` × total value, the
figure the daily loss breaker compares the day's loss with (``portfolio.circuit_breaker``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from django.db import models
from rest_framework import serializers

from decisions.models import DecisionRecord, Recommendation
from execution.models import Order, RiskEvaluation
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    EngineConfig,
    Fill,
    OperatorAction,
    Pool,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
)
from portfolio.selectors import PoolState

ZERO = Decimal("0")


class UTCDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time in UTC (``2026-11-18T16:00:00Z``), whatever ``TIME_ZONE`` says."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(*args, **kwargs)


class FiniteFloatField(serializers.FloatField):
    """A float that is ``null`` when not finite: strict JSON has no NaN or infinity."""

    def to_representation(self, value):
        value = float(value)
        return value if math.isfinite(value) else None


def money(**kwargs) -> serializers.DecimalField:
    """A currency amount or quantity computed by the read model: a string, 4 decimal places."""
    return serializers.DecimalField(max_digits=None, decimal_places=4, read_only=True, **kwargs)


def fraction(**kwargs) -> serializers.DecimalField:
    """A fraction (0.05 = 5 %) as a string, 6 decimal places as stored."""
    return serializers.DecimalField(max_digits=None, decimal_places=6, read_only=True, **kwargs)


class AuditModelSerializer(serializers.ModelSerializer):
    """A read-only model serializer: times in UTC, floats finite or null."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: UTCDateTimeField,
        models.FloatField: FiniteFloatField,
    }

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.read_only = True
        return fields


def pool_name(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="name", read_only=True, **kwargs)


# --- the audit tables -------------------------------------------------------------------------


class RecommendationSerializer(AuditModelSerializer):
    class Meta:
        model = Recommendation
        fields = (
            "id",
            "entity",
            "action",
            "mode",
            "confidence",
            "generated_at",
            "thesis",
            "risk_classification",
            "received_at",
        )


class DecisionSerializer(AuditModelSerializer):
    """One evaluation of one recommendation for one pool, with its ``decision_trace``."""

    pool = pool_name()
    config_version = serializers.CharField(
        source="config_version_id",
        read_only=True,
        allow_null=True,
        help_text="Digest of the configuration version the decision was made with "
        "(/api/v1/config-versions/<digest>/); null on records older than versions",
    )

    class Meta:
        model = DecisionRecord
        fields = (
            "id",
            "pool",
            "recommendation",
            "entity",
            "action",
            "outcome",
            "skip_reason",
            "processed",
            "confidence",
            "commitment_value",
            "units",
            "allocation_pct",
            "current_value",
            "risk_tier",
            "pool_exposure",
            "active_pool",
            "reserve_balance",
            "circuit_breaker_active",
            "correlation",
            "correlation_check",
            "sector_exposure",
            "sector_check",
            "report_sessions_away",
            "report_proximity",
            "decision_trace",
            "config_version",
            "evaluated_at",
            "last_evaluated_at",
            "evaluations",
            "created_at",
        )


class RiskEvaluationSerializer(AuditModelSerializer):
    """The execution gate's evaluation of an order: passed, the failed reasons, every check."""

    class Meta:
        model = RiskEvaluation
        fields = ("id", "passed", "reasons", "checks", "evaluated_at")


ORDER_FIELDS = (
    "id",
    "pool",
    "entity",
    "decision",
    "recommendation",
    "commitment",
    "action",
    "side",
    "reason",
    "quantity",
    "estimated_value",
    "status",
    "status_reason",
    "reference",
    "idempotency_key",
    "broker",
    "broker_order_id",
    "request_payload",
    "response_payload",
    "note",
    "filled_quantity",
    "fill_value",
    "filled_at",
    "realized_gain",
    "attempts",
    "created_at",
    "submitted_at",
    "updated_at",
)


class OrderSerializer(AuditModelSerializer):
    """An order with the broker's answers and its risk evaluations (oldest first)."""

    pool = pool_name()
    risk_evaluations = RiskEvaluationSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = (*ORDER_FIELDS, "risk_evaluations")


class CommitmentSerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = Commitment
        fields = (
            "id",
            "pool",
            "entity",
            "status",
            "units",
            "entry_value",
            "entry_cost",
            "risk_tier",
            "atr_at_entry",
            "atr",
            "risk_threshold",
            "gain_target",
            "highest_value",
            "trailing_active",
            "opened_at",
            "closed_at",
            "exit_value",
            "realized_gain",
            "close_reason",
            "siphoned",
            "updated_at",
        )


class PoolSnapshotSerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = PoolSnapshot
        fields = (
            "id",
            "pool",
            "session",
            "taken_at",
            "total_value",
            "cash",
            "reserve_balance",
            "active_pool",
            "unrealized_gain",
            "realized_gain",
            "daily_gain",
            "success_rate",
            "risk_adjusted_return",
            "peak_to_trough",
            "pool_exposure",
            "open_commitments",
            "risk_tier",
        )


class ReserveLedgerEntrySerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = ReserveLedgerEntry
        fields = (
            "id",
            "pool",
            "trigger",
            "amount",
            "balance_after",
            "entity",
            "commitment",
            "note",
            "created_at",
        )


class RiskTierHistorySerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = RiskTierHistory
        fields = (
            "id",
            "pool",
            "previous_tier",
            "new_tier",
            "trigger",
            "metrics",
            "reason",
            "actor",
            "changed_at",
        )


class CircuitBreakerEventSerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = CircuitBreakerEvent
        fields = (
            "id",
            "pool",
            "trigger_type",
            "entity",
            "triggered_at",
            "expires_at",
            "figures",
            "cleared_at",
            "cleared_by",
            "clear_reason",
        )


class OperatorActionSerializer(AuditModelSerializer):
    pool = pool_name(allow_null=True)

    class Meta:
        model = OperatorAction
        fields = ("id", "pool", "action", "actor", "reason", "via", "before", "after", "created_at")


FILL_FIELDS = (
    "id",
    "pool",
    "entity",
    "commitment",
    "order",
    "side",
    "units",
    "value",
    "order_filled_quantity",
    "realized_gain",
    "reason",
    "booked_at",
)


class FillSerializer(AuditModelSerializer):
    pool = pool_name()

    class Meta:
        model = Fill
        fields = FILL_FIELDS


# --- the explain chain ------------------------------------------------------------------------


class ExplainFillSerializer(AuditModelSerializer):
    """A fill and the commitment it opened, added to or closed (as the commitment is now)."""

    pool = pool_name()
    commitment = CommitmentSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Fill
        fields = FILL_FIELDS


class ExplainOrderSerializer(OrderSerializer):
    fills = ExplainFillSerializer(many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = (*ORDER_FIELDS, "risk_evaluations", "fills")


class ExplainDecisionSerializer(DecisionSerializer):
    orders = ExplainOrderSerializer(source="explain_orders", many=True, read_only=True)

    class Meta(DecisionSerializer.Meta):
        fields = (*DecisionSerializer.Meta.fields, "orders")


class ExplainSerializer(serializers.Serializer):
    """The whole chain of one recommendation: each pool's decisions, their orders, the risk
    evaluations and broker answers of each order, its fills and the commitments they moved.
    ``other_orders`` are orders naming the recommendation without a decision (none today; kept
    so nothing linked to it is ever hidden)."""

    recommendation = RecommendationSerializer(read_only=True)
    decisions = ExplainDecisionSerializer(many=True, read_only=True)
    other_orders = ExplainOrderSerializer(many=True, read_only=True)


# --- the pool state (the read model) ----------------------------------------------------------


@dataclass(frozen=True)
class PoolReading:
    """A pool row beside its state as of now and its engine configuration: what the pool
    endpoints render."""

    pool: Pool
    state: PoolState
    config: EngineConfig

    @property
    def daily_loss(self) -> Decimal:
        """The day's loss in currency (0 on a gain)."""
        return max(-self.state.daily_gain, ZERO)

    @property
    def daily_loss_limit(self) -> Decimal:
        """``daily_loss_pct`` × total value: the loss the daily loss breaker allows (currency)."""
        return self.config.daily_loss_pct * self.state.total_value

    @property
    def open_commitments(self) -> int:
        return len(self.state.positions)

    @property
    def cooldowns(self) -> list[dict]:
        return [
            {"entity": symbol, "until": until}
            for symbol, until in sorted(self.state.breakers.entity_cooldowns.items())
        ]


class TierSerializer(serializers.Serializer):
    """The parameters of the pool's risk tier; fractions of the active pool."""

    name = serializers.CharField(read_only=True)
    min_confidence = fraction()
    max_position_pct = fraction()
    stop_loss_atr_multiplier = serializers.DecimalField(
        max_digits=None, decimal_places=3, read_only=True
    )
    reward_risk_ratio = serializers.DecimalField(max_digits=None, decimal_places=3, read_only=True)
    max_sector_pct = fraction()
    max_portfolio_heat = fraction()


class PositionSerializer(serializers.Serializer):
    """An open commitment valued as of now, with its levels (value per unit)."""

    commitment_id = serializers.IntegerField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    sector = serializers.CharField(read_only=True)
    units = money()
    entry_value = money()
    current_value = money(allow_null=True, help_text="null: no current value, valued at entry")
    market_value = money()
    unrealized_gain = money()
    heat = money(help_text="units × (value − risk threshold), never negative")
    risk_threshold = money(allow_null=True)
    gain_target = money(allow_null=True)
    trailing_active = serializers.BooleanField(read_only=True)
    atr = money(allow_null=True)
    opened_at = UTCDateTimeField(read_only=True, allow_null=True)


class PendingOrderSerializer(serializers.Serializer):
    """An order not yet settled, counted as the engine counts it."""

    order_id = serializers.IntegerField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    sector = serializers.CharField(read_only=True)
    side = serializers.CharField(read_only=True)
    units = money()
    estimated_value = money()
    commitment_id = serializers.IntegerField(read_only=True, allow_null=True)


class BreakerInForceSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(read_only=True)
    type = serializers.CharField(read_only=True)
    entity = serializers.CharField(read_only=True, allow_null=True, help_text="null: pool-wide")
    triggered_at = UTCDateTimeField(read_only=True)
    expires_at = UTCDateTimeField(read_only=True)


class CooldownSerializer(serializers.Serializer):
    entity = serializers.CharField(read_only=True)
    until = UTCDateTimeField(read_only=True)


class BreakersSerializer(serializers.Serializer):
    """The breakers in force now: every event, the pool-wide types and when the last ends."""

    events = BreakerInForceSerializer(many=True, read_only=True)
    pool_wide = serializers.ListField(child=serializers.CharField(), read_only=True)
    until = UTCDateTimeField(read_only=True, allow_null=True)


class PoolSerializer(serializers.Serializer):
    """A pool and the headline numbers of its state as of now (currency unless stated)."""

    name = serializers.CharField(source="pool.name", read_only=True)
    mode = serializers.CharField(source="pool.mode", read_only=True)
    adapter = serializers.CharField(source="pool.adapter", read_only=True)
    risk_tier = serializers.CharField(source="pool.risk_tier", read_only=True)
    halted = serializers.BooleanField(source="pool.halted", read_only=True)
    halt_reason = serializers.CharField(source="pool.halt_reason", read_only=True)
    shadow_of = serializers.CharField(
        source="pool.shadow_of.name",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="The name of the pool this paper shadow follows; null for a pool that "
        "follows none",
    )
    as_of = UTCDateTimeField(source="state.now", read_only=True)
    total_value = money(source="state.total_value")
    active_pool = money(source="state.active_pool")
    reserve_balance = money(source="state.reserve_balance")
    cash = money(source="state.cash", help_text="Reserve included")
    pool_exposure = money(source="state.pool_exposure")
    exposure_cap = money(source="state.exposure_cap")
    exposure_ratio = fraction(source="state.exposure_ratio", help_text="Exposure / its cap")
    daily_gain = money(source="state.daily_gain")
    daily_loss = money()
    daily_loss_pct = fraction(
        source="config.daily_loss_pct", help_text="The daily loss limit, a fraction of total value"
    )
    daily_loss_limit = money(help_text="daily_loss_pct × total_value")
    open_commitments = serializers.IntegerField(read_only=True)
    breakers_pool_wide = serializers.ListField(
        source="state.breakers.pool_wide", child=serializers.CharField(), read_only=True
    )
    breakers_until = UTCDateTimeField(
        source="state.breakers.until", read_only=True, allow_null=True
    )


class PoolStateSerializer(PoolSerializer):
    """A pool as of now: the headline numbers, its tier, breakers in force with their expiry,
    entity cooldowns, open commitments with their levels and the orders not yet settled."""

    session = serializers.DateField(source="state.session", read_only=True)
    spendable_cash = money(source="state.spendable_cash", help_text="cash − reserve − pending")
    pending_cost = money(source="state.pending_cost")
    pending_heat = money(source="state.pending_heat")
    unrealized_gain = money(source="state.unrealized_gain")
    realized_today = money(source="state.realized_today")
    sector_values = serializers.DictField(
        source="state.sector_values",
        child=serializers.DecimalField(max_digits=None, decimal_places=4),
        read_only=True,
    )
    tier = TierSerializer(source="state.tier", read_only=True)
    breakers = BreakersSerializer(source="state.breakers", read_only=True)
    entity_cooldowns = CooldownSerializer(source="cooldowns", many=True, read_only=True)
    positions = PositionSerializer(source="state.positions", many=True, read_only=True)
    pending = PendingOrderSerializer(source="state.pending", many=True, read_only=True)
