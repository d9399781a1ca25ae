"""Tests of portfolio.market_calendar: NYSE sessions, the execution window and session counting."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio import market_calendar
from portfolio.market_calendar import (
    MarketCalendar,
    MarketCalendarBoundsError,
    get_market_calendar,
)

NEW_YORK = ZoneInfo("America/New_York")
FIXTURE_START = date(2020, 1, 1)
FIXTURE_END = date(2028, 12, 31)


def et(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """An aware instant given as New York wall-clock time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    # Fixed bounds: the tests do not depend on the day they run.
    return MarketCalendar.build(FIXTURE_START, FIXTURE_END)


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start with no process-wide calendar; monkeypatch restores the original one afterwards."""
    monkeypatch.setattr(market_calendar, "_cached", None)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(et(2025, 6, 11, 10), True, id="wednesday-10:00"),
        pytest.param(et(2025, 6, 11, 9, 29, 59), False, id="09:29:59-before-open"),
        pytest.param(et(2025, 6, 11, 9, 30), True, id="09:30-open-inclusive"),
        pytest.param(et(2025, 6, 11, 15, 59, 59), True, id="15:59:59"),
        pytest.param(et(2025, 6, 11, 16), False, id="16:00-close-exclusive"),
        pytest.param(et(2025, 6, 11, 20), False, id="evening"),
        pytest.param(et(2025, 6, 14, 12), False, id="saturday"),
        pytest.param(et(2025, 6, 15, 12), False, id="sunday"),
        pytest.param(et(2025, 12, 25, 12), False, id="christmas-2025"),
        pytest.param(et(2026, 11, 26, 12), False, id="thanksgiving-2026"),
        pytest.param(et(2025, 7, 4, 12), False, id="independence-day-2025"),
        pytest.param(et(2026, 1, 19, 12), False, id="mlk-day-2026"),
        pytest.param(et(2026, 11, 27, 12, 59), True, id="early-close-2026-11-27-12:59"),
        pytest.param(et(2026, 11, 27, 13), False, id="early-close-2026-11-27-13:00"),
        pytest.param(et(2025, 12, 24, 12, 59, 59), True, id="early-close-2025-12-24-12:59:59"),
        pytest.param(et(2025, 12, 24, 13), False, id="early-close-2025-12-24-13:00"),
        pytest.param(et(2025, 12, 24, 15), False, id="early-close-2025-12-24-15:00"),
        # Same instants written in other zones: winter (EST, UTC-5) and summer (EDT, UTC-4).
        pytest.param(datetime(2025, 1, 15, 14, 30, tzinfo=UTC), True, id="utc-open-in-winter"),
        pytest.param(datetime(2025, 1, 15, 14, 29, tzinfo=UTC), False, id="utc-before-winter-open"),
        pytest.param(datetime(2025, 6, 11, 13, 30, tzinfo=UTC), True, id="utc-open-in-summer"),
        pytest.param(datetime(2025, 6, 11, 20, 0, tzinfo=UTC), False, id="utc-close-in-summer"),
        pytest.param(
            datetime(2025, 6, 12, 3, 0, tzinfo=timezone(timedelta(hours=9))),
            True,
            id="tokyo-time-during-new-york-session",
        ),
    ],
)
def test_is_open_follows_regular_sessions(
    calendar: MarketCalendar, now: datetime, expected: bool
) -> None:
    assert calendar.is_open(now) is expected


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda cal, naive: cal.is_open(naive), id="is_open"),
        pytest.param(lambda cal, naive: cal.current_session(naive), id="current_session"),
        pytest.param(lambda cal, naive: get_market_calendar(naive), id="get_market_calendar"),
    ],
)
def test_naive_datetime_raises_value_error(calendar: MarketCalendar, call) -> None:
    with pytest.raises(ValueError, match="naive"):
        call(calendar, datetime(2025, 6, 11, 10, 0))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 6, 11), True),
        (date(2025, 6, 14), False),
        (date(2025, 12, 25), False),
        (date(2026, 11, 26), False),
        (date(2025, 7, 4), False),
        (date(2026, 11, 27), True),
        (date(2025, 12, 24), True),
    ],
)
def test_is_session(calendar: MarketCalendar, day: date, expected: bool) -> None:
    assert calendar.is_session(day) is expected


@pytest.mark.parametrize(
    ("day", "expected_open", "expected_close"),
    [
        pytest.param(
            date(2025, 6, 11),
            datetime(2025, 6, 11, 13, 30, tzinfo=UTC),
            datetime(2025, 6, 11, 20, 0, tzinfo=UTC),
            id="summer-edt",
        ),
        pytest.param(
            date(2025, 1, 15),
            datetime(2025, 1, 15, 14, 30, tzinfo=UTC),
            datetime(2025, 1, 15, 21, 0, tzinfo=UTC),
            id="winter-est",
        ),
        pytest.param(
            date(2025, 12, 24),
            datetime(2025, 12, 24, 14, 30, tzinfo=UTC),
            datetime(2025, 12, 24, 18, 0, tzinfo=UTC),
            id="early-close-christmas-eve",
        ),
        pytest.param(
            date(2026, 11, 27),
            datetime(2026, 11, 27, 14, 30, tzinfo=UTC),
            datetime(2026, 11, 27, 18, 0, tzinfo=UTC),
            id="early-close-after-thanksgiving",
        ),
    ],
)
def test_session_open_and_close_are_aware_utc(
    calendar: MarketCalendar, day: date, expected_open: datetime, expected_close: datetime
) -> None:
    opened = calendar.session_open(day)
    closed = calendar.session_close(day)

    assert (opened, closed) == (expected_open, expected_close)
    assert opened.utcoffset() == timedelta(0)
    assert closed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("day", [date(2025, 6, 14), date(2025, 12, 25)])
def test_session_open_and_close_reject_a_non_session(calendar: MarketCalendar, day: date) -> None:
    with pytest.raises(ValueError, match="not a XNYS session"):
        calendar.session_open(day)
    with pytest.raises(ValueError, match="not a XNYS session"):
        calendar.session_close(day)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 27), True),
        (date(2025, 12, 24), True),
        (date(2025, 7, 3), True),
        (date(2025, 6, 11), False),
        (date(2025, 12, 26), False),
        pytest.param(date(2025, 12, 25), False, id="holiday-is-not-an-early-close"),
        pytest.param(date(2025, 6, 14), False, id="weekend-is-not-an-early-close"),
    ],
)
def test_is_early_close(calendar: MarketCalendar, day: date, expected: bool) -> None:
    assert calendar.is_early_close(day) is expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(et(2025, 6, 11, 10), date(2025, 6, 11), id="during-session"),
        pytest.param(et(2025, 6, 11, 7), date(2025, 6, 11), id="before-open"),
        pytest.param(et(2025, 6, 13, 20), date(2025, 6, 13), id="friday-after-close"),
        pytest.param(et(2025, 6, 14, 12), date(2025, 6, 16), id="saturday-to-monday"),
        pytest.param(et(2025, 12, 25, 12), date(2025, 12, 26), id="holiday-to-next-day"),
        pytest.param(
            datetime(2025, 6, 12, 2, 0, tzinfo=UTC), date(2025, 6, 11), id="new-york-date-not-utc"
        ),
    ],
)
def test_current_session(calendar: MarketCalendar, now: datetime, expected: date) -> None:
    assert calendar.current_session(now) == expected


@pytest.mark.parametrize(
    ("day", "expected_next", "expected_previous"),
    [
        pytest.param(date(2025, 6, 13), date(2025, 6, 16), date(2025, 6, 12), id="friday"),
        pytest.param(date(2025, 6, 14), date(2025, 6, 16), date(2025, 6, 13), id="saturday"),
        pytest.param(date(2025, 12, 24), date(2025, 12, 26), date(2025, 12, 23), id="christmas"),
        pytest.param(date(2026, 1, 20), date(2026, 1, 21), date(2026, 1, 16), id="after-mlk-day"),
        pytest.param(date(2025, 12, 25), date(2025, 12, 26), date(2025, 12, 24), id="holiday"),
    ],
)
def test_next_and_previous_session_are_strict(
    calendar: MarketCalendar, day: date, expected_next: date, expected_previous: date
) -> None:
    assert calendar.next_session(day) == expected_next
    assert calendar.previous_session(day) == expected_previous


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(
            date(2025, 12, 22),
            date(2025, 12, 29),
            [date(2025, 12, d) for d in (22, 23, 24, 26, 29)],
            id="christmas-week-inclusive",
        ),
        pytest.param(date(2025, 6, 11), date(2025, 6, 11), [date(2025, 6, 11)], id="one-session"),
        pytest.param(date(2025, 6, 14), date(2025, 6, 15), [], id="weekend-only"),
        pytest.param(date(2025, 6, 12), date(2025, 6, 11), [], id="start-after-end"),
    ],
)
def test_sessions_between(
    calendar: MarketCalendar, start: date, end: date, expected: list[date]
) -> None:
    assert calendar.sessions_between(start, end) == expected


@pytest.mark.parametrize(
    ("end", "count", "expected"),
    [
        pytest.param(
            date(2025, 12, 29),
            3,
            [date(2025, 12, 24), date(2025, 12, 26), date(2025, 12, 29)],
            id="end-is-a-session",
        ),
        pytest.param(
            date(2025, 12, 28),
            2,
            [date(2025, 12, 24), date(2025, 12, 26)],
            id="end-is-a-sunday",
        ),
        pytest.param(date(2025, 12, 29), 0, [], id="none"),
    ],
)
def test_last_sessions(
    calendar: MarketCalendar, end: date, count: int, expected: list[date]
) -> None:
    assert calendar.last_sessions(end, count) == expected


def test_last_sessions_rejects_a_negative_count(calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="count"):
        calendar.last_sessions(date(2025, 6, 11), -1)


def test_last_sessions_beyond_the_history_raises(calendar: MarketCalendar) -> None:
    with pytest.raises(MarketCalendarBoundsError):
        calendar.last_sessions(date(2020, 1, 10), 30)


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        pytest.param(date(2025, 6, 11), date(2025, 6, 11), 0, id="same-session"),
        pytest.param(date(2025, 6, 11), date(2025, 6, 12), 1, id="next-session"),
        pytest.param(date(2025, 6, 13), date(2025, 6, 16), 1, id="over-a-weekend"),
        pytest.param(date(2025, 6, 13), date(2025, 6, 14), 1, id="report-on-saturday"),
        pytest.param(date(2025, 6, 13), date(2025, 6, 15), 1, id="report-on-sunday"),
        pytest.param(date(2025, 12, 23), date(2025, 12, 25), 2, id="report-on-a-holiday"),
        pytest.param(date(2025, 12, 24), date(2025, 12, 25), 1, id="holiday-right-after"),
        pytest.param(date(2025, 6, 9), date(2025, 6, 12), 3, id="exactly-three-sessions"),
        pytest.param(date(2025, 6, 9), date(2025, 6, 13), 4, id="four-sessions"),
        pytest.param(date(2025, 6, 11), date(2025, 6, 10), None, id="past-report"),
        pytest.param(date(2025, 6, 16), date(2025, 6, 14), None, id="past-weekend-report"),
    ],
)
def test_sessions_until(
    calendar: MarketCalendar, current: date, target: date, expected: int | None
) -> None:
    assert calendar.sessions_until(current, target) == expected
    assert calendar.sessions_until_many(current, [target]) == [expected]


def test_sessions_until_many_keeps_the_order_of_targets(calendar: MarketCalendar) -> None:
    targets = [date(2025, 6, 14), date(2025, 6, 10), date(2025, 6, 13), date(2025, 12, 25)]

    assert calendar.sessions_until_many(date(2025, 6, 13), targets) == [1, None, 0, 135]
    assert calendar.sessions_until_many(date(2025, 6, 13), []) == []


def test_sessions_until_rejects_a_current_session_that_is_not_a_session(
    calendar: MarketCalendar,
) -> None:
    with pytest.raises(ValueError, match="not a XNYS session"):
        calendar.sessions_until(date(2025, 6, 14), date(2025, 6, 20))
    with pytest.raises(ValueError, match="not a XNYS session"):
        calendar.sessions_until_many(date(2025, 6, 14), [date(2025, 6, 20)])


def test_sessions_until_a_report_beyond_the_calendar_is_a_lower_bound(
    calendar: MarketCalendar,
) -> None:
    current = date(2028, 12, 1)
    remaining = len(calendar.sessions_between(current, calendar.last_session)) - 1

    assert calendar.sessions_until(current, date(2035, 1, 1)) == remaining + 1


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param(date(2026, 1, 19), date(2026, 1, 20), id="mlk-monday-itself"),
        pytest.param(date(2026, 1, 21), date(2026, 1, 20), id="mlk-week-wednesday"),
        pytest.param(date(2026, 1, 25), date(2026, 1, 20), id="mlk-week-sunday"),
        pytest.param(date(2025, 9, 3), date(2025, 9, 2), id="labor-day-week"),
        pytest.param(date(2025, 6, 11), date(2025, 6, 9), id="normal-week"),
        pytest.param(date(2025, 6, 15), date(2025, 6, 9), id="sunday-ends-the-iso-week"),
        pytest.param(date(2025, 6, 16), date(2025, 6, 16), id="monday-starts-the-iso-week"),
    ],
)
def test_first_session_of_week(calendar: MarketCalendar, day: date, expected: date) -> None:
    assert calendar.first_session_of_week(day) == expected


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda cal: cal.is_open(et(2031, 6, 11, 10)), id="is_open-after-end"),
        pytest.param(lambda cal: cal.is_session(date(2019, 6, 11)), id="is_session-before-start"),
        pytest.param(lambda cal: cal.next_session(date(2028, 12, 29)), id="no-next-session"),
        pytest.param(lambda cal: cal.previous_session(date(2020, 1, 2)), id="no-previous-session"),
        pytest.param(lambda cal: cal.current_session(et(2031, 1, 1, 10)), id="current-after-end"),
    ],
)
def test_outside_the_bounds_raises_bounds_error(calendar: MarketCalendar, call) -> None:
    with pytest.raises(MarketCalendarBoundsError):
        call(calendar)


def test_a_datetime_where_a_date_is_expected_raises_type_error(calendar: MarketCalendar) -> None:
    with pytest.raises(TypeError, match="datetime.date"):
        calendar.is_session(et(2025, 6, 11, 10))  # type: ignore[arg-type]


def test_covers(calendar: MarketCalendar) -> None:
    assert calendar.covers(date(2025, 6, 11))
    assert not calendar.covers(date(2031, 6, 11))


@settings(max_examples=200, deadline=None)
@given(
    now=st.datetimes(
        min_value=datetime(2021, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    )
)
def test_is_open_matches_the_session_open_and_close_of_the_new_york_date(
    calendar: MarketCalendar, now: datetime
) -> None:
    day = now.astimezone(NEW_YORK).date()
    expected = calendar.is_session(day) and (
        calendar.session_open(day) <= now < calendar.session_close(day)
    )

    assert calendar.is_open(now) is expected


@settings(max_examples=200, deadline=None)
@given(
    start=st.dates(min_value=date(2021, 1, 1), max_value=date(2027, 6, 30)),
    offset_days=st.integers(min_value=-20, max_value=60),
)
def test_sessions_until_counts_the_sessions_from_current_to_the_report(
    calendar: MarketCalendar, start: date, offset_days: int
) -> None:
    current = start if calendar.is_session(start) else calendar.next_session(start)
    target = current + timedelta(days=offset_days)

    if target < current:
        expected = None
    else:
        sessions = calendar.sessions_between(current, target)
        # The current session itself counts 0; a non-session target counts as the next session.
        expected = len(sessions) - 1 if calendar.is_session(target) else len(sessions)

    assert calendar.sessions_until(current, target) == expected
    assert calendar.sessions_until_many(current, [target]) == [expected]


def test_get_market_calendar_is_built_once_per_process(empty_cache: None) -> None:
    first = get_market_calendar()
    second = get_market_calendar()
    today = datetime.now(NEW_YORK).date()

    assert first is second
    assert first.first_session <= date(2000, 1, 3) <= today
    assert first.last_session >= today + timedelta(days=700)


def test_get_market_calendar_rebuilds_for_a_simulated_now_beyond_its_end(
    empty_cache: None,
) -> None:
    original = get_market_calendar()
    far_future = datetime(2070, 6, 6, 15, 0, tzinfo=UTC)

    rebuilt = get_market_calendar(now=far_future)

    assert rebuilt is not original
    assert rebuilt.covers(far_future.date())
    assert rebuilt.last_session >= date(2072, 5, 1)
    assert rebuilt.is_open(far_future)  # a Friday, 11:00 ET
    assert rebuilt.first_session <= original.first_session  # the rebuild never narrows the span
    assert get_market_calendar(now=far_future) is rebuilt
    assert get_market_calendar() is rebuilt


@pytest.mark.parametrize(
    ("days_before_last_session", "rebuilt"),
    [
        pytest.param(31, False, id="31-days-before-end-kept"),
        pytest.param(30, False, id="30-days-before-end-kept"),
        pytest.param(29, True, id="29-days-before-end-rebuilt"),
        pytest.param(-5, True, id="beyond-end-rebuilt"),
    ],
)
def test_get_market_calendar_rebuilds_within_30_days_of_its_end(
    empty_cache: None, days_before_last_session: int, rebuilt: bool
) -> None:
    original = get_market_calendar()
    day = original.last_session - timedelta(days=days_before_last_session)
    now = datetime(day.year, day.month, day.day, 12, 0, tzinfo=NEW_YORK)

    calendar = get_market_calendar(now=now)

    assert (calendar is not original) is rebuilt
    assert calendar.covers(day)


def test_get_market_calendar_rebuilds_for_a_simulated_now_before_its_history(
    empty_cache: None,
) -> None:
    original = get_market_calendar()
    long_ago = et(1999, 3, 10, 10)

    calendar = get_market_calendar(now=long_ago)

    assert calendar is not original
    assert calendar.is_open(long_ago)
    assert calendar.last_session >= original.last_session


def test_get_market_calendar_concurrent_callers_share_one_instance(empty_cache: None) -> None:
    results: list[MarketCalendar] = []
    barrier = threading.Barrier(8)

    def fetch() -> None:
        barrier.wait()
        results.append(get_market_calendar())

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    assert all(result is results[0] for result in results)


def test_clear_market_calendar_cache_forces_a_new_build(empty_cache: None) -> None:
    first = get_market_calendar()

    market_calendar.clear_market_calendar_cache()

    assert get_market_calendar() is not first
