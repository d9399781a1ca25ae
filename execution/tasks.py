"""django-q2 task entry points of the execution app: primitive ids in, one call out."""

from __future__ import annotations

from execution.worker import process_order as _process_order


def process_order(order_id: int) -> str:
    """Process one queued order now (the worker task)."""
    return _process_order(order_id).status


def sweep_orders() -> list[int]:
    """Hand out again the orders left queued for more than two minutes."""
    from datetime import timedelta

    from execution.worker import sweep_queued_orders

    return sweep_queued_orders(timedelta(minutes=2))


def reconcile_orders() -> list[str]:
    """Settle unknown, accepted and stuck orders by asking the broker."""
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
