"""Reading, parsing and validating a pool's configuration: engine settings, the execution
gate's risk limits and the risk tiers' parameters.

``validate_engine_config``, ``validate_pool_risk_limits`` and ``validate_tier_params`` hold every
rule those rows must satisfy beyond the field types; they are pure, so the admin's forms, the
commands, the API and the audited actions (``portfolio.actions``, the only code that changes
them) share them. The same rules are check constraints in the database, as a last line of
defence.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from portfolio.errors import ActionError
from portfolio.models import EngineConfig, Pool, PoolRiskConfig
from portfolio.selectors import get_engine_config

#: Every editable EngineConfig field, in model order.
ENGINE_CONFIG_FIELDS: tuple[str, ...] = tuple(
    field.name
    for field in EngineConfig._meta.concrete_fields
    if field.name not in {"id", "pool", "updated_at"}
)
FRACTION_FIELDS = frozenset(EngineConfig.FRACTION_FIELDS)
POSITIVE_FIELDS = frozenset(EngineConfig.POSITIVE_FIELDS)
INTEGER_FIELDS = frozenset(
    field.name
    for field in EngineConfig._meta.concrete_fields
    if isinstance(field, models.IntegerField) and field.name in ENGINE_CONFIG_FIELDS
)
#: On/off settings (``market_data_fallback``): ``True`` or ``False``, never a number.
BOOLEAN_FIELDS = frozenset(
    field.name
    for field in EngineConfig._meta.concrete_fields
    if isinstance(field, models.BooleanField) and field.name in ENGINE_CONFIG_FIELDS
)
#: Words an on/off setting is written with in a command or a JSON text value.
BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
#: (lower, upper): the first must stay strictly below the second.
ORDERED_PAIRS = (
    ("correlation_reduce_threshold", "correlation_reject_threshold"),
    ("report_reject_sessions", "report_reduce_sessions"),
)

ConfigValue = int | Decimal | bool


class EngineConfigError(ActionError):
    """The configuration was not changed; ``errors`` maps each key (or ``""``) to its problem."""


def _as_decimal(value: Any) -> Decimal | None:
    """``value`` as a Decimal, or None when it is not a number (bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value)) if math.isfinite(value) else None
    return None


def validate_engine_config(values: dict[str, Any]) -> dict[str, str]:
    """The problems of an engine configuration, as {field: message}; empty when valid.

    ``values`` maps field names to Python values (``Decimal``/``int``), normally every field of
    the configuration with the proposed changes merged in. Missing or None fields are skipped
    (a ModelForm leaves out fields that already failed), and keys that are not engine settings
    (``pool``, ``id``) are ignored. Rules: fractions (``EngineConfig.FRACTION_FIELDS``, 0.05 =
    5 %) in (0, 1]; counts, periods and durations (``EngineConfig.POSITIVE_FIELDS``) integers
    ≥ 1; ``report_reject_sessions`` and ``paper_slippage_bps`` ≥ 0;
    ``absolute_commitment_cap`` (dollars) > 0; ``diversification_bonus`` (a multiplier) ≥ 1;
    ``correlation_reduce_threshold`` < ``correlation_reject_threshold``;
    ``report_reject_sessions`` < ``report_reduce_sessions``; on/off settings
    (``BOOLEAN_FIELDS``) ``True`` or ``False``. Pure: no database access.
    """
    errors: dict[str, str] = {}
    numbers: dict[str, Decimal] = {}
    for name in ENGINE_CONFIG_FIELDS:
        value = values.get(name)
        if value is None:
            continue
        if name in BOOLEAN_FIELDS:
            if not isinstance(value, bool):
                errors[name] = f"{value!r} is not true or false"
            continue
        number = _as_decimal(value)
        if number is None:
            errors[name] = f"{value!r} is not a number"
            continue
        shown = format_number(number)
        if name in INTEGER_FIELDS and number != number.to_integral_value():
            errors[name] = f"{shown} is not a whole number"
        elif name in FRACTION_FIELDS:
            if not Decimal(0) < number <= Decimal(1):
                errors[name] = f"{shown} is not in (0, 1]: a fraction, 0.05 means 5 %"
        elif name in POSITIVE_FIELDS:
            if number < 1:
                errors[name] = f"{shown} is not ≥ 1"
        elif name == "absolute_commitment_cap":
            if number <= 0:
                errors[name] = f"{shown} is not > 0 (dollars)"
        elif name == "risk_free_rate":
            if not Decimal(0) <= number < Decimal(1):
                errors[name] = f"{shown} is not in [0, 1): an annual fraction, 0.04 means 4 %"
        elif name == "diversification_bonus":
            if number < 1:
                errors[name] = f"{shown} is not ≥ 1 (a multiplier, 1.2 = +20 %)"
        elif number < 0:
            errors[name] = f"{shown} is negative"
        numbers[name] = number

    for lower, upper in ORDERED_PAIRS:
        if lower in errors or upper in errors or lower not in numbers or upper not in numbers:
            continue
        if numbers[lower] >= numbers[upper]:
            errors[lower] = (
                f"{format_number(numbers[lower])} must be below {upper} "
                f"({format_number(numbers[upper])})"
            )
    return errors


