"""Export of the order events to a lakehouse: files by day, in id order, exactly once.

``export_events(destination, fmt=..., now=...)`` reads the events after the destination's
watermark (``ExportCursor``) in id order, groups them by the UTC day of ``occurred_at`` and
writes one new file per day and batch, Hive-style::

    <prefix>/order_events/date=2026-11-18/events-000000000001-000000000250.jsonl

then advances the watermark. A destination is a folder (``file:///path`` or a plain path) or
an S3-compatible bucket (``s3://bucket/prefix``, through boto3 with ``EVENTS_S3_ENDPOINT_URL``:
MinIO, or S3 itself). Formats: JSON Lines (one UTF-8 JSON object per line, decimals as
strings) or Parquet (``PARQUET_SCHEMA``: decimals as ``decimal128(20, 4)``, the precision of
the database columns, so nothing is rounded; times as UTC microseconds; ``payload`` as JSON
text).

Exactly once, in order (docs/operations.md, "Order events and the lakehouse export"):

1. **Only settled events.** An event id is taken when the row is inserted, but a transaction
   may commit after one that took a later id. The run first reads the highest visible id and
   then, on PostgreSQL, waits (``SETTLE_SECONDS`` at most) for the transactions of this
   database still in flight at that moment (``settled_high_mark``); once they have ended, no
   event at or below that id can appear any more. SQLite runs one writer at a time, so ids
   commit in order there. A run that cannot settle exports nothing new (``deferred``).
2. **The batch is fixed before a file is written.** The cursor row stores the last id of the
   batch (``pending_through_id``) in its own transaction; the files are then written; the
   watermark moves to that id and the pending mark is cleared in one conditional UPDATE.
3. **File names come from the batch.** Each file is named after the first and last id it
   holds, and a batch holds exactly the settled events in its fixed id range. A run that dies
   between writing and advancing leaves the mark pending; the next run writes the same batch
   again, under the same names with the same content, overwriting what the dead run wrote (a
   folder file is replaced atomically, an S3 PUT replaces the object whole), then advances.
   So no event is lost (the watermark never passes an event that is not in a file) and none
   is written twice (a second copy could only come under another name, which another batch
   never produces). Two exporters of one destination at once write identical files; the
   second one's advance finds the watermark already moved and changes nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from execution.models import ExportCursor, ExportFormat, OrderEvent

#: Events written per batch (one file per day of the batch); a run writes batches until it
#: has caught up with the settled events.
EXPORT_BATCH = 10_000
#: How long a run waits, on PostgreSQL, for the transactions in flight when it starts.
SETTLE_SECONDS = 10.0
#: The folder, under the destination's prefix, that holds the day partitions.
DATASET = "order_events"

#: The exported columns, in file order.
COLUMNS = (
    "id",
    "order_id",
    "pool_id",
    "kind",
    "from_status",
    "to_status",
    "entity",
    "side",
    "quantity",
    "filled_quantity",
    "fill_quantity",
    "fill_value",
    "broker_order_id",
    "client_order_id",
    "reason",
    "detail",
    "occurred_at",
    "recorded_at",
    "payload",
)
DECIMAL_COLUMNS = frozenset({"quantity", "filled_quantity", "fill_quantity", "fill_value"})
TIME_COLUMNS = frozenset({"occurred_at", "recorded_at"})


class DestinationError(Exception):
    """The destination is unusable: a bad address, or a folder or bucket that refuses a
    write. Nothing is advanced past a file that was not written."""


# --- destinations -----------------------------------------------------------------------------


class Destination(Protocol):
    name: str

    def check(self) -> None: ...

    def write(self, key: str, data: bytes) -> None: ...


@dataclass
class FolderDestination:
    """A folder on this machine. A file is written beside its final name, flushed to disk and
    renamed over it (atomic), so a reader never sees half a file."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.as_uri()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot use folder {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise DestinationError(f"folder {self.root} is not writable")

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                temporary.unlink(missing_ok=True)
            raise DestinationError(f"cannot write {path}: {exc}") from exc


@dataclass
class S3Destination:
    """A bucket of an S3-compatible store, through boto3 (``s3_client``)."""

    bucket: str
    prefix: str = ""
    client: Any = None

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _client(self) -> Any:
        if self.client is None:
            self.client = s3_client()
        return self.client

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise DestinationError(f"cannot use bucket {self.bucket}: {exc}") from exc

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{self.prefix}/{key}" if self.prefix else key
        try:
            self._client().put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentType=content_type(key)
            )
        except (BotoCoreError, ClientError) as exc:
            raise DestinationError(f"cannot write s3://{self.bucket}/{full}: {exc}") from exc


def s3_client() -> Any:
    """A boto3 S3 client from the ``EVENTS_S3_*`` settings. With an endpoint URL (MinIO or
    another S3-compatible store) it addresses buckets by path, and checksums are sent only
    where a request requires them, which every S3-compatible server accepts. Without keys,
    boto3's own credential chain applies (environment, instance role)."""
    import boto3
    from botocore.config import Config

    endpoint = settings.EVENTS_S3_ENDPOINT_URL or None
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings.EVENTS_S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.EVENTS_S3_SECRET_ACCESS_KEY or None,
        region_name=settings.EVENTS_S3_REGION or None,
        config=config,
    )


