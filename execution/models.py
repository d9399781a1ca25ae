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
    it and sends it under a ``client_order_id`` derived from ``idempotency_key`` (unique):
    ``execution.keys.client_order_id_for``, 44 characters, within the broker's 48. Every
    send and every lookup of one order uses the same id (``client_order_id``), so the same
    order can never be submitted twice under two names.
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
    retry_not_before = models.DateTimeField(
        null=True,
        blank=True,
        help_text="After a rate limit (HTTP 429): the queued order is not claimed before this "
        "wall-clock time (the broker's reset, else one minute after the answer)",
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

    @property
    def client_order_id(self) -> str:
        """The id the broker knows this order by: the one it was sent under
        (``request_payload["client_order_id"]``: an order sent before client order ids were
        derived carries its 64-character idempotency key there), else the derived one
        (``execution.keys.client_order_id_for``). Every lookup at the broker uses it."""
        from execution.keys import client_order_id_for

        sent = (self.request_payload or {}).get("client_order_id")
        if isinstance(sent, str) and sent:
            return sent
        try:
            return client_order_id_for(self.idempotency_key)
        except ValueError:  # a key not derived by derive_idempotency_key (hand-made rows)
            return self.idempotency_key[:48]


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


# --- order events and their export (execution/events.py, execution/lakehouse.py) ---------------


class OrderEventKind(models.TextChoices):
    """What happened to an order, one event per change (``execution.events``)."""

    QUEUED = "queued", "Queued (written by a decision or a loop)"
    SUBMITTED = "submitted", "Claimed by the worker and sent to the broker (submitting)"
    RISK_REJECTED = "risk_rejected", "Stopped by the risk evaluation"
    REJECTED = "rejected", "Refused before the broker (idempotency key mismatch)"
    ANSWERED = "answered", "The broker's answer to the submit stored"
    FILLED = "filled", "Filled (one event per fill increment)"
    REQUEUED = "requeued", "Queued again (not found at the broker)"
    RECONCILED = "reconciled", "The broker's answer stored by a lookup (reconciliation)"
    CANCELLED = "cancelled", "Cancelled"


class OrderEvent(models.Model):
    """One change of one order, appended in the transaction that made the change.

    Append-only: never updated, never deleted by the engine. ``id`` (a bigint from the
    table's sequence) is the export order: ``execution.lakehouse`` exports events by id,
    exactly once per destination. The columns copy the order's key facts as they were at the
    change, so an exported event reads alone, without the ``orders`` table.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="order_events")
    kind = models.CharField(max_length=20, choices=OrderEventKind.choices)
    from_status = models.CharField(
        max_length=20,
        blank=True,
        help_text="The order's status before the change; empty for a new order",
    )
    to_status = models.CharField(max_length=20, help_text="The order's status after the change")
    entity = models.CharField(max_length=16, help_text="The entity's symbol")
    # Plain copies of the order's side and reason, without choices: the event keeps what the
    # order said, whatever the vocabulary becomes.
    side = models.CharField(max_length=4)
    quantity = models.DecimalField(**QUANTITY)
    filled_quantity = models.DecimalField(
        **QUANTITY, help_text="Filled so far, after the change (cumulative)"
    )
    fill_quantity = models.DecimalField(
        **QUANTITY, null=True, blank=True, help_text="This fill increment (filled events only)"
    )
    fill_value = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Average fill value per unit, after the change"
    )
    broker_order_id = models.CharField(max_length=64, blank=True)
    client_order_id = models.CharField(
        max_length=64, help_text="The order's idempotency key, sent to the broker"
    )
    reason = models.CharField(max_length=20, help_text="Why the order exists (its reason)")
    detail = models.CharField(
        max_length=200, blank=True, help_text="Why the status changed (the order's status reason)"
    )
    occurred_at = models.DateTimeField(help_text="When it happened, on the engine's clock")
    recorded_at = models.DateTimeField(help_text="When the row was written (wall clock)")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "order_events"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["order", "id"], name="order_event_order_idx"),
            models.Index(fields=["pool", "-id"], name="order_event_pool_idx"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} {self.kind}: {self.from_status or '∅'} → {self.to_status}"


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSON Lines"
    PARQUET = "parquet", "Parquet"


class ExportCursor(models.Model):
    """The watermark of one event export: every event up to ``last_event_id`` is in
    ``destination`` as ``format`` files, exactly once.

    ``pending_through_id`` is the batch being written (set before its files are written,
    cleared with the advance): a run that finds it set writes that same batch again under the
    same file names instead of planning a new one (``execution.lakehouse``).
    """

    destination = models.CharField(
        max_length=500, help_text="Where the files go: file:///folder or s3://bucket/prefix"
    )
    format = models.CharField(max_length=10, choices=ExportFormat.choices)
    last_event_id = models.BigIntegerField(default=0)
    pending_through_id = models.BigIntegerField(null=True, blank=True)
    exported_events = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "event_exports"
        ordering = ["destination", "format"]
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "format"], name="event_export_destination_format_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.destination} ({self.format}) through event {self.last_event_id}"
