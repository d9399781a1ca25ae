"""GET /api/v1/breaker-events/: every circuit breaker trigger, cleared or not."""

from __future__ import annotations

from datetime import timedelta

from portfolio.actions import clear_breaker
from portfolio.models import CircuitBreakerEvent
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/breaker-events/"


def ids(client, **params) -> set:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def add_events(pool, now, count: int, *, kind: str = "volatility", entity=None):
    """``count`` breaker events, one a minute back from ``now``, each for two hours."""
    return CircuitBreakerEvent.objects.bulk_create(
        CircuitBreakerEvent(
            pool=pool,
            trigger_type=kind,
            entity_id=entity,
            triggered_at=now - timedelta(minutes=i),
            expires_at=now - timedelta(minutes=i) + timedelta(hours=2),
            figures={"test": i},
        )
        for i in range(count)
    )


def test_viewer_reads_breaker_events_with_their_expiry(viewer, pool, session_now):
    (event,) = add_events(pool, session_now, 1, kind="daily_loss")

    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["id"], row["pool"], row["trigger_type"]) == (event.pk, pool.name, "daily_loss")
    assert row["expires_at"] == "2026-11-18T18:00:00Z" and row["figures"] == {"test": 0}
    assert row["cleared_at"] is None and row["entity"] is None


def test_filters_by_pool_entity_type_cleared_and_time(viewer, pool, session_now):
    factories.make_entity("BBB")
    cooldown = {
        e.pk for e in add_events(pool, session_now, 1, kind="single_position", entity="BBB")
    }
    (daily,) = add_events(pool, session_now - timedelta(hours=1), 1, kind="daily_loss")
    clear_breaker(pool, "daily_loss", actor="tests", reason="test", now=session_now)
    other = {
        e.pk for e in add_events(factories.make_pool(now=session_now, name="b"), session_now, 2)
    }

    assert ids(viewer, pool="b") == ids(viewer, trigger_type="volatility") == other
    assert ids(viewer, entity="BBB") == cooldown
    assert ids(viewer, cleared=True) == {daily.pk}
    assert ids(viewer, cleared=False, pool=pool.name) == cooldown
    assert ids(viewer, triggered_before="2026-11-18T15:30:00Z") == {daily.pk}
    assert viewer.get(URL, {"trigger_type": "meltdown"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_events(pool, session_now, 11)

    seen = walk(viewer, URL, page_size=4)

    assert len(seen) == len(set(seen)) == 11
    assert set(seen) == set(CircuitBreakerEvent.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_events(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_breaker_events_are_read_only_and_need_a_reading_role(viewer, ingest, anonymous, db):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
