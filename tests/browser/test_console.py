"""The operator console as a person uses it, in Debian's Chromium: log in, read the pools
overview, open a pool's dashboard, follow a skip reason, read a decision, halt and resume.

Each scenario leaves screenshots under ``var/screenshots/`` (light and dark theme where the
page is a console page); see docs/operations.md, "The operator console".
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from decisions.models import DecisionRecord
from portfolio.models import OperatorAction, Pool
from tests.browser.conftest import BROWSER_DB, shoot, shoot_both_themes
from tests.browser.desk import PASSWORD, USERNAME, build_desk

pytestmark = [BROWSER_DB]


@pytest.fixture
def desk(console_server):
    return build_desk(timezone.now())


def log_in(page, base: str, next_path: str = "/admin/") -> None:
    page.goto(f"{base}{next_path}")
    assert "/admin/login/" in page.url
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert "/admin/login/" not in page.url


def test_operator_logs_in_and_finds_the_console_first(page, console_server, desk):
    page.goto(f"{console_server}/admin/")
    assert "/admin/login/" in page.url
    shoot(page, "01-login")
    log_in(page, console_server)
    first_module = page.locator("#content-main .module").first
    assert first_module.get_attribute("id") == "operator-console"
    assert first_module.get_by_role("link", name="Pools overview").is_visible()
    shoot(page, "01-index")


def test_overview_makes_the_pool_with_a_breaker_stand_out(page, console_server, desk):
    log_in(page, console_server)
    page.get_by_role("link", name="Pools overview").click()
    rows = page.locator("#pools-overview tbody tr.pool-row")
    assert rows.count() == 2
    hot = rows.first  # the pool that needs attention comes first
    assert hot.get_attribute("data-pool") == "hot-desk"
    assert hot.get_attribute("data-level") == "alert"
    badge = hot.locator(".badge-alert", has_text="breaker in force: daily_loss")
    assert badge.is_visible()
    assert re.search(r"\(1 h \d\d min left\)", badge.inner_text())
    calm = page.locator('tr.pool-row[data-pool="calm-desk"]')
    assert calm.get_attribute("data-level") != "alert"
    assert "breaker" not in calm.locator("td.attention").inner_text()

    def edge(row) -> str:
        return row.evaluate("e => getComputedStyle(e).borderLeftColor")

    assert edge(hot) != edge(calm)  # the colour says it too, not the words alone
    shoot_both_themes(page, "02-overview")


def test_dashboard_draws_the_charts_and_the_commitments(page, console_server, desk):
    log_in(page, console_server)
    page.goto(f"{console_server}/admin/portfolio/pool/overview/")
    page.get_by_role("link", name="hot-desk").click()
    assert page.url.endswith(f"/admin/portfolio/pool/{desk.hot.pk}/dashboard/")
    expected = {"value": 2, "decline": 1, "reserve": 1, "exposure": 2}
    for name, series in expected.items():
        chart = page.locator(f'#charts svg[data-chart="{name}"]')
        assert chart.get_attribute("data-series-count") == str(series)
        assert chart.locator("polyline[data-series]").count() == series
        assert chart.bounding_box()["width"] > 200  # drawn, not an empty box
    decline = page.locator('svg[data-chart="decline"]')
    assert decline.locator("line[data-level]").count() == 2  # tier downgrade, emergency
    assert page.locator('svg[data-chart="reserve"] line[data-level]').count() == 2
    open_commitments = desk.hot.commitments.filter(status="open").count()
    assert open_commitments > 0
    price_lines = page.locator("#commitments svg.price-line")
    assert price_lines.count() == open_commitments
    assert price_lines.first.locator("line[data-level]").count() == 3
    # The stylesheet comes from WhiteNoise with DEBUG off, as production serves it.
    css = page.request.get(f"{console_server}/static/portfolio/console.css")
    assert css.status == 200 and "cache-control" in css.headers
    shoot_both_themes(page, "03-dashboard")


def test_skip_reason_leads_to_the_filtered_decisions(page, console_server, desk):
    log_in(page, console_server, f"/admin/portfolio/pool/{desk.hot.pk}/dashboard/")
    row = page.locator('#skips-last-session tr[data-reason="insufficient_confidence"]')
    counted = int(row.locator("td.num").first.inner_text())
    row.locator("a.skip-link").click()
    page.wait_for_load_state()
    assert "/admin/decisions/decisionrecord/" in page.url
    listed = page.locator("#result_list tbody tr")
    assert listed.count() == counted
    for text in listed.all_inner_texts():
        assert "Confidence below the tier minimum" in text
        assert "hot-desk" in text
    expected = DecisionRecord.objects.filter(
        pool=desk.hot, skip_reason="insufficient_confidence"
    ).count()
    assert counted == expected
    shoot(page, "04-skip-reason-decisions")


def test_decision_page_shows_the_chain_the_trace_and_the_waterfall(page, console_server, desk):
    log_in(page, console_server, f"/admin/decisions/decisionrecord/{desk.act.pk}/change/")
    chain = page.locator("ol.decision-chain")
    for step in ("recommendation", "decision", "order", "risk evaluation", "fill", "commitment"):
        assert chain.locator(f'li[data-step="{step}"] a.chain-step').count() >= 1, step
    steps = len(desk.act.decision_trace["sizing"]["waterfall"])
    waterfall = page.locator('svg[data-chart="waterfall"]')
    assert waterfall.get_attribute("data-bar-count") == str(steps)  # one bar per step
    assert waterfall.locator("rect.bar").count() == steps
    assert waterfall.bounding_box()["width"] > 200
    assert page.locator(".waterfall-table table tbody tr").count() == steps
    assert page.get_by_text("Checks, in the order they ran").is_visible()
    chain.locator('li[data-step="order"] a').first.click()
    assert "/admin/execution/order/" in page.url
    page.go_back()
    shoot_both_themes(page, "05-decision")


def test_operator_halts_and_resumes_the_pool_from_the_dashboard(page, console_server, desk):
    dashboard = f"/admin/portfolio/pool/{desk.hot.pk}/dashboard/"
    log_in(page, console_server, dashboard)
    page.click("#action-halt")
    page.fill("#id_reason", "broker maintenance window")
    page.get_by_role("button", name=re.compile("^Review")).click()
    confirmation = page.locator("#confirmation")
    assert "Halted" in confirmation.inner_text()
    assert "no → yes" in confirmation.inner_text()
    assert "broker maintenance window (operator)" in confirmation.inner_text()
    assert Pool.objects.get(pk=desk.hot.pk).halted is False  # nothing changed yet
    shoot(page, "06-halt-confirmation")
    page.get_by_role("button", name="Yes, halt the pool").click()
    page.wait_for_load_state()
    assert page.url.endswith(dashboard)
    assert page.locator("#attention .badge-alert", has_text="halted").is_visible()
    row = page.locator('#last-actions tr.operator-action[data-action="halt"]').first
    assert "broker maintenance window" in row.inner_text()
    assert "operator (admin)" in row.inner_text()
    audit = OperatorAction.objects.filter(pool=desk.hot, action="halt").get()
    assert (audit.actor, audit.via) == ("operator", "admin")
    shoot_both_themes(page, "06-halted")

    page.click("#action-resume")
    page.fill("#id_reason", "maintenance over")
    page.get_by_role("button", name=re.compile("^Review")).click()
    assert "yes → no" in page.locator("#confirmation").inner_text()
    page.get_by_role("button", name="Yes, resume the pool").click()
    page.wait_for_load_state()
    assert page.url.endswith(dashboard)
    assert page.locator("#attention .badge-alert", has_text="halted").count() == 0
    assert page.locator('#last-actions tr.operator-action[data-action="resume"]').count() == 1
    assert Pool.objects.get(pk=desk.hot.pk).halted is False
    shoot(page, "06-resumed")
