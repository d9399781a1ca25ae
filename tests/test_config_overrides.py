"""``portfolio.config_overrides``: reading ``key=value`` settings and applying them through the
audited actions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio.config_overrides import (
    ConfigOverrides,
    OverrideError,
    apply_overrides,
    describe_valid_keys,
    parse_overrides,
)
from portfolio.models import EngineConfig, OperatorAction, Pool, RiskTierConfig
from tests import factories


def test_engine_settings_are_parsed_by_their_fields():
    overrides = parse_overrides(
        ["absolute_commitment_cap=2500", "max_active_commitments=8", "market_data_fallback=off"]
    )
    assert overrides.engine_values() == {
        "absolute_commitment_cap": Decimal("2500"),
        "max_active_commitments": 8,
        "market_data_fallback": False,
    }
    assert overrides.tier_params == ()
    assert overrides.risk_tier is None
    assert bool(overrides)
    assert overrides.pairs() == [
        "absolute_commitment_cap=2500",
        "max_active_commitments=8",
        "market_data_fallback=false",
    ]


def test_tier_keys_name_the_pools_own_tier_or_a_named_one():
    overrides = parse_overrides(
        ["tier.min_confidence=0.8", "moderate.max_position_pct=0.08", "risk_tier=moderate"]
    )
    assert overrides.risk_tier == "moderate"
    assert overrides.tier_params == (
        ("tier", "min_confidence", Decimal("0.8")),
        ("moderate", "max_position_pct", Decimal("0.08")),
    )
    assert overrides.tier_values("moderate") == {
        "moderate": {"min_confidence": Decimal("0.8"), "max_position_pct": Decimal("0.08")}
    }
    assert overrides.tier_values("aggressive") == {
        "aggressive": {"min_confidence": Decimal("0.8")},
        "moderate": {"max_position_pct": Decimal("0.08")},
    }
    assert overrides.given_keys() == [
        "risk_tier",
        "tier.min_confidence",
        "moderate.max_position_pct",
    ]


def test_pairs_may_be_given_as_tuples():
    assert parse_overrides([("daily_loss_pct", "0.04")]).engine_values() == {
        "daily_loss_pct": Decimal("0.04")
    }


def test_no_setting_is_an_empty_overrides():
    overrides = parse_overrides([])
    assert overrides == ConfigOverrides()
    assert not overrides


@pytest.mark.parametrize(
    ("pairs", "key", "fragment"),
    [
        (["daily_loss_pct"], "daily_loss_pct", "not key=value"),
        (["daily_loss=0.04"], "daily_loss", "did you mean daily_loss_pct"),
        (["daily_loss_pct=1.5"], "daily_loss_pct", "not in (0, 1]"),
        (["daily_loss_pct=abc"], "daily_loss_pct", "abc"),
        (["max_active_commitments=2.5"], "max_active_commitments", "2.5"),
        (["market_data_fallback=maybe"], "market_data_fallback", "not true or false"),
        (["min_confidence=0.8"], "min_confidence", "write tier.min_confidence"),
        (["tier.min_confidence=0"], "tier.min_confidence", "not in (0, 1]"),
        (["tier.min_confidenc=0.5"], "tier.min_confidenc", "did you mean min_confidence"),
        (["bold.min_confidence=0.5"], "bold.min_confidence", "unknown tier 'bold'"),
        (["risk_tier=bold"], "risk_tier", "unknown tier 'bold'"),
        (["daily_loss_pct=0.04", "daily_loss_pct=0.03"], "daily_loss_pct", "more than once"),
        (
            ["correlation_reduce_threshold=0.9", "correlation_reject_threshold=0.7"],
            "correlation_reduce_threshold",
            "must be below",
        ),
    ],
)
def test_a_bad_key_or_value_is_refused_by_name(pairs, key, fragment):
    with pytest.raises(OverrideError) as caught:
        parse_overrides(pairs)
    assert fragment in caught.value.errors[key]


def test_every_problem_is_reported_at_once():
    with pytest.raises(OverrideError) as caught:
        parse_overrides(["nope=1", "daily_loss_pct=2", "tier.min_confidence=0.5"])
    assert set(caught.value.errors) == {"nope", "daily_loss_pct"}


def test_the_valid_keys_are_listed_for_an_error_message():
    text = describe_valid_keys()
    assert "absolute_commitment_cap" in text
    assert "min_confidence" in text
    assert "risk_tier" in text
    assert "moderate" in text


@pytest.mark.django_db
def test_apply_goes_through_the_audited_actions(session_now):
    pool = factories.make_pool(name="alpha", now=session_now)
    overrides = parse_overrides(["absolute_commitment_cap=2500", "risk_tier=aggressive"])
    results = apply_overrides(pool, overrides, actor="ops", reason="what if", now=session_now)
    assert [r.action for r in results] == ["set_risk_tier", "change_engine_config"]
    pool.refresh_from_db()
    assert pool.risk_tier == "aggressive"
    assert EngineConfig.objects.get(pool=pool).absolute_commitment_cap == Decimal("2500")
    actions = OperatorAction.objects.filter(pool=pool, reason="what if")
    assert sorted(actions.values_list("action", flat=True)) == [
        "change_engine_config",
        "set_risk_tier",
    ]


@pytest.mark.django_db
def test_apply_checks_a_pair_against_the_pools_other_value(session_now):
    pool = factories.make_pool(name="alpha", now=session_now)
    overrides = parse_overrides(["correlation_reduce_threshold=0.9", "risk_tier=aggressive"])
    with pytest.raises(OverrideError) as caught:
        apply_overrides(pool, overrides, actor="ops", reason="what if", now=session_now)
    assert "correlation_reduce_threshold" in caught.value.errors
    pool.refresh_from_db()
    # All or nothing: the tier change made before the refusal is rolled back with it.
    assert pool.risk_tier == "moderate"
    assert not OperatorAction.objects.filter(pool=pool, reason="what if").exists()


@pytest.mark.django_db
def test_tier_parameters_are_refused_unless_shared_tiers_is_allowed(session_now):
    pool = factories.make_pool(name="alpha", now=session_now)
    overrides = parse_overrides(["tier.min_confidence=0.9"])
    before = RiskTierConfig.objects.get(name=pool.risk_tier).min_confidence
    with pytest.raises(OverrideError) as caught:
        apply_overrides(pool, overrides, actor="ops", reason="what if", now=session_now)
    assert "shared by every pool" in caught.value.errors["tier.min_confidence"]
    assert RiskTierConfig.objects.get(name=pool.risk_tier).min_confidence == before

    results = apply_overrides(
        pool, overrides, actor="ops", reason="what if", now=session_now, shared_tiers=True
    )
    assert [r.action for r in results] == ["change_tier_config"]
    assert RiskTierConfig.objects.get(name=pool.risk_tier).min_confidence == Decimal("0.9")


@pytest.mark.django_db
def test_tier_dot_follows_the_tier_just_set(session_now):
    pool = factories.make_pool(name="alpha", now=session_now)
    overrides = parse_overrides(["risk_tier=aggressive", "tier.max_position_pct=0.12"])
    apply_overrides(
        pool.name, overrides, actor="ops", reason="what if", now=session_now, shared_tiers=True
    )
    assert RiskTierConfig.objects.get(name="aggressive").max_position_pct == Decimal("0.12")
    assert Pool.objects.get(pk=pool.pk).risk_tier == "aggressive"
