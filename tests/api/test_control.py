"""Control endpoints: each goes through its audited action (via="api", the user as actor)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger
from portfolio.models import (
    BreakerType,
    CircuitBreakerEvent,
    EngineConfig,
    OperatorAction,
    Pool,
    PoolRiskConfig,
    RiskTierHistory,
)
from tests.api.conftest import queued_tasks

BASE = "/api/v1/pools/{name}/{endpoint}/"

#: (method, endpoint, a valid body apart from the reason) for every control endpoint.
ENDPOINTS = [
    ("post", "halt", {}),
    ("post", "resume", {}),
    ("post", "clear-breaker", {"type": "daily_loss"}),
    ("post", "risk-tier", {"tier": "aggressive"}),
    ("post", "run-cycle", {}),
    ("patch", "engine-config", {"settings": {"polling_interval_seconds": 30}}),
    ("patch", "risk-limits", {"settings": {"max_open_commitments": 5}}),
]


def call(client, method: str, pool_name: str, endpoint: str, body: dict):
    url = BASE.format(name=pool_name, endpoint=endpoint)
    return getattr(client, method)(url, body, format="json")


def only_audit_row() -> OperatorAction:
    return OperatorAction.objects.exclude(action="create_pool").get()


def assert_audited(response, action: str, reason: str = "because") -> OperatorAction:
    assert response.status_code == 200, response.json()
    body = response.json()
    row = only_audit_row()
    assert (row.action, row.actor, row.reason, row.via) == (action, "operator-1", reason, "api")
    assert body["changed"] is True
    assert body["action"]["id"] == row.pk
    assert body["action"]["via"] == "api"
    assert body["action"]["action"] == action
    assert set(body["action"]) == {
        "id",
        "action",
        "actor",
        "reason",
        "via",
        "before",
        "after",
        "created_at",
    }
    return row


def test_halt_halts_the_pool_and_writes_the_audit_row(operator, pool):
    response = call(operator, "post", pool.name, "halt", {"reason": "because"})

    row = assert_audited(response, "halt")
    pool.refresh_from_db()
    assert pool.halted and pool.halt_reason == "because (operator-1)"
    assert row.before["halted"] is False and row.after["halted"] is True


def test_halting_a_halted_pool_changes_nothing_and_answers_a_null_action(operator, pool):
    call(operator, "post", pool.name, "halt", {"reason": "first"})
    response = call(operator, "post", pool.name, "halt", {"reason": "second"})

    assert response.status_code == 200
    assert response.json() == {"changed": False, "detail": "already halted", "action": None}
    assert OperatorAction.objects.filter(action="halt").count() == 1


def test_resume_lifts_the_halt(operator, pool):
    Pool.objects.filter(pk=pool.pk).update(halted=True, halt_reason="x")

    row = assert_audited(
        call(operator, "post", pool.name, "resume", {"reason": "because"}), "resume"
    )

    pool.refresh_from_db()
    assert not pool.halted
    assert row.before == {"halted": True, "halt_reason": "x"}


def test_clear_breaker_clears_the_breakers_of_the_type_in_force(operator, pool):
    now = timezone.now()
    event = record_trigger(
        pool,
        BreakerTrigger(
            type=BreakerType.DAILY_LOSS,
            triggered_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(hours=2),
            entity=None,
        ),
        now,
    )

    response = call(
        operator, "post", pool.name, "clear-breaker", {"type": "daily_loss", "reason": "because"}
    )

    row = assert_audited(response, "clear_breaker")
    event.refresh_from_db()
    assert event.cleared_by == "operator-1" and event.clear_reason == "because"
    assert row.before["in_force"][0]["event"] == event.pk
    assert CircuitBreakerEvent.objects.filter(cleared_at__isnull=True).count() == 0


def test_clear_breaker_with_nothing_in_force_changes_nothing(operator, pool):
    response = call(
        operator, "post", pool.name, "clear-breaker", {"type": "volatility", "reason": "because"}
    )

    assert response.status_code == 200
    assert response.json()["changed"] is False and response.json()["action"] is None


def test_clear_breaker_refuses_an_unknown_type(operator, pool):
    response = call(
        operator, "post", pool.name, "clear-breaker", {"type": "meteor", "reason": "because"}
    )

    assert response.status_code == 400
    assert "type" in response.json()["errors"]


def test_risk_tier_sets_the_tier_with_a_manual_history_row(operator, pool):
    row = assert_audited(
        call(operator, "post", pool.name, "risk-tier", {"tier": "aggressive", "reason": "because"}),
        "set_risk_tier",
    )

    pool.refresh_from_db()
    assert pool.risk_tier == "aggressive"
    assert row.before == {"risk_tier": "moderate"} and row.after == {"risk_tier": "aggressive"}
    assert RiskTierHistory.objects.filter(trigger="manual", actor="operator-1").count() == 1


def test_engine_config_changes_every_setting_given(operator, pool):
    response = call(
        operator,
        "patch",
        pool.name,
        "engine-config",
        {
            "settings": {"polling_interval_seconds": 30, "daily_loss_pct": "0.04"},
            "reason": "because",
        },
    )

    row = assert_audited(response, "change_engine_config")
    config = EngineConfig.objects.get(pool=pool)
    assert config.polling_interval_seconds == 30
    assert config.daily_loss_pct == Decimal("0.04")
    assert row.after == {"polling_interval_seconds": 30, "daily_loss_pct": "0.04"}


@pytest.mark.parametrize(
    "settings",
    [
        {"polling_interval_sekonds": 30},
        {"daily_loss_pct": "2"},
        {"polling_interval_seconds": True},
        {"polling_interval_seconds": [1]},
        {"polling_interval_seconds": None},
        {},
    ],
)
def test_engine_config_refuses_bad_settings_with_400_and_changes_nothing(operator, pool, settings):
    response = call(
        operator, "patch", pool.name, "engine-config", {"settings": settings, "reason": "because"}
    )

    assert response.status_code == 400
    assert response.json()["errors"]
    assert EngineConfig.objects.get(pool=pool).polling_interval_seconds == 60
    assert not OperatorAction.objects.exclude(action="create_pool").exists()


def test_unknown_setting_is_named_in_the_errors(operator, pool):
    response = call(
        operator,
        "patch",
        pool.name,
        "engine-config",
        {"settings": {"polling_interval_sekonds": 30}, "reason": "because"},
    )

    assert "polling_interval_sekonds" in response.json()["errors"]


def test_risk_limits_change_the_gate_limits(operator, pool):
    response = call(
        operator,
        "patch",
        pool.name,
        "risk-limits",
        {"settings": {"max_open_commitments": 5}, "reason": "because"},
    )

    row = assert_audited(response, "change_pool_risk_limits")
    assert PoolRiskConfig.objects.get(pool=pool).max_open_commitments == 5
    assert row.before == {"max_open_commitments": 10} and row.after == {"max_open_commitments": 5}


def test_risk_limits_refuse_a_bad_fraction(operator, pool):
    response = call(
        operator,
        "patch",
        pool.name,
        "risk-limits",
        {"settings": {"max_sector_pct": "1.5"}, "reason": "because"},
    )

    assert response.status_code == 400
    assert "max_sector_pct" in response.json()["errors"]


def test_run_cycle_queues_exactly_one_cycle_and_writes_the_audit_row(
    operator, pool, task_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = call(operator, "post", pool.name, "run-cycle", {"reason": "because"})
    with django_capture_on_commit_callbacks(execute=True):
        again = call(operator, "post", pool.name, "run-cycle", {"reason": "again"})

    audit_rows = OperatorAction.objects.filter(action="run_cycle", via="api")
    assert response.status_code == 200 and again.status_code == 200
    assert audit_rows.count() == 2
    assert response.json()["action"]["actor"] == "operator-1"
    # The second request found the first cycle still waiting: one queued task in all.
    (task,) = queued_tasks()
    assert task["args"] == (pool.pk,)


def test_run_cycle_queues_nothing_before_the_audit_row_commits(
    operator, pool, task_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call(operator, "post", pool.name, "run-cycle", {"reason": "because"})

    assert len(callbacks) == 1
    assert queued_tasks() == []


@pytest.mark.parametrize(("method", "endpoint", "body"), ENDPOINTS)
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_every_endpoint_needs_a_reason(operator, pool, method, endpoint, body, reason):
    payload = dict(body) if reason is None else {**body, "reason": reason}

    response = call(operator, method, pool.name, endpoint, payload)

    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    assert not OperatorAction.objects.exclude(action="create_pool").exists()


@pytest.mark.parametrize(("method", "endpoint", "body"), ENDPOINTS)
def test_every_endpoint_answers_404_for_an_unknown_pool(operator, db, method, endpoint, body):
    response = call(operator, method, "no-such-pool", endpoint, {**body, "reason": "because"})

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize(("method", "endpoint", "body"), ENDPOINTS)
def test_a_viewer_gets_403_on_every_endpoint(viewer, pool, method, endpoint, body):
    response = call(viewer, method, pool.name, endpoint, {**body, "reason": "because"})

    assert response.status_code == 403
    assert not OperatorAction.objects.exclude(action="create_pool").exists()


@pytest.mark.parametrize(("method", "endpoint", "body"), ENDPOINTS)
def test_ingest_and_no_role_get_403(ingest, no_role, pool, method, endpoint, body):
    for client in (ingest, no_role):
        response = call(client, method, pool.name, endpoint, {**body, "reason": "because"})
        assert response.status_code == 403


@pytest.mark.parametrize(("method", "endpoint", "body"), ENDPOINTS)
def test_anonymous_gets_401_on_every_endpoint(anonymous, pool, method, endpoint, body):
    response = call(anonymous, method, pool.name, endpoint, {**body, "reason": "because"})

    assert response.status_code == 401


def test_control_requests_are_throttled_with_the_control_scope(operator, pool, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(
        ScopedRateThrottle,
        "THROTTLE_RATES",
        {**ScopedRateThrottle.THROTTLE_RATES, "control": "2/min"},
    )

    codes = [
        call(operator, "post", pool.name, "halt", {"reason": f"try {i}"}).status_code
        for i in range(3)
    ]

    assert codes == [200, 200, 429]
