"""Shadow pools: a paper pool following another takes the same recommendations with its own
settings, in the same cycles, and never trades anywhere but on the paper broker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from decisions import tasks
from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from decisions.triggers import pools_for
from portfolio import actions
from portfolio.config_overrides import parse_overrides
from portfolio.errors import ActionError
from portfolio.models import (
    EngineConfig,
    OperatorAction,
    Pool,
    PoolRiskConfig,
    TelemetryCounter,
)
from portfolio.shadows import (
    SHADOW_FAILURES,
    create_pool_with_settings,
    cycle_order,
    run_with_shadows,
    settings_that_differ,
    shadows_of,
    with_shadows,
)
from tests import factories


def make_shadow(leader: Pool, name: str, now, *settings: str, **pool) -> Pool:
    return create_pool_with_settings(
        name,
        shadow_of=leader,
        overrides=parse_overrides(settings),
        actor="tests",
        reason="a shadow",
        now=now,
        **pool,
    )


def everything() -> dict[str, int]:
    return {
        "pools": Pool.objects.count(),
        "engine": EngineConfig.objects.count(),
        "limits": PoolRiskConfig.objects.count(),
        "actions": OperatorAction.objects.count(),
    }


# --- creating a shadow ------------------------------------------------------------------------


def test_a_shadow_starts_as_the_pool_it_follows_started(session_now, db):
    leader = factories.make_pool(now=session_now, name="lead", cash="250000", tier="aggressive")
    actions.set_risk_tier(leader, "moderate", actor="ops", reason="calmer", now=session_now)
    Pool.objects.filter(pk=leader.pk).update(cash=Decimal("1"))  # spent since: not copied

    shadow = make_shadow(leader, "lead-shadow", session_now)

    assert shadow.shadow_of == leader and shadow.is_shadow
    assert (shadow.mode, shadow.adapter) == (leader.mode, "paper")
    assert shadow.cash == Decimal("250000") and shadow.risk_tier == "aggressive"
    lead_config = EngineConfig.objects.get(pool=leader)
    shadow_config = EngineConfig.objects.get(pool=shadow)
    assert shadow_config.absolute_commitment_cap == lead_config.absolute_commitment_cap
    assert PoolRiskConfig.objects.get(pool=shadow).max_order_notional == Decimal("1000000")
    row = OperatorAction.objects.get(pool=shadow, action="create_pool")
    assert row.after["shadow_of"] == "lead" and row.after["cash"] == "250000"
    assert list(leader.shadows.all()) == [shadow]


def test_a_shadow_takes_its_own_cash_tier_and_settings_when_given(session_now, db):
    leader = factories.make_pool(now=session_now, name="lead")

    shadow = make_shadow(
        leader,
        "lead-small",
        session_now,
        "max_active_commitments=2",
        "risk_tier=conservative",
        cash=Decimal("5000"),
    )

    assert shadow.cash == Decimal("5000") and shadow.risk_tier == "conservative"
    assert EngineConfig.objects.get(pool=shadow).max_active_commitments == 2
    assert EngineConfig.objects.get(pool=leader).max_active_commitments == 10
    leader = Pool.objects.get(pk=leader.pk)  # the factory changed its cap after creating it
    assert settings_that_differ(shadow, leader).sentences == [
        "changed `max_active_commitments` from 10 to 2",
        "in the conservative tier (the pool it follows: moderate)",
    ]
    kinds = set(OperatorAction.objects.filter(pool=shadow).values_list("action", flat=True))
    assert kinds == {"create_pool", "set_risk_tier", "change_engine_config"}


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"shadow_of": "nope"}, "shadow_of", "no pool named 'nope'"),
        ({"shadow_of": "lead", "adapter": "http"}, "adapter", "paper broker only"),
        ({"shadow_of": "lead", "mode": "production"}, "mode", "takes the mode"),
        ({"shadow_of": "lead-shadow"}, "shadow_of", "is itself a shadow"),
    ],
)
def test_a_shadow_that_cannot_be_is_refused_and_nothing_is_written(
    session_now, db, kwargs, field, message
):
    leader = factories.make_pool(now=session_now, name="lead")
    make_shadow(leader, "lead-shadow", session_now)
    before = everything()

    with pytest.raises(ActionError) as caught:
        actions.create_pool(
            "another", actor="ops", reason="try", now=session_now, **{"cash": 10, **kwargs}
        )

    assert message in caught.value.errors[field]
    assert everything() == before


def test_a_pool_cannot_follow_itself(session_now, db):
    leader = factories.make_pool(now=session_now, name="lead")
    with pytest.raises(ActionError, match="cannot follow itself"):
        actions.create_pool("lead", shadow_of="lead", actor="ops", reason="x", now=session_now)
    with pytest.raises(IntegrityError), transaction.atomic():
        Pool.objects.filter(pk=leader.pk).update(shadow_of=leader)


def test_the_database_refuses_a_shadow_on_any_broker_but_paper(session_now, db):
    leader = factories.make_pool(now=session_now, name="lead")
    shadow = make_shadow(leader, "lead-shadow", session_now)

    with pytest.raises(IntegrityError), transaction.atomic():
        Pool.objects.filter(pk=shadow.pk).update(adapter="http")

    assert Pool.objects.get(pk=shadow.pk).adapter == "paper"
    # A pool that follows none may use the HTTP adapter.
    Pool.objects.filter(pk=leader.pk).update(adapter="http")


def test_a_shadow_with_shared_tier_parameters_is_refused_whole(session_now, db):
    leader = factories.make_pool(now=session_now, name="lead")
    before = everything()

    with pytest.raises(ActionError, match="shared by every pool"):
        make_shadow(leader, "lead-shadow", session_now, "moderate.max_sector_pct=0.25")

    assert everything() == before


def test_a_bad_pool_with_settings_is_a_validation_error_and_nothing_is_written(session_now, db):
    before = everything()
    with pytest.raises(ValidationError):
        create_pool_with_settings(
            "Not A Slug!",
            mode="simulation",
            cash=Decimal("10"),
            overrides=parse_overrides(["max_active_commitments=2"]),
            actor="ops",
            reason="x",
            now=session_now,
        )
    assert everything() == before


# --- the command ------------------------------------------------------------------------------


def test_the_command_creates_a_shadow_with_changed_settings(session_now, db):
    factories.make_pool(now=session_now, name="lead", cash="50000")
    out = StringIO()

    call_command(
        "create_pool",
        "lead-cautious",
        "--shadow-of",
        "lead",
        "--set",
        "max_active_commitments=3",
        "--set",
        "daily_loss_pct=0.02",
        "--actor",
        "ops",
        stdout=out,
    )

    shadow = Pool.objects.get(name="lead-cautious")
    assert shadow.shadow_of.name == "lead" and shadow.cash == Decimal("50000")
    config = EngineConfig.objects.get(pool=shadow)
    assert (config.max_active_commitments, config.daily_loss_pct) == (3, Decimal("0.02"))
    assert "a shadow of lead" in out.getvalue()
    assert "set max_active_commitments=3" in out.getvalue()
    change = OperatorAction.objects.get(pool=shadow, action="change_engine_config")
    assert (change.actor, change.via) == ("ops", "command")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--shadow-of", "nope"], "shadow_of: no pool named 'nope'"),
        (["--shadow-of", "lead", "--adapter", "http"], "adapter: a shadow pool"),
        (["--shadow-of", "lead", "--set", "max_active_commitment=3"], "did you mean"),
        (["--shadow-of", "lead", "--set", "max_active_commitments"], "not key=value"),
        (["--shadow-of", "lead", "--set", "atr_period=0"], "atr_period"),
        (["--shadow-of", "lead", "--set", "tier.min_confidence=0.9"], "shared by every pool"),
        (["--shadow-of", "lead", "--set", "correlation_reduce_threshold=0.9"], "correlation"),
        ([], "--mode and --cash required"),
        (["--mode", "simulation"], "--cash required"),
    ],
)
def test_the_command_refuses_a_bad_shadow_and_writes_nothing(session_now, db, arguments, message):
    factories.make_pool(now=session_now, name="lead")
    before = everything()

    with pytest.raises(CommandError, match=message):
        call_command("create_pool", "lead-shadow", *arguments, stdout=StringIO())

    assert everything() == before


# --- the same cycles --------------------------------------------------------------------------


@pytest.fixture
def desk(session_now, db):
    """Pool ``lead`` and its shadow ``lead-narrow`` that holds one commitment at most; three
    entities, each with a fresh act recommendation."""
    leader = factories.make_pool(now=session_now, name="lead")
    shadow = make_shadow(leader, "lead-narrow", session_now, "max_active_commitments=1")
    for i, symbol in enumerate(("AAA", "BBB", "CCC")):
        factories.add_bars(symbol, session_now, sector=f"S{i}", start=50 + i)
        factories.make_recommendation(symbol, session_now, confidence="0.80")
    return leader, shadow


def outcomes(pool: Pool) -> list[tuple[str, str, str]]:
    return sorted(
        DecisionRecord.objects.filter(pool=pool).values_list("entity_id", "outcome", "skip_reason")
    )


def test_the_shadow_decides_the_same_recommendations_with_its_own_settings(desk, session_now):
    leader, shadow = desk

    result, shadows = run_with_shadows(
        leader.pk, lambda p: run_decision_cycle(p, session_now, dispatch=False), loop="cycle"
    )

    assert result.outcomes["act"] == 3
    (run,) = shadows
    assert run.pool_id == shadow.pk and not run.failed
    mine, its = outcomes(leader), outcomes(shadow)
    assert [row[0] for row in mine] == [row[0] for row in its] == ["AAA", "BBB", "CCC"]
    assert [row[1] for row in mine] == ["act"] * 3
    # Where its setting matters, the shadow decides differently: one commitment at most.
    assert sorted(row[1:] for row in its) == [
        ("act", ""),
        ("skip", "max_commitments_reached"),
        ("skip", "max_commitments_reached"),
    ]
    # At the same instant, each under its own configuration version.
    lead_rows = DecisionRecord.objects.filter(pool=leader)
    shadow_rows = DecisionRecord.objects.filter(pool=shadow)
    assert {r.evaluated_at for r in lead_rows} == {r.evaluated_at for r in shadow_rows}
    assert {r.config_version_id for r in lead_rows}.isdisjoint(
        {r.config_version_id for r in shadow_rows}
    )


def test_shadows_run_right_after_the_pool_they_follow(session_now, db):
    zeta = factories.make_pool(now=session_now, name="zeta")
    factories.make_pool(now=session_now, name="beta")
    alpha = make_shadow(zeta, "alpha", session_now)
    omega = make_shadow(zeta, "omega", session_now)

    assert [name for _, name, _ in cycle_order()] == ["beta", "zeta", "alpha", "omega"]
    assert shadows_of(zeta.pk) == [alpha.pk, omega.pk]
    assert with_shadows([zeta.pk]) == [zeta.pk, alpha.pk, omega.pk]
    assert with_shadows([omega.pk, zeta.pk]) == [zeta.pk, alpha.pk, omega.pk]
    assert with_shadows([omega.pk]) == [omega.pk]
    lines = tasks.for_each_pool("test", lambda pool_id: pool_id)
    assert [line.split(":")[0] for line in lines] == ["beta", "zeta", "alpha", "omega"]


def test_arriving_recommendations_trigger_the_followed_pool_only(desk, session_now):
    leader, shadow = desk
    recommendation = factories.make_recommendation("AAA", session_now, confidence="0.9")

    assert pools_for([recommendation], session_now) == [leader.pk]


def test_a_triggered_cycle_runs_the_shadows_at_the_same_instant(session_now, db):
    """The task that a recommendation or an operator's "run a cycle" queues, on the real
    clock: whatever the market hours, each pool records its evaluation of the recommendation,
    both at the same ``now``."""
    now = timezone.now()
    leader = factories.make_pool(now=now, name="lead")
    shadow = make_shadow(leader, "lead-shadow", now)
    factories.add_bars("NOW1", now)
    factories.make_recommendation("NOW1", now, confidence="0.90")

    line = tasks.triggered_cycle(leader.pk)

    assert line.startswith("1 candidate(s)") and f"shadow {shadow.pk}: 1 candidate(s)" in line
    times = set(DecisionRecord.objects.values_list("pool_id", "evaluated_at"))
    assert {pool_id for pool_id, _ in times} == {leader.pk, shadow.pk}
    assert len({at for _, at in times}) == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_shadow_never_stops_the_pool_it_follows(source_tiers, session_now):
    """Committed transactions, as the task runs them: the shadow's failed cycle rolls back
    alone, its failure is logged and counted, the followed pool's cycle is kept."""
    leader = factories.make_pool(now=session_now, name="lead")
    broken = make_shadow(leader, "lead-broken", session_now)
    healthy = make_shadow(leader, "lead-healthy", session_now)
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now)
    # A tier that has no parameters: the shadow's read model cannot be built.
    Pool.objects.filter(pk=broken.pk).update(risk_tier="missing")

    result, shadows = run_with_shadows(
        leader.pk,
        lambda p: run_decision_cycle(p, session_now, dispatch=False),
        loop="decision cycle",
    )

    assert result.outcomes["act"] == 1
    assert [(run.pool_id, run.failed) for run in shadows] == [
        (broken.pk, True),
        (healthy.pk, False),
    ]
    assert DecisionRecord.objects.filter(pool=leader).count() == 1
    assert DecisionRecord.objects.filter(pool=healthy).count() == 1
    assert not DecisionRecord.objects.filter(pool=broken).exists()
    counter = TelemetryCounter.objects.get(pool=broken, metric=SHADOW_FAILURES)
    assert (counter.reason, counter.total) == ("decision cycle", 1)


