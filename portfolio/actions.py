"""Audited operator actions: every change an operator can make to a pool, one function each.

Each action is atomic, takes ``actor`` and ``reason`` as required keyword-only arguments, and
writes its ``OperatorAction`` row (who, when, what, before → after, why, through which
interface) in the same transaction as the change: the change and its audit row commit together
or not at all. The admin, the management commands and the API call these and nothing else, so
they leave the same rows. A refusal raises ``ActionError`` with a message per field and
changes nothing; an action that would change nothing (halting a halted pool) writes no row and
returns ``changed=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from portfolio.breakers import mirror_breakers_on_commit
from portfolio.config import (
    ENGINE_CONFIG_FIELDS,
    POOL_RISK_FIELDS,
    TIER_FIELDS,
    EngineConfigError,
    json_value,
    parse_config_values,
    validate_engine_config,
    validate_pool_risk_limits,
    validate_tier_params,
)
from portfolio.errors import ActionError
from portfolio.models import (
    AdapterKind,
    BreakerType,
    EngineConfig,
    OperatorAction,
    OperatorActionKind,
    Pool,
    PoolRiskConfig,
    ReconciliationEvent,
    ReconciliationStatus,
    RiskTier,
    RiskTierConfig,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.selectors import get_engine_config, get_pool_risk_config, in_force

__all__ = [
    "ActionError",
    "ActionResult",
    "acknowledge_reconciliation",
    "change_engine_config",
    "change_pool_risk_limits",
    "change_tier_params",
    "clear_breaker",
    "create_pool",
    "halt_pool",
    "record_operator_action",
    "resume_pool",
    "set_risk_tier",
]

REASON_MAX = 500
ACTOR_MAX = 150


@dataclass(frozen=True)
class ActionResult:
    """What an action did: ``changed`` False when there was nothing to change (no audit row);
    ``record`` the audit row otherwise; ``before``/``after`` the values it moved."""

    action: str
    pool: str | None
    changed: bool
    record: OperatorAction | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


def _who_and_why(actor: str, reason: str) -> tuple[str, str]:
    errors = {}
    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor:
        errors["actor"] = "who acts is required"
    elif len(actor) > ACTOR_MAX:
        errors["actor"] = f"at most {ACTOR_MAX} characters"
    if not reason:
        errors["reason"] = "a reason is required"
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"at most {REASON_MAX} characters"
    if errors:
        raise ActionError(errors)
    return actor, reason


def _locked_pool(pool: Pool | str) -> Pool:
    name = pool.name if isinstance(pool, Pool) else pool
    try:
        return Pool.objects.select_for_update().get(name=name)
    except Pool.DoesNotExist:
        raise ActionError({"pool": f"no pool named {name!r}"}) from None


def _audit(
    kind: str,
    pool: Pool | None,
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str,
    before: dict[str, Any],
    after: dict[str, Any],
    detail: str = "",
) -> ActionResult:
    record = OperatorAction.objects.create(
        pool=pool,
        action=kind,
        actor=actor,
        reason=reason,
        via=via,
        before=before,
        after=after,
        created_at=now,
    )
    return ActionResult(
        kind, pool.name if pool else None, True, record, before, after, detail or reason
    )


def record_operator_action(
    kind: str,
    pool: Pool | None,
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str = "",
) -> ActionResult:
    """Write the audit row of an operator action whose effect lives in another layer (a
    decision cycle requested by hand: ``decisions.control.request_cycle``), with the same
    checks of ``actor`` and ``reason`` as every action here. Call it inside the transaction
    that makes the change. Raises ``ActionError`` for a missing actor or reason, or an unknown
    ``kind``."""
    actor, reason = _who_and_why(actor, reason)
    if kind not in OperatorActionKind.values:
        raise ActionError({"action": f"unknown action {kind!r}"})
    return _audit(
        kind,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before=before or {},
        after=after or {},
        detail=detail,
    )


# --- pools ------------------------------------------------------------------------------------


@transaction.atomic
def create_pool(
    name: str,
    *,
    mode: str | None = None,
    cash: Decimal | None = None,
    tier: str | None = None,
    adapter: str = "paper",
    shadow_of: Pool | str | None = None,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
) -> Pool:
    """Create a pool with its engine configuration, its execution risk limits and its first
    tier history row (conservative unless told otherwise). Raises ``ValidationError`` for a
    bad name, mode, tier, adapter or cash, ``ActionError`` for a taken name.

    With ``shadow_of`` (a pool or its name) the pool is a shadow that follows it
    (docs/decisions.md, "Shadow pools"): the followed pool's mode, its starting cash and tier
    unless given, a copy of its engine settings and execution risk limits, and the paper
    broker. ``ActionError`` when the followed pool does not exist or is itself a shadow, or
    for another adapter or mode.
    """
    actor, reason = _who_and_why(actor, reason)
    followed = None
    if shadow_of is not None:
        followed = _followed_pool(shadow_of, name=name, mode=mode, adapter=adapter)
        start = _starting_values(followed)
        mode = followed.mode
        cash = start["cash"] if cash is None else cash
        tier = start["risk_tier"] if tier is None else tier
    missing = {key: "required" for key, value in (("mode", mode), ("cash", cash)) if value is None}
    if missing:
        raise ActionError(missing)
    tier = tier or RiskTier.CONSERVATIVE
    pool = Pool(
        name=name, mode=mode, cash=cash, risk_tier=tier, adapter=adapter, shadow_of=followed
    )
    # A taken name is the ActionError below, not a ValidationError of full_clean.
    pool.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            pool.save()
    except IntegrityError:
        raise ActionError({"name": f"a pool named {name!r} already exists"}) from None
    if followed is None:
        EngineConfig.objects.create(pool=pool)
        PoolRiskConfig.objects.create(pool=pool)
    else:
        engine, limits = get_engine_config(followed), get_pool_risk_config(followed)
        EngineConfig.objects.create(
            pool=pool, **{f: getattr(engine, f) for f in ENGINE_CONFIG_FIELDS}
        )
        PoolRiskConfig.objects.create(
            pool=pool, **{f: getattr(limits, f) for f in POOL_RISK_FIELDS}
        )
    RiskTierHistory.objects.create(
        pool=pool,
        previous_tier="",
        new_tier=tier,
        trigger=TierTrigger.INITIAL,
        reason="Pool created",
        actor=actor,
        changed_at=now,
    )
    after = {
        "mode": mode,
        "cash": json_value(Decimal(cash)),
        "risk_tier": tier,
        "adapter": adapter,
    }
    if followed is not None:
        after["shadow_of"] = followed.name
    _audit(
        OperatorActionKind.CREATE_POOL,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before={},
        after=after,
    )
    return pool


def _followed_pool(shadow_of: Pool | str, *, name: str, mode: str | None, adapter: str) -> Pool:
    """The pool a new shadow named ``name`` follows, or ``ActionError``: it must exist and not
    be a shadow itself; the shadow takes its mode and only the paper broker."""
    followed_name = shadow_of.name if isinstance(shadow_of, Pool) else str(shadow_of)
    followed = Pool.objects.filter(name=followed_name).first()
    errors = {}
    if followed is None:
        errors["shadow_of"] = f"no pool named {followed_name!r}"
    elif followed.name == name:
        errors["shadow_of"] = "a pool cannot follow itself"
    elif followed.shadow_of_id is not None:
        leader = Pool.objects.filter(pk=followed.shadow_of_id).values_list("name", flat=True)
        errors["shadow_of"] = (
            f"{followed.name!r} is itself a shadow (of {leader.first()!r}): a shadow follows a "
            "pool that is no shadow"
        )
    if adapter != AdapterKind.PAPER:
        errors["adapter"] = "a shadow pool sends its orders to the paper broker only"
    if followed is not None and mode is not None and mode != followed.mode:
        errors["mode"] = (
            f"a shadow takes the mode of the pool it follows ({followed.mode}), so that it is "
            "offered the same recommendations"
        )
    if errors:
        raise ActionError(errors)
    return followed


def _starting_values(pool: Pool) -> dict[str, Any]:
    """The cash and tier ``pool`` was created with (its ``create_pool`` audit row), or its
    current ones for a pool created before audit rows existed."""
    created = (
        OperatorAction.objects.filter(pool=pool, action=OperatorActionKind.CREATE_POOL)
        .order_by("created_at", "id")
        .values_list("after", flat=True)
        .first()
    ) or {}
    cash = created.get("cash")
    return {
        "cash": Decimal(str(cash)) if cash is not None else pool.cash,
        "risk_tier": created.get("risk_tier") or pool.risk_tier,
    }


@transaction.atomic
def halt_pool(
    pool: Pool | str, *, actor: str, reason: str, now: datetime, via: str = ""
) -> ActionResult:
    """Halt a pool: no new entries (decisions and the execution gate); exits still flow.
    A halted pool stays halted with its first reason."""
    actor, reason = _who_and_why(actor, reason)
    pool = _locked_pool(pool)
    if pool.halted:
        return ActionResult(OperatorActionKind.HALT, pool.name, False, detail="already halted")
    before = {"halted": False, "halt_reason": pool.halt_reason}
    pool.halted = True
    pool.halt_reason = f"{reason} ({actor})"[:REASON_MAX]
    pool.save(update_fields=["halted", "halt_reason", "updated_at"])
    after = {"halted": True, "halt_reason": pool.halt_reason}
    return _audit(
        OperatorActionKind.HALT,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before=before,
        after=after,
    )


@transaction.atomic
def resume_pool(
    pool: Pool | str, *, actor: str, reason: str, now: datetime, via: str = ""
) -> ActionResult:
    """Lift an operator's halt; the halt's reason is kept in the audit row's ``before``."""
    actor, reason = _who_and_why(actor, reason)
    pool = _locked_pool(pool)
    if not pool.halted:
        return ActionResult(OperatorActionKind.RESUME, pool.name, False, detail="not halted")
    before = {"halted": True, "halt_reason": pool.halt_reason}
    pool.halted = False
    pool.halt_reason = ""
    pool.save(update_fields=["halted", "halt_reason", "updated_at"])
    return _audit(
        OperatorActionKind.RESUME,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before=before,
        after={"halted": False, "halt_reason": ""},
    )


