"""Operator actions of the pool page: halt, resume, set the risk tier and clear a circuit
breaker, each a form that asks for a reason, shows the pool's state and calls one audited action
(``via="admin"``, the user as the actor); only users who may change a pool reach them, and CSRF
is enforced."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portfolio import actions
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.models import (
    CircuitBreakerEvent,
    OperatorAction,
    Pool,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.selectors import in_force
from tests import factories

ACTIONS = ("halt", "resume", "set_tier", "clear_breaker")


def halt(pool: Pool, reason: str, actor: str = "ops") -> None:
    actions.halt_pool(pool, actor=actor, reason=reason, now=timezone.now(), via="command")


def audit_rows(pool: Pool, action: str):
    return OperatorAction.objects.filter(pool=pool, action=action)


def action_url(pool: Pool, action: str) -> str:
    return reverse(f"admin:portfolio_pool_{action}", args=[pool.pk])


def pool_url(pool: Pool) -> str:
    return reverse("admin:portfolio_pool_change", args=[pool.pk])


def trip(
    pool: Pool, kind: BreakerType, now: datetime, entity: str | None = None
) -> CircuitBreakerEvent:
    """A breaker triggered a minute ago that expires in two hours."""
    if entity:
        factories.make_entity(entity)
    trigger = BreakerTrigger(
        kind, now - timedelta(minutes=1), now + timedelta(hours=2), entity, {"x": "1"}
    )
    event = record_trigger(pool, trigger, now)
    assert event is not None
    return event


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def pool(db, now) -> Pool:
    return factories.make_pool(now=now, tier="moderate")


@pytest.fixture
def viewer(db) -> User:
    """A staff user with only the view permission on pools."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_pool"))
    return user


# --- halt and resume --------------------------------------------------------------------------


def test_halt_with_a_reason_halts_the_pool_with_the_actor(admin_client, pool):
    response = admin_client.post(action_url(pool, "halt"), {"reason": "broker maintenance"})
    assert response.status_code == 302
    assert response.url == pool_url(pool)
    pool.refresh_from_db()
    assert pool.halted is True
    assert pool.halt_reason == "broker maintenance (admin)"
    page = admin_client.get(response.url)
    assert "is halted: broker maintenance" in page.content.decode()
    assert LogEntry.objects.filter(object_id=str(pool.pk)).count() == 1
    row = audit_rows(pool, "halt").get()
    assert (row.actor, row.reason, row.via) == ("admin", "broker maintenance", "admin")
    assert row.before == {"halted": False, "halt_reason": ""}
    assert row.after == {"halted": True, "halt_reason": "broker maintenance (admin)"}


@pytest.mark.parametrize("reason", ["", "   "])
def test_halt_without_a_reason_shows_the_form_error_and_leaves_the_pool(admin_client, pool, reason):
    response = admin_client.post(action_url(pool, "halt"), {"reason": reason})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == ["This field is required."]
    pool.refresh_from_db()
    assert pool.halted is False
    assert pool.halt_reason == ""
    assert not audit_rows(pool, "halt").exists()


def test_halt_of_a_halted_pool_changes_nothing_and_says_so(admin_client, pool):
    halt(pool, "first")
    response = admin_client.post(action_url(pool, "halt"), {"reason": "second"})
    assert response.status_code == 200
    assert "already halted: nothing changed" in response.content.decode()
    pool.refresh_from_db()
    assert pool.halt_reason == "first (ops)"
    assert audit_rows(pool, "halt").count() == 1


def test_halt_reason_longer_than_the_room_left_for_the_actor_is_refused(admin_client, pool):
    response = admin_client.post(action_url(pool, "halt"), {"reason": "x" * 400})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    pool.refresh_from_db()
    assert pool.halted is False


@pytest.mark.parametrize("reason", ["", "   "])
def test_resume_without_a_reason_shows_the_form_error_and_stays_halted(admin_client, pool, reason):
    halt(pool, "maintenance")
    response = admin_client.post(action_url(pool, "resume"), {"reason": reason})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == ["This field is required."]
    pool.refresh_from_db()
    assert pool.halted is True
    assert not audit_rows(pool, "resume").exists()


def test_resume_with_a_reason_resumes_and_records_the_lifted_halt(admin_client, pool):
    halt(pool, "maintenance")
    response = admin_client.post(action_url(pool, "resume"), {"reason": "broker back"})
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.halted is False
    assert pool.halt_reason == ""
    row = audit_rows(pool, "resume").get()
    assert (row.actor, row.reason, row.via) == ("admin", "broker back", "admin")
    assert row.before == {"halted": True, "halt_reason": "maintenance (ops)"}
    assert row.after == {"halted": False, "halt_reason": ""}
    entry = LogEntry.objects.get(object_id=str(pool.pk))
    assert "broker back" in entry.get_change_message()
    assert entry.user.get_username() == "admin"


def test_resume_of_a_running_pool_changes_nothing_and_says_so(admin_client, pool):
    response = admin_client.post(action_url(pool, "resume"), {"reason": "x"})
    assert response.status_code == 200
    assert "not halted: nothing changed" in response.content.decode()
    assert not audit_rows(pool, "resume").exists()


