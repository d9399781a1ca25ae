"""Bulk imports of entities, daily market snapshots and performance report dates (orchestration).

Every import streams the file (refusing one larger than ``max_bytes``, ``DEFAULT_MAX_BYTES`` by
default), validates every line, and writes nothing at all when any line is bad:
``ImportValidationError`` lists every bad line by its number (1 = the header). A valid file is
written in one ``transaction.atomic()`` with bulk operations, a few queries per 1,000
rows whatever the size of the file (existing rows are read in chunks of ``LOOKUP_CHUNK`` keys and
written in batches of ``WRITE_BATCH`` rows), so a 100k-row file costs a few hundred queries, not
100k.

The file formats (CSV, UTF-8, a header line naming the columns in any order):

- entities: ``symbol,name,sector``; upsert by symbol.
- snapshots: ``symbol,as_of,open,high,low,close,volume``; daily bars, upsert on (entity, as_of).
  ``as_of`` is a date (``YYYY-MM-DD``, read as that NYSE session's close: 16:00 New York time,
  13:00 on an early close) or an ISO-8601 timestamp with an offset.
- reports: ``symbol,report_date``; a report date already stored is left as it is.

Symbols are upper-cased everywhere, so ``aapl`` and ``AAPL`` name the same entity.

Values dated in the future are refused (docs/decisions.md, "Ingest: future dates and sizes"):
a bar stamped more than ``FUTURE_TOLERANCE_SECONDS`` after the present, and a report date more
than ``REPORT_HORIZON_DAYS`` after today; ``allow_future=True`` lifts both for a simulation.

The REST API validates its JSON batches with the same functions (``validate_entities``,
``validate_snapshots``, ``validate_reports``) and writes them with the same ``write_*``.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from os import PathLike
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portfolio.market_calendar import MARKET_TIME_ZONE, MarketCalendar, get_market_calendar
from portfolio.models import Entity, MarketSnapshot, PerformanceReport

#: Bad lines listed in an error message; the rest are counted ("… and N more").
MAX_REPORTED_ERRORS = 50
#: Keys per ``__in`` lookup: below SQLite's 999 bound parameters.
LOOKUP_CHUNK = 500
#: Rows per INSERT statement (Django lowers it further on SQLite where needed).
WRITE_BATCH = 1000

SYMBOL_PATTERN = re.compile(r"[A-Z0-9.\-]{1,16}")
_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_ENTITY_NAME_MAX = Entity._meta.get_field("name").max_length
_SECTOR_MAX = Entity._meta.get_field("sector").max_length
_BIGINT_MAX = 2**63 - 1
#: Bars dated earlier are refused: the process-wide calendar is not stretched back for them.
EARLIEST_SESSION_DAY = date(1970, 1, 1)
#: Files larger than this are refused unless the caller raises the limit (``--max-bytes``).
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: Report dates more than this many days after today are refused: earnings calendars look a few
#: quarters ahead, never years (docs/decisions.md, "Ingest: future dates and sizes").
REPORT_HORIZON_DAYS = 730
#: Characters of an offending value quoted in an error message.
SHOWN_VALUE_MAX = 40

Source = str | PathLike[str] | Iterable[str]
T = TypeVar("T")


class ImportFailed(Exception):
    """The file could not be imported; nothing of it was written."""


@dataclass(frozen=True)
class LineError:
    """What is wrong with one line of an import file (line 1 is the CSV header)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportValidationError(ImportFailed):
    """One or more lines are invalid; ``errors`` holds all of them, in line order."""

    def __init__(self, kind: str, errors: Sequence[LineError]) -> None:
        self.kind = kind
        self.errors = sorted(errors, key=lambda error: error.line)
        super().__init__(format_line_errors(kind, self.errors))


def format_line_errors(
    kind: str, errors: Sequence[LineError], limit: int = MAX_REPORTED_ERRORS
) -> str:
    """A message naming the first ``limit`` bad lines and counting the others."""
    noun = "line" if len(errors) == 1 else "lines"
    parts = [f"{kind}: {len(errors)} invalid {noun}, nothing was imported"]
    parts.extend(f"  {error}" for error in errors[:limit])
    if len(errors) > limit:
        parts.append(f"  … and {len(errors) - limit} more")
    return "\n".join(parts)


