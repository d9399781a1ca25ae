"""django-q2 task entry points of the execution app: primitive ids in, one call out."""

from __future__ import annotations

from execution.worker import process_order as _process_order
from execution.worker import process_orders as _process_orders


def process_order(order_id: int) -> str:
    """Process one queued order now (the worker task for a lone order, and for tasks queued
    before batches existed)."""
    return _process_order(order_id).status


def process_orders(order_ids: list[int]) -> list[str]:
    """Process a batch of queued orders now (``execution.dispatch.enqueue_orders``): one
    claim per pool, one HTTP session; ``"id: status"`` per order."""
    return [f"{r.order_id}: {r.status}" for r in _process_orders(list(order_ids))]


def sweep_orders() -> list[int]:
    """Hand out again the orders left queued (``SWEEP_QUEUED_AFTER``) without a claim."""
    from execution.worker import SWEEP_QUEUED_AFTER, sweep_queued_orders

    return sweep_queued_orders(SWEEP_QUEUED_AFTER)


def settle_leases() -> list[str]:
    """Settle the submitting orders whose lease expired (their worker died) by a lookup."""
    from execution.worker import settle_expired_leases

    return [f"{r.order_id}: {r.status} ({r.detail})" for r in settle_expired_leases()]


def recover_orders() -> list[str]:
    """The recovery run, every ~30 s: settle expired leases, then hand out again the orders
    left queued. Idempotent and safe to run twice at once (docs/decisions.md, "Leases:
    recovery in seconds")."""
    return settle_leases() + [f"{order_id}: handed out again" for order_id in sweep_orders()]


def sync_orders() -> list[str]:
    """The order status sync, every ~30 s: every order the broker is still working looked up,
    its new fills booked once, its end or replacement followed (``execution.sync``)."""
    from execution.sync import sync_orders as _sync_orders

    return [f"{r.order_id}: {r.status} ({r.detail})" for r in _sync_orders()]


def reconcile_orders() -> list[str]:
    """Settle unknown and stuck orders by asking the broker; accepted and partially filled
    ones through the order status sync."""
    import logging

    from django.utils import timezone

    from execution.worker import orders_to_reconcile, reconcile_order

    now = timezone.now()
    lines = []
    for order_id in orders_to_reconcile(now):
        try:
            lines.append(f"{order_id}: {reconcile_order(order_id, now).status}")
        except Exception:
            logging.getLogger(__name__).exception("reconciling order %s failed", order_id)
    return lines
