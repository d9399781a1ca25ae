"""The admin: every page opens, audit rows are read-only, the decision trace is readable, the
changelists stay cheap on large tables, and configuration forms validate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import connection
from django.db.models import Model
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord, Recommendation
from execution.models import Order, RiskEvaluation
from execution.selectors import pool_as_of
from execution.worker import drain_queued_orders
from portfolio import actions
from portfolio.admin import ENGINE_CONFIG_SECTIONS, render_pool_state
from portfolio.config import ENGINE_CONFIG_FIELDS, POOL_RISK_FIELDS, TIER_FIELDS
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    EngineConfig,
    Fill,
    MarketSnapshot,
    OperatorAction,
    Pool,
    PoolRiskConfig,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierConfig,
    RiskTierHistory,
)
from project.admin_tools import ApproximateCount, NoCountPaginator
from tests import factories

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)

AUDIT_MODELS = (
    Recommendation,
    DecisionRecord,
    Order,
    RiskEvaluation,
    Commitment,
    MarketSnapshot,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
    CircuitBreakerEvent,
    Fill,
    OperatorAction,
)
REGISTERED_MODELS = sorted(admin.site._registry, key=lambda m: m._meta.label)

#: Queries of one decision changelist page: session, user, the pool filter's choices, the
#: bounded count and the page itself, plus the planner estimate on PostgreSQL; it must not
#: grow with the number of rows.
DECISION_CHANGELIST_MAX_QUERIES = 6


def changelist_url(model: type[Model]) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


def change_url(obj: Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])


def add_url(model: type[Model]) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_add")


def delete_url(obj: Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[quote(obj.pk)])


def listed(response) -> list[Model]:
    """The rows a changelist response shows."""
    return list(response.context["cl"].result_list)


@pytest.fixture
def audit_pool(db) -> Pool:
    """A pool with an act (ordered, filled, committed), a confidence skip and a defer skip,
    made by the engine and the worker, plus a row in each pool-level audit table."""
    pool = factories.make_pool(now=NOW)
    factories.add_bars("AAA", NOW, sector="Technology")
    factories.add_bars("BBB", NOW, sector="Energy")
    factories.add_bars("CCC", NOW, sector="Health")
    factories.make_recommendation("AAA", NOW, confidence="0.80", rec_id="rec-act")
    factories.make_recommendation("BBB", NOW, confidence="0.30", rec_id="rec-low")
    factories.make_recommendation("CCC", NOW, action="defer", rec_id="rec-defer")
    run_decision_cycle(pool.pk, NOW, dispatch=False)
    drain_queued_orders(pool, NOW)
    commitment = Commitment.objects.get(pool=pool, entity_id="AAA")
    PoolSnapshot.objects.create(
        pool=pool,
        session=NOW.date(),
        taken_at=NOW,
        total_value=Decimal("100000"),
        cash=Decimal("91304.9012"),
        reserve_balance=Decimal("0"),
        active_pool=Decimal("100000"),
        unrealized_gain=Decimal("0"),
        realized_gain=Decimal("0"),
        risk_tier="moderate",
    )
    ReserveLedgerEntry.objects.create(
        pool=pool,
        trigger="manual",
        amount=Decimal("10"),
        balance_after=Decimal("10"),
        commitment=commitment,
        note="test entry",
        created_at=NOW,
    )
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="daily_loss",
        triggered_at=NOW - timedelta(minutes=5),
        expires_at=NOW + timedelta(hours=2),
        figures={"daily_loss_pct": "0.06"},
    )
    actions.change_engine_config(
        pool,
        {"dedupe_ttl_hours": "12"},
        actor="ops",
        reason="shorter dedupe window",
        now=NOW,
        via="command",
    )
    return pool


def test_audit_pool_has_every_audit_row(audit_pool):
    for model in AUDIT_MODELS:
        assert model.objects.exists(), model


# --- every page opens -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda m: m._meta.label)
def test_every_registered_changelist_returns_200(admin_client, audit_pool, model):
    response = admin_client.get(changelist_url(model))
    assert response.status_code == 200


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m._meta.label)
def test_every_audit_change_page_returns_200(admin_client, audit_pool, model):
    for obj in model.objects.all()[:3]:
        response = admin_client.get(change_url(obj))
        assert response.status_code == 200, obj


def test_every_model_of_the_project_is_registered():
    from django.apps import apps

    for app in ("portfolio", "decisions", "execution"):
        for model in apps.get_app_config(app).get_models():
            assert admin.site.is_registered(model), model


# --- audit rows are read-only ---------------------------------------------------------------------


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m._meta.label)
def test_audit_model_refuses_add_change_and_delete(admin_client, audit_pool, model):
    obj = model.objects.all()[0]
    before = model_to_dict(obj)
    data = {key: "" if value is None else value for key, value in before.items()}
    data = {key: value for key, value in data.items() if not isinstance(value, dict | list)}

    assert admin_client.get(add_url(model)).status_code == 403
    assert admin_client.post(add_url(model), data).status_code == 403
    assert admin_client.post(change_url(obj), data).status_code == 403
    assert admin_client.get(delete_url(obj)).status_code == 403
    assert admin_client.post(delete_url(obj), {"post": "yes"}).status_code == 403

    assert model_to_dict(model.objects.get(pk=obj.pk)) == before


def test_audit_changelist_offers_no_delete_action(admin_client, audit_pool):
    response = admin_client.get(changelist_url(DecisionRecord))
    assert b"delete_selected" not in response.content


# --- the decision trace is readable ---------------------------------------------------------------


def test_decision_change_page_renders_checks_waterfall_and_links(admin_client, audit_pool):
    decision = DecisionRecord.objects.get(pool=audit_pool, outcome="act")
    order = Order.objects.get(decision=decision)
    response = admin_client.get(change_url(decision))
    html = response.content.decode()

    # Checks, in order, with their verdicts.
    assert "<td>confidence</td>" in html
    assert html.index("<td>circuit_breaker</td>") < html.index("<td>max_commitments</td>")
    assert "0 of 10 commitments" in html
    assert "✓" in html
    # The sizing waterfall with its notes.
    assert "<td>diversification_bonus</td>" in html
    assert "New sector Technology with 0 sector(s) held" in html
    assert "<td>8727.2727</td>" in html
    # The pool summary and the raw trace in a collapsed section.
    assert "Deducted earlier this cycle" in html
    raw = html.index('<fieldset class="module aligned collapse"')
    assert html.index("Raw trace") > raw
    assert html.index("&quot;waterfall&quot;") > raw
    # Links to the recommendation, the order and the commitment.
    assert change_url(decision.recommendation) in html
    assert change_url(order) in html
    assert change_url(order.commitment) in html


def test_skipped_decision_shows_the_failed_check(admin_client, audit_pool):
    decision = DecisionRecord.objects.get(pool=audit_pool, skip_reason="insufficient_confidence")
    html = admin_client.get(change_url(decision)).content.decode()
    assert "✗" in html
    assert "0.3 &lt; moderate minimum 0.55" in html
    assert "The sizer did not run" in html


def test_decision_trace_values_are_escaped(admin_client, audit_pool):
    decision = DecisionRecord.objects.get(pool=audit_pool, outcome="act")
    trace = decision.decision_trace
    trace["checks"][0]["detail"] = "<script>alert(1)</script>"
    trace["sizing"]["waterfall"][0]["note"] = "<b>bold</b>"
    DecisionRecord.objects.filter(pk=decision.pk).update(decision_trace=trace)

    html = admin_client.get(change_url(decision)).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html


def test_decision_changelist_shows_new_york_time(admin_client, audit_pool):
    html = admin_client.get(changelist_url(DecisionRecord)).content.decode()
    assert "2026-11-18 11:00:00 EST" in html


# --- search and filters ---------------------------------------------------------------------------


def test_decision_search_by_entity_symbol(admin_client, audit_pool):
    response = admin_client.get(changelist_url(DecisionRecord), {"q": "aaa"})
    rows = listed(response)
    assert [row.entity_id for row in rows] == ["AAA"]


def test_decision_search_by_recommendation_id(admin_client, audit_pool):
    response = admin_client.get(changelist_url(DecisionRecord), {"q": "rec-low"})
    assert [row.recommendation_id for row in listed(response)] == ["rec-low"]


def test_order_search_by_idempotency_key(admin_client, audit_pool):
    order = Order.objects.get(pool=audit_pool)
    response = admin_client.get(changelist_url(Order), {"q": order.idempotency_key})
    assert listed(response) == [order]
    response = admin_client.get(changelist_url(Order), {"q": "ZZZ"})
    assert listed(response) == []


def test_decision_filter_by_outcome(admin_client, audit_pool):
    response = admin_client.get(changelist_url(DecisionRecord), {"outcome__exact": "skip"})
    rows = listed(response)
    assert len(rows) == 2
    assert {row.outcome for row in rows} == {"skip"}


def test_decision_filter_by_skip_reason(admin_client, audit_pool):
    response = admin_client.get(
        changelist_url(DecisionRecord), {"skip_reason__exact": "no_open_commitment"}
    )
    assert [row.entity_id for row in listed(response)] == ["CCC"]


def test_order_filter_by_broker(admin_client, audit_pool):
    assert len(listed(admin_client.get(changelist_url(Order), {"broker": "paper"}))) == 1
    assert listed(admin_client.get(changelist_url(Order), {"broker": "http"})) == []


def test_recommendation_links_to_its_decisions(admin_client, audit_pool):
    recommendation = Recommendation.objects.get(pk="rec-act")
    html = admin_client.get(change_url(recommendation)).content.decode()
    assert "recommendation__id__exact=rec-act" in html
    response = admin_client.get(
        changelist_url(DecisionRecord), {"recommendation__id__exact": "rec-act"}
    )
    assert [row.recommendation_id for row in listed(response)] == ["rec-act"]


def test_order_change_page_shows_payloads_and_risk_checks(admin_client, audit_pool):
    order = Order.objects.get(pool=audit_pool)
    html = admin_client.get(change_url(order)).content.decode()
    assert "&quot;client_order_id&quot;" in html
    assert "<td>order_notional</td>" in html
    assert change_url(order.decision) in html
    assert change_url(order.commitment) in html


# --- large tables ---------------------------------------------------------------------------------


def make_decisions(pool: Pool, count: int) -> None:
    """``count`` recommendations through one engine cycle: entries, repeats and skips."""
    symbols = [f"Q{i:02d}" for i in range(8)]
    for symbol in symbols:
        if not MarketSnapshot.objects.filter(entity_id=symbol).exists():
            factories.add_bars(symbol, NOW, sector=f"Sector {symbol}")
    for i in range(count):
        factories.make_recommendation(
            symbols[i % len(symbols)], NOW, confidence="0.80" if i % 3 else "0.30"
        )
    run_decision_cycle(pool.pk, NOW, dispatch=False)


def decision_changelist_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(changelist_url(DecisionRecord))
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_decision_changelist_queries_do_not_grow_with_rows(
    admin_client, db, django_assert_max_num_queries
):
    pool = factories.make_pool(now=NOW)
    make_decisions(pool, 5)
    assert DecisionRecord.objects.count() == 5
    with django_assert_max_num_queries(DECISION_CHANGELIST_MAX_QUERIES):
        few = decision_changelist_queries(admin_client)

    make_decisions(pool, 35)
    assert DecisionRecord.objects.count() == 40
    with django_assert_max_num_queries(DECISION_CHANGELIST_MAX_QUERIES):
        many = decision_changelist_queries(admin_client)
    assert len(many) == len(few)


@pytest.mark.parametrize("params", [{}, {"outcome__exact": "skip"}, {"q": "AAA"}])
def test_decision_changelist_never_counts_the_whole_table(admin_client, audit_pool, params):
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(changelist_url(DecisionRecord), params)
    assert response.status_code == 200
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the bounded count should run"
    for sql in counts:
        assert "LIMIT" in sql.upper(), sql


@pytest.mark.parametrize("model", [DecisionRecord, Order, RiskEvaluation, MarketSnapshot])
def test_large_table_admins_use_the_no_count_paginator(model):
    model_admin = admin.site._registry[model]
    assert model_admin.paginator is NoCountPaginator
    assert model_admin.show_full_result_count is False
    assert model_admin.list_per_page == 50


def test_recommendation_admin_uses_the_no_count_paginator():
    model_admin = admin.site._registry[Recommendation]
    assert model_admin.paginator is NoCountPaginator
    assert model_admin.show_full_result_count is False


class SmallBoundPaginator(NoCountPaginator):
    bound = 3


def test_no_count_paginator_is_exact_below_its_bound(audit_pool):
    paginator = SmallBoundPaginator(DecisionRecord.objects.order_by("-id"), 2)
    assert paginator.count == 3
    assert not isinstance(paginator.count, ApproximateCount)
    assert paginator.num_pages == 2


def test_no_count_paginator_stops_counting_at_its_bound(audit_pool):
    make_decisions(audit_pool, 6)
    assert DecisionRecord.objects.count() > 4
    with CaptureQueriesContext(connection) as captured:
        paginator = SmallBoundPaginator(DecisionRecord.objects.order_by("-id"), 2)
        count = paginator.count
    assert count == 3
    assert str(count) == "3+"
    assert paginator.num_pages == 2
    assert len(paginator.page(2).object_list) == 1
    if connection.vendor != "postgresql":
        # No planner estimate outside PostgreSQL: one bounded count.
        assert len(captured.captured_queries) == 1
        assert "LIMIT" in captured.captured_queries[0]["sql"].upper()


def test_changelist_shows_a_capped_count_as_at_least(admin_client, audit_pool, monkeypatch):
    monkeypatch.setattr(NoCountPaginator, "bound", 2)
    monkeypatch.setattr(admin.site._registry[DecisionRecord], "list_per_page", 1)
    response = admin_client.get(changelist_url(DecisionRecord))
    assert response.status_code == 200
    assert "2+ decision records" in response.content.decode()
    assert len(listed(response)) == 1


def test_no_count_paginator_counts_plain_lists():
    assert NoCountPaginator(list(range(7)), 5).count == 7


@pytest.mark.postgres
def test_no_count_paginator_reads_the_planner_estimate_on_postgresql(audit_pool):
    make_decisions(audit_pool, 6)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE execution_decisions")
    paginator = SmallBoundPaginator(DecisionRecord.objects.order_by("-id"), 2)
    assert isinstance(paginator.count, ApproximateCount)
    assert str(paginator.count).startswith("~")
    filtered = SmallBoundPaginator(DecisionRecord.objects.filter(outcome="act"), 2)
    assert filtered.count <= 3


# --- configuration forms --------------------------------------------------------------------------


def engine_form_data(config: EngineConfig, **changes: str) -> dict[str, str]:
    data = {name: str(getattr(config, name)) for name in ENGINE_CONFIG_FIELDS}
    data["reason"] = "review"
    data.update(changes)
    return data


def config_actions(kind: str):
    return OperatorAction.objects.filter(action=kind)


def test_engine_config_fieldsets_cover_every_setting_once():
    listed_fields = [name for _, fields in ENGINE_CONFIG_SECTIONS for name in fields]
    assert sorted(listed_fields) == sorted(ENGINE_CONFIG_FIELDS)
    assert [title for title, _ in ENGINE_CONFIG_SECTIONS] == [
        "Decision loop",
        "Commitment sizing",
        "Circuit breaker",
        "Reserve pool",
        "Risk thresholds",
        "Risk tier controller",
        "Paper broker",
    ]


def test_engine_config_form_rejects_a_fraction_above_one(admin_client, db):
    pool = factories.make_pool(now=NOW)
    config = EngineConfig.objects.get(pool=pool)
    before = model_to_dict(config)
    response = admin_client.post(change_url(config), engine_form_data(config, daily_loss_pct="1.5"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "daily_loss_pct" in errors
    assert "(0, 1]" in errors["daily_loss_pct"][0]
    assert model_to_dict(EngineConfig.objects.get(pk=config.pk)) == before
    assert not config_actions("change_engine_config").exists()


def test_engine_config_form_needs_a_reason(admin_client, db):
    pool = factories.make_pool(now=NOW)
    config = EngineConfig.objects.get(pool=pool)
    before = model_to_dict(config)
    response = admin_client.post(
        change_url(config), engine_form_data(config, daily_loss_pct="0.04", reason="")
    )
    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert model_to_dict(EngineConfig.objects.get(pk=config.pk)) == before
    assert not config_actions("change_engine_config").exists()


def test_engine_config_form_rejects_reduce_at_or_above_reject(admin_client, db):
    pool = factories.make_pool(now=NOW)
    config = EngineConfig.objects.get(pool=pool)
    before = model_to_dict(config)
    for reduce, reject in (("0.8", "0.8"), ("0.9", "0.6")):
        response = admin_client.post(
            change_url(config),
            engine_form_data(
                config,
                correlation_reduce_threshold=reduce,
                correlation_reject_threshold=reject,
            ),
        )
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "correlation_reduce_threshold" in errors
    assert model_to_dict(EngineConfig.objects.get(pk=config.pk)) == before


def test_engine_config_form_saves_through_the_action_with_its_audit_row(admin_client, db):
    pool = factories.make_pool(now=NOW)
    config = EngineConfig.objects.get(pool=pool)
    response = admin_client.post(
        change_url(config),
        engine_form_data(config, daily_loss_pct="0.04", reason="calmer market"),
    )
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.daily_loss_pct == Decimal("0.04")
    audit = config_actions("change_engine_config").get()
    assert (audit.pool, audit.actor, audit.via) == (pool, "admin", "admin")
    assert audit.reason == "calmer market"
    assert (audit.before, audit.after) == ({"daily_loss_pct": "0.05"}, {"daily_loss_pct": "0.04"})


def test_engine_config_form_without_a_change_records_nothing(admin_client, db):
    pool = factories.make_pool(now=NOW)
    config = EngineConfig.objects.get(pool=pool)
    response = admin_client.post(change_url(config), engine_form_data(config), follow=True)
    assert response.status_code == 200
    assert "No value changed" in response.content.decode()
    assert not config_actions("change_engine_config").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_confidence", "0"),
        ("max_position_pct", "1.5"),
        ("max_portfolio_heat", "-0.1"),
        ("stop_loss_atr_multiplier", "0"),
        ("reward_risk_ratio", "-1"),
    ],
)
def test_risk_tier_form_rejects_values_out_of_range(admin_client, db, field, value):
    tier = RiskTierConfig.objects.get(name="moderate")
    before = model_to_dict(tier)
    data = {name: str(getattr(tier, name)) for name in TIER_FIELDS}
    data[field] = value
    data["reason"] = "review"
    response = admin_client.post(change_url(tier), data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert model_to_dict(RiskTierConfig.objects.get(pk=tier.pk)) == before
    assert not config_actions("change_tier_config").exists()


def test_risk_tier_form_saves_a_valid_change(admin_client, db):
    tier = RiskTierConfig.objects.get(name="moderate")
    data = {
        "min_confidence": "0.6",
        "max_position_pct": "1",
        "stop_loss_atr_multiplier": "2.0",
        "reward_risk_ratio": "1.5",
        "max_sector_pct": "0.3",
        "max_portfolio_heat": "0.2",
        "reason": "quarterly review",
    }
    assert admin_client.post(change_url(tier), data).status_code == 302
    tier.refresh_from_db()
    assert tier.min_confidence == Decimal("0.6")
    assert tier.max_position_pct == Decimal("1")
    audit = config_actions("change_tier_config").get()
    assert (audit.pool, audit.actor, audit.via, audit.reason) == (
        None,
        "admin",
        "admin",
        "quarterly review",
    )
    assert audit.before["tier"] == audit.after["tier"] == "moderate"
    assert audit.after["min_confidence"] == "0.6"


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_sector_pct", "1.5"), ("max_daily_loss_pct", "0"), ("max_order_notional", "0")],
)
def test_pool_risk_config_form_rejects_values_out_of_range(admin_client, db, field, value):
    pool = factories.make_pool(now=NOW)
    limits = PoolRiskConfig.objects.get(pool=pool)
    before = model_to_dict(limits)
    data = {name: str(getattr(limits, name)) for name in POOL_RISK_FIELDS}
    data[field] = value
    data["reason"] = "review"
    response = admin_client.post(change_url(limits), data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert model_to_dict(PoolRiskConfig.objects.get(pk=limits.pk)) == before
    assert not config_actions("change_pool_risk_limits").exists()


def test_pool_risk_config_form_saves_through_the_action(admin_client, db):
    pool = factories.make_pool(now=NOW)
    limits = PoolRiskConfig.objects.get(pool=pool)
    data = {name: str(getattr(limits, name)) for name in POOL_RISK_FIELDS}
    data.update(max_orders_per_minute="30", reason="broker rate limit")
    assert admin_client.post(change_url(limits), data).status_code == 302
    limits.refresh_from_db()
    assert limits.max_orders_per_minute == 30
    audit = config_actions("change_pool_risk_limits").get()
    assert (audit.pool, audit.actor, audit.via, audit.reason) == (
        pool,
        "admin",
        "admin",
        "broker rate limit",
    )
    assert (audit.before, audit.after) == (
        {"max_orders_per_minute": 120},
        {"max_orders_per_minute": 30},
    )


@pytest.mark.parametrize("model", [EngineConfig, PoolRiskConfig, RiskTierConfig])
def test_configurations_are_not_added_in_the_admin(admin_client, db, model):
    assert admin_client.get(add_url(model)).status_code == 403


# --- pools ----------------------------------------------------------------------------------------


def test_pool_change_page_shows_active_pool_and_tier(admin_client, db):
    pool = factories.make_pool(now=NOW, cash="100000", tier="moderate")
    html = admin_client.get(change_url(pool)).content.decode()
    assert "Active pool" in html
    assert "100,000.00" in html
    assert "<td>Moderate</td>" in html
    assert "Open commitments" in html


def test_pool_change_page_opens_with_commitments_and_breakers(admin_client, audit_pool):
    response = admin_client.get(change_url(audit_pool))
    assert response.status_code == 200
    assert b"could not be computed" not in response.content


def test_pool_page_shows_the_read_model_of_the_pool(admin_client, audit_pool):
    """The panel shows what ``execution.selectors.pool_as_of`` computes now, as the engine
    would."""
    audit_pool.refresh_from_db()
    html = admin_client.get(change_url(audit_pool)).content.decode()
    state = pool_as_of(audit_pool, timezone.now())
    assert len(state.positions) == 1
    assert f"<th>Active pool</th><td>{state.active_pool:,.2f}</td>" in html
    assert f"{state.pool_exposure:,.2f} of {state.exposure_cap:,.2f}" in html
    assert "<th>Open commitments</th><td>1</td>" in html


def test_pool_state_panel_renders_the_pool_as_of_an_instant(audit_pool):
    commitment = Commitment.objects.get(pool=audit_pool)
    audit_pool.refresh_from_db()
    state = pool_as_of(audit_pool, NOW)
    value = commitment.entry_value  # filled at the latest close, the current value at NOW
    assert state.unvalued == ()
    assert state.total_value == audit_pool.cash + commitment.units * value
    assert state.exposure_cap == Decimal("0.2") * state.active_pool
    html = render_pool_state(state)
    assert "<th>Risk tier</th><td>Moderate</td>" in html
    assert f"<th>Total pool value</th><td>{state.total_value:,.2f}</td>" in html
    assert "% of the cap: 20.00 % of the active pool)" in html
    assert "<th>Active circuit breakers</th><td>daily_loss until 2026-11-18 13:00:00 EST" in html
    assert "<th>Open commitments</th><td>1</td>" in html


def test_pool_page_without_commitments_or_market_data(admin_client, db):
    pool = factories.make_pool(now=NOW, cash="2500", tier="conservative")
    html = admin_client.get(change_url(pool)).content.decode()
    assert "<th>Total pool value</th><td>2,500.00</td>" in html
    assert "<th>Active circuit breakers</th><td>none</td>" in html
    assert "<th>Open commitments</th><td>0</td>" in html
    assert "<td>Conservative</td>" in html


def test_pool_page_links_to_its_operator_actions(admin_client, audit_pool):
    html = admin_client.get(change_url(audit_pool)).content.decode()
    assert f"{changelist_url(OperatorAction)}?pool__id__exact={audit_pool.pk}" in html
    response = admin_client.get(changelist_url(OperatorAction), {"pool__id__exact": audit_pool.pk})
    assert {row.action for row in listed(response)} == {"create_pool", "change_engine_config"}


def test_operator_action_list_filters_on_action_and_via(admin_client, audit_pool):
    response = admin_client.get(changelist_url(OperatorAction), {"via__exact": "command"})
    assert [row.action for row in listed(response)] == ["change_engine_config"]
    response = admin_client.get(changelist_url(OperatorAction), {"action__exact": "create_pool"})
    assert [row.pool for row in listed(response)] == [audit_pool]


def test_operator_action_page_shows_before_and_after_as_json(admin_client, audit_pool):
    row = OperatorAction.objects.get(action="change_engine_config")
    html = admin_client.get(change_url(row)).content.decode()
    assert "shorter dedupe window" in html
    assert '<pre class="admin-json">{\n  &quot;dedupe_ttl_hours&quot;: 24\n}</pre>' in html
    assert "&quot;dedupe_ttl_hours&quot;: 12" in html


def test_pool_form_changes_neither_cash_nor_tier_nor_the_halt(admin_client, db):
    pool = factories.make_pool(now=NOW, cash="100000", tier="moderate")
    data = {
        "name": pool.name,
        "mode": pool.mode,
        "adapter": pool.adapter,
        "halted": "on",
        "halt_reason": "typed into the form",
        "cash": "1",
        "reserve_balance": "50",
        "risk_tier": "aggressive",
    }
    assert admin_client.post(change_url(pool), data).status_code == 302
    pool.refresh_from_db()
    # The halt goes through its own action, with a reason and an actor.
    assert pool.halted is False
    assert pool.cash == Decimal("100000")
    assert pool.reserve_balance == Decimal("0")
    assert pool.risk_tier == "moderate"


def test_pool_added_in_the_admin_gets_its_configuration(admin_client, db):
    data = {
        "name": "new-pool",
        "mode": "simulation",
        "adapter": "paper",
        "cash": "5000",
        "risk_tier": "conservative",
        "reason": "new strategy book",
    }
    response = admin_client.post(add_url(Pool), data)
    assert response.status_code == 302
    pool = Pool.objects.get(name="new-pool")
    assert pool.cash == Decimal("5000")
    assert EngineConfig.objects.filter(pool=pool).exists()
    assert PoolRiskConfig.objects.filter(pool=pool).exists()
    assert RiskTierHistory.objects.filter(pool=pool, new_tier="conservative").exists()
    audit = OperatorAction.objects.get(pool=pool)
    assert (audit.action, audit.actor, audit.via) == ("create_pool", "admin", "admin")
    assert audit.reason == "new strategy book"


def test_pool_added_in_the_admin_needs_a_reason(admin_client, db):
    data = {
        "name": "new-pool",
        "mode": "simulation",
        "adapter": "paper",
        "cash": "5000",
        "risk_tier": "conservative",
    }
    response = admin_client.post(add_url(Pool), data)
    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert not Pool.objects.filter(name="new-pool").exists()
    assert not OperatorAction.objects.exists()


def test_pools_and_configurations_cannot_be_deleted(admin_client, db):
    pool = factories.make_pool(now=NOW)
    assert admin_client.get(delete_url(pool)).status_code == 403
    assert admin_client.get(delete_url(EngineConfig.objects.get(pool=pool))).status_code == 403
    assert admin_client.get(add_url(RiskTierConfig)).status_code == 403
