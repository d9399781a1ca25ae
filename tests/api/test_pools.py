"""GET /api/v1/pools/ and /api/v1/pools/{name}/: pools and their state through the read model."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from decisions.engine import run_decision_cycle
from execution.worker import drain_queued_orders
from portfolio.actions import halt_pool
from portfolio.models import CircuitBreakerEvent, Commitment, Pool
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/pools/"


@pytest.fixture
def held(pool, session_now) -> Commitment:
    """One open commitment, and breakers in force now: pool-wide and an entity cooldown."""
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    drain_queued_orders(pool, session_now)
    now = timezone.now()
    factories.make_entity("BBB")
    for kind, entity in [("daily_loss", None), ("single_position", "BBB")]:
        CircuitBreakerEvent.objects.create(
            pool=pool,
            trigger_type=kind,
            entity_id=entity,
            triggered_at=now - timedelta(minutes=5),
            expires_at=now + timedelta(hours=2),
        )
    return Commitment.objects.get(pool=pool)


def test_viewer_lists_pools_with_their_headline_state(viewer, held, pool):
    pool.refresh_from_db()

    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["name"], row["mode"], row["adapter"]) == (pool.name, "simulation", "paper")
    assert (row["risk_tier"], row["halted"], row["open_commitments"]) == ("moderate", False, 1)
    assert Decimal(row["cash"]) == pool.cash
    # No bar is current as of the real clock: the commitment is valued at its entry.
    total = pool.cash + held.units * held.entry_value
    assert Decimal(row["total_value"]) == total
    assert Decimal(row["active_pool"]) == total - pool.reserve_balance
    assert Decimal(row["daily_loss_limit"]) == (Decimal("0.05") * total).quantize(Decimal("0.0001"))
    assert row["daily_loss_pct"] == "0.050000"
    assert row["breakers_pool_wide"] == ["daily_loss"] and row["breakers_until"].endswith("Z")
    for key in ("pool_exposure", "exposure_cap", "daily_gain", "reserve_balance"):
        assert isinstance(row[key], str)


def test_pool_state_shows_breakers_cooldowns_and_commitment_levels(operator, held, pool):
    response = operator.get(f"{URL}{pool.name}/")

    assert response.status_code == 200
    state = response.json()
    (position,) = state["positions"]
    assert position["commitment_id"] == held.pk and position["symbol"] == "AAA"
    assert Decimal(position["risk_threshold"]) == held.risk_threshold
    assert Decimal(position["gain_target"]) == held.gain_target
    assert position["current_value"] is None and position["trailing_active"] is False
    assert [e["type"] for e in state["breakers"]["events"]] == ["daily_loss", "single_position"]
    assert state["breakers"]["pool_wide"] == ["daily_loss"]
    assert [c["entity"] for c in state["entity_cooldowns"]] == ["BBB"]
    assert state["entity_cooldowns"][0]["until"].endswith("Z")
    assert state["tier"]["name"] == "moderate" and state["pending"] == []
    assert Decimal(state["exposure_cap"]) == (
        Decimal(state["tier"]["max_portfolio_heat"]) * Decimal(state["active_pool"])
    ).quantize(Decimal("0.0001"))


@pytest.mark.parametrize("name", ["no-such-pool", "bad name!", "nul%00"])
def test_an_unknown_pool_is_a_json_404(viewer, db, name):
    response = viewer.get(f"{URL}{name}/")

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_filters_by_mode_and_halted(viewer, pool, session_now):
    factories.make_pool(now=session_now, name="prod", mode="production")
    halt_pool("prod", actor="tests", reason="test halt", now=session_now)

    def names(**params):
        response = viewer.get(URL, params)
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["results"]]

    assert names(mode="production") == names(halted=True) == ["prod"]
    assert names(halted=False) == [pool.name]
    assert viewer.get(URL, {"mode": "live"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, db, session_now):
    for i in range(7):
        factories.make_pool(now=session_now, name=f"pool-page-{i}")

    names = walk(viewer, URL, key="name", page_size=3)

    assert names == sorted(Pool.objects.values_list("name", flat=True))


def test_each_listed_pool_costs_a_fixed_number_of_queries(viewer, db, session_now):
    for i in range(4):
        factories.make_pool(now=session_now, name=f"pool-q-{i}")

    one, two, four = (count_queries(viewer, URL, page_size=n) for n in (1, 2, 4))

    per_pool = two - one
    assert four - one == 3 * per_pool and per_pool <= 7


def test_pools_are_read_only_for_readers(viewer, operator, pool):
    assert viewer.post(URL, {"name": "new"}, format="json").status_code == 403
    assert operator.delete(f"{URL}{pool.name}/").status_code == 405


def test_ingest_only_gets_403_and_anonymous_401(ingest, anonymous, pool):
    assert ingest.get(URL).status_code == 403
    assert ingest.get(f"{URL}{pool.name}/").status_code == 403
    assert anonymous.get(f"{URL}{pool.name}/").status_code == 401