@transaction.atomic
def set_risk_tier(
    pool: Pool | str, tier: str, *, actor: str, reason: str, now: datetime, via: str = ""
) -> ActionResult:
    """Set the pool's risk tier by hand: a ``manual`` tier history row and the audit row. The
    tier scheduler may change it again at a later close."""
    actor, reason = _who_and_why(actor, reason)
    if tier not in RiskTier.values:
        raise ActionError({"tier": f"unknown tier {tier!r}; one of {', '.join(RiskTier.values)}"})
    pool = _locked_pool(pool)
    if pool.risk_tier == tier:
        return ActionResult(
            OperatorActionKind.SET_RISK_TIER, pool.name, False, detail=f"already {tier}"
        )
    previous = pool.risk_tier
    RiskTierHistory.objects.create(
        pool=pool,
        previous_tier=previous,
        new_tier=tier,
        trigger=TierTrigger.MANUAL,
        reason=reason,
        actor=actor,
        changed_at=now,
    )
    pool.risk_tier = tier
    pool.save(update_fields=["risk_tier", "updated_at"])
    return _audit(
        OperatorActionKind.SET_RISK_TIER,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before={"risk_tier": previous},
        after={"risk_tier": tier},
    )


@transaction.atomic
def clear_breaker(
    pool: Pool | str,
    breaker_type: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    entity: str | None = None,
    via: str = "",
) -> ActionResult:
    """Clear the breakers of a type in force now (one entity's cooldown when ``entity`` is
    given), recording who and why on each event and in the audit row. Nothing in force of that
    type: ``changed=False``."""
    actor, reason = _who_and_why(actor, reason)
    if breaker_type not in BreakerType.values:
        raise ActionError(
            {"breaker_type": f"unknown breaker type {breaker_type!r}; one of {BreakerType.values}"}
        )
    pool = _locked_pool(pool)
    events = in_force(pool, now).filter(trigger_type=breaker_type)
    if entity:
        events = events.filter(entity_id=entity)
    cleared = [
        {"event": pk, "entity": symbol, "expires_at": expires.isoformat()}
        for pk, symbol, expires in events.values_list("id", "entity_id", "expires_at")
    ]
    if not cleared:
        return ActionResult(
            OperatorActionKind.CLEAR_BREAKER, pool.name, False, detail="nothing in force"
        )
    events.update(cleared_at=now, cleared_by=actor, clear_reason=reason)
    mirror_breakers_on_commit(now)
    return _audit(
        OperatorActionKind.CLEAR_BREAKER,
        pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before={"type": breaker_type, "in_force": cleared},
        after={"type": breaker_type, "in_force": []},
        detail=f"cleared {len(cleared)} {breaker_type} breaker(s)",
    )