@pytest.mark.django_db(transaction=True)
def test_the_followed_pools_failure_still_lets_its_shadows_run(source_tiers, session_now):
    leader = factories.make_pool(now=session_now, name="lead")
    shadow = make_shadow(leader, "lead-shadow", session_now)
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now)
    Pool.objects.filter(pk=leader.pk).update(risk_tier="missing")

    with pytest.raises(Exception, match="does not exist"):
        run_with_shadows(
            leader.pk, lambda p: run_decision_cycle(p, session_now, dispatch=False), loop="cycle"
        )

    assert DecisionRecord.objects.filter(pool=shadow).count() == 1
    assert not TelemetryCounter.objects.filter(metric=SHADOW_FAILURES).exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_task_counts_a_failing_shadow_and_runs_the_rest(source_tiers, session_now):
    leader = factories.make_pool(now=session_now, name="lead")
    broken = make_shadow(leader, "lead-broken", session_now)
    Pool.objects.filter(pk=broken.pk).update(risk_tier="missing")

    def run(pool_id):
        if pool_id == broken.pk:
            Pool.objects.get(pk=pool_id, risk_tier="moderate")  # raises: the shadow's tier
        return "ran"

    lines = tasks.for_each_pool("performance loop", run)

    assert lines == ["lead: ran", "lead-broken: failed (see the log)"]
    counter = TelemetryCounter.objects.get(pool=broken, metric=SHADOW_FAILURES)
    assert (counter.reason, counter.total) == ("performance loop", 1)


