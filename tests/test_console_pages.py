"""The operator console without a browser: the SVG charts of ``project/charts.py``, the pools
overview, a pool's dashboard, the decision page's chain and waterfall, the confirmation of the
operator actions, and query counts that do not grow with the number of decisions or orders."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from decisions.models import DecisionRecord, Recommendation
from execution.models import Order, OrderStatus
from portfolio.admin import format_duration, level_distance
from portfolio.models import OperatorAction, Pool
from project import charts
from tests.browser.desk import Desk, build_desk

_keys = itertools.count(1)


# --- the charts module ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([1, 2, 1.5, 3], [1, 2, 2, 3]),
        ([None, 5, None, 4], [None, 5, None, 5]),
        ([3, 3, 3], [3, 3, 3]),
    ],
)
def test_running_max_is_the_high_water_line(values, expected):
    assert charts.running_max(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100, 110, 99, 110], [0.0, 0.0, 0.1, 0.0]),
        ([100, 75], [0.0, 0.25]),
        ([None, 100, 80], [None, 0.0, 0.2]),
        ([0, 0], [None, None]),
    ],
)
def test_decline_from_peak_is_a_fraction_of_the_running_peak(values, expected):
    assert charts.decline_from_peak(values) == pytest.approx(expected)


def svg_count(svg: str, tag: str) -> int:
    return len(re.findall(rf"<{tag}\b", svg))


def test_line_chart_draws_each_series_and_level_and_says_how_many():
    svg = charts.line_chart(
        "value",
        "Pool value",
        ["2026-11-16", "2026-11-17", "2026-11-18"],
        [charts.Series("value", (100, 110, 105)), charts.Series("high", (100, 110, 110))],
        levels=[charts.Level("limit", 90)],
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'data-series-count="2"' in svg
    assert svg.count('<polyline class="series') == 2
    assert 'data-level="limit"' in svg
    assert "<script" not in svg


def test_line_chart_escapes_names_and_labels():
    svg = charts.line_chart("x", "<b>", ['<img src=x onerror="1">'], [charts.Series("<i>", (1,))])
    assert "<b>" not in svg and "<i>" not in svg and "<img" not in svg
    assert "&lt;b&gt;" in svg


def test_line_chart_without_values_says_so():
    svg = charts.line_chart("x", "Empty", [], [charts.Series("value", ())])
    assert "No data yet" in svg
    assert svg_count(svg, "polyline") == 0


def test_line_chart_skips_missing_points():
    svg = charts.line_chart("x", "Gaps", ["a", "b", "c"], [charts.Series("v", (1, None, 3))])
    points = re.search(r'points="([^"]*)"', svg).group(1).split()
    assert len(points) == 2


def test_price_line_draws_every_level_even_outside_the_prices():
    svg = charts.price_line(
        "AAA",
        [100, 101, 102],
        [charts.Level("risk threshold", 80, "alert"), charts.Level("gain target", 130, "good")],
    )
    assert svg_count(svg, "line") == 2
    ys = [float(y) for y in re.findall(r'<line[^>]* y1="([\d.]+)"', svg)]
    assert all(0 <= y <= 56 for y in ys)
    assert 'data-series-count="1"' in svg


def test_bar_chart_draws_one_bar_per_step_from_zero():
    svg = charts.bar_chart(
        "waterfall",
        "Sizing",
        [charts.Bar("base", 100), charts.Bar("clamp", 50, "cut"), charts.Bar("units", -1, "zero")],
    )
    assert 'data-bar-count="3"' in svg
    widths = [float(w) for w in re.findall(r'<rect[^>]* width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert widths[2] == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59, "59 s"), (61, "1 min 01 s"), (3600, "1 h 00 min"), (7199, "1 h 59 min")],
)
def test_time_left_reads_in_hours_minutes_and_seconds(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("current", "level", "above", "fraction", "atrs"),
    [
        ("100", "90", False, "0.1", "5"),  # a risk threshold 10 % (5 ATR) below
        ("100", "110", True, "0.1", "5"),  # a gain target 10 % above
        ("100", "100", False, "0", "0"),  # the level reached
        ("80", "90", False, "-0.125", "-5"),  # crossed
    ],
)
def test_distance_to_a_level_in_percent_and_atr(current, level, above, fraction, atrs):
    distance = level_distance(Decimal(current), Decimal(level), Decimal("2"), above=above)
    assert distance.fraction == Decimal(fraction)
    assert distance.atrs == Decimal(atrs)
    assert distance.reached is (Decimal(fraction) <= 0)


def test_distance_without_a_current_value_or_level_is_unknown():
    assert level_distance(None, Decimal("1"), None, above=True) is None
    assert level_distance(Decimal("1"), None, None, above=True) is None


# --- the pages ------------------------------------------------------------------------------


@pytest.fixture
def desk(db) -> Desk:
    return build_desk(timezone.now())


@pytest.fixture
def operator_client(client, desk):
    client.login(username="operator", password="console-pass-1")
    return client


def overview_url() -> str:
    return reverse("admin:portfolio_pool_overview")


def dashboard_url(pool: Pool) -> str:
    return reverse("admin:portfolio_pool_dashboard", args=[pool.pk])


def decision_url(decision: DecisionRecord) -> str:
    return reverse("admin:decisions_decisionrecord_change", args=[decision.pk])


def add_order(pool: Pool, status: str, **fields) -> Order:
    n = next(_keys)
    return Order.objects.create(
        pool=pool,
        entity_id="AAA",
        action="act",
        side="buy",
        reason="entry",
        quantity=Decimal("1"),
        estimated_value=Decimal("100"),
        status=status,
        idempotency_key=f"console-{n}",
        broker="paper",
        created_at=fields.pop("created_at", timezone.now()),
        **fields,
    )


def add_rows(pool: Pool, count: int) -> None:
    """``count`` more decisions (skips of new recommendations) and ``count`` more orders."""
    now = timezone.now()
    start = next(_keys) * 100_000
    recommendations = Recommendation.objects.bulk_create(
        [
            Recommendation(
                id=f"bulk-{start + i}",
                entity_id="BBB",
                action="act",
                mode="simulation_eligible",
                confidence=Decimal("0.3"),
                generated_at=now - timedelta(days=1),
            )
            for i in range(count)
        ]
    )
    DecisionRecord.objects.bulk_create(
        [
            DecisionRecord(
                pool=pool,
                recommendation=rec,
                entity_id="BBB",
                action="act",
                outcome="skip",
                skip_reason="insufficient_confidence" if i % 2 else "max_commitments_reached",
                processed=True,
                confidence=Decimal("0.3"),
                risk_tier="moderate",
                active_pool=Decimal("100000"),
                reserve_balance=Decimal("0"),
                evaluated_at=now - timedelta(hours=i % 48),
                last_evaluated_at=now - timedelta(hours=i % 48),
            )
            for i, rec in enumerate(recommendations)
        ]
    )
    Order.objects.bulk_create(
        [
            Order(
                pool=pool,
                entity_id="BBB",
                action="act",
                side="buy",
                reason="entry",
                quantity=Decimal("1"),
                estimated_value=Decimal("50"),
                status=OrderStatus.REJECTED if i % 2 else OrderStatus.FILLED,
                idempotency_key=f"bulk-{start + i}",
                broker="paper",
                created_at=now - timedelta(minutes=i),
            )
            for i in range(count)
        ]
    )


def test_admin_index_opens_with_the_operator_console(operator_client):
    page = operator_client.get(reverse("admin:index")).content.decode()
    assert page.index('id="operator-console"') < page.index('class="app-')
    assert overview_url() in page


def test_overview_puts_the_pool_with_a_breaker_first_and_says_why(operator_client, desk):
    response = operator_client.get(overview_url())
    assert response.status_code == 200
    rows = [row["glance"] for row in response.context["rows"]]
    assert [g.pool.name for g in rows] == ["hot-desk", "calm-desk"]
    hot, calm = rows
    assert hot.level == "alert"
    assert any(item.text.startswith("breaker in force: daily_loss") for item in hot.attention)
    assert calm.attention == ()
    page = response.content.decode()
    assert 'data-pool="hot-desk" data-level="alert"' in page
    assert "all clear" in page


def test_overview_counts_unknown_and_stuck_orders(operator_client, desk):
    now = timezone.now()
    add_order(desk.calm, OrderStatus.UNKNOWN)
    add_order(desk.calm, OrderStatus.SUBMITTING, submitted_at=now - timedelta(minutes=5))
    add_order(desk.calm, OrderStatus.SUBMITTING, submitted_at=now - timedelta(seconds=30))
    response = operator_client.get(overview_url())
    calm = next(r["glance"] for r in response.context["rows"] if r["glance"].pool == desk.calm)
    assert (calm.problems.unknown, calm.problems.stuck) == (1, 1)
    texts = [item.text for item in calm.attention]
    assert "1 order(s) unknown: reconcile" in texts
    assert "1 order(s) stuck submitting" in texts
    assert calm.level == "alert"


def test_dashboard_draws_four_charts_with_their_series(operator_client, desk):
    response = operator_client.get(dashboard_url(desk.hot))
    assert response.status_code == 200
    page = response.content.decode()
    for name, count in {"value": 2, "decline": 1, "reserve": 1, "exposure": 2}.items():
        assert f'data-chart="{name}" data-series-count="{count}"' in page
    assert 'data-level="tier downgrade 15 %"' in page
    assert 'data-level="emergency 25 %"' in page
    assert 'data-level="20 % tier upgrade"' in page
    assert 'data-level="30 % high water"' in page
    open_commitments = desk.hot.commitments.filter(status="open").count()
    assert page.count('class="console-chart price-line"') == open_commitments


def test_dashboard_commitments_show_the_distance_to_each_level(operator_client, desk):
    response = operator_client.get(dashboard_url(desk.hot))
    views = response.context["commitments"]
    assert views
    for view in views:
        p = view.position
        assert view.to_threshold.fraction == (p.current_value - p.risk_threshold) / p.current_value
        assert view.to_target.atrs == (p.gain_target - p.current_value) / p.atr


def test_skip_reason_links_to_exactly_its_decisions(operator_client, desk):
    add_rows(desk.hot, 6)
    response = operator_client.get(dashboard_url(desk.hot))
    counts = {s.reason: s for s in response.context["skips_30_days"]}
    confidence = counts["insufficient_confidence"]
    query = parse_qs(urlsplit(confidence.url).query)
    assert query["pool__id__exact"] == [str(desk.hot.pk)]
    assert query["skip_reason__exact"] == ["insufficient_confidence"]
    listed = operator_client.get(confidence.url)
    assert listed.status_code == 200
    rows = list(listed.context["cl"].result_list)
    assert len(rows) == confidence.decisions
    assert {(r.pool_id, r.skip_reason) for r in rows} == {(desk.hot.pk, "insufficient_confidence")}


def test_decision_page_shows_the_chain_and_the_waterfall_chart(operator_client, desk):
    page = operator_client.get(decision_url(desk.act)).content.decode()
    for step in ("recommendation", "decision", "order", "risk evaluation", "fill", "commitment"):
        assert f'<li data-step="{step}"><span class="chain-kind">{step}</span><a' in page, step
    steps = len(desk.act.decision_trace["sizing"]["waterfall"])
    assert f'data-chart="waterfall" data-series-count="1" data-bar-count="{steps}"' in page


def test_skipped_decision_chain_shows_the_steps_not_reached(operator_client, desk):
    skipped = DecisionRecord.objects.get(pool=desk.hot, recommendation_id="rec-bbb-low")
    page = operator_client.get(decision_url(skipped)).content.decode()
    assert '<li data-step="order"><span class="chain-step missing">' in page
    assert "The sizer did not run for this decision" in page


# --- the confirmation of an action ----------------------------------------------------------


def test_review_repeats_what_will_happen_and_changes_nothing(operator_client, desk):
    url = reverse("admin:portfolio_pool_halt", args=[desk.hot.pk])
    response = operator_client.post(url, {"reason": "desk drill", "_preview": "1"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Confirm: halt hot-desk" in page
    assert "no → yes" in page
    assert "desk drill (operator)" in page
    assert 'name="_submit"' in page
    desk.hot.refresh_from_db()
    assert desk.hot.halted is False
    assert not OperatorAction.objects.filter(pool=desk.hot, action="halt").exists()


def test_confirmed_action_from_the_dashboard_returns_to_it(operator_client, desk):
    url = reverse("admin:portfolio_pool_set_tier", args=[desk.hot.pk])
    preview = operator_client.post(
        url, {"tier": "conservative", "reason": "drill", "_return": "dashboard", "_preview": "1"}
    )
    assert "Moderate → Conservative" in preview.content.decode()
    response = operator_client.post(
        url, {"tier": "conservative", "reason": "drill", "_return": "dashboard", "_submit": "1"}
    )
    assert response.status_code == 302
    assert response.url == dashboard_url(desk.hot)
    desk.hot.refresh_from_db()
    assert desk.hot.risk_tier == "conservative"
    assert OperatorAction.objects.filter(pool=desk.hot, action="set_risk_tier").count() == 1


def test_back_to_the_form_changes_nothing(operator_client, desk):
    url = reverse("admin:portfolio_pool_halt", args=[desk.hot.pk])
    response = operator_client.post(url, {"reason": "second thoughts", "_edit": "1"})
    assert response.status_code == 200
    assert 'name="_preview"' in response.content.decode()
    desk.hot.refresh_from_db()
    assert desk.hot.halted is False


# --- who sees what --------------------------------------------------------------------------


def test_view_only_staff_reads_the_console_without_the_actions(client, desk):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_pool"))
    client.force_login(viewer)
    assert client.get(overview_url()).status_code == 200
    page = client.get(dashboard_url(desk.hot)).content.decode()
    assert 'id="action-halt"' not in page
    assert 'data-chart="value"' in page


def test_staff_without_the_view_permission_gets_403(client, desk):
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(overview_url()).status_code == 403
    assert client.get(dashboard_url(desk.hot)).status_code == 403


def test_anonymous_is_sent_to_the_login_page(client, desk):
    response = client.get(dashboard_url(desk.hot))
    assert response.status_code == 302
    assert "/admin/login/" in response.url


# --- query counts ---------------------------------------------------------------------------


def queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


#: The most queries each page may run, session and user included (the overview's two pools
#: cost the read model's handful each, its reconciliation holds included; the dashboard's gate
#: results three); none grows with the number of decisions or orders.
PAGE_MAX_QUERIES = {"overview": 20, "dashboard": 29, "decision": 11}


@pytest.mark.parametrize("page", sorted(PAGE_MAX_QUERIES))
def test_console_page_queries_do_not_grow_with_decisions_and_orders(operator_client, desk, page):
    urls = {
        "overview": overview_url(),
        "dashboard": dashboard_url(desk.hot),
        "decision": decision_url(desk.act),
    }
    add_rows(desk.hot, 10)
    operator_client.get(urls[page])  # the content types are cached by the first request
    few = queries(operator_client, urls[page])
    add_rows(desk.hot, 300)
    many = queries(operator_client, urls[page])
    assert len(many) == len(few)
    assert len(many) <= PAGE_MAX_QUERIES[page]
    assert not any(
        re.search(r"SELECT COUNT\(\*\) AS \"__count\" FROM \"execution_decisions\"\s*$", sql)
        for sql in many
    )
