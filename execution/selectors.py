"""The read model with this layer's pending orders: ``pool_as_of`` as the engine counts it.

``portfolio.selectors.pool_as_of`` values a pool; the orders not yet settled live here, in
``orders``, so this thin wrapper loads them and hands them over. Every reader above this layer
(the decision cycle, the guardian loops, the execution gate, the admin, the API) calls this one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from execution.models import PENDING_STATUSES, Order
from portfolio.models import Pool
from portfolio.selectors import PendingOrder, PoolState
from portfolio.selectors import pool_as_of as _pool_as_of


def pending_orders(pool: Pool | int) -> tuple[PendingOrder, ...]:
    """The pool's orders that may still turn into a fill (``PENDING_STATUSES``). One query."""
    rows = Order.objects.filter(pool=pool, status__in=PENDING_STATUSES).values_list(
        "id",
        "entity_id",
        "entity__sector",
        "side",
        "quantity",
        "estimated_value",
        "commitment_id",
        "status",
    )
    return tuple(PendingOrder(*row) for row in rows.order_by("id"))


def pool_as_of(pool: Pool, now: datetime, **options: Any) -> PoolState:
    """The pool as of ``now`` with its pending orders counted (``portfolio.selectors.pool_as_of``
    takes the same options). One query more than that."""
    return _pool_as_of(pool, now, pending=pending_orders(pool), **options)