@dataclass(frozen=True)
class ImportResult:
    """Counts of one import, in rows.

    ``rows`` is the number of data lines read (blank lines aside); ``unchanged`` counts rows
    identical to what was already stored, or repeating an earlier line of the file where
    repeats are allowed (report dates).
    """

    kind: str
    rows: int
    created: int
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.rows} rows read, {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged"
        )


@dataclass(frozen=True)
class DateLimits:
    """How far ahead of the present a value may be dated.

    ``latest`` is the latest acceptable instant (aware UTC) and ``last_report_date`` the latest
    acceptable report date; ``None`` means no limit (a simulation dated in the future).
    """

    latest: datetime | None
    last_report_date: date | None
    tolerance_seconds: int = 0

    @classmethod
    def as_of(cls, now: datetime | None = None, *, allow_future: bool = False) -> DateLimits:
        """The limits as of ``now`` (aware; default the wall clock): ``FUTURE_TOLERANCE_SECONDS``
        after it for instants, ``REPORT_HORIZON_DAYS`` after its New York date for report
        dates. ``allow_future`` lifts both."""
        if allow_future:
            return cls(None, None)
        now = now or timezone.now()
        tolerance = settings.FUTURE_TOLERANCE_SECONDS
        today = now.astimezone(MARKET_TIME_ZONE).date()
        return cls(
            now + timedelta(seconds=tolerance),
            today + timedelta(days=REPORT_HORIZON_DAYS),
            tolerance,
        )

    def check_instant(self, value: datetime, name: str) -> None:
        """ValueError when ``value`` is later than ``latest``."""
        if self.latest is not None and value > self.latest:
            raise ValueError(
                f"{name} {value.isoformat()} is in the future (more than "
                f"{self.tolerance_seconds} s after now, {self.latest.isoformat()} at the latest)"
            )

    def check_report_date(self, value: date, name: str = "report_date") -> None:
        """ValueError when ``value`` is after ``last_report_date``."""
        if self.last_report_date is not None and value > self.last_report_date:
            raise ValueError(
                f"{name} {value.isoformat()} is more than {REPORT_HORIZON_DAYS} days ahead "
                f"(after {self.last_report_date.isoformat()})"
            )


def shown(value: Any) -> str:
    """``value`` as an operator reads it in an error: numbers plainly (``1.7``, never
    ``Decimal('1.7')``), text quoted, anything long cut short."""
    if isinstance(value, bool) or value is None:
        text = repr(value)
    elif isinstance(value, int | float | Decimal):
        text = str(value)
    else:
        text = repr(value)
    if len(text) > SHOWN_VALUE_MAX:
        text = text[: SHOWN_VALUE_MAX - 1] + "…"
    return text


# ---------------------------------------------------------------------------------------------
# Reading


