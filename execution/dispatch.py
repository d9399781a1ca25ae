"""Hand orders to the execution worker through django-q2.

Called only once the order row is committed (from ``transaction.on_commit``, or by the
sweeper and the lease settler after their own commit): a task enqueued before its order row
commits could run before the row exists. The ``orders`` table stays the durable outbox: a task lost
with a dead cluster leaves its order ``queued``, and the sweeper hands it out again (the
recovery run, every ~30 s: ``execution.tasks.recover_orders``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django_q.tasks import async_task

from execution.keys import derive_idempotency_key
from execution.models import Order

logger = logging.getLogger(__name__)

PROCESS_ORDER_TASK = "execution.tasks.process_order"


def enqueue_orders(order_ids: list[int]) -> None:
    for order_id in order_ids:
        try:
            async_task(PROCESS_ORDER_TASK, order_id, task_name=f"order-{order_id}", group="orders")
        except Exception:  # the sweeper re-hands a queued order; never fail the caller
            logger.exception("could not enqueue order %s; the sweeper will hand it out", order_id)


def queued_order(
    *,
    pool,
    entity_id: str,
    action: str,
    side: str,
    reason: str,
    quantity: Decimal,
    estimated_value: Decimal,
    reference: str,
    now: datetime,
    **links,
) -> Order:
    """A new ``queued`` order (unsaved), its idempotency key derived from the same entity,
    action, quantity and reference the worker checks it against. ``links``: decision,
    recommendation_id, commitment or commitment_id, note."""
    return Order(
        pool=pool,
        entity_id=entity_id,
        action=action,
        side=side,
        reason=reason,
        quantity=quantity,
        estimated_value=estimated_value,
        reference=reference,
        idempotency_key=derive_idempotency_key(entity_id, action, quantity, reference),
        broker=pool.adapter,
        created_at=now,
        **links,
    )
