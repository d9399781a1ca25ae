"""Configuration versions: the settings a decision was made with, as a content hash.

Every decision record carries the version of the configuration that made it. A version is the
SHA-256 of a canonical document (``config_document``) holding what changes a decision:

- ``engine``: every editable engine setting of the pool (``risk_configs``: all of
  ``portfolio.config.ENGINE_CONFIG_FIELDS``, i.e. every column but ``id``, ``pool`` and
  ``updated_at``). The whole row counts, not only the numbers the decision rules read: the
  guardian loops that read the rest (stops, breakers, the reserve, the tier controller) shape
  the pool each decision sees.
- ``tiers``: every risk tier's parameters (``risk_tier_configs``: ``TIER_FIELDS`` of each tier,
  by tier name). All tiers, not only the pool's current one: the tier controller moves a pool
  between them, and the tier in force is on each decision record already (``risk_tier``).

Left out: ids, timestamps, the pool's name, its current tier, its state (cash, halt, breakers),
and the execution gate's limits (``pool_risk_configs``), which decide whether an order passes
the gate, not what is decided.

The document is JSON with sorted keys; decimals are text without trailing zeros
(``Decimal("0.300000")`` → ``"0.3"``, as ``portfolio.config.format_number`` writes them), whole
numbers numbers, switches booleans, so the same settings give the same digest however they
were read. Versions live in ``config_versions`` (``ConfigVersion``): created on first use by a
decision cycle, never changed, shared by every pool with the same settings.

``diff_documents`` / ``diff_versions`` compare two versions setting by setting, each change
with a sentence: "changed `max_sector_pct` of moderate from 0.3 to 0.25".
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from portfolio.config import ENGINE_CONFIG_FIELDS, TIER_FIELDS, format_number
from portfolio.models import ConfigVersion, EngineConfig, Pool, RiskTierConfig
from portfolio.selectors import get_engine_config

__all__ = [
    "Change",
    "config_document",
    "current_version",
    "describe_changes",
    "diff_documents",
    "diff_versions",
    "digest_of",
    "ensure_version",
    "forget_known_versions",
    "version_digest",
]

#: The document's layout; a change of layout (not of values) bumps it, so old digests stay
#: distinguishable from new ones.
DOCUMENT_FORMAT = 1


# --- the document (pure) ----------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """A setting's value as the document holds it: Decimal as normalized text, the rest as
    is (int, bool, text)."""
    if isinstance(value, Decimal):
        return format_number(value)
    if isinstance(value, float):
        # No float is a setting; a float given anyway must not hash differently from its text.
        return format_number(Decimal(str(value)))
    return value


def _read(source: Any, name: str) -> Any:
    return source[name] if isinstance(source, Mapping) else getattr(source, name)


def config_document(engine_config: Any, tier_params: Iterable[Any]) -> dict[str, Any]:
    """The canonical configuration document of a pool (see the module docstring).

    ``engine_config`` is an ``EngineConfig`` row or a mapping with every
    ``ENGINE_CONFIG_FIELDS`` name; ``tier_params`` are ``RiskTierConfig`` rows, ``TierParams``
    or mappings, each with ``name`` and every ``TIER_FIELDS`` name. Pure: no query.
    """
    return {
        "format": DOCUMENT_FORMAT,
        "engine": {name: _canonical(_read(engine_config, name)) for name in ENGINE_CONFIG_FIELDS},
        "tiers": {
            str(_read(tier, "name")): {name: _canonical(_read(tier, name)) for name in TIER_FIELDS}
            for tier in tier_params
        },
    }


def canonical_json(document: Mapping[str, Any]) -> str:
    """The exact text hashed: keys sorted, no spaces, ASCII only."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest_of(document: Mapping[str, Any]) -> str:
    """SHA-256 (64 hex digits) of ``canonical_json(document)``."""
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


# --- differences (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One setting that differs between two versions.

    ``path`` is ``("engine", setting)`` or ``("tiers", tier, parameter)``; ``before`` /
    ``after`` the document's values (``None`` when the setting exists on one side only).
    """

    path: tuple[str, ...]
    before: Any
    after: Any

    @property
    def setting(self) -> str:
        return self.path[-1]

    @property
    def tier(self) -> str | None:
        return self.path[1] if self.path[0] == "tiers" and len(self.path) == 3 else None

    @property
    def sentence(self) -> str:
        """``changed `max_sector_pct` of moderate from 0.3 to 0.25``."""
        where = f"`{self.setting}`" + (f" of {self.tier}" if self.tier else "")
        if self.before is None:
            return f"added {where} ({_shown(self.after)})"
        if self.after is None:
            return f"removed {where} (was {_shown(self.before)})"
        return f"changed {where} from {_shown(self.before)} to {_shown(self.after)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": ".".join(self.path),
            "setting": self.setting,
            "tier": self.tier,
            "before": self.before,
            "after": self.after,
            "sentence": self.sentence,
        }


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _walk(before: Any, after: Any, path: tuple[str, ...]) -> Iterable[Change]:
    # A part present on one side only (a tier added) is walked setting by setting.
    if before is None and isinstance(after, Mapping):
        before = {}
    if after is None and isinstance(before, Mapping):
        after = {}
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            yield from _walk(before.get(key), after.get(key), (*path, str(key)))
    elif before != after:
        yield Change(path, before, after)


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Every setting whose value differs from ``before`` to ``after``, engine settings first,
    then tiers, each part by name. The ``format`` key is compared like a setting. Pure."""
    return list(_walk(before, after, ()))


