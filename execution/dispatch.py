"""Hand orders to the execution worker through django-q2, in batches.

Called only once the order rows are committed (from ``transaction.on_commit``, or by the
sweeper and the lease settler after their own commit): a task enqueued before its order row
commits could run before the row exists. The ``orders`` table stays the durable outbox: a task lost
with a dead cluster leaves its orders ``queued``, and the sweeper hands them out again (the
recovery run, every ~30 s: ``execution.tasks.recover_orders``).

One task takes up to ``ORDERS_PER_TASK`` orders (``execution.tasks.process_orders``): the
worker claims them with one pool lock and one read of the account, and sends them through one
HTTP session (docs/decisions.md, "Batched claims"). A few orders are spread over the cluster's
workers rather than packed into one task, so a short cycle's orders still go out side by side.
A single order keeps its own task (``execution.tasks.process_order``).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django_q.tasks import async_task

from execution.keys import derive_idempotency_key
from execution.models import Order

logger = logging.getLogger(__name__)

PROCESS_ORDER_TASK = "execution.tasks.process_order"
PROCESS_ORDERS_TASK = "execution.tasks.process_orders"
#: At most this many orders in one task. Each claim reads the account once (some tens of
#: ms on a busy machine), so a larger batch spreads that over more orders; but a batch is
#: sent one order after the other, so its last order waits for the others' round trips
#: (50 × a few ms), and a batch must stay inside the task's timeout (``ORDER_TASK_TIMEOUT``;
#: the worker puts back unsent whatever the time left cannot cover).
ORDERS_PER_TASK = 50


def batches(order_ids: list[int], workers: int) -> list[list[int]]:
    """``order_ids`` in their order, cut into batches of at most ``ORDERS_PER_TASK``, and no
    larger than needed to give each of ``workers`` workers a share."""
    ids = list(dict.fromkeys(order_ids))
    if not ids:
        return []
    size = max(1, min(ORDERS_PER_TASK, math.ceil(len(ids) / max(1, workers))))
    return [ids[k : k + size] for k in range(0, len(ids), size)]


def enqueue_orders(order_ids: list[int]) -> None:
    """Hand ``order_ids`` (committed, ``queued``) to the worker: one task per batch
    (``batches``). No query: a batch may mix pools (the sweeper's does), and the worker
    claims it pool by pool. A task that cannot be enqueued is logged and its orders are left
    to the sweeper; the caller never fails."""
    for batch in batches(order_ids, settings.Q_CLUSTER.get("workers") or 1):
        try:
            if len(batch) == 1:
                (order_id,) = batch
                async_task(
                    PROCESS_ORDER_TASK, order_id, task_name=f"order-{order_id}", group="orders"
                )
            else:
                async_task(
                    PROCESS_ORDERS_TASK,
                    batch,
                    task_name=f"orders-{batch[0]}-{len(batch)}",
                    group="orders",
                )
        except Exception:  # the sweeper re-hands a queued order; never fail the caller
            logger.exception("could not enqueue orders %s; the sweeper will hand them out", batch)


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
