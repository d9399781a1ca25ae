"""GET /api/v1/reserve-ledger/: every movement of the reserve."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from portfolio.models import ReserveLedgerEntry
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/reserve-ledger/"


def ids(client, **params) -> set:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def add_entries(pool, now, count: int, *, trigger: str = "manual") -> list[ReserveLedgerEntry]:
    """``count`` movements into the reserve, one a minute back from ``now``."""
    return ReserveLedgerEntry.objects.bulk_create(
        ReserveLedgerEntry(
            pool=pool,
            trigger=trigger,
            amount=Decimal("2.5"),
            balance_after=Decimal("2.5") * (count - i),
            created_at=now - timedelta(minutes=i),
        )
        for i in range(count)
    )


def test_viewer_reads_the_ledger(viewer, pool, session_now):
    (entry,) = add_entries(pool, session_now, 1, trigger="profit_siphon")

    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["id"], row["pool"], row["trigger"]) == (entry.pk, pool.name, "profit_siphon")
    assert (row["amount"], row["balance_after"]) == ("2.5000", "2.5000")
    assert row["created_at"] == "2026-11-18T16:00:00Z" and row["commitment"] is None


def test_filters_by_pool_trigger_and_time(viewer, pool, session_now):
    manual = {e.pk for e in add_entries(pool, session_now, 3)}
    other = factories.make_pool(now=session_now, name="b")
    siphons = {
        e.pk
        for e in add_entries(other, session_now - timedelta(hours=1), 2, trigger="profit_siphon")
    }

    assert ids(viewer, pool=pool.name) == ids(viewer, trigger="manual") == manual
    assert ids(viewer, pool="b") == ids(viewer, trigger="profit_siphon") == siphons
    assert ids(viewer, created_before="2026-11-18T15:30:00Z") == siphons
    assert ids(viewer, created_after="2026-11-18T15:30:00Z") == manual
    assert viewer.get(URL, {"trigger": "gift"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_entries(pool, session_now, 10)

    seen = walk(viewer, URL, page_size=3)

    assert len(seen) == len(set(seen)) == 10
    assert set(seen) == set(ReserveLedgerEntry.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_entries(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_the_ledger_is_read_only_and_needs_a_reading_role(viewer, ingest, anonymous, db):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