# --- risk tier --------------------------------------------------------------------------------


def test_set_tier_writes_a_manual_history_row_with_actor_and_reason(admin_client, pool):
    response = admin_client.post(
        action_url(pool, "set_tier"), {"tier": "conservative", "reason": "earnings week"}
    )
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.risk_tier == "conservative"
    row = RiskTierHistory.objects.filter(pool=pool).latest("changed_at", "id")
    assert row.trigger == TierTrigger.MANUAL
    assert row.actor == "admin"
    assert row.reason == "earnings week"
    assert row.previous_tier == "moderate"
    assert row.new_tier == "conservative"
    audit = audit_rows(pool, "set_risk_tier").get()
    assert (audit.actor, audit.reason, audit.via) == ("admin", "earnings week", "admin")
    assert (audit.before, audit.after) == (
        {"risk_tier": "moderate"},
        {"risk_tier": "conservative"},
    )


def test_set_tier_without_a_reason_shows_the_form_error(admin_client, pool):
    before = RiskTierHistory.objects.filter(pool=pool).count()
    response = admin_client.post(action_url(pool, "set_tier"), {"tier": "aggressive"})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    pool.refresh_from_db()
    assert pool.risk_tier == "moderate"
    assert RiskTierHistory.objects.filter(pool=pool).count() == before


def test_set_tier_to_an_unknown_tier_shows_the_form_error(admin_client, pool):
    response = admin_client.post(action_url(pool, "set_tier"), {"tier": "reckless", "reason": "x"})
    assert response.status_code == 200
    assert "tier" in response.context["form"].errors


def test_set_tier_to_the_current_tier_changes_nothing_and_says_so(admin_client, pool):
    before = RiskTierHistory.objects.filter(pool=pool).count()
    response = admin_client.post(action_url(pool, "set_tier"), {"tier": "moderate", "reason": "x"})
    assert response.status_code == 200
    assert "already Moderate: nothing changed" in response.content.decode()
    assert RiskTierHistory.objects.filter(pool=pool).count() == before


# --- circuit breakers -------------------------------------------------------------------------


def test_clear_breaker_records_who_when_and_why_and_nothing_stays_in_force(admin_client, pool, now):
    event = trip(pool, BreakerType.DAILY_LOSS, now)
    response = admin_client.post(
        action_url(pool, "clear_breaker"), {"breaker": "daily_loss", "reason": "loss was a glitch"}
    )
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.cleared_at is not None
    assert event.cleared_by == "admin"
    assert event.clear_reason == "loss was a glitch"
    assert not in_force(pool, timezone.now()).exists()
    audit = audit_rows(pool, "clear_breaker").get()
    assert (audit.actor, audit.reason, audit.via) == ("admin", "loss was a glitch", "admin")
    assert [e["event"] for e in audit.before["in_force"]] == [event.pk]
    assert audit.after == {"type": "daily_loss", "in_force": []}


def test_clear_breaker_clears_only_the_chosen_entity_cooldown(admin_client, pool, now):
    aapl = trip(pool, BreakerType.SINGLE_POSITION, now, "AAPL")
    msft = trip(pool, BreakerType.SINGLE_POSITION, now, "MSFT")
    page = admin_client.get(action_url(pool, "clear_breaker")).content.decode()
    assert 'value="single_position:AAPL"' in page
    assert 'value="single_position:MSFT"' in page
    response = admin_client.post(
        action_url(pool, "clear_breaker"),
        {"breaker": "single_position:AAPL", "reason": "news priced in"},
    )
    assert response.status_code == 302
    aapl.refresh_from_db()
    msft.refresh_from_db()
    assert aapl.cleared_at is not None
    assert msft.cleared_at is None


def test_clear_breaker_without_a_reason_shows_the_form_error(admin_client, pool, now):
    event = trip(pool, BreakerType.DAILY_LOSS, now)
    response = admin_client.post(action_url(pool, "clear_breaker"), {"breaker": "daily_loss"})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    event.refresh_from_db()
    assert event.cleared_at is None


def test_clear_breaker_not_in_force_says_nothing_to_clear(admin_client, pool):
    response = admin_client.post(
        action_url(pool, "clear_breaker"), {"breaker": "volatility", "reason": "x"}
    )
    assert response.status_code == 200
    assert "Nothing to clear" in response.context["form"].non_field_errors()[0]


def test_clear_breaker_of_an_unknown_type_shows_the_refusal(admin_client, pool):
    response = admin_client.post(
        action_url(pool, "clear_breaker"), {"breaker": "weather", "reason": "x"}
    )
    assert response.status_code == 200
    assert "unknown breaker type" in response.context["form"].non_field_errors()[0]
    assert not audit_rows(pool, "clear_breaker").exists()


def test_clear_breaker_page_without_breakers_offers_no_submit(admin_client, pool):
    page = admin_client.get(action_url(pool, "clear_breaker")).content.decode()
    assert "No circuit breaker is in force" in page
    assert 'value="Clear the breaker"' not in page


