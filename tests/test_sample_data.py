"""Tests of decisions.tooling.sample_data: the synthetic demo data set and its command."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from io import StringIO
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from decisions.tooling.sample_data import (
    SampleDataFiles,
    SampleDataSpec,
    generate_sample_data,
    last_completed_session,
)
from portfolio.market_calendar import MARKET_TIME_ZONE, MarketCalendar, get_market_calendar

# A window with a holiday (Thanksgiving, 2025-11-27) and an early close (2025-11-28).
END = date(2025, 12, 5)
SPEC = SampleDataSpec(end=END)
FILE_NAMES = ("entities.csv", "snapshots.csv", "reports.csv", "recommendations.jsonl")


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return get_market_calendar(datetime(2025, 12, 5, 12, tzinfo=UTC))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SampleDataFiles:
    return generate_sample_data(SPEC, tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def entities(files: SampleDataFiles) -> list[dict[str, str]]:
    return _read_csv(files.entities)


@pytest.fixture(scope="module")
def bars(files: SampleDataFiles) -> list[dict[str, str]]:
    return _read_csv(files.snapshots)


@pytest.fixture(scope="module")
def reports(files: SampleDataFiles) -> list[dict[str, str]]:
    return _read_csv(files.reports)


@pytest.fixture(scope="module")
def recommendations(files: SampleDataFiles) -> list[dict[str, object]]:
    with files.recommendations.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _closes(bars: list[dict[str, str]]) -> dict[str, list[float]]:
    closes: dict[str, list[float]] = defaultdict(list)
    for bar in sorted(bars, key=lambda bar: (bar["symbol"], bar["as_of"])):
        closes[bar["symbol"]].append(float(bar["close"]))
    return closes


def _generated_at(recommendation: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(recommendation["generated_at"]))


# Reproducibility


def test_same_spec_writes_identical_bytes(files: SampleDataFiles, tmp_path: Path) -> None:
    again = generate_sample_data(SPEC, tmp_path)
    for name in FILE_NAMES:
        assert (tmp_path / name).read_bytes() == (files.entities.parent / name).read_bytes()
    assert again.simulated_sessions == files.simulated_sessions


def test_another_seed_writes_other_prices_and_recommendations(
    files: SampleDataFiles, tmp_path: Path
) -> None:
    other = generate_sample_data(replace(SPEC, seed=8), tmp_path)
    assert other.snapshots.read_bytes() != files.snapshots.read_bytes()
    assert other.recommendations.read_bytes() != files.recommendations.read_bytes()


def test_recommendation_count_does_not_change_the_bars(
    files: SampleDataFiles, tmp_path: Path
) -> None:
    other = generate_sample_data(replace(SPEC, recommendations=50), tmp_path)
    assert other.snapshots.read_bytes() == files.snapshots.read_bytes()
    assert other.recommendation_count == 50


# Entities and bars


def test_headers_are_the_import_formats(files: SampleDataFiles) -> None:
    assert files.entities.read_text().splitlines()[0] == "symbol,name,sector"
    assert files.snapshots.read_text().splitlines()[0] == "symbol,as_of,open,high,low,close,volume"
    assert files.reports.read_text().splitlines()[0] == "symbol,report_date"


def test_entities_are_spread_over_sectors(
    files: SampleDataFiles, entities: list[dict[str, str]]
) -> None:
    symbols = [entity["symbol"] for entity in entities]
    assert len(symbols) == len(set(symbols)) == files.entity_count >= 20
    assert all(re.fullmatch(r"[A-Z]{3,4}", symbol) for symbol in symbols)
    per_sector = defaultdict(int)
    for entity in entities:
        per_sector[entity["sector"]] += 1
    assert len(per_sector) >= 5
    assert max(per_sector.values()) - min(per_sector.values()) <= 1


def test_every_entity_has_a_bar_for_every_session(
    files: SampleDataFiles,
    entities: list[dict[str, str]],
    bars: list[dict[str, str]],
    calendar: MarketCalendar,
) -> None:
    sessions = calendar.last_sessions(END, SPEC.history_sessions + SPEC.simulated_sessions)
    assert len(sessions) >= 60
    assert files.simulated_sessions == tuple(sessions[-SPEC.simulated_sessions :])
    days_by_symbol: dict[str, list[date]] = defaultdict(list)
    for bar in bars:
        days_by_symbol[bar["symbol"]].append(date.fromisoformat(bar["as_of"]))
    assert set(days_by_symbol) == {entity["symbol"] for entity in entities}
    assert all(days == sessions for days in days_by_symbol.values())
    assert len(bars) == files.snapshot_count


def test_every_bar_is_consistent(bars: list[dict[str, str]]) -> None:
    for bar in bars:
        open_, high, low, close = (float(bar[key]) for key in ("open", "high", "low", "close"))
        assert high >= max(open_, close) >= min(open_, close) >= low > 0, bar
        assert all(re.fullmatch(r"\d+\.\d{4}", bar[key]) for key in ("open", "high", "low"))
        assert int(bar["volume"]) > 0


def test_bars_start_between_8_and_60_dollars(bars: list[dict[str, str]]) -> None:
    first_opens = {}
    for bar in sorted(bars, key=lambda bar: bar["as_of"], reverse=True):
        first_opens[bar["symbol"]] = float(bar["open"])
    assert all(8 <= value <= 60 for value in first_opens.values())


def test_daily_volatility_is_about_1_5_to_3_percent(bars: list[dict[str, str]]) -> None:
    for symbol, closes in _closes(bars).items():
        volatility = float(np.std(np.diff(np.log(closes))))
        assert 0.01 < volatility < 0.04, symbol


def test_returns_correlate_more_within_a_sector_than_across(
    entities: list[dict[str, str]], bars: list[dict[str, str]]
) -> None:
    sector = {entity["symbol"]: entity["sector"] for entity in entities}
    closes = _closes(bars)
    symbols = sorted(closes)
    returns = np.diff(np.log(np.array([closes[symbol] for symbol in symbols])), axis=1)
    matrix = np.corrcoef(returns)
    within, across = [], []
    for i, j in combinations(range(len(symbols)), 2):
        same = sector[symbols[i]] == sector[symbols[j]]
        (within if same else across).append(matrix[i, j])
    assert 0.4 <= float(np.mean(within)) <= 0.75
    assert float(np.mean(within)) > float(np.mean(across)) + 0.25


def test_simulated_sessions_hold_a_sharp_drop_after_acts_and_a_steady_rise(
    files: SampleDataFiles, bars: list[dict[str, str]], recommendations: list[dict[str, object]]
) -> None:
    window = files.simulated_sessions
    first_act: dict[object, date] = {}
    for recommendation in sorted(recommendations, key=_generated_at):
        if recommendation["action"] == "act":
            day = _generated_at(recommendation).astimezone(MARKET_TIME_ZONE).date()
            first_act.setdefault(recommendation["entity"], day)
    drops, rises = set(), set()
    for symbol, closes in _closes(bars).items():
        simulated = np.array(closes[-len(window) - 1 :])  # the close before, then the window
        returns = np.diff(np.log(simulated))
        for start in range(len(window)):
            # A fall of 8-12 % over three or four sessions, every one of them down, that an
            # earlier act had a chance to open a commitment before.
            for length in (3, 4):
                if start + length > len(window):
                    continue
                steps = returns[start : start + length]
                total = simulated[start + length] / simulated[start]
                if (
                    (steps < 0).all()
                    and 0.879 <= total <= 0.921
                    and symbol in first_act
                    and first_act[symbol] < window[start]
                ):
                    drops.add(symbol)
            # A rise of 10 % or more over 8-12 sessions, much steadier than the noise (daily
            # volatility of at least 1.5 %).
            for length in range(8, 13):
                steps = returns[start : start + length]
                if len(steps) == length and steps.sum() >= np.log(1.10) and steps.std() < 0.008:
                    rises.add(symbol)
    assert drops
    assert rises


# Reports


def test_reports_fall_in_the_simulated_sessions_and_on_a_non_session_day(
    files: SampleDataFiles, reports: list[dict[str, str]], calendar: MarketCalendar
) -> None:
    days = [date.fromisoformat(report["report_date"]) for report in reports]
    window = files.simulated_sessions
    assert len(reports) == files.report_count == files.entity_count
    assert sum(window[0] <= day <= window[-1] for day in days) >= 3
    assert any(not calendar.is_session(day) for day in days)


def test_acts_meet_reports_one_and_three_sessions_ahead(
    reports: list[dict[str, str]],
    recommendations: list[dict[str, object]],
    calendar: MarketCalendar,
) -> None:
    report_days = defaultdict(list)
    for report in reports:
        report_days[report["symbol"]].append(date.fromisoformat(report["report_date"]))
    distances = set()
    for recommendation in recommendations:
        moment = _generated_at(recommendation)
        if recommendation["action"] != "act" or not calendar.is_open(moment):
            continue
        session = moment.astimezone(MARKET_TIME_ZONE).date()
        for day in report_days[str(recommendation["entity"])]:
            distances.add(calendar.sessions_until(session, day))
    assert {0, 1} & distances  # rejected: a report within one session
    assert {2, 3} & distances  # halved: a report within three sessions


# Recommendations


def test_recommendations_have_every_field_and_value(
    files: SampleDataFiles,
    entities: list[dict[str, str]],
    recommendations: list[dict[str, object]],
) -> None:
    keys = {
        "id",
        "entity",
        "action",
        "mode",
        "confidence",
        "generated_at",
        "thesis",
        "risk_classification",
    }
    assert len(recommendations) == files.recommendation_count == SPEC.recommendations
    assert all(set(recommendation) == keys for recommendation in recommendations)
    assert {r["action"] for r in recommendations} == {
        "act",
        "defer",
        "monitor",
        "observe",
        "neutral",
    }
    assert {r["mode"] for r in recommendations} == {"simulation_eligible", "production_eligible"}
    assert {r["risk_classification"] for r in recommendations} == {"low", "medium", "high"}
    assert {r["entity"] for r in recommendations} <= {e["symbol"] for e in entities}
    assert all(str(r["thesis"]).strip() for r in recommendations)


def test_action_mix_is_mostly_act_then_defer(recommendations: list[dict[str, object]]) -> None:
    actions = [r["action"] for r in recommendations]
    assert 0.55 <= actions.count("act") / len(actions) <= 0.66
    assert 0.20 <= actions.count("defer") / len(actions) <= 0.30


def test_ids_are_unique_and_numbered(recommendations: list[dict[str, object]]) -> None:
    ids = [str(r["id"]) for r in recommendations]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"rec-\d{6}", value) for value in ids)


def test_confidence_spans_every_tier_gate(recommendations: list[dict[str, object]]) -> None:
    confidences = [float(r["confidence"]) for r in recommendations]  # type: ignore[arg-type]
    assert all(0.0 <= value <= 1.0 for value in confidences)
    assert min(confidences) < 0.40 and max(confidences) >= 0.95
    for low, high in ((0.40, 0.55), (0.55, 0.75)):
        assert any(low <= value < high for value in confidences)


def test_generated_at_has_an_offset_and_lies_in_the_simulated_sessions(
    files: SampleDataFiles, recommendations: list[dict[str, object]]
) -> None:
    window = set(files.simulated_sessions)
    for recommendation in recommendations:
        assert re.search(r"[+-]\d\d:\d\d$", str(recommendation["generated_at"]))
        moment = _generated_at(recommendation)
        assert moment.utcoffset() is not None
        assert moment.astimezone(MARKET_TIME_ZONE).date() in window


def test_a_small_share_arrives_outside_session_hours(
    recommendations: list[dict[str, object]], calendar: MarketCalendar
) -> None:
    outside = [r for r in recommendations if not calendar.is_open(_generated_at(r))]
    assert 0.02 <= len(outside) / len(recommendations) <= 0.10


def test_early_close_is_respected(
    recommendations: list[dict[str, object]], calendar: MarketCalendar
) -> None:
    early = [
        _generated_at(r)
        for r in recommendations
        if _generated_at(r).astimezone(MARKET_TIME_ZONE).date() == date(2025, 11, 28)
    ]
    inside = [moment for moment in early if calendar.is_open(moment)]
    assert inside
    assert all(moment.astimezone(MARKET_TIME_ZONE).hour < 13 for moment in inside)


def test_defers_mostly_follow_an_act_on_the_entity(
    recommendations: list[dict[str, object]],
) -> None:
    acted: set[object] = set()
    followed = defers = 0
    for recommendation in sorted(recommendations, key=_generated_at):
        if recommendation["action"] == "defer":
            defers += 1
            followed += recommendation["entity"] in acted
        elif recommendation["action"] == "act":
            acted.add(recommendation["entity"])
    assert followed / defers >= 0.75


def test_some_signals_repeat_within_the_hour(recommendations: list[dict[str, object]]) -> None:
    by_signal = defaultdict(list)
    for recommendation in recommendations:
        key = (recommendation["entity"], recommendation["action"])
        by_signal[key].append(_generated_at(recommendation))
    repeats = 0
    for moments in by_signal.values():
        moments.sort()
        repeats += sum(
            (later - earlier).total_seconds() <= 3600
            for earlier, later in zip(moments, moments[1:], strict=False)
        )
    assert repeats >= 3


def test_ids_follow_chronological_order(recommendations: list[dict[str, object]]) -> None:
    moments = [_generated_at(r) for r in recommendations]
    assert moments == sorted(moments)


# Validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sectors": 0}, "sectors must be between"),
        ({"sectors": 7}, "sectors must be between"),
        ({"entities": 5}, "must be at least sectors"),
        ({"entities": 37}, "at most 36 entities"),
        ({"entities": 4, "sectors": 2}, None),
        ({"simulated_sessions": 0}, "simulated_sessions must be >= 1"),
        ({"history_sessions": -1}, "history_sessions must be >= 0"),
        ({"recommendations": -1}, "recommendations must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"end": date(2025, 12, 6)}, "not an NYSE session"),
        ({"end": date(2025, 11, 27)}, "not an NYSE session"),
    ],
)
def test_invalid_specs_raise_value_error(
    changes: dict[str, object], message: str | None, tmp_path: Path
) -> None:
    spec = replace(SPEC, **{"recommendations": 20, **changes})
    if message is None:
        assert generate_sample_data(spec, tmp_path).entity_count == 4
        return
    with pytest.raises(ValueError, match=message):
        generate_sample_data(spec, tmp_path)
    assert not any(tmp_path.iterdir())


def test_small_specs_still_generate(tmp_path: Path) -> None:
    spec = SampleDataSpec(
        entities=1, sectors=1, history_sessions=0, simulated_sessions=1, recommendations=3, end=END
    )
    files = generate_sample_data(spec, tmp_path)
    assert files.simulated_sessions == (END,)
    assert (files.snapshot_count, files.recommendation_count) == (1, 3)


# Command


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 12, 5, 20, 59, tzinfo=UTC), date(2025, 12, 4)),  # 15:59 ET: still open
        (datetime(2025, 12, 5, 21, 0, tzinfo=UTC), date(2025, 12, 5)),  # 16:00 ET: closed
        (datetime(2025, 11, 28, 18, 0, tzinfo=UTC), date(2025, 11, 28)),  # after an early close
        (datetime(2025, 12, 7, 12, 0, tzinfo=UTC), date(2025, 12, 5)),  # Sunday
    ],
)
def test_last_completed_session(now: datetime, expected: date, calendar: MarketCalendar) -> None:
    assert last_completed_session(calendar, now) == expected


def test_command_writes_the_files_and_prints_them(tmp_path: Path) -> None:
    out = StringIO()
    call_command(
        "generate_sample_data",
        str(tmp_path),
        "--seed=3",
        "--recommendations=60",
        "--end=2025-12-05",
        stdout=out,
    )
    text = out.getvalue()
    for name in FILE_NAMES:
        assert str(tmp_path / name) in text
    assert "(24 entities)" in text and "(60 recommendations)" in text
    expected = generate_sample_data(replace(SPEC, seed=3, recommendations=60), tmp_path / "again")
    assert (tmp_path / "recommendations.jsonl").read_bytes() == (
        expected.recommendations.read_bytes()
    )


@pytest.mark.parametrize(
    "arguments",
    [["--end=2025-13-01"], ["--end=2025-12-06"], ["--entities=0"], ["--sessions=0"]],
)
def test_command_rejects_bad_arguments(arguments: list[str], tmp_path: Path) -> None:
    with pytest.raises(CommandError):
        call_command("generate_sample_data", str(tmp_path), *arguments, stdout=StringIO())
