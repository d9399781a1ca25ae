"""``GET /api/v1/pools/{name}/gate-results/``: what each gate saved or cost, over HTTP.

The decisions are the desk of ``tests/test_gate_results.py`` (made by the real engine), two
sessions before the wall clock, since the endpoint follows the paths up to the request's time;
AAA crosses its stop at that day's close (87 × (47.5 − 50) = −217.50), the others stay open at
their entry.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Pool
from tests import factories
from tests.api.conftest import count_queries
from tests.test_gate_results import build_desk, close_bar


@pytest.fixture
def desk(db) -> tuple[Pool, str]:
    """The pool and the New York date of its decisions."""
    now = timezone.now()
    calendar = get_market_calendar(now)
    day = calendar.previous_session(calendar.previous_session(calendar.current_session(now)))
    pool = factories.make_pool(now=now, name="api-gates")
    build_desk(pool, calendar.session_open(day) + timedelta(minutes=90))
    close_bar("AAA", day, "47.5", "50.5", "47")
    return pool, day.isoformat()


def url(pool: Pool | str) -> str:
    return f"/api/v1/pools/{getattr(pool, 'name', pool)}/gate-results/"


def test_a_viewer_reads_each_gate_with_what_it_kept_out(viewer, desk):
    pool, day = desk

    response = viewer.get(url(pool), {"from": day, "to": day})

    assert response.status_code == 200, response.content
    body = response.json()
    assert [
        (r["skip_reason"], r["kept_out"], r["result"], r["no_value"]) for r in body["reasons"]
    ] == [
        ("insufficient_confidence", 3, "-217.50", 0),
        ("performance_report_imminent", 1, "0.00", 0),
        ("no_current_value", 0, "0.00", 1),
    ]
    assert (body["kept_out"], body["result"], body["no_value"]) == (4, "-217.50", 1)
    assert [(p["start"], p["kept_out"], p["result"]) for p in body["periods"]] == [
        (day, 4, "-217.50")
    ]
    exits = {c["entity"]: (c["exit_reason"], c["units"], c["result"]) for c in body["commitments"]}
    assert exits == {
        "AAA": ("risk_threshold", "87.000000", "-217.50"),
        "EEE": ("still_open", "218.000000", "0.00"),
        "GGG": ("still_open", "109.000000", "0.00"),
        "BBB": ("still_open", "87.000000", "0.00"),
    }
    assert body["pool"] == pool.name and body["period"] == "day"


def test_the_default_window_is_the_last_thirty_days(viewer, desk):
    pool, _ = desk

    body = viewer.get(url(pool)).json()

    assert body["kept_out"] == 4
    assert body["result"] == "-217.50"


def test_weeks_bucket_the_periods(operator, desk):
    pool, day = desk

    body = operator.get(url(pool), {"from": day, "to": day, "period": "week"}).json()

    assert len(body["periods"]) == 1 and body["periods"][0]["start"] <= day


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "2026-11-20", "to": "2026-11-18"}, "to"),
        ({"period": "month"}, "period"),
    ],
)
def test_a_bad_date_or_period_is_a_400_naming_the_field(viewer, desk, params, field):
    pool, _ = desk

    response = viewer.get(url(pool), params)

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_an_unknown_pool_is_a_json_404(viewer, db):
    response = viewer.get(url("no-such-pool"))

    assert response.status_code == 404
    assert "No pool named" in response.json()["detail"]


def test_who_may_read(anonymous, no_role, ingest, viewer, operator, desk):
    pool, _ = desk
    assert anonymous.get(url(pool)).status_code == 401
    assert no_role.get(url(pool)).status_code == 403
    assert ingest.get(url(pool)).status_code == 403
    assert viewer.post(url(pool), {}, format="json").status_code == 403
    assert operator.post(url(pool), {}, format="json").status_code == 405


def test_the_queries_do_not_grow_with_the_decisions(viewer, desk):
    pool, day = desk
    few = count_queries(viewer, url(pool), **{"from": day, "to": day})
    cycle_at = DecisionRecord.objects.filter(pool=pool).latest("evaluated_at").evaluated_at
    cycle_at += timedelta(minutes=5)
    for i in range(10):
        factories.add_bars(f"Q{i:02d}", cycle_at, [30.0] * 40, spread=1.0)
        factories.make_recommendation(f"Q{i:02d}", cycle_at, confidence="0.30")
    run_decision_cycle(pool.pk, cycle_at, dispatch=False)

    many = count_queries(viewer, url(pool), **{"from": day, "to": day})

    assert viewer.get(url(pool), {"from": day, "to": day}).json()["kept_out"] == 14
    assert many == few
