"""Changed settings for a pool, written ``key=value``: parsed and checked once, applied through
the audited actions.

A replay (``manage.py replay --set …``) and a shadow pool take "the same pool, with these
settings changed". This module is the one reading of such a list, so every command accepts the
same keys, refuses the same mistakes and leaves the same audit rows:

- ``parse_overrides(pairs)`` reads ``["key=value", …]`` (or ``(key, value)`` pairs) into a
  frozen ``ConfigOverrides``, each value parsed by its model field and checked by the rules of
  ``portfolio.config``. A bad key or value raises ``OverrideError`` (an ``ActionError``) with
  one message per key; ``valid_keys()`` lists what is accepted, for the error text.
- ``apply_overrides(pool, overrides, actor=…, reason=…, now=…)`` makes the changes through
  ``set_risk_tier``, ``change_engine_config`` and ``change_tier_params`` of
  ``portfolio.actions``: each validates the merged row (``correlation_reduce_threshold`` below
  ``correlation_reject_threshold`` with the pool's other values, …) and writes its
  ``OperatorAction`` row. All of it runs in one transaction: every change or none.

Keys:

``<engine setting>=<value>``
    any ``EngineConfig`` field (``portfolio.config.ENGINE_CONFIG_FIELDS``), e.g.
    ``absolute_commitment_cap=2500`` or ``daily_loss_pct=0.04`` (fractions are fractions).
``risk_tier=<tier>``
    the pool's risk tier (``conservative``, ``moderate``, ``aggressive``); the tier controller
    may move it later, as it would any pool's.
``tier.<parameter>=<value>``
    a parameter of the pool's own risk tier (after ``risk_tier`` when both are given), one of
    ``portfolio.config.TIER_FIELDS``, e.g. ``tier.min_confidence=0.8``.
``<tier>.<parameter>=<value>``
    a parameter of a named tier, e.g. ``moderate.max_position_pct=0.08``.

Risk tier parameters are rows of ``risk_tier_configs`` shared by every pool in the tier (the
source's tier table): changing one changes it for every pool. ``apply_overrides`` therefore
refuses tier parameters unless the caller passes ``shared_tiers=True``, which only a caller whose
changes never commit should do (the replay rolls back everything it wrote).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from portfolio.actions import (
    ActionResult,
    change_engine_config,
    change_tier_params,
    set_risk_tier,
)
from portfolio.config import (
    ENGINE_CONFIG_FIELDS,
    TIER_FIELDS,
    ConfigValue,
    format_number,
    parse_config_values,
    validate_engine_config,
    validate_tier_params,
)
from portfolio.errors import ActionError
from portfolio.models import EngineConfig, Pool, RiskTier, RiskTierConfig

__all__ = [
    "OWN_TIER",
    "RISK_TIER_KEY",
    "ConfigOverrides",
    "OverrideError",
    "apply_overrides",
    "describe_valid_keys",
    "parse_overrides",
    "valid_keys",
]

#: The key that sets the pool's risk tier.
RISK_TIER_KEY = "risk_tier"
#: The prefix naming the pool's own tier in a tier parameter key (``tier.min_confidence``).
OWN_TIER = "tier"


class OverrideError(ActionError):
    """A setting could not be read; ``errors`` maps each key given (or ``""``) to its problem.
    Nothing was changed."""


@dataclass(frozen=True)
class ConfigOverrides:
    """Settings to change, parsed and checked one by one (not yet against a pool's others).

    ``engine``: (field, value) pairs of ``EngineConfig``, typed as the field stores them
    (``Decimal``, ``int``, ``bool``). ``tier_params``: (tier, parameter, value) triples, the
    tier ``OWN_TIER`` meaning the pool's own. ``risk_tier``: the tier to put the pool in, or
    None. Pairs keep the order they were given in.
    """

    engine: tuple[tuple[str, ConfigValue], ...] = ()
    tier_params: tuple[tuple[str, str, ConfigValue], ...] = ()
    risk_tier: str | None = None

    def __bool__(self) -> bool:
        return bool(self.engine or self.tier_params or self.risk_tier)

    def engine_values(self) -> dict[str, ConfigValue]:
        """{field: value} of the engine settings."""
        return dict(self.engine)

    def tier_values(self, own_tier: str) -> dict[str, dict[str, ConfigValue]]:
        """{tier: {parameter: value}}, ``OWN_TIER`` resolved to ``own_tier``. A parameter given
        both for the pool's tier by name and as ``tier.`` takes the ``tier.`` value."""
        values: dict[str, dict[str, ConfigValue]] = {}
        for tier, name, value in sorted(self.tier_params, key=lambda t: t[0] == OWN_TIER):
            values.setdefault(own_tier if tier == OWN_TIER else tier, {})[name] = value
        return values

    def given_keys(self) -> list[str]:
        """Every key given, as written (``tier.min_confidence``, ``moderate.min_confidence``)."""
        keys = [RISK_TIER_KEY] if self.risk_tier else []
        keys += [name for name, _ in self.engine]
        return keys + [f"{tier}.{name}" for tier, name, _ in self.tier_params]

    def pairs(self) -> list[str]:
        """``key=value`` texts, values without padding zeros: for headings and JSON."""
        shown = [f"{RISK_TIER_KEY}={self.risk_tier}"] if self.risk_tier else []
        shown += [f"{name}={_text(value)}" for name, value in self.engine]
        shown += [f"{tier}.{name}={_text(value)}" for tier, name, value in self.tier_params]
        return shown


def _text(value: ConfigValue) -> str:
    return str(value).lower() if isinstance(value, bool) else format_number(value)


def valid_keys() -> dict[str, tuple[str, ...]]:
    """What ``parse_overrides`` accepts, by kind: engine settings, ``risk_tier`` and the tier
    parameters (each written ``tier.<name>`` or ``<tier>.<name>``)."""
    return {
        "engine settings": ENGINE_CONFIG_FIELDS,
        "risk tier": (RISK_TIER_KEY,),
        "tier parameters (tier.<name> or <tier>.<name>)": TIER_FIELDS,
        "tiers": tuple(RiskTier.values),
    }


def describe_valid_keys() -> str:
    """``valid_keys()`` as a few readable lines, for an error message."""
    return "\n".join(f"{kind}: {', '.join(names)}" for kind, names in valid_keys().items())


def _split(pair: str | tuple[str, str]) -> tuple[str, str] | None:
    if isinstance(pair, tuple):
        key, value = pair
    else:
        key, sep, value = str(pair).partition("=")
        if not sep:
            return None
    key, value = str(key).strip(), str(value).strip()
    return (key, value) if key and value else None


def parse_overrides(pairs: Iterable[str | tuple[str, str]]) -> ConfigOverrides:
    """Read ``key=value`` settings (see the module docstring for the keys) into
    ``ConfigOverrides``.

    Each value is parsed by its model field (whole numbers for counts, at most the field's
    decimal places, ``true``/``false`` for on/off settings) and checked by
    ``validate_engine_config`` / ``validate_tier_params`` on the values given (a pair such as
    ``correlation_reduce_threshold`` < ``correlation_reject_threshold`` is checked here when
    both are given, else against the pool's values when applied). Raises ``OverrideError``
    listing every problem: a text without ``=``, an unknown key (with the closest names), a
    bad value, a key given twice. Pure apart from reading the model definitions: no query.
    """
    errors: dict[str, str] = {}
    engine_raw: dict[str, str] = {}
    tier_raw: dict[str, dict[str, str]] = {}
    risk_tier: str | None = None
    seen: set[str] = set()
    for pair in pairs:
        split = _split(pair)
        if split is None:
            errors[str(pair)] = "not key=value"
            continue
        key, value = split
        if key in seen:
            errors[key] = "given more than once"
            continue
        seen.add(key)
        if key == RISK_TIER_KEY:
            if value not in RiskTier.values:
                errors[key] = f"unknown tier {value!r}; one of {', '.join(RiskTier.values)}"
            else:
                risk_tier = value
            continue
        prefix, dot, name = key.partition(".")
        if dot:
            if prefix != OWN_TIER and prefix not in RiskTier.values:
                errors[key] = (
                    f"unknown tier {prefix!r}: write tier.<parameter> for the pool's own tier "
                    f"or <tier>.<parameter> with one of {', '.join(RiskTier.values)}"
                )
                continue
            tier_raw.setdefault(prefix, {})[name] = value
            continue
        engine_raw[key] = value

    engine, engine_errors = parse_config_values(EngineConfig, ENGINE_CONFIG_FIELDS, engine_raw)
    for key, message in engine_errors.items():
        if message.startswith("unknown setting") and key in TIER_FIELDS:
            message = f"a risk tier parameter: write tier.{key} (or <tier>.{key})"
        errors[key] = message
    for key, message in validate_engine_config(engine).items():
        errors.setdefault(key, message)

    tier_params: list[tuple[str, str, ConfigValue]] = []
    for tier, raw in tier_raw.items():
        values, tier_errors = parse_config_values(RiskTierConfig, TIER_FIELDS, raw)
        tier_errors |= {
            name: message
            for name, message in validate_tier_params(values).items()
            if name not in tier_errors
        }
        for name, message in tier_errors.items():
            errors[f"{tier}.{name}"] = message
        tier_params += [(tier, name, value) for name, value in values.items()]
    if errors:
        raise OverrideError(errors)
    return ConfigOverrides(
        engine=tuple(engine.items()), tier_params=tuple(tier_params), risk_tier=risk_tier
    )


@transaction.atomic
def apply_overrides(
    pool: Pool | str,
    overrides: ConfigOverrides,
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
    shared_tiers: bool = False,
) -> list[ActionResult]:
    """Make the changes of ``overrides`` to ``pool`` through the audited actions, in one
    transaction: the risk tier (``set_risk_tier``), then the engine settings
    (``change_engine_config``, merged with the pool's and validated as a whole), then the tier
    parameters (``change_tier_params``, one call per tier). Returns the actions' results, in
    that order (``changed=False`` ones included).

    Tier parameters are shared by every pool in the tier: they are refused (``OverrideError``,
    nothing changed) unless ``shared_tiers`` is True. An action's refusal (an unknown pool, a
    merged configuration that breaks a rule) raises ``OverrideError`` with its messages under
    the keys as given, and rolls back the changes already made here.
    """
    if overrides.tier_params and not shared_tiers:
        raise OverrideError(
            {
                key: "risk tier parameters are shared by every pool in the tier; changing them "
                "here would change every such pool"
                for key in overrides.given_keys()
                if "." in key
            }
        )
    audit = {"actor": actor, "reason": reason, "now": now, "via": via}
    results: list[ActionResult] = []
    if overrides.risk_tier:
        results.append(
            _refused_as(set_risk_tier, {"tier": RISK_TIER_KEY}, pool, overrides.risk_tier, **audit)
        )
    if overrides.engine:
        results.append(
            _refused_as(change_engine_config, {}, pool, overrides.engine_values(), **audit)
        )
    if overrides.tier_params:
        name = pool.name if isinstance(pool, Pool) else pool
        own = Pool.objects.filter(name=name).values_list("risk_tier", flat=True).first()
        if own is None:
            raise OverrideError({"pool": f"no pool named {name!r}"})
        written = {
            (own if tier == OWN_TIER else tier, param): f"{tier}.{param}"
            for tier, param, _ in overrides.tier_params
        }
        for tier, values in overrides.tier_values(own).items():
            keys = {param: written[tier, param] for param in values}
            results.append(_refused_as(change_tier_params, keys, tier, _as_text(values), **audit))
    return results


def _refused_as(action, keys: Mapping[str, str], *args, **kwargs) -> ActionResult:
    """Run ``action``; its refusal as an ``OverrideError`` naming the keys as they were given
    (``keys`` maps the action's field names to them)."""
    try:
        return action(*args, **kwargs)
    except ActionError as exc:
        raise OverrideError({keys.get(k, k): message for k, message in exc.errors.items()}) from exc


def _as_text(values: Mapping[str, ConfigValue]) -> dict[str, str]:
    """Typed values back to the text the actions parse (they parse every value they get)."""
    return {name: _text(value) for name, value in values.items()}