def diff_versions(a: ConfigVersion, b: ConfigVersion) -> list[Change]:
    """``diff_documents`` of two stored versions: what changed from ``a`` to ``b``."""
    return diff_documents(a.content, b.content)


def describe_changes(a: ConfigVersion | str, b: ConfigVersion | str, changes: list[Change]) -> str:
    """One line per change, after the versions' short digests:
    ``version b3f2c1d0 → 9a8e7f6d: changed `max_sector_pct` of moderate from 0.3 to 0.25``."""
    first = a.digest if isinstance(a, ConfigVersion) else a
    second = b.digest if isinstance(b, ConfigVersion) else b
    head = f"version {first[:8]} → {second[:8]}"
    if not changes:
        return f"{head}: no setting changed"
    return f"{head}: " + "; ".join(change.sentence for change in changes)


# --- stored versions --------------------------------------------------------------------------

#: Digests known to be committed in ``config_versions``, with when they were last confirmed
#: (monotonic seconds). A digest is remembered only once the transaction that wrote or found
#: it has committed, so a rolled-back insert is never taken for a stored row.
_known: dict[str, float] = {}
_known_lock = threading.Lock()
#: How long a remembered digest is trusted before the row is confirmed again (one insert that
#: does nothing): bounds the time a restored or flushed database could surprise a process.
KNOWN_FOR_SECONDS = 600.0


def forget_known_versions(**_signal_kwargs: Any) -> None:
    """Forget every remembered digest (connected to ``post_migrate``, which also follows a
    database flush)."""
    with _known_lock:
        _known.clear()


def _is_known(digest: str) -> bool:
    seen = _known.get(digest)
    return seen is not None and time.monotonic() - seen < KNOWN_FOR_SECONDS


def _remember(digest: str) -> None:
    # Run by on_commit. Inside an atomic block means a test capturing the callbacks runs them
    # before any commit: nothing is known then.
    if connection.in_atomic_block:
        return
    with _known_lock:
        _known[digest] = time.monotonic()


def ensure_version(document: Mapping[str, Any], *, pool: Pool | None = None) -> str:
    """Store ``document`` as a version unless it is stored already; return its digest.

    Race-safe: an ``INSERT … ON CONFLICT DO NOTHING`` (``bulk_create(ignore_conflicts=True)``),
    so two engines writing the same new version at once both succeed, and nothing is raised
    inside the caller's transaction. Queries: none when the digest is known to this process
    (committed), else one.
    """
    digest = digest_of(document)
    if _is_known(digest):
        return digest
    ConfigVersion.objects.bulk_create(
        [ConfigVersion(digest=digest, content=dict(document), first_pool=pool)],
        ignore_conflicts=True,
    )
    transaction.on_commit(lambda: _remember(digest))
    return digest


def tier_rows() -> list[dict[str, Any]]:
    """Every risk tier's name and parameters. One query."""
    return list(RiskTierConfig.objects.order_by("level").values("name", *TIER_FIELDS))


def version_digest(pool: Pool, config: EngineConfig | None = None) -> str:
    """The digest of ``pool``'s configuration now, its version stored if new.

    The decision cycle's hook: with ``config`` given (the cycle has it), one query (the tier
    rows) when the version is known to this process, two the first time.
    """
    config = config or get_engine_config(pool)
    return ensure_version(config_document(config, tier_rows()), pool=pool)


def current_version(pool: Pool, config: EngineConfig | None = None) -> ConfigVersion:
    """The stored version of ``pool``'s configuration now (created on first use)."""
    return ConfigVersion.objects.get(pk=version_digest(pool, config))


def current_document(
    pool: Pool, config: EngineConfig | None = None, *, tiers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``pool``'s configuration document now, without storing it. Two queries at most: none
    with ``config`` and ``tiers`` (``tier_rows()``) given."""
    return config_document(
        config or get_engine_config(pool), tier_rows() if tiers is None else tiers
    )


def previous_version(version: ConfigVersion, decisions: QuerySet) -> ConfigVersion | None:
    """The version a pool decided with just before it first decided with ``version``: the one
    to diff against. None when ``version`` was its first (or it never used it).

    ``decisions`` are the pool's decision records (``DecisionRecord.objects.filter(pool=…)``,
    given by the caller: this layer does not know the decisions app). Two queries, each on the
    records' ``(pool, evaluated_at)`` index.
    """
    first = (
        decisions.filter(config_version=version)
        .order_by("evaluated_at", "id")
        .values_list("evaluated_at", flat=True)
        .first()
    )
    if first is None:
        return None
    earlier = (
        decisions.filter(evaluated_at__lt=first, config_version__isnull=False)
        .exclude(config_version=version)
        .order_by("-evaluated_at", "-id")
        .select_related("config_version")
        .first()
    )
    return earlier.config_version if earlier else None
