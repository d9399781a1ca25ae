"""The order event export (execution/lakehouse.py): files by UTC day, in id order, each event
exactly once per destination, to a folder or to an S3-compatible server (moto's server mode,
started here on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from moto.server import ThreadedMotoServer

from decisions.engine import run_decision_cycle
from decisions.schedules import SCHEDULES
from decisions.tasks import export_order_events
from execution.events import record_order_event, record_order_events
from execution.keys import client_order_id_for
from execution.lakehouse import (
    COLUMNS,
    DestinationError,
    FolderDestination,
    S3Destination,
    export_events,
    open_destination,
    parquet_schema,
    s3_client,
    settled_high_mark,
)
from execution.models import ExportCursor, Order, OrderEvent, OrderEventKind
from tests import factories

D = Decimal
DAY_ONE = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # a Wednesday session
DAY_TWO = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
#: 23:30 in New York on the 18th is already the 19th in UTC: partitions are UTC days.
LATE_EVENING = datetime(2026, 11, 19, 4, 30, tzinfo=UTC)


def make_orders(pool, now, symbols) -> list[Order]:
    for i, symbol in enumerate(symbols):
        factories.add_bars(symbol, now, sector=["Tech", "Energy", "Health", "Retail"][i % 4])
        factories.make_recommendation(symbol, now)
    result = run_decision_cycle(pool.pk, now, dispatch=False)
    assert len(result.order_ids) == len(symbols)
    return list(Order.objects.filter(pk__in=result.order_ids).order_by("id"))


def add_events(orders, kind, now, **facts) -> list[OrderEvent]:
    with transaction.atomic():
        return record_order_events(orders, kind, now, previous_status="queued", **facts)


@pytest.fixture
def two_days(pool):
    """Queued events on day one (the cycle), requeued events on day two: six events."""
    orders = make_orders(pool, DAY_ONE, ["AAA", "BBB", "CCC"])
    add_events(orders, OrderEventKind.REQUEUED, DAY_TWO, detail="not found at broker: café")
    return orders


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def jsonl_objects(data: bytes) -> list[dict]:
    text = data.decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def exported_ids_in_folder(root: Path) -> list[int]:
    ids = []
    for path in sorted(root.rglob("*.jsonl")):
        ids += [obj["id"] for obj in jsonl_objects(path.read_bytes())]
    for path in sorted(root.rglob("*.parquet")):
        ids += pq.read_table(path).column("id").to_pylist()
    return ids


def all_ids() -> list[int]:
    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))


# --- folders: JSON Lines and Parquet ----------------------------------------------------------


def test_folder_export_writes_one_json_lines_file_per_utc_day_in_id_order(
    two_days, tmp_path, session_now
):
    events = list(OrderEvent.objects.order_by("id"))
    day_one, day_two = events[:3], events[3:]

    result = export_events(str(tmp_path), fmt="jsonl", now=session_now)

    assert files_under(tmp_path) == [
        f"order_events/date=2026-11-18/events-{day_one[0].id:012d}-{day_one[-1].id:012d}.jsonl",
        f"order_events/date=2026-11-19/events-{day_two[0].id:012d}-{day_two[-1].id:012d}.jsonl",
    ]
    assert result.events == 6 and result.watermark == events[-1].id
    assert [f.day for f in result.files] == [date(2026, 11, 18), date(2026, 11, 19)]
    first = jsonl_objects((tmp_path / result.files[0].key).read_bytes())
    second = jsonl_objects((tmp_path / result.files[1].key).read_bytes())
    assert [o["id"] for o in first + second] == [e.id for e in events]
    assert all(list(o) == list(COLUMNS) for o in first + second)
    order = Order.objects.get(pk=first[0]["order_id"])
    assert first[0] == {
        "id": day_one[0].id,
        "order_id": order.pk,
        "pool_id": order.pool_id,
        "kind": "queued",
        "from_status": "",
        "to_status": "queued",
        "entity": order.entity_id,
        "side": "buy",
        "quantity": format(order.quantity, "f"),  # a decimal travels as a string
        "filled_quantity": "0.0000",
        "fill_quantity": None,
        "fill_value": None,
        "broker_order_id": "",
        "client_order_id": client_order_id_for(order.idempotency_key),
        "reason": "entry",
        "detail": "",
        "occurred_at": "2026-11-18T16:00:00+00:00",
        "recorded_at": day_one[0].recorded_at.astimezone(UTC).isoformat(),
        "payload": {},
    }
    assert second[0]["detail"] == "not found at broker: café"  # UTF-8, not escaped
    assert "café".encode() in (tmp_path / result.files[1].key).read_bytes()
    cursor = ExportCursor.objects.get()
    assert cursor.destination == tmp_path.as_uri() and cursor.format == "jsonl"
    assert (cursor.last_event_id, cursor.pending_through_id) == (events[-1].id, None)
    assert (cursor.exported_events, cursor.updated_at) == (6, session_now)


def test_partitions_are_utc_days(pool, tmp_path):
    (order,) = make_orders(pool, DAY_ONE, ["AAA"])
    add_events([order], OrderEventKind.CANCELLED, LATE_EVENING)

    result = export_events(f"file://{tmp_path}", now=DAY_TWO)

    assert [f.day.isoformat() for f in result.files] == ["2026-11-18", "2026-11-19"]


def test_folder_export_as_parquet_reads_back_with_its_schema(two_days, tmp_path, session_now):
    (order, *_) = two_days
    fill = D("12.3456")
    with transaction.atomic():
        order.filled_quantity, order.fill_value, order.status = D("2"), D("101.2500"), "filled"
        order.save()
        record_order_event(
            order,
            OrderEventKind.FILLED,
            now=DAY_TWO,
            previous_status="submitting",
            fill_quantity=fill,
            payload={"fills": [{"qty": "2", "note": "ü"}]},
        )

    result = export_events(str(tmp_path), fmt="parquet", now=session_now)

    assert [Path(f.key).suffix for f in result.files] == [".parquet", ".parquet"]
    table = pq.read_table(tmp_path / result.files[1].key)
    assert table.schema.equals(parquet_schema())
    rows = table.to_pylist()
    expected = list(OrderEvent.objects.filter(occurred_at=DAY_TWO).order_by("id"))
    assert [r["id"] for r in rows] == [e.id for e in expected]
    filled = rows[-1]
    assert (filled["kind"], filled["to_status"]) == ("filled", "filled")
    assert (filled["fill_quantity"], filled["fill_value"]) == (fill, D("101.2500"))
    assert filled["filled_quantity"] == D("2") and filled["quantity"] == order.quantity
    assert filled["occurred_at"] == DAY_TWO
    assert json.loads(filled["payload"]) == {"fills": [{"qty": "2", "note": "ü"}]}
    assert rows[0]["fill_quantity"] is None and rows[0]["fill_value"] is None
    assert exported_ids_in_folder(tmp_path) == all_ids()


# --- exactly once -----------------------------------------------------------------------------


def test_two_runs_export_each_event_once(two_days, tmp_path, session_now):
    first = export_events(str(tmp_path), now=session_now)
    add_events(two_days[:2], OrderEventKind.CANCELLED, DAY_TWO + timedelta(hours=1))

    second = export_events(str(tmp_path), now=session_now)
    third = export_events(str(tmp_path), now=session_now)

    assert (first.events, second.events, third.events) == (6, 2, 0)
    assert third.files == [] and third.watermark == second.watermark == max(all_ids())
    assert exported_ids_in_folder(tmp_path) == all_ids()  # no event missing, none twice
    assert len(files_under(tmp_path)) == 3


def test_small_batches_write_every_event_once(two_days, tmp_path, session_now):
    result = export_events(str(tmp_path), now=session_now, batch=2)

    ids = all_ids()
    # Batches of two ids; the second one spans both days, so it is two files.
    assert [(f.day.day, f.first_id, f.last_id) for f in result.files] == [
        (18, ids[0], ids[1]),
        (18, ids[2], ids[2]),
        (19, ids[3], ids[3]),
        (19, ids[4], ids[5]),
    ]
    assert exported_ids_in_folder(tmp_path) == all_ids()


def test_a_run_that_dies_between_writing_and_advancing_is_finished_without_a_copy(
    two_days, tmp_path, session_now
):
    # A real failure on the second day's file: a plain file where its folder must go.
    blocker = tmp_path / "order_events" / "date=2026-11-19"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    ids = all_ids()

    with pytest.raises(DestinationError, match="date=2026-11-19"):
        export_events(str(tmp_path), now=session_now)

    cursor = ExportCursor.objects.get()
    assert (cursor.last_event_id, cursor.pending_through_id) == (0, ids[-1])
    written = files_under(tmp_path)
    assert written == [
        f"order_events/date=2026-11-18/events-{ids[0]:012d}-{ids[2]:012d}.jsonl",
        "order_events/date=2026-11-19",
    ]
    # Events keep coming while the destination is broken.
    add_events(two_days[:1], OrderEventKind.CANCELLED, DAY_ONE + timedelta(hours=2))
    blocker.unlink()

    result = export_events(str(tmp_path), now=session_now)

    # The pending batch first, under the same names (the day-one file overwritten), then
    # the new event in a batch of its own.
    assert [f.key for f in result.files][0] == written[0]
    exported = exported_ids_in_folder(tmp_path)
    assert sorted(exported) == all_ids() and len(exported) == 7  # each event once
    assert result.watermark == max(all_ids())
    assert ExportCursor.objects.get().pending_through_id is None


def test_destinations_and_formats_keep_their_own_watermarks(two_days, tmp_path, session_now):
    export_events(str(tmp_path / "a"), fmt="jsonl", now=session_now)
    export_events(str(tmp_path / "a"), fmt="parquet", now=session_now)
    export_events(f"file://{tmp_path / 'b'}", fmt="jsonl", now=session_now)

    assert ExportCursor.objects.count() == 3
    assert set(ExportCursor.objects.values_list("last_event_id", flat=True)) == {max(all_ids())}
    assert exported_ids_in_folder(tmp_path / "b") == all_ids()
    assert sorted(exported_ids_in_folder(tmp_path / "a")) == sorted(all_ids() * 2)


def test_nothing_to_export_writes_nothing(db, tmp_path, session_now):
    result = export_events(str(tmp_path), now=session_now)

    assert (result.events, result.files, result.watermark) == (0, [], 0)
    assert files_under(tmp_path) == []


def test_only_the_watermark_and_the_batch_are_read(two_days, tmp_path, session_now):
    """Queries of a run that exports one batch: the cursor (get_or_create: one read), the
    settled mark (SQLite: one), the plan (lock, n-th id, save: three, plus the transaction's
    statements on PostgreSQL), the batch, the advance. They do not grow with the events."""
    export_events(str(tmp_path / "warm"), now=session_now)
    with CaptureQueriesContext(connection) as small:
        export_events(str(tmp_path / "small"), now=session_now)
    add_events(two_days * 5, OrderEventKind.CANCELLED, DAY_TWO)
    with CaptureQueriesContext(connection) as large:
        export_events(str(tmp_path / "large"), now=session_now)

    assert len(small.captured_queries) == len(large.captured_queries)


# --- destinations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://lake", S3Destination("lake", "")),
        ("s3://lake/engine/prod/", S3Destination("lake", "engine/prod")),
        ("file:///srv/lake", FolderDestination(Path("/srv/lake"))),
        ("file://localhost/srv/lake", FolderDestination(Path("/srv/lake"))),
        ("/srv/lake/../lake", FolderDestination(Path("/srv/lake"))),
    ],
)
def test_destinations_are_parsed(text, expected):
    assert open_destination(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no destination"),
        ("ftp://host/lake", "unknown destination scheme 'ftp'"),
        ("s3:///prefix", "needs a bucket"),
        ("s3://key:secret@lake/prefix", "must not carry credentials"),
        ("file://otherhost/lake", "file:// destinations are local"),
        ("s3://lake/prefix?versioning=1", "no query"),
    ],
)
def test_bad_destinations_are_refused(text, message):
    with pytest.raises(DestinationError, match=message):
        open_destination(text)


def test_a_folder_that_is_a_file_is_refused_before_anything_is_planned(
    two_days, tmp_path, session_now
):
    target = tmp_path / "lake"
    target.write_text("a file")

    with pytest.raises(DestinationError, match="cannot use folder"):
        export_events(str(target), now=session_now)

    assert not ExportCursor.objects.exists()


# --- S3: a real S3-compatible server on 127.0.0.1 ---------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, settings) -> str:
    settings.EVENTS_S3_ENDPOINT_URL = s3_endpoint
    settings.EVENTS_S3_ACCESS_KEY_ID = "lake-key"
    settings.EVENTS_S3_SECRET_ACCESS_KEY = "lake-secret"
    settings.EVENTS_S3_REGION = "us-east-1"
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


def bucket_objects(name: str, prefix: str = "") -> dict[str, bytes]:
    client = s3_client()
    listed = client.list_objects_v2(Bucket=name, Prefix=prefix)
    return {
        item["Key"]: client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
        for item in listed.get("Contents", [])
    }


def test_s3_export_writes_day_objects_under_the_prefix(two_days, bucket, session_now):
    ids = all_ids()

    result = export_events(f"s3://{bucket}/engine/prod", fmt="jsonl", now=session_now)
    again = export_events(f"s3://{bucket}/engine/prod", fmt="jsonl", now=session_now)

    objects = bucket_objects(bucket)
    assert sorted(objects) == [
        f"engine/prod/order_events/date=2026-11-18/events-{ids[0]:012d}-{ids[2]:012d}.jsonl",
        f"engine/prod/order_events/date=2026-11-19/events-{ids[3]:012d}-{ids[5]:012d}.jsonl",
    ]
    exported = [obj["id"] for key in sorted(objects) for obj in jsonl_objects(objects[key])]
    assert exported == ids
    assert (result.events, again.events) == (6, 0)
    assert ExportCursor.objects.get().destination == f"s3://{bucket}/engine/prod"


def test_s3_export_as_parquet(two_days, bucket, session_now):
    export_events(f"s3://{bucket}", fmt="parquet", now=session_now)

    objects = bucket_objects(bucket, prefix="order_events/")
    tables = [pq.read_table(io.BytesIO(objects[key])) for key in sorted(objects)]
    assert all(t.schema.equals(parquet_schema()) for t in tables)
    assert [i for t in tables for i in t.column("id").to_pylist()] == all_ids()


def test_a_missing_bucket_is_a_command_error(two_days, bucket, session_now):
    with pytest.raises(CommandError, match="cannot use bucket"):
        call_command("export_events", "--destination", f"s3://{bucket}-missing")
    assert not ExportCursor.objects.exists()


# --- the command, the task and the schedule ---------------------------------------------------


def run(*args) -> str:
    out = io.StringIO()
    call_command("export_events", *args, stdout=out)
    return out.getvalue()


def test_command_prints_what_it_wrote(two_days, tmp_path):
    output = run("--destination", str(tmp_path), "--format", "parquet")

    lines = output.splitlines()
    assert [line.split()[1] for line in lines[:2]] == [
        str(p.relative_to(tmp_path)) for p in sorted(tmp_path.rglob("*.parquet"))
    ]
    assert lines[-1].startswith(f"6 event(s) in 2 file(s) to {tmp_path.as_uri()} (parquet)")


def test_command_json_output_and_defaults_from_the_settings(two_days, tmp_path, settings):
    settings.EVENTS_EXPORT_DESTINATION = str(tmp_path)
    settings.EVENTS_EXPORT_FORMAT = "jsonl"

    result = json.loads(run("--json"))

    assert (result["destination"], result["format"], result["events"]) == (
        tmp_path.as_uri(),
        "jsonl",
        6,
    )
    assert [f["key"] for f in result["files"]] == files_under(tmp_path)
    assert json.loads(run("--json"))["events"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no destination"),
        (("--destination", "ftp://host/lake"), "unknown destination scheme"),
    ],
)
def test_command_refuses_a_bad_destination(db, settings, args, message):
    settings.EVENTS_EXPORT_DESTINATION = ""
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not ExportCursor.objects.exists()


def test_task_exports_only_when_a_destination_is_set(two_days, tmp_path, settings):
    settings.EVENTS_EXPORT_DESTINATION = ""
    assert export_order_events() == "EVENTS_EXPORT_DESTINATION is not set: nothing to export"
    assert not ExportCursor.objects.exists()

    settings.EVENTS_EXPORT_DESTINATION = f"file://{tmp_path}"
    settings.EVENTS_EXPORT_FORMAT = "parquet"
    assert export_order_events().startswith("6 event(s) in 2 file(s)")
    assert exported_ids_in_folder(tmp_path) == all_ids()


def test_the_export_is_scheduled_every_five_minutes():
    (spec,) = [s for s in SCHEDULES if s.func == "decisions.tasks.export_order_events"]
    assert (spec.schedule_type, spec.minutes) == ("I", 5)


# --- PostgreSQL: an event committed late is not skipped ---------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_still_uncommitted_holds_the_export_back(source_tiers, tmp_path):
    """Event N is inserted by a transaction that stays open while event N+1 commits: the
    export must not move its watermark past N before N's transaction ends."""
    pool = factories.make_pool(now=DAY_ONE)
    (early, late) = make_orders(pool, DAY_ONE, ["AAA", "BBB"])
    OrderEvent.objects.all().delete()  # the cycle's queued events: start from a clean table
    inserted, release = threading.Event(), threading.Event()
    failures = []

    def slow_writer():
        try:
            with transaction.atomic():
                Order.objects.filter(pk=early.pk).update(status_reason="held open")
                record_order_event(early, OrderEventKind.CANCELLED, now=DAY_ONE)
                inserted.set()
                release.wait(timeout=30)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert inserted.wait(timeout=30)
        with transaction.atomic():
            Order.objects.filter(pk=late.pk).update(status_reason="committed first")
            committed = record_order_event(late, OrderEventKind.CANCELLED, now=DAY_ONE)

        assert settled_high_mark(timeout=0.3) is None
        held = export_events(str(tmp_path), now=DAY_ONE, settle_timeout=0.3)
        assert (held.deferred, held.events, held.watermark) == (True, 0, 0)
    finally:
        release.set()
        writer.join(timeout=30)
    assert not failures

    result = export_events(str(tmp_path), now=DAY_ONE, settle_timeout=5)

    ids = all_ids()
    assert len(ids) == 2 and ids[1] == committed.id
    assert exported_ids_in_folder(tmp_path) == ids  # the late commit's event, in id order
    assert (result.deferred, result.watermark) == (False, committed.id)


def test_export_cursors_are_shown_read_only_in_the_admin(admin_client, two_days, tmp_path):
    export_events(str(tmp_path), now=DAY_TWO)
    cursor = ExportCursor.objects.get()

    listing = admin_client.get(reverse("admin:execution_exportcursor_changelist"))
    change = reverse("admin:execution_exportcursor_change", args=[cursor.pk])

    assert listing.status_code == 200 and tmp_path.as_uri() in listing.content.decode()
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"last_event_id": "0"}).status_code == 403
    assert admin_client.get(reverse("admin:execution_exportcursor_add")).status_code == 403
    assert ExportCursor.objects.get().last_event_id == max(all_ids())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EVENTS_EXPORT_FORMAT", "csv", "EVENTS_EXPORT_FORMAT='csv' is not one of jsonl, parquet"),
        ("EVENTS_EXPORT_DESTINATION", "ftp://host/lake", "EVENTS_EXPORT_DESTINATION must be"),
        ("EVENTS_S3_ENDPOINT_URL", "minio:9000", "EVENTS_S3_ENDPOINT_URL must be a URL"),
    ],
)
def test_a_bad_export_setting_stops_start_up(variable, value, message):
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=root,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