# --- the console ------------------------------------------------------------------------------


def test_the_dashboard_shows_each_shadow_beside_the_pool_it_follows(
    admin_client, desk, session_now
):
    leader, shadow = desk
    run_with_shadows(
        leader.pk, lambda p: run_decision_cycle(p, session_now, dispatch=False), loop="cycle"
    )

    response = admin_client.get(reverse("admin:portfolio_pool_dashboard", args=[leader.pk]))

    assert response.status_code == 200
    columns = response.context["shadow_columns"]
    assert [c.pool.name for c in columns] == ["lead", "lead-narrow"]
    assert columns[0].is_current and columns[0].differs == []
    assert columns[1].differs == ["changed `max_active_commitments` from 10 to 1"]
    assert columns[0].decisions == {"act": 3, "defer": 0, "skip": 0}
    assert columns[1].decisions == {"act": 1, "defer": 0, "skip": 2}
    assert columns[1].top_skips == [("max_commitments_reached", 2)]
    html = response.content.decode()
    assert 'id="shadow-comparison"' in html and "from 10 to 1" in html

    own = admin_client.get(reverse("admin:portfolio_pool_dashboard", args=[shadow.pk]))
    assert "paper shadow of" in own.content.decode()
    assert [c.is_current for c in own.context["shadow_columns"]] == [False, True]


