"""Heartbeats of the loops: when each loop of each pool last ran (``loop_runs``).

Every run of the decision cycle and of the four guardian loops upserts one ``LoopRun`` row
(one statement), in the loop's own transaction, so ``/healthz`` can tell a cluster that
stopped cycling from one that has nothing to do. Times are wall-clock UTC: the heartbeat is
about the process, not the simulated clock a demo or a replay runs on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone

from portfolio.models import LoopRun

__all__ = ["DECISION_CYCLE", "LOOPS", "record_loop_run", "records_loop_run"]

DECISION_CYCLE = "decision_cycle"
#: The loops that leave a heartbeat, by the names ``loop_runs.loop`` stores.
LOOPS = (
    DECISION_CYCLE,
    "risk_threshold_monitor",
    "performance_loop",
    "risk_tier_scheduler",
    "rebalancer",
)
DETAIL_MAX = 500

F = TypeVar("F", bound=Callable[..., Any])


def record_loop_run(
    pool_id: int, loop: str, started: datetime, finished: datetime, detail: str = ""
) -> None:
    """Upsert the heartbeat of ``loop`` for the pool: one ``INSERT … ON CONFLICT`` query."""
    LoopRun.objects.bulk_create(
        [
            LoopRun(
                pool_id=pool_id,
                loop=loop,
                last_started_at=started,
                last_finished_at=finished,
                last_detail=str(detail)[:DETAIL_MAX],
            )
        ],
        update_conflicts=True,
        unique_fields=["pool", "loop"],
        update_fields=["last_started_at", "last_finished_at", "last_detail"],
    )


def records_loop_run(loop: str) -> Callable[[F], F]:
    """Decorate a loop ``fn(pool_id, now, ...)`` so each run that returns leaves its heartbeat.

    The loop and its heartbeat share one transaction (no savepoint is added inside an open
    one): a run that raises leaves no heartbeat, so ``/healthz`` sees it age. The detail is
    ``str()`` of the loop's result. One query more per run.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(pool_id: int, *args: Any, **kwargs: Any) -> Any:
            started = timezone.now()
            with transaction.atomic(savepoint=False):
                result = fn(pool_id, *args, **kwargs)
                record_loop_run(pool_id, loop, started, timezone.now(), str(result))
            return result

        return run  # type: ignore[return-value]

    return decorate