def read_lines(source: Source, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterable[str]:
    """The text lines of ``source``: a path (streamed as UTF-8, a BOM allowed) or lines already
    read (used as they are).

    A file larger than ``max_bytes`` is refused before it is read, and the stream is cut at
    ``max_bytes`` as well (a file growing while it is read). Raises ``ImportFailed`` when the
    file cannot be read, is too large, or is not UTF-8 (naming the line) — for a path, while
    the lines are iterated.
    """
    if not isinstance(source, str | PathLike):
        return source
    try:
        size = os.stat(source).st_size
    except OSError as exc:
        raise ImportFailed(f"cannot read {source}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise ImportFailed(_too_large(source, max_bytes, size))
    return _stream_lines(source, max_bytes)


def _too_large(source: Source, max_bytes: int, size: int | None = None) -> str:
    found = f"{size:,} bytes" if size is not None else "more"
    return (
        f"{source}: the file is larger than the limit of {max_bytes:,} bytes ({found}); "
        "split it, or raise the limit with --max-bytes"
    )


def _stream_lines(source: Source, max_bytes: int) -> Iterator[str]:
    read = 0
    try:
        with open(source, "rb") as handle:
            number = 0
            while True:
                # At most one byte past the limit per line, so one huge line cannot be buffered.
                raw = handle.readline(max_bytes - read + 1)
                if not raw:
                    return
                read += len(raw)
                if read > max_bytes:
                    raise ImportFailed(_too_large(source, max_bytes))
                number += 1
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise ImportFailed(f"{source}: line {number}: not UTF-8 text") from exc
                # "\r\n" is kept: the csv module reads quoted line breaks from it.
                yield text
    except OSError as exc:
        raise ImportFailed(f"cannot read {source}: {exc.strerror or exc}") from exc


def read_csv(
    lines: Iterable[str], columns: Sequence[str], errors: list[LineError]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped value}) of each non-blank data row of a CSV file.

    The header must name exactly ``columns`` (any order, case and surrounding spaces ignored).
    Problems are appended to ``errors``; a bad header or unreadable CSV ends the iteration.
    """
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            errors.append(LineError(1, f"empty file: expected the header {','.join(columns)}"))
            return
        names = [name.strip().lstrip("\ufeff").lower() for name in header]
        missing = [name for name in columns if name not in names]
        unknown = [name for name in names if name not in columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if missing or unknown or repeated:
            problems = []
            if missing:
                problems.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown column(s) {', '.join(unknown)}")
            if repeated:
                problems.append(f"repeated column(s) {', '.join(repeated)}")
            expected = ",".join(columns)
            errors.append(LineError(1, f"bad header: {'; '.join(problems)} (expected {expected})"))
            return
        for row in reader:
            if not row or all(not value.strip() for value in row):
                continue
            if len(row) != len(names):
                errors.append(
                    LineError(reader.line_num, f"{len(row)} fields, expected {len(names)}")
                )
                continue
            yield (
                reader.line_num,
                {name: value.strip() for name, value in zip(names, row, strict=True)},
            )
    except csv.Error as exc:
        errors.append(LineError(reader.line_num or 1, f"unreadable CSV ({exc}); reading stopped"))


def chunked(items: Sequence[T], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def known_symbols(symbols: Iterable[str]) -> set[str]:
    """The symbols among ``symbols`` that name a stored entity. One query per 500 symbols."""
    ordered = sorted(set(symbols))
    found: set[str] = set()
    for chunk in chunked(ordered):
        found.update(Entity.objects.filter(symbol__in=chunk).values_list("symbol", flat=True))
    return found


# ---------------------------------------------------------------------------------------------
# Field parsers: each returns the value or raises ValueError with a message for the operator.


def parse_symbol(text: str, name: str = "symbol") -> str:
    """An entity symbol, upper-cased: 1–16 letters, digits, dots or dashes."""
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{name} is empty")
    # ASCII first: upper() turns some non-ASCII letters into ASCII ones ("ﬁ" → "FI").
    symbol = stripped.upper()
    if not stripped.isascii() or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"{name} {shown(text)} is not 1-16 letters, digits, '.' or '-'")
    return symbol


def parse_decimal(
    text: str, name: str, *, max_digits: int = 20, decimal_places: int = 4
) -> Decimal:
    """A finite decimal that fits a ``DecimalField(max_digits, decimal_places)``."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} {shown(text)} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name} {shown(text)} is not a finite number")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite numbers have an int exponent
    if -exponent > decimal_places:
        raise ValueError(f"{name} {shown(text)} has more than {decimal_places} decimal places")
    if abs(value) >= Decimal(10) ** (max_digits - decimal_places):
        raise ValueError(f"{name} {shown(text)} is too large")
    return value


def parse_date(text: str, name: str) -> date:
    """A calendar date written ``YYYY-MM-DD``."""
    if not _DATE_PATTERN.fullmatch(text):
        raise ValueError(f"{name} {shown(text)} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {shown(text)} is not a valid date") from None


