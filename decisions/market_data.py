"""Market data from the data API into ``market_snapshots`` (orchestration).

Two uses of the market data API (``execution.adapters.market_data``), both writing what they
fetched to ``market_snapshots`` with ``source = data_api``, so the audit trail shows which value
a decision used and where it came from (docs/decisions.md, "Market data fallback"):

- ``fetch_missing_values``: the source's "first from market_snapshots, falling back to the data
  source API". Before a decision cycle, for a pool whose engine configuration has
  ``market_data_fallback`` on, the latest trade of each candidate entity without a current
  value is fetched and stored as a snapshot (open = high = low = close = the trade's price);
  the cycle then finds it through the read model like any other snapshot. It runs before the
  cycle's transaction, so no pool row is locked during an HTTP call.
- ``refresh_daily_bars``: after the close, the daily bars of the last sessions of every entity
  held or recently recommended, validated as an import is (``portfolio.imports
  .validate_snapshots``) and upserted on (entity, as_of).

Neither ever raises for the data API's sake: a missing or bad answer is logged and the value
left out, never made up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from decisions.models import Recommendation
from execution.adapters.market_data import AlpacaDataClient, Bar
from portfolio.imports import (
    LOOKUP_CHUNK,
    WRITE_BATCH,
    DateLimits,
    LineError,
    chunked,
    validate_snapshots,
)
from portfolio.market_calendar import MARKET_TIME_ZONE, MarketCalendar, get_market_calendar
from portfolio.models import (
    Commitment,
    CommitmentStatus,
    EngineConfig,
    MarketSnapshot,
    Pool,
    SnapshotSource,
)
from portfolio.selectors import current_value_floor

logger = logging.getLogger(__name__)

#: Calls of one run that may fail for the source's sake (no answer, 5xx, 429) before the run
#: stops asking: a dead data API costs a few timeouts, not one per symbol.
MAX_SOURCE_FAILURES = 3
#: The daily refresh covers the entities recommended in the last this many days…
REFRESH_RECOMMENDED_DAYS = 7
#: …and at most this many entities per run (held ones first).
MAX_REFRESH_SYMBOLS = 500
_VALUES = ("open", "high", "low", "close", "volume")


def data_client() -> AlpacaDataClient | None:
    """The market data API client from the ``MARKET_DATA_API_*`` settings, or None when
    ``MARKET_DATA_API_URL`` is not set."""
    if not settings.MARKET_DATA_API_URL:
        return None
    timeout = float(settings.MARKET_DATA_API_TIMEOUT)
    return AlpacaDataClient(
        settings.MARKET_DATA_API_URL,
        settings.MARKET_DATA_API_KEY_ID,
        settings.MARKET_DATA_API_SECRET_KEY,
        timeout=(min(3.05, timeout), timeout),
    )


# --- the fallback of the decision cycle --------------------------------------------------------


@dataclass
class FetchResult:
    """What ``fetch_missing_values`` did: the entities it asked for, the values it stored
    ({symbol: (price in $/unit, as_of)}), and the entities left without a value, with why."""

    asked: list[str] = field(default_factory=list)
    stored: dict[str, tuple[Decimal, datetime]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def fetch_missing_values(
    pool_id: int,
    now: datetime,
    *,
    calendar: MarketCalendar | None = None,
    client: AlpacaDataClient | None = None,
) -> FetchResult:
    """Fetch and store the latest trade of each candidate entity of the pool without a current
    value as of ``now``, when the pool's ``market_data_fallback`` is on.

    Nothing is asked outside the execution window (every candidate is skipped there before its
    value matters), nor when the setting is off or ``MARKET_DATA_API_URL`` is unset. A trade
    older than the current-value floor (``portfolio.selectors.current_value_floor``) would not
    be current and is not stored; one dated after ``now`` by more than
    ``FUTURE_TOLERANCE_SECONDS`` is refused (a replay or a simulated clock never takes today's
    trade); one dated after ``now`` within it (the fetch's own latency, clock skew) is stored
    as of ``now``, the instant of the decision that uses it. The value is validated as an
    imported bar is and inserted without overwriting a snapshot of the same (entity, as_of).

    At most one call per distinct candidate entity (the candidates are capped by
    ``max_recommendations_per_cycle``); the run stops asking after ``MAX_SOURCE_FAILURES``
    failures of the source. Queries: none outside the window or without
    ``MARKET_DATA_API_URL``; else the pool and its configuration (one); when on, the
    candidates, the fresh snapshots, the entities, one INSERT.
    """
    from decisions.engine import candidate_rows

    result = FetchResult()
    calendar = calendar or get_market_calendar(now)
    if not calendar.is_open(now) or (client is None and not settings.MARKET_DATA_API_URL):
        # Without a data API the cycle pays no query for it (the cycle itself warns about a
        # pool that asks for the fallback).
        return result
    pool = Pool.objects.select_related("engine_config").filter(pk=pool_id).first()
    if pool is None:
        return result
    try:
        config = pool.engine_config
    except EngineConfig.DoesNotExist:
        return result
    if not config.market_data_fallback:
        return result
    symbols = list(dict.fromkeys(row["entity_id"] for row in candidate_rows(pool, config, now)))
    if not symbols:
        return result
    floor = current_value_floor(calendar, now)
    fresh = set(
        MarketSnapshot.objects.filter(entity_id__in=symbols, as_of__gte=floor, as_of__lte=now)
        .values_list("entity_id", flat=True)
        .distinct()
    )
    wanted = [symbol for symbol in symbols if symbol not in fresh]
    if not wanted:
        return result
    client = client or data_client()
    if client is None:
        return result

    latest = now + timedelta(seconds=settings.FUTURE_TOLERANCE_SECONDS)
    records = []
    failures_at_start = client.failures
    for symbol in wanted:
        if client.failures - failures_at_start >= MAX_SOURCE_FAILURES:
            result.missing[symbol] = "data_api_unavailable"
            continue
        result.asked.append(symbol)
        trade = client.latest_trade(symbol)
        if trade is None:
            result.missing[symbol] = "no_answer"
            continue
        price, at = trade
        if at < floor:
            logger.info("pool %s: latest trade of %s (%s) is stale", pool.name, symbol, at)
            result.missing[symbol] = "stale"
            continue
        if at > latest:
            logger.warning(
                "pool %s: latest trade of %s is dated %s, after the cycle's %s: refused",
                pool.name,
                symbol,
                at.isoformat(),
                now.isoformat(),
            )
            result.missing[symbol] = "future"
            continue
        as_of = min(at, now)
        text = str(price)
        records.append(
            (
                len(records) + 1,
                {
                    "symbol": symbol,
                    "as_of": as_of.isoformat(),
                    "open": text,
                    "high": text,
                    "low": text,
                    "close": text,
                    "volume": "",
                },
            )
        )
    errors: list[LineError] = []
    bars = validate_snapshots(records, errors, limits=DateLimits.as_of(now), now=now, where="trade")
    for error in errors:
        symbol = records[error.line - 1][1]["symbol"]
        logger.warning("pool %s: latest trade of %s refused: %s", pool.name, symbol, error.message)
        result.missing[symbol] = "refused"
    MarketSnapshot.objects.bulk_create(
        [
            MarketSnapshot(
                entity_id=symbol,
                as_of=as_of,
                open=bar.close,
                high=bar.close,
                low=bar.close,
                close=bar.close,
                volume=0,
                source=SnapshotSource.DATA_API,
            )
            for (symbol, as_of), bar in bars.items()
        ],
        # A snapshot already stored at the same instant stays as it is.
        ignore_conflicts=True,
    )
    result.stored = {symbol: (bar.close, as_of) for (symbol, as_of), bar in bars.items()}
    logger.info(
        "pool %s: market data fallback asked %s entity(ies), stored %s, without a value: %s",
        pool.name,
        len(result.asked),
        len(result.stored),
        result.missing or "none",
    )
    return result


# --- the daily-bar refresh ---------------------------------------------------------------------


@dataclass
class RefreshResult:
    """What ``refresh_daily_bars`` did, in bars and entities."""

    sessions: tuple[date, ...] = ()
    symbols: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Entities whose bars were all refused: {symbol: the problems}.
    refused: dict[str, list[str]] = field(default_factory=dict)
    #: Entities the data API gave nothing for (no answer, no bar).
    empty: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        span = f"{self.sessions[0]} … {self.sessions[-1]}" if self.sessions else "no session"
        return (
            f"daily bars {span}: {self.symbols} entities, {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.refused)} refused, {len(self.empty)} without bars"
        )


def last_complete_session(calendar: MarketCalendar, now: datetime) -> date:
    """The last session whose close is at or before ``now``."""
    today = now.astimezone(MARKET_TIME_ZONE).date()
    if calendar.is_session(today) and now >= calendar.session_close(today):
        return today
    return calendar.previous_session(today)


def refresh_universe(now: datetime, *, limit: int = MAX_REFRESH_SYMBOLS) -> list[str]:
    """The entities the refresh covers: held in an open commitment of any pool, then
    recommended in the last ``REFRESH_RECOMMENDED_DAYS`` days; at most ``limit``, sorted.
    Two queries."""
    held = set(
        Commitment.objects.filter(status=CommitmentStatus.OPEN).values_list("entity_id", flat=True)
    )
    recent = set(
        Recommendation.objects.filter(
            generated_at__gt=now - timedelta(days=REFRESH_RECOMMENDED_DAYS),
            generated_at__lte=now,
        ).values_list("entity_id", flat=True)
    )
    ordered = sorted(held) + sorted(recent - held)
    return sorted(ordered[:limit])


def refresh_daily_bars(
    now: datetime,
    *,
    symbols: Iterable[str] | None = None,
    sessions: int = 1,
    client: AlpacaDataClient | None = None,
) -> RefreshResult:
    """Fetch the daily bars of the last ``sessions`` complete sessions as of ``now`` and upsert
    them into ``market_snapshots`` (``source = data_api``); idempotent.

    ``symbols`` defaults to ``refresh_universe``. A bar is stamped at its session's close, as
    an imported dated bar is, and validated by ``portfolio.imports.validate_snapshots`` (prices
    > 0 with at most 4 decimal places, low ≤ close ≤ high, a known entity, a session, not in
    the future); an entity with any bad bar has none of its bars written, as a file with a bad
    line is not imported. A bar identical to the stored one is not written. Raises
    ``RuntimeError`` when ``MARKET_DATA_API_URL`` is unset and no ``client`` is given.
    Queries: the universe (two), the entities, the stored bars and the upsert per 500 symbols.
    """
    client = client or data_client()
    if client is None:
        raise RuntimeError("MARKET_DATA_API_URL is not set: no market data API to refresh from")
    if sessions < 1:
        raise ValueError("sessions must be at least 1")
    calendar = get_market_calendar(now)
    last = last_complete_session(calendar, now)
    window = tuple(calendar.last_sessions(last, sessions))
    result = RefreshResult(sessions=window)
    wanted = sorted({s.strip().upper() for s in symbols if s.strip()}) if symbols else None
    universe = wanted if wanted is not None else refresh_universe(now)
    result.symbols = len(universe)

    records: list[tuple[int, dict[str, str]]] = []
    owner: dict[int, str] = {}
    failures_at_start = client.failures
    for symbol in universe:
        if client.failures - failures_at_start >= MAX_SOURCE_FAILURES:
            result.empty.append(symbol)
            continue
        bars = [
            bar
            for bar in client.daily_bars(symbol, window[0], window[-1])
            if _session_of(bar) in window
        ]
        if not bars:
            result.empty.append(symbol)
            continue
        for bar in bars:
            line = len(records) + 1
            owner[line] = symbol
            records.append((line, _record(symbol, bar)))

    errors: list[LineError] = []
    valid = validate_snapshots(records, errors, limits=DateLimits.as_of(now), now=now, where="bar")
    for error in errors:
        result.refused.setdefault(owner[error.line], []).append(error.message)
    for symbol, problems in result.refused.items():
        logger.warning("daily bars of %s refused: %s", symbol, "; ".join(problems))
    accepted = {key: bar for key, bar in valid.items() if key[0] not in result.refused}
    result.created, result.updated, result.unchanged = _upsert(accepted)
    logger.info("%s", result)
    return result


def _session_of(bar: Bar) -> date:
    """The New York date a daily bar belongs to (it starts at midnight New York time)."""
    return bar.at.astimezone(MARKET_TIME_ZONE).date()


def _record(symbol: str, bar: Bar) -> dict[str, str]:
    """A bar as a line of a snapshot file: dated by its session, read as the session's close."""
    return {
        "symbol": symbol,
        "as_of": _session_of(bar).isoformat(),
        "open": str(bar.open),
        "high": str(bar.high),
        "low": str(bar.low),
        "close": str(bar.close),
        "volume": str(bar.volume),
    }


def _upsert(bars: dict) -> tuple[int, int, int]:
    """(created, updated, unchanged): validated bars upserted on (entity, as_of) with
    ``source = data_api``; bars identical to the stored ones are not written."""
    if not bars:
        return 0, 0, 0
    keys: Sequence = sorted(bars)
    start = min(as_of for _, as_of in keys)
    end = max(as_of for _, as_of in keys)
    with transaction.atomic():
        stored: dict = {}
        for chunk in chunked(sorted({symbol for symbol, _ in keys}), LOOKUP_CHUNK):
            rows = MarketSnapshot.objects.filter(
                entity_id__in=chunk, as_of__gte=start, as_of__lte=end
            ).values_list("entity_id", "as_of", *_VALUES)
            for symbol, as_of, *values in rows:
                stored[(symbol, as_of)] = tuple(values)
        to_write = [
            MarketSnapshot(
                entity_id=symbol,
                as_of=as_of,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                source=SnapshotSource.DATA_API,
            )
            for (symbol, as_of), bar in bars.items()
            if stored.get((symbol, as_of)) != bar.values
        ]
        MarketSnapshot.objects.bulk_create(
            to_write,
            update_conflicts=True,
            unique_fields=["entity", "as_of"],
            update_fields=[*_VALUES, "source"],
            batch_size=WRITE_BATCH,
        )
    created = len(bars.keys() - stored.keys())
    updated = len(to_write) - created
    return created, updated, len(bars) - len(to_write)
