"""Export of a pool's audit tables as JSON Lines (orchestration).

One JSON object per row, with every column of the model under its column name (a foreign key as
its raw id, ``pool_id``), ordered by id. Decimals are strings (no binary rounding), datetimes
ISO-8601 in UTC, dates ``YYYY-MM-DD``, JSON columns (``decision_trace``, an operator action's
``before``/``after``…) nested objects. Rows are streamed in chunks of ``CHUNK_SIZE``, so a table
of a million rows never sits in memory.

``AUDIT_TABLES`` names the exportable tables; adding one is one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TextIO

from django.db import models

from decisions.models import DecisionRecord
from execution.models import Order
from portfolio.market_calendar import MARKET_TIME_ZONE
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    OperatorAction,
    Pool,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
)

#: Rows fetched per round trip while streaming.
CHUNK_SIZE = 2000


@dataclass(frozen=True)
class AuditTable:
    """An exportable table: its model, the lookup to its pool and the time column filtered by
    ``--since`` / ``--until``."""

    model: type[models.Model]
    pool_lookup: str
    time_field: str


AUDIT_TABLES: dict[str, AuditTable] = {
    "decisions": AuditTable(DecisionRecord, "pool", "evaluated_at"),
    "orders": AuditTable(Order, "pool", "created_at"),
    "commitments": AuditTable(Commitment, "pool", "opened_at"),
    "snapshots": AuditTable(PoolSnapshot, "pool", "taken_at"),
    "ledger": AuditTable(ReserveLedgerEntry, "pool", "created_at"),
    "tier_history": AuditTable(RiskTierHistory, "pool", "changed_at"),
    "breaker_events": AuditTable(CircuitBreakerEvent, "pool", "triggered_at"),
    "operator_actions": AuditTable(OperatorAction, "pool", "created_at"),
}


class ExportFailed(Exception):
    """The export could not start (unknown table or pool, bad time range)."""


@dataclass(frozen=True)
class ExportResult:
    """What was exported: the table, the pool and the number of rows written."""

    table: str
    pool: str
    rows: int

    def __str__(self) -> str:
        return f"{self.table} of pool {self.pool}: {self.rows} rows exported"


def parse_time_bound(text: str) -> datetime:
    """A ``--since`` / ``--until`` bound: an ISO-8601 timestamp with an offset, or a date
    ``YYYY-MM-DD`` read as midnight New York time (the market's day). Raises ValueError."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(0), tzinfo=MARKET_TIME_ZONE).astimezone(UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date or timestamp") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +HH:MM)")
    return value.astimezone(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")


def _converter(field: models.Field) -> Callable[[Any], Any]:
    """How one column's value becomes JSON-ready."""
    if isinstance(field, models.DecimalField):
        return lambda value: None if value is None else str(value)
    if isinstance(field, models.DateTimeField):
        return lambda value: None if value is None else value.astimezone(UTC).isoformat()
    if isinstance(field, models.DateField):
        return lambda value: None if value is None else value.isoformat()
    if isinstance(field, models.FloatField):
        # NaN and infinities are not JSON.
        return lambda value: None if value is None or not math.isfinite(value) else value
    return lambda value: value


def export_audit(
    table: str,
    pool_name: str,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExportResult:
    """Write the rows of one audit table of one pool to ``out`` as JSON Lines.

    ``since`` (inclusive) and ``until`` (exclusive) bound the table's time column (aware
    datetimes). Rows come ordered by id, streamed ``CHUNK_SIZE`` at a time: one query for the
    pool, then one round trip per chunk (a server-side cursor on PostgreSQL).
    Raises ``ExportFailed`` for an unknown table or pool or an empty time range.
    """
    spec = AUDIT_TABLES.get(table)
    if spec is None:
        raise ExportFailed(f"unknown table {table!r}; choose from {', '.join(AUDIT_TABLES)}")
    if since is not None and until is not None and since >= until:
        raise ExportFailed(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    try:
        pool = Pool.objects.get(name=pool_name)
    except Pool.DoesNotExist:
        raise ExportFailed(f"no pool named {pool_name!r}") from None
    fields = spec.model._meta.concrete_fields
    columns = [field.attname for field in fields]
    converters = [_converter(field) for field in fields]
    rows = spec.model._default_manager.filter(**{spec.pool_lookup: pool})
    if since is not None:
        rows = rows.filter(**{f"{spec.time_field}__gte": since})
    if until is not None:
        rows = rows.filter(**{f"{spec.time_field}__lt": until})
    count = 0
    for row in rows.order_by("id").values_list(*columns).iterator(chunk_size=CHUNK_SIZE):
        record = {
            column: convert(value)
            for column, convert, value in zip(columns, converters, row, strict=True)
        }
        out.write(json.dumps(record, default=_json_default, ensure_ascii=False) + "\n")
        count += 1
    return ExportResult(table, pool.name, count)
