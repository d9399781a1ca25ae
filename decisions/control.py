"""Operator requests to the engine that change no pool state but must leave an audit row.

``request_cycle`` is "run a decision cycle now" (the API's ``run-cycle``): it writes a
``run_cycle`` operator action and, once that commits, queues one cycle for the pool through
``decisions.triggers.request_cycles`` (at most one queued per pool, so asking twice while one
waits queues nothing more).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from decisions.triggers import request_cycles
from portfolio.actions import ActionResult, record_operator_action
from portfolio.models import OperatorActionKind, Pool

__all__ = ["request_cycle"]


@transaction.atomic
def request_cycle(
    pool: Pool, *, actor: str, reason: str, now: datetime, via: str = ""
) -> ActionResult:
    """Record the request (who, when, why, through which interface) and queue one decision
    cycle for ``pool`` on commit. Raises ``ActionError`` for a missing actor or reason."""
    result = record_operator_action(
        OperatorActionKind.RUN_CYCLE,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before={},
        after={"cycle_requested": True},
        detail="a decision cycle is queued unless one is already waiting",
    )
    pool_id = pool.pk
    transaction.on_commit(lambda: request_cycles([pool_id]))
    return result
