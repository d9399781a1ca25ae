"""Counters and histograms of the engine, kept in the database so every process adds to them.

Web workers and task clusters on several machines all decide and execute; a counter in one
process's memory would be lost with it and never summed with the others. Each observation is
therefore one ``INSERT … ON CONFLICT DO UPDATE`` that adds to the stored value (PostgreSQL and
SQLite both have it), written in the transaction of what it counts, and ``/metrics`` reads the
few rows back at scrape time:

- ``decisions``: evaluations by (pool, outcome, skip reason), added by the decision cycle
  (``records_decision_cycle``);
- histograms: cumulative buckets of the decision cycle's duration (wall-clock seconds) and of
  the latency from a recommendation's arrival (``received_at``) to the broker's first answer
  accepting or filling its order (``observe_order_answered``).

All of them live in one table, ``telemetry_counters``, so a cycle adds its decisions and its
duration in a single statement.

Seconds are floats: these are metrics, not money.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.utils import floatToGoString

from portfolio.heartbeat import DECISION_CYCLE, record_loop_run
from portfolio.models import TelemetryCounter

__all__ = [
    "BUCKETS",
    "CYCLE_DURATION",
    "DECISIONS",
    "ORDER_LATENCY",
    "bucket_label",
    "add_to_counters",
    "decision_pairs",
    "decision_rows",
    "observation_rows",
    "observe",
    "observe_order_answered",
    "observe_orders_answered",
    "merge_rows",
    "records_decision_cycle",
]

DECISIONS = "decisions"
CYCLE_DURATION = "cycle_duration_seconds"
ORDER_LATENCY = "recommendation_to_order_seconds"
#: Upper bounds of each histogram's buckets, in seconds (``+Inf`` is implicit).
BUCKETS: Mapping[str, tuple[float, ...]] = {
    CYCLE_DURATION: (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    ORDER_LATENCY: (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
}
INF = "+Inf"
#: An order's status before the answer (still waiting) and after it (the broker took it).
_WAITING = frozenset({"submitting", "unknown"})
_ANSWERED = frozenset({"accepted", "filled", "partially_filled"})

F = TypeVar("F", bound=Callable[..., Any])


def bucket_label(bound: float) -> str:
    """The ``le`` label of a bucket as Prometheus writes it: ``0.05``, ``1.0``, ``+Inf``."""
    return floatToGoString(bound)


_KEYS = ("pool_id", "metric", "outcome", "reason", "le")
_ADDED = ("total", "sum_seconds")


def add_to_counters(rows: list[tuple]) -> None:
    """Add ``rows`` — (pool_id, metric, outcome, reason, le, total, sum_seconds) — to
    ``telemetry_counters``: an ``INSERT`` that, on a key conflict, adds the new values to the
    stored ones. One query (none for no rows)."""
    if not rows:
        return
    q = connection.ops.quote_name
    table = q(TelemetryCounter._meta.db_table)
    columns = (*_KEYS, *_ADDED)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
        f"VALUES {', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT ({', '.join(q(c) for c in _KEYS)}) DO UPDATE SET "
        + ", ".join(f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in _ADDED)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def observation_rows(pool_id: int, metric: str, seconds: float) -> list[tuple]:
    """The rows that add one observation of ``seconds`` to the pool's histogram ``metric`` (one
    of ``BUCKETS``): every bucket whose bound is at least ``seconds`` counts it, ``+Inf``
    counts it and adds it to the sum. A negative or non-finite value (a clock that went back)
    gives no rows."""
    if not math.isfinite(seconds) or seconds < 0:
        return []
    rows = [
        (pool_id, metric, "", "", bucket_label(bound), int(seconds <= bound), 0.0)
        for bound in BUCKETS[metric]
    ]
    rows.append((pool_id, metric, "", "", INF, 1, float(seconds)))
    return rows


def observe(pool_id: int, metric: str, seconds: float) -> None:
    """Add one observation of ``seconds`` to the pool's histogram ``metric``. One query."""
    add_to_counters(observation_rows(pool_id, metric, seconds))


