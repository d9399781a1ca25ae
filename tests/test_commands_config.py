"""``engine_config`` and ``pool_risk_limits``: printing and changing a pool's engine
configuration and execution risk limits through their audited actions, and the shared
``validate_engine_config`` rules."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from portfolio.config import ENGINE_CONFIG_FIELDS, POOL_RISK_FIELDS, validate_engine_config
from portfolio.models import EngineConfig, OperatorAction, PoolRiskConfig


def run(*args: str, command: str = "engine_config") -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def config_of(pool) -> EngineConfig:
    return EngineConfig.objects.get(pool=pool)


def defaults() -> dict:
    """Every field at the model's default, as the admin form's cleaned data would hold it."""
    return {name: EngineConfig._meta.get_field(name).default for name in ENGINE_CONFIG_FIELDS}


# ---------------------------------------------------------------------------------------------
# validate_engine_config (pure)


def test_defaults_are_valid():
    assert validate_engine_config(defaults()) == {}


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"daily_loss_pct": Decimal("0")}, "daily_loss_pct", "not in (0, 1]"),
        ({"daily_loss_pct": Decimal("1.000001")}, "daily_loss_pct", "not in (0, 1]"),
        ({"siphon_pct": Decimal("-0.2")}, "siphon_pct", "not in (0, 1]"),
        ({"max_active_commitments": 0}, "max_active_commitments", "not ≥ 1"),
        ({"polling_interval_seconds": -5}, "polling_interval_seconds", "not ≥ 1"),
        ({"atr_period": Decimal("14.5")}, "atr_period", "not a whole number"),
        ({"absolute_commitment_cap": Decimal("0")}, "absolute_commitment_cap", "not > 0"),
        ({"diversification_bonus": Decimal("0.99")}, "diversification_bonus", "not ≥ 1"),
        ({"paper_slippage_bps": Decimal("-1")}, "paper_slippage_bps", "negative"),
        ({"report_reject_sessions": -1}, "report_reject_sessions", "negative"),
        ({"daily_loss_pct": "0.05"}, "daily_loss_pct", "not a number"),
        ({"daily_loss_pct": True}, "daily_loss_pct", "not a number"),
        (
            {"correlation_reduce_threshold": Decimal("0.8")},
            "correlation_reduce_threshold",
            "must be below correlation_reject_threshold (0.8)",
        ),
        (
            {"correlation_reject_threshold": Decimal("0.4")},
            "correlation_reduce_threshold",
            "0.5 must be below correlation_reject_threshold (0.4)",
        ),
        (
            {"report_reject_sessions": 3},
            "report_reject_sessions",
            "must be below report_reduce_sessions (3)",
        ),
    ],
)
def test_validate_engine_config_rejects(changes, field, expected):
    errors = validate_engine_config(defaults() | changes)

    assert list(errors) == [field]
    assert expected in errors[field]


@pytest.mark.parametrize(
    "changes",
    [
        {"daily_loss_pct": Decimal("1")},
        {"daily_loss_pct": Decimal("0.000001")},
        {"max_active_commitments": 1},
        {"diversification_bonus": Decimal("1")},
        {"absolute_commitment_cap": Decimal("0.0001")},
        {"report_reject_sessions": 0},
        {"report_reject_sessions": 2},
        {"correlation_reduce_threshold": Decimal("0.79")},
        {"siphon_pct": 0.25},
    ],
)
def test_validate_engine_config_accepts_boundaries(changes):
    assert validate_engine_config(defaults() | changes) == {}


def test_validate_engine_config_skips_missing_fields_and_ignores_other_keys():
    values = {"pool": object(), "id": 3, "daily_loss_pct": None, "siphon_pct": Decimal("0.1")}

    assert validate_engine_config(values) == {}


# ---------------------------------------------------------------------------------------------
# engine_config command


def test_engine_config_prints_every_field_with_percents(pool):
    output = run("--pool", pool.name)

    assert f"pool {pool.name}" in output
    for name in ENGINE_CONFIG_FIELDS:
        assert name in output
    lines = {line.split()[0]: line.split()[1:] for line in output.splitlines()[2:]}
    assert lines["daily_loss_pct"] == ["0.05", "5", "%"]
    assert lines["siphon_pct"] == ["0.2", "20", "%"]
    assert lines["max_active_commitments"] == ["10"]
    assert lines["absolute_commitment_cap"] == ["100000"]  # make_pool raises the cap


def test_engine_config_sets_several_keys_together(pool):
    output = run(
        "--pool",
        pool.name,
        "--set",
        "daily_loss_pct=0.04",
        "max_active_commitments=8",
        "--set",
        "correlation_reject_threshold=0.9",
        "--reason",
        "tighter after the drawdown",
        "--actor",
        "ops",
    )

    config = config_of(pool)
    assert config.daily_loss_pct == Decimal("0.04")
    assert config.max_active_commitments == 8
    assert config.correlation_reject_threshold == Decimal("0.9")
    assert "daily_loss_pct" in output and "0.05 → 0.04" in output
    assert "10 → 8" in output
    audit = OperatorAction.objects.exclude(action="create_pool").get(pool=pool)
    assert (audit.action, audit.actor, audit.via) == ("change_engine_config", "ops", "command")
    assert audit.reason == "tighter after the drawdown"
    assert audit.before == {
        "daily_loss_pct": "0.05",
        "max_active_commitments": 10,
        "correlation_reject_threshold": "0.8",
    }
    assert audit.after == {
        "daily_loss_pct": "0.04",
        "max_active_commitments": 8,
        "correlation_reject_threshold": "0.9",
    }


def test_engine_config_set_needs_a_reason_and_printing_none(pool):
    with pytest.raises(CommandError, match="--set needs --reason"):
        run("--pool", pool.name, "--set", "siphon_pct=0.1")
    with pytest.raises(CommandError, match="--reason: a reason is required"):
        run("--pool", pool.name, "--set", "siphon_pct=0.1", "--reason", "  ")

    assert config_of(pool).siphon_pct == Decimal("0.2")
    assert not OperatorAction.objects.filter(action="change_engine_config").exists()
    assert "siphon_pct" in run("--pool", pool.name)


def test_engine_config_setting_the_stored_value_records_nothing(pool):
    output = run("--pool", pool.name, "--set", "siphon_pct=0.20", "--reason", "check")

    assert "unchanged" in output
    assert not OperatorAction.objects.filter(action="change_engine_config").exists()


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("daily_los_pct=0.04", "daily_los_pct: unknown setting (did you mean daily_loss_pct"),
        ("colour=blue", "colour: unknown setting"),
        ("daily_loss_pct=abc", "daily_loss_pct: “abc” value must be a decimal number"),
        ("max_active_commitments=2.5", "max_active_commitments: “2.5” value must be an integer"),
        ("siphon_pct=0.0000001", "siphon_pct: Ensure that there are no more than 6 decimal"),
        ("siphon_pct=5", "siphon_pct: 5 is not in (0, 1]"),
        ("siphon_pct=0", "siphon_pct: 0 is not in (0, 1]"),
        ("atr_period=0", "atr_period: 0 is not ≥ 1"),
        ("absolute_commitment_cap=0", "absolute_commitment_cap: 0 is not > 0"),
        ("diversification_bonus=0.5", "diversification_bonus: 0.5 is not ≥ 1"),
        (
            "correlation_reduce_threshold=0.8",
            "correlation_reduce_threshold: 0.8 must be below correlation_reject_threshold (0.8)",
        ),
        (
            "correlation_reduce_threshold=0.85",
            "correlation_reduce_threshold: 0.85 must be below correlation_reject_threshold",
        ),
        ("report_reject_sessions=3", "report_reject_sessions: 3 must be below"),
    ],
)
def test_engine_config_one_bad_key_saves_nothing(pool, assignment, expected):
    before = config_of(pool)

    with pytest.raises(CommandError) as info:
        run(
            *("--pool", pool.name, "--set", "high_water_pct=0.25", assignment),
            *("dedupe_ttl_hours=12", "--reason", "x"),
        )

    assert expected in str(info.value)
    after = config_of(pool)
    assert (after.high_water_pct, after.dedupe_ttl_hours) == (Decimal("0.3"), 24)
    assert (after.daily_loss_pct, after.atr_period) == (before.daily_loss_pct, before.atr_period)
    assert after.updated_at == before.updated_at
    assert not OperatorAction.objects.filter(action="change_engine_config").exists()


def test_engine_config_reports_every_problem_at_once(pool):
    with pytest.raises(CommandError) as info:
        run(
            *("--pool", pool.name, "--set", "siphon_pct=5", "atr_period=x", "bogus=1"),
            *("--reason", "x"),
        )

    message = str(info.value)
    assert "siphon_pct:" in message and "atr_period:" in message and "bogus:" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pool", "nowhere"], "no pool named 'nowhere'"),
        (
            ["--pool", "nowhere", "--set", "siphon_pct=0.1", "--reason", "x"],
            "no pool named 'nowhere'",
        ),
        (["--set", "siphon_pct=0.1", "--reason", "x"], "--pool"),
    ],
)
def test_engine_config_argument_errors(db, args, expected):
    with pytest.raises(CommandError) as info:
        run(*args)

    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        (["siphon_pct"], "'siphon_pct' is not key=value"),
        (["siphon_pct="], "is not key=value"),
        (["siphon_pct=0.1", "siphon_pct=0.2"], "setting given more than once: siphon_pct"),
    ],
)
def test_engine_config_rejects_malformed_assignments(pool, assignments, expected):
    with pytest.raises(CommandError) as info:
        run("--pool", pool.name, "--set", *assignments, "--reason", "x")

    assert expected in str(info.value)
    assert config_of(pool).siphon_pct == Decimal("0.2")


@pytest.mark.parametrize(
    ("value", "ok"), [("0", True), ("0.04", True), ("0.9999", True), ("1", False), ("-0.01", False)]
)
def test_risk_free_rate_is_an_annual_fraction_that_may_be_zero(value, ok):

    errors = validate_engine_config({"risk_free_rate": Decimal(value)})
    assert ("risk_free_rate" not in errors) is ok


def test_rule_config_takes_every_field_from_the_row_and_refuses_a_missing_one(db):
    from datetime import UTC, datetime

    from decisions.sizing import SizingConfig
    from portfolio.selectors import rule_config
    from portfolio.tier_controller import TierRules
    from tests import factories

    pool = factories.make_pool(now=datetime(2026, 11, 18, 16, tzinfo=UTC))
    EngineConfig.objects.filter(pool=pool).update(
        absolute_commitment_cap=Decimal("123"), tier_downgrade_drawdown=Decimal("0.2")
    )
    config = EngineConfig.objects.get(pool=pool)

    assert rule_config(SizingConfig, config).absolute_commitment_cap == Decimal("123")
    assert rule_config(TierRules, config, prefix="tier_").downgrade_drawdown == Decimal("0.2")
    with pytest.raises(AttributeError, match="no downgrade_success_rate for TierRules"):
        rule_config(TierRules, config)


# ---------------------------------------------------------------------------------------------
# pool_risk_limits command


def limits_of(pool) -> PoolRiskConfig:
    return PoolRiskConfig.objects.get(pool=pool)


def test_pool_risk_limits_prints_every_limit_with_percents(pool):
    output = run("--pool", pool.name, command="pool_risk_limits")

    assert f"Execution risk limits of pool {pool.name}" in output
    lines = {line.split()[0]: line.split()[1:] for line in output.splitlines()[2:]}
    assert list(lines) == list(POOL_RISK_FIELDS)
    assert lines["max_daily_loss_pct"] == ["0.05", "5", "%"]
    assert lines["max_sector_pct"] == ["0.4", "40", "%"]
    assert lines["max_open_commitments"] == ["10"]
    assert lines["max_order_notional"] == ["1000000"]  # make_pool raises the notional


def test_pool_risk_limits_sets_several_limits_with_their_audit_row(pool):
    output = run(
        *("--pool", pool.name, "--set", "max_order_notional=25000", "max_daily_loss_pct=0.04"),
        *("--reason", "smaller orders this week", "--actor", "ops"),
        command="pool_risk_limits",
    )

    limits = limits_of(pool)
    assert limits.max_order_notional == Decimal("25000")
    assert limits.max_daily_loss_pct == Decimal("0.04")
    assert f"Updated the execution risk limits of pool {pool.name}:" in output
    assert "1000000 → 25000" in output and "0.05 → 0.04" in output
    audit = OperatorAction.objects.exclude(action="create_pool").get(pool=pool)
    assert (audit.action, audit.actor, audit.via) == ("change_pool_risk_limits", "ops", "command")
    assert audit.reason == "smaller orders this week"
    assert audit.before == {"max_order_notional": "1000000", "max_daily_loss_pct": "0.05"}
    assert audit.after == {"max_order_notional": "25000", "max_daily_loss_pct": "0.04"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("max_sector_pct=1.5", "--reason", "x"), "max_sector_pct: 1.5 is not in (0, 1]"),
        (("max_open_commitments=0", "--reason", "x"), "not a whole number ≥ 1"),
        (("max_order_notional=0", "--reason", "x"), "max_order_notional: 0 is not > 0"),
        (("max_notional=5", "--reason", "x"), "did you mean max_order_notional"),
        (("max_sector_pct=0.3",), "--set needs --reason"),
        (("max_sector_pct=0.3", "--reason", " "), "--reason: a reason is required"),
    ],
)
def test_pool_risk_limits_refuses_and_writes_nothing(pool, args, expected):
    """Each case sets a valid limit beside the refused one: neither is saved."""
    before = limits_of(pool)

    with pytest.raises(CommandError) as info:
        run(
            *("--pool", pool.name, "--set", "max_orders_per_minute=60", *args),
            command="pool_risk_limits",
        )

    assert expected in str(info.value)
    after = limits_of(pool)
    assert after.max_orders_per_minute == before.max_orders_per_minute == 120
    assert after.updated_at == before.updated_at
    assert not OperatorAction.objects.filter(action="change_pool_risk_limits").exists()


def test_pool_risk_limits_reason_without_set_is_refused(pool):
    with pytest.raises(CommandError, match="--reason goes with --set"):
        run("--pool", pool.name, "--reason", "x", command="pool_risk_limits")


def test_pool_risk_limits_of_an_unknown_pool(db):
    with pytest.raises(CommandError, match="no pool named 'nowhere'"):
        run("--pool", "nowhere", command="pool_risk_limits")
