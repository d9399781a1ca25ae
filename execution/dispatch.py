"""Hand orders to the execution worker through django-q2.

Called from ``transaction.on_commit`` only: a task enqueued before its order row commits
could run before the row exists. The ``orders`` table stays the durable outbox: a task lost
with a dead cluster leaves its order ``queued``, and the sweeper hands it out again.
"""

from __future__ import annotations

import logging

from django_q.tasks import async_task

logger = logging.getLogger(__name__)

PROCESS_ORDER_TASK = "execution.tasks.process_order"


def enqueue_orders(order_ids: list[int]) -> None:
    for order_id in order_ids:
        try:
            async_task(PROCESS_ORDER_TASK, order_id, task_name=f"order-{order_id}", group="orders")
        except Exception:  # the sweeper re-hands a queued order; never fail the caller
            logger.exception("could not enqueue order %s; the sweeper will hand it out", order_id)
