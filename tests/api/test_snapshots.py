"""GET /api/v1/snapshots/: the daily pool snapshots."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from portfolio.models import PoolSnapshot
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/snapshots/"


def ids(client, **params) -> set:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def add_snapshots(pool, now, count: int) -> list[PoolSnapshot]:
    """One snapshot a day for ``count`` days back from ``now``."""
    return PoolSnapshot.objects.bulk_create(
        PoolSnapshot(
            pool=pool,
            session=(now - timedelta(days=i)).date(),
            taken_at=now - timedelta(days=i),
            total_value=Decimal("100000"),
            cash=Decimal("100000"),
            reserve_balance=Decimal("0"),
            active_pool=Decimal("100000"),
            unrealized_gain=Decimal("0"),
            realized_gain=Decimal("0"),
            risk_adjusted_return=float("nan") if i == 0 else 1.25,
            risk_tier="moderate",
        )
        for i in range(count)
    )


def test_viewer_reads_snapshots(viewer, pool, session_now):
    add_snapshots(pool, session_now, 2)

    response = viewer.get(URL)

    assert response.status_code == 200
    newest, older = response.json()["results"]
    assert (newest["pool"], newest["session"]) == (pool.name, "2026-11-18")
    assert newest["taken_at"] == "2026-11-18T16:00:00Z"
    assert newest["total_value"] == "100000.0000"
    # A metric that is not a number is null: strict JSON has no NaN.
    assert newest["risk_adjusted_return"] is None and older["risk_adjusted_return"] == 1.25


def test_filters_by_pool_and_time(viewer, pool, session_now):
    mine = {s.pk for s in add_snapshots(pool, session_now, 3)}
    theirs = {
        s.pk for s in add_snapshots(factories.make_pool(now=session_now, name="b"), session_now, 1)
    }

    assert ids(viewer, pool=pool.name) == mine
    assert ids(viewer, pool="b") == theirs
    assert len(ids(viewer, taken_after="2026-11-17T00:00:00Z")) == 3
    assert len(ids(viewer, taken_before="2026-11-17T00:00:00Z", pool=pool.name)) == 1
    assert viewer.get(URL, {"taken_after": "last week"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_snapshots(pool, session_now, 12)

    ids_seen = walk(viewer, URL, page_size=5)

    assert len(ids_seen) == len(set(ids_seen)) == 12
    assert set(ids_seen) == set(PoolSnapshot.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_snapshots(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_snapshots_are_read_only_and_need_a_reading_role(viewer, ingest, anonymous, db):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
