"""Bulk import of upstream recommendations from JSON Lines (orchestration).

One JSON object per line: ``id, entity, action, mode, confidence, generated_at`` required,
``thesis`` and ``risk_classification`` optional. The whole file is validated first and nothing
is written when any line is bad (``ImportValidationError`` lists every bad line by number);
a valid file is inserted in one transaction with ``bulk_create``.

``parse_recommendation`` validates one decoded object without touching the database, and
``reference_problems`` checks a batch against the database (entity known, id new); the REST
API reuses both for a single recommendation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from decisions.models import Recommendation, RecommendationAction, RecommendationMode
from portfolio.imports import (
    WRITE_BATCH,
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
        raise ValueError(f"confidence {value!r} is not a number")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"confidence {value!r} is not a number") from None
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1):
        raise ValueError(f"confidence {value!r} is not in [0, 1]")
    return number.quantize(CONFIDENCE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _parse_choice(
    value: Any, name: str, choices: type[RecommendationAction | RecommendationMode]
) -> str:
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise ValueError(f"{name} {value!r} is not one of {allowed}")
    return value


def parse_recommendation(data: Any) -> RecommendationInput:
    """Validate one decoded recommendation object; no database access.

    Checks: an object with every required field; ``id`` a non-empty string of at most 64
    characters; ``entity`` a valid symbol (upper-cased); ``action`` and ``mode`` among the
    model's choices; ``confidence`` a number (or numeric string) in [0, 1], rounded to 5 decimal
    places; ``generated_at`` an ISO-8601 string with an offset (stored in UTC); ``thesis`` and
    ``risk_classification`` strings or absent/null. Unknown keys are ignored.

    Raises ``RecommendationInvalid`` with every bad field, not just the first.
    """
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
            raise ValueError(f"id {value!r} is not a string")
        if not value.strip():
            raise ValueError("id is empty")
        if len(value) > ID_MAX_LENGTH:
            raise ValueError(f"id is longer than {ID_MAX_LENGTH} characters")
        return value

    def parse_entity(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"entity {value!r} is not a string")
        return parse_symbol(value, "entity")

    def parse_generated_at(value: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError(f"generated_at {value!r} is not an ISO-8601 string")
        return parse_aware_datetime(value, "generated_at")

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


def import_recommendations(source: Source) -> ImportResult:
    """Insert the recommendations of a JSON Lines file (a path or text lines).

    Blank lines are ignored. Every line is checked (invalid JSON, ``parse_recommendation``,
    an id repeated in the file, ``reference_problems``); any problem raises
    ``ImportValidationError`` listing every bad line, and nothing is written.
    """
    errors: list[LineError] = []
    items: list[RecommendationInput] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(read_lines(source), start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            errors.append(LineError(number, f"invalid JSON ({exc})"))
            continue
        try:
            item = parse_recommendation(data)
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
