"""Orders (the durable outbox and the broker's answers) and their risk evaluations.

The worker's own limits (``PoolRiskConfig``) are pool configuration and live in ``portfolio``.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from portfolio.models import MONEY, QUANTITY, Commitment, Entity, Pool


class OrderSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderReason(models.TextChoices):
    ENTRY = "entry", "Entry (act decision)"
    EXIT_SIGNAL = "exit_signal", "Exit (defer decision)"
    RISK_THRESHOLD = "risk_threshold", "Risk threshold (stop)"
    GAIN_TARGET = "gain_target", "Gain target"
    REBALANCE = "rebalance", "Rebalance trim"
    EMERGENCY = "emergency", "Emergency exit"


class OrderStatus(models.TextChoices):
    QUEUED = "queued", "Queued for the worker"
    SUBMITTING = "submitting", "Sent to the broker, no answer stored yet"
    ACCEPTED = "accepted", "Accepted by the broker, not filled"
    FILLED = "filled", "Filled"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    REJECTED = "rejected", "Rejected by the broker"
    RISK_REJECTED = "risk_rejected", "Rejected by the risk evaluation"
    UNKNOWN = "unknown", "Outcome unknown: reconcile"
    CANCELLED = "cancelled", "Cancelled"


#: Statuses in which an order may still turn into a fill: it counts as pending exposure.
PENDING_STATUSES = (
    OrderStatus.QUEUED,
    OrderStatus.SUBMITTING,
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.UNKNOWN,
)


class Order(models.Model):
    """An execution request, from the decision that created it to the broker's final answer.

    The row is written ``queued`` in the same transaction as its decision; the worker claims
    it, and ``idempotency_key`` (unique) doubles as the broker's ``client_order_id``, so the
    same order can never be submitted twice under two names.
    """

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="orders")
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="orders")
    decision = models.ForeignKey(
        "decisions.DecisionRecord",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
    )
    recommendation = models.ForeignKey(
        "decisions.Recommendation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
    )
    commitment = models.ForeignKey(
        Commitment, on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    action = models.CharField(max_length=10, help_text="act or defer")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    reason = models.CharField(max_length=20, choices=OrderReason.choices)
    quantity = models.DecimalField(**QUANTITY)
    estimated_value = models.DecimalField(**MONEY, help_text="Value per unit when decided")
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.QUEUED
    )
    reference = models.CharField(
        max_length=100,
        help_text="What the idempotency key is derived from besides entity, action and "
        "quantity: the decision id, or the trigger (commitment:42:risk_threshold)",
    )
    idempotency_key = models.CharField(max_length=64, unique=True)
    broker = models.CharField(max_length=20)
    broker_order_id = models.CharField(max_length=64, blank=True)
    request_payload = models.JSONField(default=dict, blank=True)
    response_payload = models.JSONField(default=dict, blank=True)
    note = models.CharField(
        max_length=500, blank=True, help_text="Why the order exists (monitor and rebalance orders)"
    )
    status_reason = models.CharField(max_length=200, blank=True)
    filled_quantity = models.DecimalField(**QUANTITY, default=Decimal("0"))
    fill_value = models.DecimalField(**MONEY, null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    realized_gain = models.DecimalField(**MONEY, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(help_text="When decided (the cycle's clock)")
    submitted_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(
        max_length=100,
        blank=True,
        help_text="Who holds the order while it is submitting (host:pid:random); empty otherwise",
    )
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Wall-clock time after which the holder counts as dead and the order is "
        "settled by a lookup at the broker; renewed while the submit is in flight",
    )
    handed_out_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the sweeper or the lease settler last handed the queued order to the "
        "task queue (wall clock)",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "orders"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
        ]
        indexes = [
            models.Index(fields=["pool", "status"], name="order_pool_status_idx"),
            models.Index(fields=["status", "created_at"], name="order_status_created_idx"),
            models.Index(fields=["pool", "-created_at"], name="order_pool_created_idx"),
            models.Index(fields=["commitment", "status"], name="order_commitment_idx"),
            models.Index(
                fields=["lease_expires_at"],
                name="order_lease_expiry_idx",
                condition=Q(status="submitting"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.entity_id} ({self.status})"

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.estimated_value


class RiskEvaluation(models.Model):
    """The broker-side risk evaluation of one order, stored whatever its outcome."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="risk_evaluations")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="risk_evaluations")
    passed = models.BooleanField()
    reasons = models.JSONField(default=list, blank=True)
    checks = models.JSONField(default=list, blank=True)
    evaluated_at = models.DateTimeField()

    class Meta:
        db_table = "risk_evaluations"
        ordering = ["-evaluated_at", "-id"]
        indexes = [models.Index(fields=["pool", "-evaluated_at"], name="riskeval_pool_time_idx")]

    def __str__(self) -> str:
        return f"{'passed' if self.passed else 'failed'} for order {self.order_id}"