def test_a_pool_without_shadows_shows_no_shadow_panel(admin_client, session_now, db):
    pool = factories.make_pool(now=session_now, name="alone")
    response = admin_client.get(reverse("admin:portfolio_pool_dashboard", args=[pool.pk]))
    assert response.context["shadow_columns"] == []
    assert 'id="shadows"' not in response.content.decode()


def test_the_overview_lists_each_shadow_under_its_pool(admin_client, session_now, db):
    zeta = factories.make_pool(now=session_now, name="zeta")
    factories.make_pool(now=session_now, name="beta")
    make_shadow(zeta, "alpha", session_now)

    response = admin_client.get(reverse("admin:portfolio_pool_overview"))

    rows = response.context["rows"]
    assert [(r["glance"].pool.name, r["shadow_of"]) for r in rows] == [
        ("beta", None),
        ("zeta", None),
        ("alpha", "zeta"),
    ]
    assert 'data-shadow-of="zeta"' in response.content.decode()


def test_a_shadow_of_a_live_pool_stays_on_paper_and_takes_its_recommendations(session_now, db):
    live = factories.make_pool(now=session_now, name="live", mode="production")
    Pool.objects.filter(pk=live.pk).update(adapter="http")
    live.refresh_from_db()

    shadow = make_shadow(live, "live-paper", session_now)

    assert (shadow.mode, shadow.adapter) == ("production", "paper")
    assert shadow.accepted_modes == live.accepted_modes == ("production_eligible",)


def test_a_late_shadow_starts_flat_and_decides_from_then_on(desk, session_now):
    leader, _ = desk
    run_decision_cycle(leader.pk, session_now, dispatch=False)
    late = make_shadow(leader, "lead-late", session_now + timedelta(minutes=1))

    run_decision_cycle(late.pk, session_now + timedelta(minutes=1), dispatch=False)

    assert late.cash == Decimal("100000")
    assert sorted(r[1] for r in outcomes(late)) == ["act", "act", "act"]


def test_the_pools_api_names_the_pool_a_shadow_follows(desk):
    from project.api.roles import VIEWER
    from tests.api.conftest import client_for

    viewer = client_for("viewer-shadows", VIEWER)

    rows = viewer.get("/api/v1/pools/").json()["results"]
    one = viewer.get("/api/v1/pools/lead-narrow/").json()

    assert {row["name"]: row["shadow_of"] for row in rows} == {
        "lead": None,
        "lead-narrow": "lead",
    }
    assert one["shadow_of"] == "lead"