def open_destination(text: str) -> FolderDestination | S3Destination:
    """The destination named by ``text``: ``s3://bucket[/prefix]``, ``file:///folder`` or a
    plain folder path (relative to the working directory). Raises ``DestinationError``."""
    text = (text or "").strip()
    if not text:
        raise DestinationError("no destination: give a folder, file:///folder or s3://bucket")
    if "://" not in text:
        return FolderDestination(Path(text).expanduser().resolve())
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if parts.username or parts.password:
        # Never store a secret in the cursor table: keys come from EVENTS_S3_* settings.
        raise DestinationError(
            "a destination must not carry credentials; set EVENTS_S3_ACCESS_KEY_ID and "
            "EVENTS_S3_SECRET_ACCESS_KEY"
        )
    if parts.query or parts.fragment:
        raise DestinationError(f"{scheme}:// destinations take no query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise DestinationError(f"file:// destinations are local (got host {parts.netloc!r})")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise DestinationError("a file:// destination needs an absolute path: file:///folder")
        return FolderDestination(Path(path).resolve())
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise DestinationError("an s3:// destination needs a bucket: s3://bucket/prefix")
        return S3Destination(bucket, parts.path.strip("/"))
    raise DestinationError(f"unknown destination scheme {scheme!r}: use file:// or s3://")


# --- encoding ---------------------------------------------------------------------------------


def parquet_schema():
    """The Parquet schema of an event file (pyarrow is imported only when Parquet is used)."""
    import pyarrow as pa

    money = pa.decimal128(20, 4)  # the MONEY and QUANTITY columns: max_digits 20, 4 places
    instant = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("order_id", pa.int64(), nullable=False),
            pa.field("pool_id", pa.int64(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("from_status", pa.string(), nullable=False),
            pa.field("to_status", pa.string(), nullable=False),
            pa.field("entity", pa.string(), nullable=False),
            pa.field("side", pa.string(), nullable=False),
            pa.field("quantity", money, nullable=False),
            pa.field("filled_quantity", money, nullable=False),
            pa.field("fill_quantity", money),
            pa.field("fill_value", money),
            pa.field("broker_order_id", pa.string(), nullable=False),
            pa.field("client_order_id", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string(), nullable=False),
            pa.field("occurred_at", instant, nullable=False),
            pa.field("recorded_at", instant, nullable=False),
            pa.field("payload", pa.string(), nullable=False),
        ]
    )


def _json_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in DECIMAL_COLUMNS:
        return format(value, "f")
    if name in TIME_COLUMNS:
        return value.astimezone(UTC).isoformat()
    return value


def encode_jsonl(rows: list[dict]) -> bytes:
    """One JSON object per line, UTF-8, keys in ``COLUMNS`` order: decimals as strings (no
    binary rounding), times ISO 8601 in UTC, ``payload`` a nested object."""
    lines = (
        json.dumps(
            {name: _json_value(name, row[name]) for name in COLUMNS},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for row in rows
    )
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def encode_parquet(rows: list[dict]) -> bytes:
    """One Parquet file (one row group) with ``parquet_schema()``; ``payload`` as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for row in rows:
        for name in COLUMNS:
            value = row[name]
            if name == "payload":
                value = json.dumps(value or {}, ensure_ascii=False, separators=(",", ":"))
            elif name in TIME_COLUMNS:
                value = value.astimezone(UTC)
            columns[name].append(value)
    table = pa.Table.from_pydict(columns, schema=parquet_schema())
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


ENCODERS = {ExportFormat.JSONL: encode_jsonl, ExportFormat.PARQUET: encode_parquet}


def content_type(key: str) -> str:
    return "application/x-ndjson" if key.endswith(".jsonl") else "application/vnd.apache.parquet"


def file_key(day: date, first_id: int, last_id: int, fmt: str) -> str:
    """``order_events/date=YYYY-MM-DD/events-<first>-<last>.<fmt>``, ids zero-padded to 12
    digits so that a listing sorts files by id."""
    return f"{DATASET}/date={day.isoformat()}/events-{first_id:012d}-{last_id:012d}.{fmt}"


# --- the export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedFile:
    key: str
    day: date
    first_id: int
    last_id: int
    events: int
    size: int


@dataclass
class ExportResult:
    """What one run wrote: the files, the number of events, the watermark after the run, and
    whether it stopped short waiting for transactions in flight (``deferred``)."""

    destination: str
    format: str
    watermark: int = 0
    files: list[ExportedFile] = field(default_factory=list)
    deferred: bool = False

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)

    def as_dict(self) -> dict:
        return {
            "destination": self.destination,
            "format": self.format,
            "events": self.events,
            "watermark": self.watermark,
            "deferred": self.deferred,
            "files": [
                {
                    "key": f.key,
                    "day": f.day.isoformat(),
                    "first_id": f.first_id,
                    "last_id": f.last_id,
                    "events": f.events,
                    "bytes": f.size,
                }
                for f in self.files
            ],
        }

    def __str__(self) -> str:
        text = (
            f"{self.events} event(s) in {len(self.files)} file(s) to {self.destination} "
            f"({self.format}); exported through event {self.watermark}"
        )
        if self.deferred:
            text += "; newer events wait for transactions still in flight"
        return text


#: Transactions of this database holding a transaction id, other than this session's.
_IN_FLIGHT_SQL = """
    SELECT DISTINCT l.transactionid::text
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
      AND a.datname = current_database() AND l.pid <> pg_backend_pid()
"""
_STILL_IN_FLIGHT_SQL = """
    SELECT DISTINCT transactionid::text FROM pg_locks
    WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted
      AND transactionid::text = ANY(%s)
"""


def settled_high_mark(*, timeout: float = SETTLE_SECONDS, poll: float = 0.05) -> int | None:
    """The highest event id at or below which no event can still appear, or None when the
    transactions that might add one did not end within ``timeout`` seconds.

    It reads the highest visible id, then (PostgreSQL) the transaction ids held by this
    database's other sessions, and waits until they have all ended. A transaction that took
    an event id at or below the mark without having committed held its transaction id then
    (``execution.events`` is called after the order row is written, which assigns it), so it
    is among those waited for. SQLite commits one writer at a time: the highest visible id is
    settled. Queries: one (SQLite); two, then one per ``poll`` while waiting (PostgreSQL).
    """
    table = connection.ops.quote_name(OrderEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(id) FROM {table}")
        high = cursor.fetchone()[0] or 0
        if connection.vendor != "postgresql":
            return high
        cursor.execute(_IN_FLIGHT_SQL)
        waiting = [row[0] for row in cursor.fetchall()]
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)
            cursor.execute(_STILL_IN_FLIGHT_SQL, [waiting])
            waiting = [row[0] for row in cursor.fetchall()]
    return high


def _plan(cursor_id: int, high: int | None, batch: int) -> tuple[int, int] | None:
    """The next batch, ``(after_id, through_id)``: the pending one if a run left it, else up
    to ``batch`` events above the watermark and at or below ``high``, stored as pending
    before any file is written. None when there is nothing to export."""
    with transaction.atomic():
        cursor = ExportCursor.objects.select_for_update().get(pk=cursor_id)
        after = cursor.last_event_id
        if cursor.pending_through_id is not None:
            return after, cursor.pending_through_id
        if high is None or high <= after:
            return None
        nth = list(
            OrderEvent.objects.filter(id__gt=after, id__lte=high)
            .order_by("id")
            .values_list("id", flat=True)[batch - 1 : batch]
        )
        through = nth[0] if nth else high
        cursor.pending_through_id = through
        cursor.save(update_fields=["pending_through_id"])
    return after, through


def _rows(after: int, through: int) -> list[dict]:
    return list(
        OrderEvent.objects.filter(id__gt=after, id__lte=through).order_by("id").values(*COLUMNS)
    )


def export_events(
    destination: str,
    *,
    fmt: str = ExportFormat.JSONL,
    now: datetime,
    batch: int = EXPORT_BATCH,
    settle_timeout: float = SETTLE_SECONDS,
) -> ExportResult:
    """Export the events after ``destination``'s watermark in ``fmt``; see the module
    docstring. ``now`` is stored as the cursor's ``updated_at``. Raises ``DestinationError``
    (a bad destination, a refused write: the batch stays pending for the next run) and
    ValueError (an unknown format or batch size). Run it outside any transaction."""
    if fmt not in ExportFormat.values:
        raise ValueError(f"unknown export format {fmt!r}: use {' or '.join(ExportFormat.values)}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    target = open_destination(destination)
    target.check()
    encode = ENCODERS[ExportFormat(fmt)]
    cursor, _ = ExportCursor.objects.get_or_create(
        destination=target.name, format=fmt, defaults={"updated_at": now}
    )
    high = settled_high_mark(timeout=settle_timeout)
    result = ExportResult(target.name, fmt, watermark=cursor.last_event_id, deferred=high is None)
    while (planned := _plan(cursor.pk, high, batch)) is not None:
        after, through = planned
        by_day: dict[date, list[dict]] = defaultdict(list)
        for row in _rows(after, through):
            by_day[row["occurred_at"].astimezone(UTC).date()].append(row)
        written = []
        for day in sorted(by_day):
            rows = by_day[day]
            key = file_key(day, rows[0]["id"], rows[-1]["id"], fmt)
            data = encode(rows)
            target.write(key, data)
            written.append(
                ExportedFile(key, day, rows[0]["id"], rows[-1]["id"], len(rows), len(data))
            )
        advanced = ExportCursor.objects.filter(
            pk=cursor.pk, last_event_id=after, pending_through_id=through
        ).update(
            last_event_id=through,
            pending_through_id=None,
            exported_events=F("exported_events") + sum(f.events for f in written),
            updated_at=now,
        )
        if not advanced:  # another run of the same destination wrote this batch and moved on
            break
        result.files += written
        result.watermark = through
        if high is None or through >= high:
            break
    return result
