"""Synthetic sample data for the demo: entities, daily bars, report dates and recommendations.

Everything written here is made up: the symbols, names, prices and signals describe no real
company or market (the symbols were picked to avoid well-known tickers). The files use the formats
the import commands read:

- ``entities.csv`` (``symbol,name,sector``);
- ``snapshots.csv`` (``symbol,as_of,open,high,low,close,volume``), one daily bar per entity and
  NYSE session, ``as_of`` a ``YYYY-MM-DD`` date read as that session's close;
- ``reports.csv`` (``symbol,report_date``), performance report (earnings) dates;
- ``recommendations.jsonl``, one upstream recommendation per line.

The data is shaped so that the demo exercises the engine's guards: prices follow a geometric
random walk with a market and a sector factor (entities of one sector correlate at about 0.5-0.7,
so the correlation step scales commitments), a few entities drop 8-12 % over a few sessions or rise
steadily in the simulated sessions (risk thresholds, trailing, declining commitments), report dates
fall one and three sessions after some recommendations (report proximity reject / halve), a share
of the recommendations arrives outside the session hours (``outside_execution_window``), some are
repeated within the hour, and confidences span every risk tier's gate.

Reproducible: the output depends only on the ``SampleDataSpec`` (seeded
``numpy.random.Generator`` streams, no global random state; the shared market calendar reads the
clock only to size its bounds, never for an answer), so the same spec gives byte-identical files.
Prices, report dates and recommendations draw from separate streams spawned from the seed, so
asking for more recommendations does not change the bars.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np

from portfolio.market_calendar import MARKET_TIME_ZONE, MarketCalendar, get_market_calendar

__all__ = [
    "ENTITY_CATALOGUE",
    "SECTORS",
    "SampleDataFiles",
    "SampleDataSpec",
    "generate_sample_data",
    "last_completed_session",
]

SECTORS: tuple[str, ...] = (
    "Technology",
    "Healthcare",
    "Energy",
    "Financials",
    "Consumer",
    "Industrials",
)

#: Made-up (symbol, name) pairs per sector, in the order they are used.
ENTITY_CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "Technology": (
        ("NVTX", "Novatrix Systems"),
        ("QBYT", "Quillbyte Software"),
        ("LMFG", "Lumenforge Semiconductor"),
        ("CBWV", "Cobaltwave Networks"),
        ("ZNTV", "Zentrova Cloud"),
        ("AXFL", "Arcflux Devices"),
    ),
    "Healthcare": (
        ("MVTH", "Meravane Therapeutics"),
        ("VLRB", "Vellora Biosciences"),
        ("CXYM", "Calyxen Medical"),
        ("OTVH", "Orthovane Health"),
        ("QVGX", "Quorvia Genomics"),
        ("SRVX", "Siravia Diagnostics"),
    ),
    "Energy": (
        ("BRMX", "Brightmere Energy"),
        ("FRCV", "Ferrocline Resources"),
        ("SVNP", "Solvanta Power"),
        ("RGFP", "Ridgeflare Petroleum"),
        ("WDMR", "Windmarsh Renewables"),
        ("CNVU", "Cindervolt Utilities"),
    ),
    "Financials": (
        ("HBKC", "Halbrook Capital"),
        ("OSTB", "Ostermere Bancorp"),
        ("PNYI", "Pennantry Insurance"),
        ("KSLF", "Kestrelane Financial"),
        ("GVLT", "Granvale Trust"),
        ("LGHV", "Ledgerhaven Payments"),
    ),
    "Consumer": (
        ("MWBF", "Marrowby Foods"),
        ("TDLW", "Tindleway Apparel"),
        ("PMCR", "Plumcrest Retail"),
        ("BSLV", "Brisella Beverages"),
        ("HWFN", "Hollowfen Home"),
        ("QNBL", "Quenby Leisure"),
    ),
    "Industrials": (
        ("SKFD", "Strakeford Machinery"),
        ("GTRL", "Gantrell Aerospace"),
        ("IVLX", "Ironvale Logistics"),
        ("BLTM", "Boltmere Engineering"),
        ("FGLM", "Forgeline Materials"),
        ("TWKR", "Treadwick Rail"),
    ),
}

_ENTITIES_PER_SECTOR = min(len(entries) for entries in ENTITY_CATALOGUE.values())

# Return model: a market factor shared by every entity and a factor per sector. The within-sector
# correlation of daily returns is about _MARKET_SHARE + the sector's share (0.5-0.7); across
# sectors it is about _MARKET_SHARE.
_MARKET_SHARE = 0.08
_SECTOR_SHARE_RANGE = (0.42, 0.60)
_DAILY_VOLATILITY_RANGE = (0.015, 0.03)  # standard deviation of daily log returns
_START_VALUE_RANGE = (8.0, 60.0)  # dollars
_BASE_VOLUME_RANGE = (200_000, 5_000_000)  # shares per session

# Recommendation mix: the action shares apply to the whole file (deliberate scenario signals
# included), the mode share to the randomly drawn signals.
_ACTION_SHARES: tuple[tuple[str, float], ...] = (
    ("act", 0.60),
    ("defer", 0.25),
    ("monitor", 0.05),
    ("observe", 0.05),
    ("neutral", 0.05),
)
_SIMULATION_MODE_SHARE = 0.55
_OUTSIDE_HOURS_SHARE = 0.06
_DEFER_AFTER_ACT_SHARE = 0.85
_CONFIDENCE_RANGE = (0.30, 0.98)
_DUPLICATE_EVERY = 50  # one repeated signal per this many recommendations
_RISK_CLASSES = ("low", "medium", "high")

_DRIVERS = (
    "margins",
    "order intake",
    "pricing power",
    "free cash flow",
    "guidance",
    "unit volumes",
    "customer growth",
)
_THESES: dict[str, tuple[str, ...]] = {
    "act": (
        "{name}: {driver} improving and {sector} momentum supports an entry.",
        "{symbol} broke out above its 20-session range on rising volume.",
        "Upgraded {driver} outlook at {name} is not yet reflected in the value.",
        "{symbol} held support after a pullback; {driver} trend intact.",
    ),
    "defer": (
        "{symbol} lost momentum after its run; {driver} looks stretched.",
        "Weakening {driver} at {name} argues for closing the commitment.",
        "{symbol} closed below its 20-session average; exit signal.",
    ),
    "other": (
        "{symbol} is range-bound; waiting for confirmation on {driver}.",
        "Mixed {driver} signals at {name}; no edge either way.",
        "{Sector} peers diverge; {symbol} stays on watch.",
    ),
}


@dataclass(frozen=True, kw_only=True)
class SampleDataSpec:
    """What to generate. ``end`` is the last simulated session (a New York date)."""

    seed: int = 7
    entities: int = 24
    sectors: int = 6
    history_sessions: int = 60  # bars before the simulated period (ATR, 30-session correlation)
    simulated_sessions: int = 20  # sessions the demo steps through, ending with ``end``
    recommendations: int = 400
    end: date


@dataclass(frozen=True)
class SampleDataFiles:
    """The files written, the simulated sessions (oldest first) and the number of rows of each."""

    entities: Path
    snapshots: Path
    reports: Path
    recommendations: Path
    simulated_sessions: tuple[date, ...]
    entity_count: int = 0
    snapshot_count: int = 0
    report_count: int = 0
    recommendation_count: int = 0


@dataclass(frozen=True)
class _Entity:
    symbol: str
    name: str
    sector: str


@dataclass(frozen=True)
class _Scenario:
    """Price events in the simulated sessions, as (entity index, first window position, length)."""

    drops: tuple[tuple[int, int, int], ...]
    rises: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class _Signal:
    entity: int
    action: str
    mode: str
    confidence: float
    generated_at: datetime


def last_completed_session(calendar: MarketCalendar, now: datetime) -> date:
    """The last NYSE session whose close is at or before ``now`` (aware), as a New York date."""
    today = now.astimezone(MARKET_TIME_ZONE).date()
    if calendar.is_session(today) and calendar.session_close(today) <= now:
        return today
    return calendar.previous_session(today)


def generate_sample_data(spec: SampleDataSpec, directory: Path) -> SampleDataFiles:
    """Write the four sample files into ``directory`` (created if missing) and describe them.

    Raises ``ValueError`` on an invalid spec, including an ``end`` that is not an NYSE session or
    too few sessions in the calendar before it. Existing files of the same names are replaced.
    """
    _validate(spec)
    # Noon on the end date makes sure the shared calendar covers ``end``; no answer depends on it.
    calendar = get_market_calendar(datetime.combine(spec.end, time(12), tzinfo=MARKET_TIME_ZONE))
    if not calendar.is_session(spec.end):
        raise ValueError(
            f"end {spec.end} is not an NYSE session; the last session before it is "
            f"{calendar.previous_session(spec.end)}"
        )
    sessions = calendar.last_sessions(spec.end, spec.history_sessions + spec.simulated_sessions)
    window = sessions[spec.history_sessions :]

    price_seed, report_seed, signal_seed = np.random.SeedSequence(spec.seed).spawn(3)
    price_rng = np.random.default_rng(price_seed)
    report_rng = np.random.default_rng(report_seed)
    signal_rng = np.random.default_rng(signal_seed)

    entities = _pick_entities(spec)
    scenario = _plan_scenario(price_rng, entities, len(window))
    volatilities, bars = _simulate_bars(
        price_rng, entities, len(sessions), spec.history_sessions, scenario
    )
    reports = _plan_reports(report_rng, calendar, entities, sessions, window, scenario)
    signals = _plan_signals(
        signal_rng, calendar, entities, window, scenario, reports, spec.recommendations
    )
    records = _recommendation_records(signal_rng, entities, volatilities, signals)

    directory.mkdir(parents=True, exist_ok=True)
    files = SampleDataFiles(
        entities=directory / "entities.csv",
        snapshots=directory / "snapshots.csv",
        reports=directory / "reports.csv",
        recommendations=directory / "recommendations.jsonl",
        simulated_sessions=tuple(window),
        entity_count=len(entities),
        snapshot_count=len(entities) * len(sessions),
        report_count=len(reports),
        recommendation_count=len(records),
    )
    _write_csv(
        files.entities,
        ("symbol", "name", "sector"),
        sorted((entity.symbol, entity.name, entity.sector) for entity in entities),
    )
    _write_csv(
        files.snapshots,
        ("symbol", "as_of", "open", "high", "low", "close", "volume"),
        _bar_rows(entities, sessions, bars),
    )
    _write_csv(
        files.reports,
        ("symbol", "report_date"),
        sorted(
            ((entities[index].symbol, day.isoformat()) for index, day in reports),
            key=lambda row: (row[1], row[0]),
        ),
    )
    with files.recommendations.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return files


def _validate(spec: SampleDataSpec) -> None:
    for field in ("seed", "entities", "sectors", "history_sessions", "simulated_sessions"):
        value = getattr(spec, field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{field} must be an integer, got {value!r}")
    if isinstance(spec.recommendations, bool) or not isinstance(spec.recommendations, int):
        raise ValueError(f"recommendations must be an integer, got {spec.recommendations!r}")
    if isinstance(spec.end, datetime) or not isinstance(spec.end, date):
        raise ValueError(f"end must be a datetime.date, got {spec.end!r}")
    if spec.seed < 0:
        raise ValueError(f"seed must be >= 0, got {spec.seed}")
    if not 1 <= spec.sectors <= len(SECTORS):
        raise ValueError(f"sectors must be between 1 and {len(SECTORS)}, got {spec.sectors}")
    if spec.entities < spec.sectors:
        raise ValueError(
            f"entities ({spec.entities}) must be at least sectors ({spec.sectors}) so that "
            "every sector has an entity"
        )
    capacity = spec.sectors * _ENTITIES_PER_SECTOR
    if spec.entities > capacity:
        raise ValueError(
            f"at most {capacity} entities for {spec.sectors} sectors "
            f"({_ENTITIES_PER_SECTOR} made-up names per sector), got {spec.entities}"
        )
    if spec.history_sessions < 0:
        raise ValueError(f"history_sessions must be >= 0, got {spec.history_sessions}")
    if spec.simulated_sessions < 1:
        raise ValueError(f"simulated_sessions must be >= 1, got {spec.simulated_sessions}")
    if spec.recommendations < 0:
        raise ValueError(f"recommendations must be >= 0, got {spec.recommendations}")


def _pick_entities(spec: SampleDataSpec) -> list[_Entity]:
    """Entities dealt round-robin over the sectors, so sector sizes differ by at most one."""
    sectors = SECTORS[: spec.sectors]
    entities: list[_Entity] = []
    for position in range(spec.entities):
        sector = sectors[position % len(sectors)]
        symbol, name = ENTITY_CATALOGUE[sector][position // len(sectors)]
        entities.append(_Entity(symbol=symbol, name=name, sector=sector))
    return entities


def _plan_scenario(rng: np.random.Generator, entities: list[_Entity], window: int) -> _Scenario:
    """Pick the entities that drop sharply and those that rise steadily, and when."""
    event_count = 2 if len(entities) >= 8 else 1
    # Drops and rises in different entities, one sector each while sectors last.
    order = [int(index) for index in rng.permutation(len(entities))]
    chosen: list[int] = []
    seen_sectors: set[str] = set()
    for index in order:
        if entities[index].sector not in seen_sectors:
            chosen.append(index)
            seen_sectors.add(entities[index].sector)
    chosen += [index for index in order if index not in chosen]
    drop_entities, rise_entities = chosen[:event_count], chosen[event_count : 2 * event_count]

    drops = []
    for index in drop_entities:
        length = min(int(rng.integers(3, 5)), window)
        latest = window - length
        start = int(rng.integers(latest // 3, 2 * latest // 3 + 1))
        drops.append((index, start, length))
    rises = []
    for index in rise_entities:
        length = min(int(rng.integers(8, 13)), window)
        start = int(rng.integers(0, (window - length) // 2 + 1))
        rises.append((index, start, length))
    return _Scenario(drops=tuple(drops), rises=tuple(rises))


def _simulate_bars(
    rng: np.random.Generator,
    entities: list[_Entity],
    session_count: int,
    window_offset: int,
    scenario: _Scenario,
) -> tuple[np.ndarray, np.ndarray]:
    """Daily bars as an array of shape (entities, sessions, 5): open, high, low, close, volume.

    Also returns each entity's daily volatility (fraction, e.g. 0.02 = 2 % per session).
    """
    count = len(entities)
    sector_names = sorted({entity.sector for entity in entities}, key=SECTORS.index)
    sector_of = np.array([sector_names.index(entity.sector) for entity in entities])

    volatility = rng.uniform(*_DAILY_VOLATILITY_RANGE, size=count)
    drift = rng.normal(0.0003, 0.0006, size=count)
    start_value = rng.uniform(*_START_VALUE_RANGE, size=count)
    base_volume = np.exp(rng.uniform(*np.log(_BASE_VOLUME_RANGE), size=count))
    sector_share = rng.uniform(*_SECTOR_SHARE_RANGE, size=len(sector_names))[sector_of]

    market = rng.standard_normal(session_count)
    sector_factor = rng.standard_normal((len(sector_names), session_count))[sector_of]
    own = rng.standard_normal((count, session_count))
    shock = (
        math.sqrt(_MARKET_SHARE) * market
        + np.sqrt(sector_share)[:, None] * sector_factor
        + np.sqrt(1.0 - _MARKET_SHARE - sector_share)[:, None] * own
    )
    returns = drift[:, None] + volatility[:, None] * shock  # daily log returns, close to close

    for index, start, length in scenario.drops:
        fall = rng.uniform(0.08, 0.12)
        weights = rng.dirichlet(np.full(length, 2.0))
        first = window_offset + start
        returns[index, first : first + length] = math.log(1.0 - fall) * weights
    for index, start, length in scenario.rises:
        gain = rng.uniform(0.10, 0.16)
        noise = rng.normal(0.0, 0.004, size=length)
        first = window_offset + start
        returns[index, first : first + length] = math.log(1.0 + gain) / length + (
            noise - noise.mean()
        )

    close = start_value[:, None] * np.exp(np.cumsum(returns, axis=1))
    gap = rng.normal(0.0, 1.0, size=(count, session_count)) * 0.3 * volatility[:, None]
    previous_close = np.concatenate([start_value[:, None], close[:, :-1]], axis=1)
    open_ = previous_close * np.exp(gap)
    open_[:, 0] = start_value
    upper = np.abs(rng.normal(0.0, 1.0, size=(count, session_count))) * 0.5 * volatility[:, None]
    lower = np.abs(rng.normal(0.0, 1.0, size=(count, session_count))) * 0.5 * volatility[:, None]
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-lower)
    activity = 1.0 + 0.3 * np.abs(returns) / volatility[:, None]
    volume = np.rint(
        base_volume[:, None] * np.exp(rng.normal(0.0, 0.25, size=(count, session_count))) * activity
    )
    return volatility, np.stack([open_, high, low, close, volume], axis=2)


def _plan_reports(
    rng: np.random.Generator,
    calendar: MarketCalendar,
    entities: list[_Entity],
    sessions: list[date],
    window: list[date],
    scenario: _Scenario,
) -> list[tuple[int, date]]:
    """One report date per entity: about 40 % in the simulated sessions, 10 % after them, the
    rest in the history. The first in-window report falls on a non-session day.

    Entities with a price event report outside the window, so that their commitments can open.
    """
    event_entities = {index for index, _, _ in scenario.drops + scenario.rises}
    order = [int(index) for index in rng.permutation(len(entities))]
    candidates = [index for index in order if index not in event_entities]
    others = [index for index in order if index in event_entities]
    in_window = candidates[: max(1, round(0.4 * len(entities)))]
    rest = candidates[len(in_window) :] + others
    after = rest[: round(0.1 * len(entities))]
    history = rest[len(after) :]

    lowest = min(3, len(window) - 1)
    reports: list[tuple[int, date]] = []
    for position, index in enumerate(in_window):
        day = window[int(rng.integers(lowest, len(window)))]
        if position == 0:
            day += timedelta(days=1)
            while calendar.is_session(day):
                day += timedelta(days=1)
        reports.append((index, day))
    for index in after:
        reports.append((index, window[-1] + timedelta(days=int(rng.integers(1, 31)))))
    past = sessions[: len(sessions) - len(window)] or window
    for index in history:
        reports.append((index, past[int(rng.integers(len(past)))]))
    return reports


def _plan_signals(
    rng: np.random.Generator,
    calendar: MarketCalendar,
    entities: list[_Entity],
    window: list[date],
    scenario: _Scenario,
    reports: list[tuple[int, date]],
    total: int,
) -> list[_Signal]:
    """The recommendations' entity, action, mode, confidence and time, in chronological order."""
    duplicates = total // _DUPLICATE_EVERY if total >= _DUPLICATE_EVERY else 0
    base = total - duplicates

    # Deliberate signals: acts before each drop and at the start of each rise (so commitments are
    # open when the value moves), and acts one and three sessions before in-window reports.
    planned: list[tuple[int, int]] = []  # (entity index, window position)
    for index, start, _ in scenario.drops:
        planned.extend((index, position) for position in sorted({max(0, start - 3), start - 1}))
    for index, start, _ in scenario.rises:
        planned.extend((index, position) for position in sorted({start, start + 1}))
    window_position = {day: position for position, day in enumerate(window)}
    for index, day in reports:
        position = window_position.get(day)
        if position is not None:
            planned.extend((index, position - away) for away in (1, 3))
    planned = [(index, position) for index, position in planned if 0 <= position < len(window)]
    planned = planned[: base // 4]

    signals = [
        _Signal(
            entity=index,
            action="act",
            mode="production_eligible",
            confidence=round(float(rng.uniform(0.80, 0.95)), 2),
            generated_at=_time_in_session(rng, calendar, window[position]),
        )
        for index, position in planned
    ]

    drawn = base - len(signals)
    action_counts = _apportion([share for _, share in _ACTION_SHARES], base)
    action_counts[0] = max(0, action_counts[0] - len(signals))
    actions = [
        name
        for (name, _), number in zip(_ACTION_SHARES, action_counts, strict=True)
        for _ in range(number)
    ]
    actions = _shuffled(rng, actions)[:drawn]
    actions += ["act"] * (drawn - len(actions))
    modes = _shuffled(
        rng,
        ["simulation_eligible"] * round(_SIMULATION_MODE_SHARE * drawn)
        + ["production_eligible"] * (drawn - round(_SIMULATION_MODE_SHARE * drawn)),
    )
    outside = set(rng.permutation(drawn)[: round(_OUTSIDE_HOURS_SHARE * drawn)].tolist())
    times = []
    for position in range(drawn):
        day = window[int(rng.integers(len(window)))]
        if position in outside:
            times.append(_time_outside_session(rng, calendar, day))
        else:
            times.append(_time_in_session(rng, calendar, day))
    confidences = np.round(rng.uniform(*_CONFIDENCE_RANGE, size=drawn), 2)

    # Entities are chosen in time order, so that a defer can follow an earlier act.
    drawn_signals = sorted(
        zip(times, actions, modes, confidences.tolist(), strict=True), key=lambda item: item[0]
    )
    # The entities with a drop or a rise get no random signals: their commitments are left to
    # the risk threshold monitor, so the demo shows a stop and a gain target being hit.
    event_entities = {index for index, _, _ in scenario.drops + scenario.rises}
    free = [index for index in range(len(entities)) if index not in event_entities] or list(
        range(len(entities))
    )
    deliberate_acts = sorted((signal.generated_at, signal.entity) for signal in signals)
    acted: list[int] = []
    for generated_at, action, mode, confidence in drawn_signals:
        while deliberate_acts and deliberate_acts[0][0] < generated_at:
            entity = deliberate_acts.pop(0)[1]
            if entity not in acted and entity not in event_entities:
                acted.append(entity)
        if action == "defer" and acted and rng.random() < _DEFER_AFTER_ACT_SHARE:
            entity = acted[int(rng.integers(len(acted)))]
        else:
            entity = free[int(rng.integers(len(free)))]
        if action == "act" and entity not in acted:
            acted.append(entity)
        signals.append(_Signal(entity, action, mode, confidence, generated_at))

    signals.extend(_duplicate_signals(rng, calendar, signals, duplicates))
    signals.sort(key=lambda signal: (signal.generated_at, signal.entity, signal.action))
    return signals


def _duplicate_signals(
    rng: np.random.Generator, calendar: MarketCalendar, signals: list[_Signal], count: int
) -> list[_Signal]:
    """Repeats of ``count`` in-session act/defer signals, 2-55 minutes apart, in the session."""
    sources = [
        signal
        for signal in signals
        if signal.action in ("act", "defer") and calendar.is_open(signal.generated_at)
    ]
    sources.sort(key=lambda signal: (signal.generated_at, signal.entity))
    picked = rng.permutation(len(sources))[: min(count, len(sources))]
    repeats = []
    for position in sorted(picked.tolist()):
        source = sources[position]
        day = source.generated_at.astimezone(MARKET_TIME_ZONE).date()
        opens, closes = calendar.session_open(day), calendar.session_close(day)
        offset = timedelta(seconds=int(rng.integers(120, 3300)))
        later = source.generated_at + offset
        generated_at = later if later < closes else max(opens, source.generated_at - offset)
        nudge = float(rng.uniform(-0.03, 0.03))
        confidence = round(min(max(source.confidence + nudge, 0.0), 1.0), 2)
        repeats.append(_Signal(source.entity, source.action, source.mode, confidence, generated_at))
    return repeats


def _recommendation_records(
    rng: np.random.Generator,
    entities: list[_Entity],
    volatilities: np.ndarray,
    signals: list[_Signal],
) -> list[dict[str, object]]:
    """The JSON objects, ids numbered in chronological order."""
    width = max(6, len(str(len(signals))))
    records: list[dict[str, object]] = []
    for number, signal in enumerate(signals, start=1):
        entity = entities[signal.entity]
        records.append(
            {
                "id": f"rec-{number:0{width}d}",
                "entity": entity.symbol,
                "action": signal.action,
                "mode": signal.mode,
                "confidence": signal.confidence,
                "generated_at": signal.generated_at.isoformat(),
                "thesis": _thesis(rng, entity, signal.action),
                "risk_classification": _risk_class(rng, float(volatilities[signal.entity])),
            }
        )
    return records


def _thesis(rng: np.random.Generator, entity: _Entity, action: str) -> str:
    templates = _THESES.get(action, _THESES["other"])
    template = templates[int(rng.integers(len(templates)))]
    driver = _DRIVERS[int(rng.integers(len(_DRIVERS)))]
    return template.format(
        name=entity.name,
        symbol=entity.symbol,
        sector=entity.sector.lower(),
        Sector=entity.sector,
        driver=driver,
    )


def _risk_class(rng: np.random.Generator, volatility: float) -> str:
    """Mostly follows the entity's volatility; one in four is the upstream stage's own view."""
    if rng.random() < 0.25:
        return _RISK_CLASSES[int(rng.integers(len(_RISK_CLASSES)))]
    if volatility < 0.02:
        return "low"
    if volatility < 0.025:
        return "medium"
    return "high"


def _time_in_session(rng: np.random.Generator, calendar: MarketCalendar, day: date) -> datetime:
    """A whole-second UTC instant in [open, close) of the session ``day``."""
    opens, closes = calendar.session_open(day), calendar.session_close(day)
    seconds = int((closes - opens).total_seconds())
    return opens + timedelta(seconds=int(rng.integers(seconds)))


def _time_outside_session(
    rng: np.random.Generator, calendar: MarketCalendar, day: date
) -> datetime:
    """A UTC instant up to 2.5 hours before the open or 3 hours after the close of ``day``."""
    if rng.random() < 0.5:
        return calendar.session_open(day) - timedelta(seconds=int(rng.integers(60, 9000)))
    return calendar.session_close(day) + timedelta(seconds=int(rng.integers(60, 10800)))


def _apportion(shares: Sequence[float], total: int) -> list[int]:
    """Split ``total`` into whole counts proportional to ``shares`` (largest remainder)."""
    exact = [share * total / sum(shares) for share in shares]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _shuffled(rng: np.random.Generator, items: list[str]) -> list[str]:
    return [items[int(i)] for i in rng.permutation(len(items))]


def _bar_rows(
    entities: list[_Entity], sessions: list[date], bars: np.ndarray
) -> list[tuple[str, ...]]:
    rows = []
    for index in sorted(range(len(entities)), key=lambda i: entities[i].symbol):
        symbol = entities[index].symbol
        for position, day in enumerate(sessions):
            open_, high, low, close, volume = bars[index, position].tolist()
            rows.append(
                (
                    symbol,
                    day.isoformat(),
                    f"{open_:.4f}",
                    f"{high:.4f}",
                    f"{max(low, 0.0001):.4f}",
                    f"{close:.4f}",
                    str(int(volume)),
                )
            )
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
