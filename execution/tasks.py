"""django-q2 task entry points of the execution app: primitive ids in, one call out."""

from __future__ import annotations

from execution.worker import process_order as _process_order


def process_order(order_id: int) -> str:
    """Process one queued order now (the worker task)."""
    return _process_order(order_id).status