def decision_pairs(outcomes: Mapping[str, int], skip_reasons: Mapping[str, int]) -> Counter:
    """Evaluations by (outcome, reason) from a cycle's two counters: ``act`` and ``defer``
    carry no reason; a skip counted without a reason keeps ``""``."""
    pairs: Counter = Counter()
    for outcome, n in outcomes.items():
        if str(outcome) != "skip" and n:
            pairs[(str(outcome), "")] += n
    for reason, n in skip_reasons.items():
        if n:
            pairs[("skip", str(reason))] += n
    unexplained = outcomes.get("skip", 0) - sum(skip_reasons.values())
    if unexplained > 0:
        pairs[("skip", "")] += unexplained
    return pairs


def decision_rows(pool_id: int, pairs: Mapping[tuple[str, str], int]) -> list[tuple]:
    """The rows that add evaluations by (outcome, reason) to the pool's ``decisions``."""
    return [
        (pool_id, DECISIONS, outcome, reason, "", n, 0.0)
        for (outcome, reason), n in sorted(pairs.items())
        if n
    ]


def records_decision_cycle(fn: F) -> F:
    """Decorate ``run_decision_cycle(pool_id, now, ...)``: in the cycle's transaction (its own
    ``atomic`` stays as it is), add its evaluations to ``decisions`` and its wall-clock duration
    to the ``cycle_duration_seconds`` histogram (one statement), and leave its heartbeat
    (another); a cycle without candidates leaves its heartbeat and duration too. Two queries
    more per cycle, whatever its size. The result must have ``candidates``, ``outcomes`` and
    ``skip_reasons``."""

    @functools.wraps(fn)
    def run(pool_id: int, *args: Any, **kwargs: Any) -> Any:
        started = timezone.now()
        clock = time.perf_counter()
        # No savepoint of its own: the cycle's ``atomic`` inside is the only one it had.
        with transaction.atomic(savepoint=False):
            result = fn(pool_id, *args, **kwargs)
            duration = time.perf_counter() - clock
            pairs = decision_pairs(result.outcomes, result.skip_reasons)
            add_to_counters(
                decision_rows(pool_id, pairs) + observation_rows(pool_id, CYCLE_DURATION, duration)
            )
            detail = f"{result.candidates} candidate(s)" + "".join(
                f", {outcome}{'/' + reason if reason else ''} {n}"
                for (outcome, reason), n in sorted(pairs.items())
            )
            record_loop_run(pool_id, DECISION_CYCLE, started, timezone.now(), detail)
        return result

    return run  # type: ignore[return-value]


def observe_order_answered(
    order: Any, previous_status: str, now: datetime, *, received_at: datetime | None = None
) -> None:
    """Observe the latency of an order taken by the broker: from its recommendation's arrival
    (``received_at``) to ``now``, the time the answer was stored. Counted once per order, on
    its first answer that accepts or fills it (from ``submitting`` or ``unknown``); orders of
    the loops (no recommendation) are not counted.

    ``order`` is an ``execution.Order`` (read through its fields only: this layer does not
    import it). ``received_at`` is the recommendation's arrival when the caller read it with
    the order. Queries: the upsert (it locks only this pool's rows of the histogram, which the
    answer's pool lock already serializes), and, without ``received_at``, the order's
    recommendation (hidden, one query).
    """
    observe_orders_answered([(order, previous_status, received_at)], now)


def observe_orders_answered(
    answered: Iterable[tuple[Any, str, datetime | None]], now: datetime
) -> None:
    """``observe_order_answered`` for many answers stored at ``now``: (order, previous status,
    recommendation's arrival or None) each. One upsert for all (none when none counts), plus
    one query per order read without its arrival."""
    rows = []
    for order, previous_status, received_at in answered:
        if (
            not order.recommendation_id
            or previous_status not in _WAITING
            or order.status not in _ANSWERED
        ):
            continue
        received = received_at or order.recommendation.received_at
        rows += observation_rows(order.pool_id, ORDER_LATENCY, (now - received).total_seconds())
    add_to_counters(merge_rows(rows))


def merge_rows(rows: Iterable[tuple]) -> list[tuple]:
    """``rows`` for ``add_to_counters`` with the rows of one key added together, in the order
    each key first appears: one statement may not update a row twice."""
    merged: dict[tuple, list] = {}
    for row in rows:
        key, (total, sum_seconds) = row[: len(_KEYS)], row[len(_KEYS) :]
        if key in merged:
            merged[key][0] += total
            merged[key][1] += sum_seconds
        else:
            merged[key] = [total, sum_seconds]
    return [(*key, total, sum_seconds) for key, (total, sum_seconds) in merged.items()]