# --- the form pages show the pool's state -----------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_each_form_page_shows_the_current_state(admin_client, pool, now, action):
    trip(pool, BreakerType.DAILY_LOSS, now)
    halt(pool, "maint <b>")
    response = admin_client.get(action_url(pool, action))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Current state" in page
    assert "Moderate" in page
    assert "yes: maint &lt;b&gt; (ops)" in page  # the halt reason, escaped
    assert "daily_loss until" in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_clear_breaker_page_offers_the_breakers_in_force_with_their_expiry(admin_client, pool, now):
    trip(pool, BreakerType.VOLATILITY, now)
    page = admin_client.get(action_url(pool, "clear_breaker")).content.decode()
    assert 'value="volatility"' in page
    assert "Volatility (risk threshold clustering), until" in page
    assert 'value="daily_loss"' not in page


def test_set_tier_page_starts_at_the_current_tier(admin_client, pool):
    response = admin_client.get(action_url(pool, "set_tier"))
    assert response.context["form"].initial["tier"] == "moderate"


def test_action_on_a_missing_pool_redirects(admin_client, db):
    response = admin_client.get(reverse("admin:portfolio_pool_halt", args=[999999]))
    assert response.status_code == 302


# --- the pool page and its form ---------------------------------------------------------------


def test_pool_page_shows_the_buttons_to_a_superuser(admin_client, pool):
    page = admin_client.get(pool_url(pool)).content.decode()
    for action in ("halt", "set_tier", "clear_breaker"):
        assert f'href="{action_url(pool, action)}"' in page
    assert f'href="{action_url(pool, "resume")}"' not in page


def test_halted_pool_page_offers_resume_instead_of_halt(admin_client, pool):
    halt(pool, "maintenance")
    page = admin_client.get(pool_url(pool)).content.decode()
    assert f'href="{action_url(pool, "resume")}"' in page
    assert f'href="{action_url(pool, "halt")}"' not in page


def test_pool_form_no_longer_edits_the_halt(admin_client, pool):
    response = admin_client.get(pool_url(pool))
    form = response.context["adminform"].form
    assert "halted" not in form.fields
    assert "halt_reason" not in form.fields
    data = {
        "name": pool.name,
        "mode": pool.mode,
        "adapter": pool.adapter,
        "halted": "on",
        "halt_reason": "sneaky",
    }
    assert admin_client.post(pool_url(pool), data).status_code == 302
    pool.refresh_from_db()
    assert pool.halted is False
    assert pool.halt_reason == ""


# --- permissions and CSRF ---------------------------------------------------------------------


def test_view_only_staff_sees_the_pool_page_without_the_buttons(client, viewer, pool):
    client.force_login(viewer)
    response = client.get(pool_url(pool))
    assert response.status_code == 200
    page = response.content.decode()
    for action in ACTIONS:
        assert action_url(pool, action) not in page


@pytest.mark.parametrize("action", ACTIONS)
def test_view_only_staff_gets_403_on_the_actions(client, viewer, pool, now, action):
    trip(pool, BreakerType.DAILY_LOSS, now)
    client.force_login(viewer)
    data = {"reason": "x", "tier": "aggressive", "breaker": "daily_loss"}
    assert client.get(action_url(pool, action)).status_code == 403
    assert client.post(action_url(pool, action), data).status_code == 403
    pool.refresh_from_db()
    assert pool.halted is False
    assert pool.risk_tier == "moderate"
    assert in_force(pool, timezone.now()).exists()


def test_anonymous_is_sent_to_the_login_page(client, pool):
    response = client.post(action_url(pool, "halt"), {"reason": "x"})
    assert response.status_code == 302
    assert reverse("admin:login") in response.url
    pool.refresh_from_db()
    assert pool.halted is False


def test_post_without_the_csrf_token_is_refused(admin_user, pool):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(action_url(pool, "halt"), {"reason": "x"})
    assert response.status_code == 403
    pool.refresh_from_db()
    assert pool.halted is False


def test_post_with_the_csrf_token_is_accepted(admin_user, pool):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get(action_url(pool, "halt"))
    token = client.cookies["csrftoken"].value
    response = client.post(action_url(pool, "halt"), {"reason": "x", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.halted is True


# --- the pool's form --------------------------------------------------------------------------


def test_the_pool_change_form_saves_nothing_directly(admin_client, pool):
    """Name, mode and broker are fixed for life; cash, reserve and tier move only through the
    engine and the audited actions: a crafted POST of the change form changes nothing."""
    url = f"/admin/portfolio/pool/{pool.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="mode"' not in page and 'name="adapter"' not in page and 'name="name"' not in page

    admin_client.post(url, {"name": "renamed", "mode": "production", "adapter": "http"})

    fresh = Pool.objects.get(pk=pool.pk)
    assert (fresh.name, fresh.mode, fresh.adapter) == (pool.name, pool.mode, pool.adapter)
    assert not fresh.operator_actions.exclude(action="create_pool").exists()
