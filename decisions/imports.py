"""Bulk import of upstream recommendations from JSON Lines (orchestration).

One JSON object per line: ``id, entity, action, mode, confidence, generated_at`` required,
``thesis`` and ``risk_classification`` optional. The whole file is validated first and nothing
is written when any line is bad (``ImportValidationError`` lists every bad line by number);
a valid file is inserted in one transaction with ``bulk_create``.

``parse_recommendation`` validates one decoded object without touching the database (a
``generated_at`` more than ``FUTURE_TOLERANCE_SECONDS`` after the present is refused unless a
simulation allows it), and ``reference_problems`` checks a batch against the database (entity
known, id new). The REST API validates with the same ``parse_recommendation`` and writes
through ``ingest_recommendations``, which is idempotent on ``id`` and asks for a decision cycle
on commit (``decisions.triggers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction

from decisions.models import Recommendation, RecommendationAction, RecommendationMode
from decisions.triggers import pools_for, request_cycles
from portfolio.imports import (
    DEFAULT_MAX_BYTES,
    WRITE_BATCH,
    DateLimits,
    ImportFailed,
    ImportResult,
    ImportValidationError,
    LineError,
    Source,
    chunked,
    known_symbols,
    parse_aware_datetime,
    parse_symbol,
    read_lines,
    shown,
)

REQUIRED_FIELDS = ("id", "entity", "action", "mode", "confidence", "generated_at")
OPTIONAL_FIELDS = ("thesis", "risk_classification")
ID_MAX_LENGTH = Recommendation._meta.get_field("id").max_length
RISK_CLASSIFICATION_MAX_LENGTH = Recommendation._meta.get_field("risk_classification").max_length
#: Confidence is stored with 5 decimal places; finer upstream scores are rounded half-even.
CONFIDENCE_QUANTUM = Decimal("0.00001")


@dataclass(frozen=True)
class RecommendationInput:
    """A validated recommendation, ready to store. ``confidence`` is a fraction in [0, 1]."""

    id: str
    entity: str
    action: str
    mode: str
    confidence: Decimal
    generated_at: datetime
    thesis: str = ""
    risk_classification: str = ""

    @classmethod
    def from_model(cls, row: Recommendation) -> RecommendationInput:
        return cls(
            id=row.id,
            entity=row.entity_id,
            action=row.action,
            mode=row.mode,
            confidence=row.confidence,
            generated_at=row.generated_at,
            thesis=row.thesis,
            risk_classification=row.risk_classification,
        )

    def to_model(self) -> Recommendation:
        return Recommendation(
            id=self.id,
            entity_id=self.entity,
            action=self.action,
            mode=self.mode,
            confidence=self.confidence,
            generated_at=self.generated_at,
            thesis=self.thesis,
            risk_classification=self.risk_classification,
        )


class RecommendationInvalid(ValueError):
    """A recommendation object is invalid; ``errors`` maps each bad field to its problem."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def _parse_confidence(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"confidence {shown(value)} is not a number")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"confidence {shown(value)} is not a number") from None
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1):
        raise ValueError(f"confidence {shown(value)} is not in [0, 1]")
    return number.quantize(CONFIDENCE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _parse_choice(
    value: Any, name: str, choices: type[RecommendationAction | RecommendationMode]
) -> str:
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise ValueError(f"{name} {shown(value)} is not one of {allowed}")
    return value


def parse_recommendation(data: Any, *, limits: DateLimits | None = None) -> RecommendationInput:
    """Validate one decoded recommendation object; no database access.

    Checks: an object with every required field; ``id`` a non-empty string of at most 64
    characters; ``entity`` a valid symbol (upper-cased); ``action`` and ``mode`` among the
    model's choices; ``confidence`` a number (or numeric string) in [0, 1], rounded to 5 decimal
    places; ``generated_at`` an ISO-8601 string with an offset (stored in UTC), not later than
    ``limits.latest`` (default: ``FUTURE_TOLERANCE_SECONDS`` after the wall clock);
    ``thesis`` and ``risk_classification`` strings or absent/null. Unknown keys are ignored.

    Raises ``RecommendationInvalid`` with every bad field, not just the first.
    """
    if limits is None:
        limits = DateLimits.as_of()
    if not isinstance(data, Mapping):
        raise RecommendationInvalid({"": f"expected a JSON object, got {type(data).__name__}"})
    errors: dict[str, str] = {}
    missing = [name for name in REQUIRED_FIELDS if data.get(name) is None]
    for name in missing:
        errors[name] = f"missing field {name}"

    def check(name: str, parse) -> Any:
        if name in missing:
            return None
        try:
            return parse(data[name])
        except ValueError as exc:
            errors[name] = str(exc)
            return None

    def parse_id(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"id {shown(value)} is not a string")
        if not value.strip():
            raise ValueError("id is empty")
        if len(value) > ID_MAX_LENGTH:
            raise ValueError(f"id is longer than {ID_MAX_LENGTH} characters")
        return value

    def parse_entity(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"entity {shown(value)} is not a string")
        return parse_symbol(value, "entity")

    def parse_generated_at(value: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError(f"generated_at {shown(value)} is not an ISO-8601 string")
        generated_at = parse_aware_datetime(value, "generated_at")
        limits.check_instant(generated_at, "generated_at")
        return generated_at

    def parse_text(name: str, max_length: int | None = None) -> str:
        value = data.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            errors[name] = f"{name} is not a string"
            return ""
        if max_length is not None and len(value) > max_length:
            errors[name] = f"{name} is longer than {max_length} characters"
        return value

    rec_id = check("id", parse_id)
    entity = check("entity", parse_entity)
    action = check("action", lambda v: _parse_choice(v, "action", RecommendationAction))
    mode = check("mode", lambda v: _parse_choice(v, "mode", RecommendationMode))
    confidence = check("confidence", _parse_confidence)
    generated_at = check("generated_at", parse_generated_at)
    thesis = parse_text("thesis")
    risk_classification = parse_text("risk_classification", RISK_CLASSIFICATION_MAX_LENGTH)
    if errors:
        raise RecommendationInvalid(errors)
    return RecommendationInput(
        id=rec_id,
        entity=entity,
        action=action,
        mode=mode,
        confidence=confidence,
        generated_at=generated_at,
        thesis=thesis,
        risk_classification=risk_classification,
    )


def reference_problems(items: Sequence[RecommendationInput]) -> dict[int, list[str]]:
    """Problems needing the database, by index in ``items``: unknown entity, id already stored.

    Queries: one per 500 distinct entities and one per 500 ids.
    """
    symbols = known_symbols(item.entity for item in items)
    stored: set[str] = set()
    for chunk in chunked(sorted({item.id for item in items})):
        stored.update(Recommendation.objects.filter(id__in=chunk).values_list("id", flat=True))
    problems: dict[int, list[str]] = {}
    for index, item in enumerate(items):
        found = []
        if item.entity not in symbols:
            found.append(f"unknown entity {item.entity}")
        if item.id in stored:
            found.append(f"id {item.id!r} already exists")
        if found:
            problems[index] = found
    return problems


def save_recommendations(items: Sequence[RecommendationInput]) -> int:
    """Insert validated recommendations in one transaction; returns how many (rows).

    Raises ``ImportFailed`` if an id was stored concurrently since it was checked.
    """
    try:
        with transaction.atomic():
            Recommendation.objects.bulk_create(
                [item.to_model() for item in items], batch_size=WRITE_BATCH
            )
    except IntegrityError as exc:
        raise ImportFailed(f"recommendations: nothing was imported ({exc})") from exc
    return len(items)


def import_recommendations(
    source: Source,
    *,
    now: datetime | None = None,
    allow_future: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportResult:
    """Insert the recommendations of a JSON Lines file (a path or text lines).

    Blank lines are ignored. Every line is checked (invalid JSON, ``parse_recommendation``
    with the limits of ``now`` — default the wall clock — unless ``allow_future``, an id
    repeated in the file, ``reference_problems``); any problem raises ``ImportValidationError``
    listing every bad line, and nothing is written. A file larger than ``max_bytes`` raises
    ``ImportFailed``.
    """
    limits = DateLimits.as_of(now, allow_future=allow_future)
    errors: list[LineError] = []
    items: list[RecommendationInput] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(read_lines(source, max_bytes=max_bytes), start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            errors.append(LineError(number, f"invalid JSON ({exc})"))
            continue
        try:
            item = parse_recommendation(data, limits=limits)
        except RecommendationInvalid as exc:
            errors.append(LineError(number, str(exc)))
            continue
        if item.id in first_line:
            errors.append(LineError(number, f"id {item.id!r} repeats line {first_line[item.id]}"))
            continue
        first_line[item.id] = number
        items.append(item)
        lines.append(number)
    for index, found in reference_problems(items).items():
        errors.append(LineError(lines[index], "; ".join(found)))
    if errors:
        raise ImportValidationError("recommendations", errors)
    created = save_recommendations(items)
    return ImportResult("recommendations", len(items), created)


# ---------------------------------------------------------------------------------------------
# The REST API's ingest


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest_recommendations`` did with a batch, in rows.

    ``problems`` (unknown entity, by index) and ``conflicts`` (an ``id`` stored with another
    payload, by index) are refusals: when either is non-empty nothing was written.
    ``cycles_for`` lists the pools a decision cycle was asked for on commit.
    """

    rows: int
    created: int = 0
    unchanged: int = 0
    problems: dict[int, list[str]] = field(default_factory=dict)
    conflicts: dict[int, str] = field(default_factory=dict)
    cycles_for: tuple[int, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.problems or self.conflicts)


def ingest_recommendations(items: Sequence[RecommendationInput], *, now: datetime) -> IngestResult:
    """Store a batch of validated recommendations (``parse_recommendation``, ids distinct),
    all or nothing, idempotent on ``id``.

    An id already stored with the same payload is counted as unchanged; with a different
    payload it is a conflict, and an unknown entity a problem: either refuses the whole batch.
    The new recommendations are inserted in one transaction; the pools that can take one of
    them as of ``now`` (``decisions.triggers.pools_for``) get a decision cycle queued on
    commit (``request_cycles``: at most one queued per pool).

    Queries: one per 500 distinct entities, one per 500 ids, one INSERT per 1,000 new rows,
    and two for the pools (only when something new is executable).
    """
    symbols = known_symbols(item.entity for item in items)
    stored: dict[str, RecommendationInput] = {}
    for chunk in chunked(sorted({item.id for item in items})):
        stored.update(
            (row.id, RecommendationInput.from_model(row))
            for row in Recommendation.objects.filter(id__in=chunk)
        )
    problems: dict[int, list[str]] = {}
    conflicts: dict[int, str] = {}
    new: list[RecommendationInput] = []
    for index, item in enumerate(items):
        if item.entity not in symbols:
            problems[index] = [f"unknown entity {item.entity}"]
        previous = stored.get(item.id)
        if previous is None:
            new.append(item)
        elif previous != item:
            conflicts[index] = f"id {item.id!r} is already stored with a different payload"
    if problems or conflicts:
        return IngestResult(len(items), problems=problems, conflicts=conflicts)
    pools: list[int] = []
    if new:
        try:
            with transaction.atomic():
                Recommendation.objects.bulk_create(
                    [item.to_model() for item in new], batch_size=WRITE_BATCH
                )
                pools = pools_for(new, now)
                if pools:
                    transaction.on_commit(partial(request_cycles, pools))
        except IntegrityError:
            # Another request stored one of these ids since they were read.
            fresh = {item.id for item in new}
            return IngestResult(
                len(items),
                conflicts={
                    index: f"id {item.id!r} was stored by a concurrent request: send it again"
                    for index, item in enumerate(items)
                    if item.id in fresh
                },
            )
    return IngestResult(len(items), len(new), len(items) - len(new), cycles_for=tuple(pools))