def format_number(value: ConfigValue) -> str:
    """A setting's value without trailing zeros: Decimal("0.050000") → "0.05"."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


@dataclass(frozen=True)
class EngineConfigView:
    """A pool's engine configuration: every field's value, in model order.

    Fractions are fractions (0.05 = 5 %); ``is_fraction`` tells which fields are.
    """

    pool: str
    values: dict[str, ConfigValue]
    updated_at: datetime

    @staticmethod
    def is_fraction(name: str) -> bool:
        return name in FRACTION_FIELDS


@dataclass(frozen=True)
class EngineConfigChange:
    """The fields an update set: {field: (previous value, new value)}."""

    pool: str
    changes: dict[str, tuple[ConfigValue, ConfigValue]]


def _pool(pool_name: str) -> Pool:
    try:
        return Pool.objects.get(name=pool_name)
    except Pool.DoesNotExist:
        raise EngineConfigError({"": f"no pool named {pool_name!r}"}) from None


def _view(pool: Pool, config: EngineConfig) -> EngineConfigView:
    values = {name: getattr(config, name) for name in ENGINE_CONFIG_FIELDS}
    return EngineConfigView(pool.name, values, config.updated_at)


def get_engine_config_values(pool_name: str) -> EngineConfigView:
    """The engine configuration of the pool named ``pool_name`` (created with the defaults if
    missing). Raises ``EngineConfigError`` for an unknown pool. Two queries."""
    pool = _pool(pool_name)
    return _view(pool, get_engine_config(pool))


def parse_config_values(
    model: type[models.Model],
    fields: tuple[str, ...],
    assignments: Mapping[str, Any],
) -> tuple[dict[str, ConfigValue], dict[str, str]]:
    """Typed values of ``{field: value}`` assignments to ``model``'s ``fields``, and the
    problems found.

    Each value (text, or a number from JSON) is read by its model field (integer fields take
    whole numbers, decimal fields at most their decimal places; an on/off field takes a JSON
    boolean or one of ``BOOLEAN_WORDS``). An unknown key gets a "did you mean" with the closest
    field names.
    """
    values: dict[str, ConfigValue] = {}
    errors: dict[str, str] = {}
    for key, raw in assignments.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            errors[key] = f"unknown setting{hint}"
            continue
        if isinstance(model._meta.get_field(key), models.BooleanField):
            flag = raw if isinstance(raw, bool) else BOOLEAN_WORDS.get(str(raw).strip().lower())
            if flag is None:
                errors[key] = f"{raw!r} is not true or false (true/false, yes/no, on/off, 1/0)"
            else:
                values[key] = flag
            continue
        if isinstance(raw, bool) or raw is None or isinstance(raw, list | dict):
            errors[key] = f"{raw!r} is not a number"
            continue
        text = str(raw).strip()
        if isinstance(raw, float) and not math.isfinite(raw):
            errors[key] = f"{text} is not a number"
            continue
        field = model._meta.get_field(key)
        try:
            values[key] = field.clean(text, None)
        except ValidationError as exc:
            message = " ".join(exc.messages)
            errors[key] = message if text in message else f"{message} (got {text!r})"
    return values, errors


def parse_engine_config_values(
    assignments: Mapping[str, Any],
) -> tuple[dict[str, ConfigValue], dict[str, str]]:
    """``parse_config_values`` for the engine settings."""
    return parse_config_values(EngineConfig, ENGINE_CONFIG_FIELDS, assignments)


#: Every editable PoolRiskConfig field, in model order.
POOL_RISK_FIELDS: tuple[str, ...] = tuple(
    field.name
    for field in PoolRiskConfig._meta.concrete_fields
    if field.name not in {"id", "pool", "updated_at"}
)
#: Every editable RiskTierConfig field (name and level identify the tier and never change).
TIER_FIELDS: tuple[str, ...] = (
    "min_confidence",
    "max_position_pct",
    "stop_loss_atr_multiplier",
    "reward_risk_ratio",
    "max_sector_pct",
    "max_portfolio_heat",
)


def _check_numbers(
    values: Mapping[str, Any],
    *,
    fractions: tuple[str, ...] = (),
    at_least_one: tuple[str, ...] = (),
    positive: tuple[str, ...] = (),
) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in (*fractions, *at_least_one, *positive):
        value = values.get(name)
        if value is None:
            continue
        number = _as_decimal(value)
        if number is None:
            errors[name] = f"{value!r} is not a number"
        elif name in fractions and not Decimal(0) < number <= Decimal(1):
            errors[name] = f"{format_number(number)} is not in (0, 1]: a fraction, 0.05 means 5 %"
        elif name in at_least_one and (number < 1 or number != number.to_integral_value()):
            errors[name] = f"{format_number(number)} is not a whole number ≥ 1"
        elif name in positive and number <= 0:
            errors[name] = f"{format_number(number)} is not > 0"
    return errors


def validate_pool_risk_limits(values: Mapping[str, Any]) -> dict[str, str]:
    """The problems of a pool's execution risk limits, as {field: message}; empty when valid.

    ``max_sector_pct`` and ``max_daily_loss_pct`` are fractions in (0, 1] (0.05 = 5 %);
    ``max_open_commitments`` and ``max_orders_per_minute`` whole numbers ≥ 1;
    ``max_order_notional`` dollars > 0. Missing or None fields are skipped. Pure.
    """
    return _check_numbers(
        values,
        fractions=("max_sector_pct", "max_daily_loss_pct"),
        at_least_one=("max_open_commitments", "max_orders_per_minute"),
        positive=("max_order_notional",),
    )


def validate_tier_params(values: Mapping[str, Any]) -> dict[str, str]:
    """The problems of a risk tier's parameters, as {field: message}; empty when valid.

    ``min_confidence``, ``max_position_pct``, ``max_sector_pct`` and ``max_portfolio_heat`` are
    fractions in (0, 1]; ``stop_loss_atr_multiplier`` and ``reward_risk_ratio`` multipliers
    above 0. Missing or None fields are skipped. Pure.
    """
    return _check_numbers(
        values,
        fractions=("min_confidence", "max_position_pct", "max_sector_pct", "max_portfolio_heat"),
        positive=("stop_loss_atr_multiplier", "reward_risk_ratio"),
    )


def json_value(value: Any) -> Any:
    """A configuration value as an audit row stores it: Decimals as their shortest text."""
    if isinstance(value, Decimal):
        return format_number(value)
    return value
