"""GET /api/v1/tier-history/: every change of a pool's risk tier."""

from __future__ import annotations

from datetime import timedelta

from portfolio.actions import set_risk_tier
from portfolio.models import RiskTierHistory
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/tier-history/"


def ids(client, **params) -> set:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def step_tiers(pool, now, count: int) -> None:
    """``count`` manual tier changes, one a minute, through the audited action."""
    tiers = ["conservative", "aggressive", "moderate"]
    for i in range(count):
        set_risk_tier(
            pool, tiers[i % 3], actor="tests", reason="test", now=now + timedelta(minutes=i)
        )


def test_viewer_reads_tier_history(viewer, pool, session_now):
    step_tiers(pool, session_now + timedelta(minutes=1), 1)

    response = viewer.get(URL)

    assert response.status_code == 200
    change, created = response.json()["results"]
    assert (change["previous_tier"], change["new_tier"]) == ("moderate", "conservative")
    assert (change["trigger"], change["actor"], change["reason"]) == ("manual", "tests", "test")
    assert change["changed_at"] == "2026-11-18T16:01:00Z"
    assert created["trigger"] == "initial" and created["pool"] == pool.name


def test_filters_by_pool_trigger_tier_and_time(viewer, pool, session_now):
    step_tiers(pool, session_now + timedelta(hours=1), 2)
    other = factories.make_pool(now=session_now, name="b")
    initial = set(RiskTierHistory.objects.filter(trigger="initial").values_list("id", flat=True))

    assert len(ids(viewer, pool=pool.name)) == 3 and len(ids(viewer, pool="b")) == 1
    assert ids(viewer, trigger="initial") == initial
    assert len(ids(viewer, new_tier="aggressive")) == 1
    assert ids(viewer, changed_before="2026-11-18T16:30:00Z") == initial
    assert len(ids(viewer, changed_after="2026-11-18T16:30:00Z", pool=other.name)) == 0
    assert viewer.get(URL, {"new_tier": "reckless"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    step_tiers(pool, session_now, 9)

    seen = walk(viewer, URL, page_size=4)

    assert len(seen) == len(set(seen)) == 10
    assert set(seen) == set(RiskTierHistory.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    step_tiers(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_tier_history_is_read_only_and_needs_a_reading_role(viewer, ingest, anonymous, db):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