def parse_aware_datetime(text: str, name: str) -> datetime:
    """An ISO-8601 timestamp with an offset (``Z`` or ``±HH:MM``), returned in UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {shown(text)} is not an ISO-8601 timestamp") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {shown(text)} has no UTC offset (add Z or +HH:MM)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 has no UTC equivalent
        raise ValueError(f"{name} {shown(text)} is out of range") from None


def _collect(problems: list[str], parse: Callable[[], T]) -> T | None:
    try:
        return parse()
    except ValueError as exc:
        problems.append(str(exc))
        return None


Record = tuple[int, Mapping[str, str]]


def records_from_json(
    items: Sequence[Any],
    fields: Mapping[str, str],
    errors: list[LineError],
) -> list[Record]:
    """The JSON objects of an API batch as the records a CSV file would give.

    ``fields`` maps each JSON field to its column (``{"entity": "symbol", …}``); the position
    of a record is its index in the batch. Numbers become the text they were written as,
    a missing or null field the empty text; any other type, or an item that is not an object,
    is a problem appended to ``errors``. Unknown fields are ignored.
    """
    records: list[Record] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            errors.append(LineError(index, f"expected a JSON object, got {_json_type(item)}"))
            continue
        record: dict[str, str] = {}
        problems = []
        for name, column in fields.items():
            value = item.get(name)
            if value is None:
                record[column] = ""
            elif isinstance(value, str):
                record[column] = value.strip()
            elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                record[column] = str(value)
            else:
                problems.append(f"{name} {shown(value)} is not a string or a number")
        if problems:
            errors.append(LineError(index, "; ".join(problems)))
        else:
            records.append((index, record))
    return records


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# ---------------------------------------------------------------------------------------------
# Entities

ENTITY_COLUMNS = ("symbol", "name", "sector")


def validate_entities(
    records: Iterable[Record], errors: list[LineError], *, where: str = "line"
) -> dict[str, tuple[str, str]]:
    """``{symbol: (name, sector)}`` of the valid records; problems appended to ``errors``:
    invalid symbol, missing sector, a field too long, a symbol repeated (``where`` names the
    position: "line" of a file, "item" of an API batch). No query."""
    rows: dict[str, tuple[str, str]] = {}
    first: dict[str, int] = {}
    for position, record in records:
        problems: list[str] = []
        symbol = _collect(problems, lambda r=record: parse_symbol(r["symbol"]))
        name, sector = record["name"], record["sector"]
        if len(name) > _ENTITY_NAME_MAX:
            problems.append(f"name is longer than {_ENTITY_NAME_MAX} characters")
        if not sector:
            problems.append("sector is required")
        elif len(sector) > _SECTOR_MAX:
            problems.append(f"sector is longer than {_SECTOR_MAX} characters")
        if symbol is not None and symbol in first:
            problems.append(f"symbol {symbol} repeats {where} {first[symbol]}")
        if problems:
            errors.append(LineError(position, "; ".join(problems)))
            continue
        assert symbol is not None
        first[symbol] = position
        rows[symbol] = (name, sector)
    return rows


def write_entities(rows: Mapping[str, tuple[str, str]]) -> ImportResult:
    """Upsert validated entities by symbol in one transaction; rows identical to the stored
    ones are not written. Queries: one per 500 symbols, then one INSERT … ON CONFLICT per
    1,000 new or changed rows."""
    with transaction.atomic():
        stored: dict[str, tuple[str, str]] = {}
        for chunk in chunked(sorted(rows)):
            stored.update(
                (symbol, (name, sector))
                for symbol, name, sector in Entity.objects.filter(symbol__in=chunk).values_list(
                    "symbol", "name", "sector"
                )
            )
        to_write = [
            Entity(symbol=symbol, name=name, sector=sector)
            for symbol, (name, sector) in rows.items()
            if stored.get(symbol) != (name, sector)
        ]
        Entity.objects.bulk_create(
            to_write,
            update_conflicts=True,
            unique_fields=["symbol"],
            update_fields=["name", "sector"],
            batch_size=WRITE_BATCH,
        )
    created = len(rows.keys() - stored.keys())
    updated = len(to_write) - created
    return ImportResult("entities", len(rows), created, updated, len(rows) - len(to_write))


def import_entities(source: Source, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ImportResult:
    """Upsert the entities of a ``symbol,name,sector`` CSV file by symbol (name and sector).

    Raises ``ImportValidationError`` (nothing written) when any line is bad
    (``validate_entities``); ``ImportFailed`` when the file is larger than ``max_bytes``.
    Queries: see ``write_entities``.
    """
    errors: list[LineError] = []
    rows = validate_entities(
        read_csv(read_lines(source, max_bytes=max_bytes), ENTITY_COLUMNS, errors), errors
    )
    if errors:
        raise ImportValidationError("entities", errors)
    return write_entities(rows)


# ---------------------------------------------------------------------------------------------
# Market snapshots (daily bars)

SNAPSHOT_COLUMNS = ("symbol", "as_of", "open", "high", "low", "close", "volume")
_SNAPSHOT_VALUES = ("open", "high", "low", "close", "volume")


@dataclass
class _Bar:
    """One valid line of a snapshot file; ``as_of`` is None until ``session`` is resolved."""

    line: int
    symbol: str
    as_of: datetime | None
    session: date | None
    open: Decimal | None
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int

    @property
    def values(self) -> tuple:
        """The stored columns, in the order of ``_SNAPSHOT_VALUES``."""
        return (self.open, self.high, self.low, self.close, self.volume)


def _calendar_for(days: Iterable[date], now: datetime | None) -> MarketCalendar:
    """The shared NYSE calendar, extended back to the earliest of ``days`` (not before
    ``EARLIEST_SESSION_DAY``) when they reach before it."""
    calendar = get_market_calendar(now)
    earliest = min((day for day in days if day >= EARLIEST_SESSION_DAY), default=None)
    if earliest is not None and earliest < calendar.first_session:
        # get_market_calendar reaches back two years before the instant it is given.
        reference = datetime.combine(earliest, time(12), tzinfo=MARKET_TIME_ZONE)
        calendar = get_market_calendar(reference)
    return calendar


def _session_close(calendar: MarketCalendar, day: date) -> datetime:
    """The close of the session ``day`` (aware UTC); ValueError naming the problem otherwise."""
    if not calendar.covers(day):
        raise ValueError(
            f"as_of {day} is outside the NYSE calendar "
            f"({calendar.first_session} … {calendar.last_session})"
        )
    if not calendar.is_session(day):
        raise ValueError(f"as_of {day} is not an NYSE session (weekend or holiday)")
    return calendar.session_close(day)


def _parse_volume(text: str) -> int:
    if not text:
        return 0
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"volume {shown(text)} is not a non-negative integer")
    volume = int(text)
    if volume > _BIGINT_MAX:
        raise ValueError(f"volume {shown(text)} is too large")
    return volume


def _parse_bar(line: int, record: Mapping[str, str]) -> tuple[_Bar | None, list[str]]:
    """The bar of one record, or the problems of the record (checks needing no query)."""
    problems: list[str] = []
    symbol = _collect(problems, lambda: parse_symbol(record["symbol"]))
    raw_as_of = record["as_of"]
    as_of: datetime | None = None
    session: date | None = None
    if not raw_as_of:
        problems.append("as_of is required")
    elif _DATE_PATTERN.fullmatch(raw_as_of):
        session = _collect(problems, lambda: parse_date(raw_as_of, "as_of"))
    else:
        as_of = _collect(problems, lambda: parse_aware_datetime(raw_as_of, "as_of"))

    def price(name: str) -> Decimal | None:
        text = record[name]
        if not text:
            problems.append(f"{name} is required")
            return None
        value = _collect(problems, lambda: parse_decimal(text, name))
        if value is not None and value <= 0:
            problems.append(f"{name} {text} must be > 0")
            return None
        return value

    open_ = price("open") if record["open"] else None
    high, low, close = price("high"), price("low"), price("close")
    volume = _collect(problems, lambda: _parse_volume(record["volume"]))
    if high is not None and low is not None and high < low:
        problems.append(f"high {high} is below low {low}")
    if close is not None and high is not None and close > high:
        problems.append(f"close {close} is above high {high}")
    if close is not None and low is not None and close < low:
        problems.append(f"close {close} is below low {low}")
    if problems:
        return None, problems
    assert symbol is not None and volume is not None
    assert high is not None and low is not None and close is not None
    return _Bar(line, symbol, as_of, session, open_, high, low, close, volume), []


def validate_snapshots(
    records: Iterable[Record],
    errors: list[LineError],
    *,
    limits: DateLimits,
    now: datetime | None = None,
    where: str = "line",
) -> dict[tuple[str, datetime], _Bar]:
    """The valid bars by (symbol, as_of); problems appended to ``errors``.

    A date ``as_of`` is read as that session's close on the NYSE calendar (a date that is not a
    session is an error); a timestamp needs an offset. Prices are ``Decimal`` with at most 4
    decimal places: close and low > 0, low ≤ close ≤ high, open optional (> 0 when given);
    volume a non-negative integer (empty means 0). An ``as_of`` later than ``limits.latest``,
    an unknown symbol and a (symbol, as_of) repeated are errors. ``now`` (aware) only chooses
    the span of the calendar; the default is the wall clock.
    Queries: one per 500 symbols (the entities).
    """
    parsed: list[_Bar] = []
    for line, record in records:
        bar, problems = _parse_bar(line, record)
        if bar is None:
            errors.append(LineError(line, "; ".join(problems)))
        else:
            parsed.append(bar)

    sessions = {bar.session for bar in parsed if bar.session is not None}
    calendar = _calendar_for(sessions, now)
    closes: dict[date, datetime | str] = {}
    for day in sessions:
        try:
            closes[day] = _session_close(calendar, day)
        except ValueError as exc:
            closes[day] = str(exc)
    symbols = known_symbols(bar.symbol for bar in parsed)

    bars: dict[tuple[str, datetime], _Bar] = {}
    for bar in parsed:
        problems = []
        if bar.session is not None:
            close_at = closes[bar.session]
            if isinstance(close_at, str):
                problems.append(close_at)
            else:
                bar.as_of = close_at
        if bar.as_of is not None:
            _collect(problems, lambda bar=bar: limits.check_instant(bar.as_of, "as_of"))
        if bar.symbol not in symbols:
            problems.append(f"unknown symbol {bar.symbol} (import it with import_entities)")
        if problems:
            errors.append(LineError(bar.line, "; ".join(problems)))
            continue
        assert bar.as_of is not None
        key = (bar.symbol, bar.as_of)
        if key in bars:
            errors.append(
                LineError(
                    bar.line,
                    f"{bar.symbol} as of {bar.as_of.isoformat()} repeats {where} {bars[key].line}",
                )
            )
            continue
        bars[key] = bar
    return bars


def write_snapshots(bars: Mapping[tuple[str, datetime], _Bar]) -> ImportResult:
    """Upsert validated bars on (entity, as_of) in one transaction; bars identical to the stored
    ones are not written. Queries: one per 500 symbols for the stored bars in the batch's time
    range, then one INSERT … ON CONFLICT per 1,000 new or changed bars."""
    if not bars:
        return ImportResult("snapshots", 0, 0)
    start = min(as_of for _, as_of in bars)
    end = max(as_of for _, as_of in bars)
    with transaction.atomic():
        stored: dict[tuple[str, datetime], tuple] = {}
        for chunk in chunked(sorted({symbol for symbol, _ in bars})):
            rows = MarketSnapshot.objects.filter(
                entity_id__in=chunk, as_of__gte=start, as_of__lte=end
            ).values_list("entity_id", "as_of", *_SNAPSHOT_VALUES)
            for symbol, as_of, *values in rows.iterator(chunk_size=2000):
                stored[(symbol, as_of)] = tuple(values)
        to_write = [
            MarketSnapshot(
                entity_id=bar.symbol,
                as_of=bar.as_of,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
            )
            for key, bar in bars.items()
            if stored.get(key) != bar.values
        ]
        MarketSnapshot.objects.bulk_create(
            to_write,
            update_conflicts=True,
            unique_fields=["entity", "as_of"],
            update_fields=list(_SNAPSHOT_VALUES),
            batch_size=WRITE_BATCH,
        )
    created = len(bars.keys() - stored.keys())
    updated = len(to_write) - created
    return ImportResult("snapshots", len(bars), created, updated, len(bars) - len(to_write))


def import_snapshots(
    source: Source,
    *,
    now: datetime | None = None,
    allow_future: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportResult:
    """Upsert the daily bars of a ``symbol,as_of,open,high,low,close,volume`` CSV file.

    Validation: ``validate_snapshots``, with bars dated more than ``FUTURE_TOLERANCE_SECONDS``
    after ``now`` (default the wall clock) refused unless ``allow_future``.
    Raises ``ImportValidationError`` (nothing written) when any line is bad; ``ImportFailed``
    when the file is larger than ``max_bytes``.
    Queries: one per 500 symbols for the entities, then those of ``write_snapshots``.
    """
    errors: list[LineError] = []
    bars = validate_snapshots(
        read_csv(read_lines(source, max_bytes=max_bytes), SNAPSHOT_COLUMNS, errors),
        errors,
        limits=DateLimits.as_of(now, allow_future=allow_future),
        now=now,
    )
    if errors:
        raise ImportValidationError("snapshots", errors)
    return write_snapshots(bars)


# ---------------------------------------------------------------------------------------------
# Performance reports

REPORT_COLUMNS = ("symbol", "report_date")


def validate_reports(
    records: Iterable[Record], errors: list[LineError], *, limits: DateLimits
) -> list[tuple[int, str, date]]:
    """(position, symbol, report_date) of the valid records; problems appended to ``errors``:
    a bad symbol or date, a date after ``limits.last_report_date``, an unknown symbol.
    Queries: one per 500 symbols."""
    parsed: list[tuple[int, str, date]] = []
    for line, record in records:
        problems: list[str] = []
        symbol = _collect(problems, lambda r=record: parse_symbol(r["symbol"]))
        day = _collect(problems, lambda r=record: parse_date(r["report_date"], "report_date"))
        if day is not None:
            _collect(problems, lambda day=day: limits.check_report_date(day))
        if problems:
            errors.append(LineError(line, "; ".join(problems)))
        else:
            assert symbol is not None and day is not None
            parsed.append((line, symbol, day))
    symbols = known_symbols(symbol for _, symbol, _ in parsed)
    valid = []
    for line, symbol, day in parsed:
        if symbol not in symbols:
            errors.append(
                LineError(line, f"unknown symbol {symbol} (import it with import_entities)")
            )
        else:
            valid.append((line, symbol, day))
    return valid


def write_reports(parsed: Sequence[tuple[int, str, date]]) -> ImportResult:
    """Add validated report dates in one transaction; a date already stored, or repeated, is
    counted as unchanged. Queries: one per 500 symbols for the stored dates, then one INSERT
    per 1,000 new dates (``ON CONFLICT DO NOTHING``, so a concurrent import of the same dates
    is harmless)."""
    wanted = {(symbol, day) for _, symbol, day in parsed}
    if not wanted:
        return ImportResult("reports", 0, 0)
    start = min(day for _, day in wanted)
    end = max(day for _, day in wanted)
    with transaction.atomic():
        stored: set[tuple[str, date]] = set()
        for chunk in chunked(sorted({symbol for symbol, _ in wanted})):
            stored.update(
                PerformanceReport.objects.filter(
                    entity_id__in=chunk, report_date__gte=start, report_date__lte=end
                ).values_list("entity_id", "report_date")
            )
        new = sorted(wanted - stored)
        PerformanceReport.objects.bulk_create(
            [PerformanceReport(entity_id=symbol, report_date=day) for symbol, day in new],
            ignore_conflicts=True,
            batch_size=WRITE_BATCH,
        )
    return ImportResult("reports", len(parsed), len(new), 0, len(parsed) - len(new))


def import_reports(
    source: Source,
    *,
    now: datetime | None = None,
    allow_future: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportResult:
    """Add the performance report dates of a ``symbol,report_date`` CSV file.

    Validation: ``validate_reports``, with dates more than ``REPORT_HORIZON_DAYS`` after the
    New York date of ``now`` (default the wall clock) refused unless ``allow_future``.
    Raises ``ImportValidationError`` (nothing written) when any line is bad; ``ImportFailed``
    when the file is larger than ``max_bytes``. Queries: see ``write_reports``.
    """
    errors: list[LineError] = []
    parsed = validate_reports(
        read_csv(read_lines(source, max_bytes=max_bytes), REPORT_COLUMNS, errors),
        errors,
        limits=DateLimits.as_of(now, allow_future=allow_future),
    )
    if errors:
        raise ImportValidationError("reports", errors)
    return write_reports(parsed)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DateLimits",
    "ImportFailed",
    "ImportResult",
    "ImportValidationError",
    "LineError",
    "import_entities",
    "import_reports",
    "import_snapshots",
    "records_from_json",
    "validate_entities",
    "validate_reports",
    "validate_snapshots",
    "write_entities",
    "write_reports",
    "write_snapshots",
]