# --- configuration ----------------------------------------------------------------------------


def _change_row(
    row: models.Model,
    fields: tuple[str, ...],
    assignments: Mapping[str, Any],
    validate,
    error_class: type[ActionError] = ActionError,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse ``assignments``, validate the merged row, and save the changed fields of ``row``
    (locked by the caller): all of them or none. Returns (before, after) of the changed
    fields, JSON-safe."""
    if not assignments:
        raise error_class({"": "no setting given"})
    values, errors = parse_config_values(type(row), fields, assignments)
    merged = {name: getattr(row, name) for name in fields} | values
    for name, message in validate(merged).items():
        errors.setdefault(name, message)
    if errors:
        raise error_class(errors)
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    before = {name: json_value(getattr(row, name)) for name in changed}
    after = {name: json_value(value) for name, value in changed.items()}
    for name, value in changed.items():
        setattr(row, name, value)
    if changed:
        try:
            row.full_clean(exclude=[f.name for f in row._meta.fields if f.name not in changed])
        except ValidationError as exc:
            raise error_class({k: " ".join(v) for k, v in exc.message_dict.items()}) from None
        row.save(update_fields=[*changed, "updated_at"])
    return before, after


def _audit_change(
    kind: str,
    pool: Pool | None,
    before: dict[str, Any],
    after: dict[str, Any],
    actor: str,
    reason: str,
    now: datetime,
    via: str,
) -> ActionResult:
    """The audit row of a configuration change, or ``changed=False`` when no value moved."""
    if not after:
        return ActionResult(kind, pool.name if pool else None, False, detail="no value changed")
    return _audit(
        kind, pool, actor=actor, reason=reason, now=now, via=via, before=before, after=after
    )


@transaction.atomic
def change_engine_config(
    pool: Pool | str,
    assignments: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
) -> ActionResult:
    """Change several engine settings of a pool at once: all of them or none.

    ``assignments`` maps setting names to values (text or numbers). Each is parsed by its model
    field and the merged configuration checked by ``validate_engine_config``; any problem
    raises ``EngineConfigError`` with every problem found. The engine reads the row at the
    start of its next cycle. Setting values equal to the stored ones: ``changed=False``.
    """
    actor, reason = _who_and_why(actor, reason)
    pool = _locked_pool(pool)
    config = EngineConfig.objects.select_for_update().get(pk=get_engine_config(pool).pk)
    before, after = _change_row(
        config, ENGINE_CONFIG_FIELDS, assignments, validate_engine_config, EngineConfigError
    )
    return _audit_change(
        OperatorActionKind.CHANGE_ENGINE_CONFIG, pool, before, after, actor, reason, now, via
    )


@transaction.atomic
def change_pool_risk_limits(
    pool: Pool | str,
    assignments: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
) -> ActionResult:
    """Change the execution gate's limits of a pool (``pool_risk_configs``): all or none,
    validated by ``validate_pool_risk_limits``. The worker reads them for every order."""
    actor, reason = _who_and_why(actor, reason)
    pool = _locked_pool(pool)
    limits = PoolRiskConfig.objects.select_for_update().get(pk=get_pool_risk_config(pool).pk)
    before, after = _change_row(limits, POOL_RISK_FIELDS, assignments, validate_pool_risk_limits)
    return _audit_change(
        OperatorActionKind.CHANGE_POOL_RISK_LIMITS, pool, before, after, actor, reason, now, via
    )


@transaction.atomic
def change_tier_params(
    tier: str,
    assignments: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
) -> ActionResult:
    """Change a risk tier's parameters (shared by every pool in that tier): all or none,
    validated by ``validate_tier_params``. The audit row names the tier in ``before``/``after``
    and belongs to no pool."""
    actor, reason = _who_and_why(actor, reason)
    try:
        row = RiskTierConfig.objects.select_for_update().get(name=tier)
    except RiskTierConfig.DoesNotExist:
        raise ActionError({"tier": f"unknown tier {tier!r}"}) from None
    before, after = _change_row(row, TIER_FIELDS, assignments, validate_tier_params)
    if after:
        before, after = {"tier": tier, **before}, {"tier": tier, **after}
    return _audit_change(
        OperatorActionKind.CHANGE_TIER_CONFIG, None, before, after, actor, reason, now, via
    )


# --- position reconciliation ------------------------------------------------------------------


@transaction.atomic
def acknowledge_reconciliation(
    event: ReconciliationEvent | int,
    *,
    actor: str,
    reason: str,
    now: datetime,
    via: str = "",
) -> ActionResult:
    """Acknowledge an open reconciliation event: the operator has looked at the difference
    between the books and the broker (and corrected whatever needed correcting elsewhere).
    The entity's reduce-only hold ends with it. The books are not touched: reconciliation never
    overwrites them. A later run that finds the same difference (the broker's value less the
    books' unchanged) does not open a new event; a different one does.

    Raises ``ActionError`` for an unknown event or one already acknowledged (by whom and when).
    """
    actor, reason = _who_and_why(actor, reason)
    event_id = event.pk if isinstance(event, ReconciliationEvent) else event
    locked = (
        ReconciliationEvent.objects.select_for_update(of=("self",))
        .select_related("pool")
        .filter(pk=event_id)
        .first()
    )
    if locked is None:
        raise ActionError({"event": f"no reconciliation event #{event_id}"})
    if locked.status != ReconciliationStatus.OPEN:
        when = locked.acknowledged_at.isoformat() if locked.acknowledged_at else "earlier"
        raise ActionError({"event": f"already acknowledged by {locked.acknowledged_by} at {when}"})
    before = {
        "event": locked.pk,
        "subject": locked.subject,
        "symbol": locked.symbol,
        "books": json_value(locked.books_value),
        "broker": json_value(locked.broker_value),
        "status": locked.status,
    }
    locked.status = ReconciliationStatus.ACKNOWLEDGED
    locked.acknowledged_at = now
    locked.acknowledged_by = actor
    locked.acknowledge_reason = reason
    locked.save(
        update_fields=["status", "acknowledged_at", "acknowledged_by", "acknowledge_reason"]
    )
    what = f"{locked.symbol} units" if locked.symbol else "cash"
    return _audit(
        OperatorActionKind.ACKNOWLEDGE_RECONCILIATION,
        locked.pool,
        actor=actor,
        reason=reason,
        now=now,
        via=via,
        before=before,
        after={"event": locked.pk, "status": locked.status},
        detail=f"acknowledged the {what} difference of pool {locked.pool.name}",
    )
