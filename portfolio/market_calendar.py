"""NYSE session calendar: execution window, session dates and session counting.

Implements, from the source document ("Page 6 — Decision
Execution"), the market-time parts of:

- "Pre-Execution Check Sequence", check b (execution window): ``MarketCalendar.is_open``;
- "Performance Report Proximity Adjustment" (a report within 1 / 3 active sessions):
  ``MarketCalendar.sessions_until`` and ``sessions_until_many``;
- the loops of "The Decision Execution Engine Loop": the risk tier scheduler at the session close
  (``session_close``, ``is_early_close``) and the weekly rebalancer at the first session of the week
  (``first_session_of_week``, ``session_open``);
- "Correlation-Aware Diversification" (closes of the last sessions): ``last_sessions``.

The design settles the details: the real NYSE calendar (holidays, early closes) from
``exchange_calendars`` ("XNYS"), sessions counted on that calendar (0 = the report falls in the
current session, 1 = the next session, a holiday is not a session), and the pitfalls that the
library fixes its bounds when built and reads naive timestamps as UTC.

``MarketCalendar`` is pure: every method takes the instant or date it is asked about and never
reads the clock. Only ``get_market_calendar`` reads the clock, and only to choose the bounds of the
calendar it builds.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars
import numpy as np

__all__ = [
    "EXCHANGE_CODE",
    "MARKET_TIME_ZONE",
    "MarketCalendar",
    "MarketCalendarBoundsError",
    "clear_market_calendar_cache",
    "get_market_calendar",
]

EXCHANGE_CODE = "XNYS"
MARKET_TIME_ZONE = ZoneInfo("America/New_York")

# Bounds of the process-wide calendar. The history reaches back far enough for any replay or
# back-test of this system; the future span keeps a long-running process (or a simulated clock)
# inside the bounds, and the margin is how early the calendar is rebuilt before the span runs out.
_DEFAULT_START = date(2000, 1, 1)
_FUTURE_SPAN = timedelta(days=2 * 366)
_HISTORY_SPAN = timedelta(days=2 * 366)
_REBUILD_MARGIN = timedelta(days=30)
_HISTORY_MARGIN = timedelta(days=366)


class MarketCalendarBoundsError(ValueError):
    """A date or instant lies outside the sessions a ``MarketCalendar`` was built for."""


class MarketCalendar:
    """The NYSE ("XNYS") sessions between two bounds, queried in O(log n) with numpy.

    Built from an ``exchange_calendars.ExchangeCalendar``; the session dates, opens and closes are
    copied into sorted numpy arrays once, so every query is a binary search and never touches pandas
    or the clock.

    Conventions for every method:

    - instants (``now``) are timezone-aware ``datetime`` objects in any zone; a naive one raises
      ``ValueError`` (the library would silently read it as UTC);
    - days are ``datetime.date`` objects naming a New York calendar date; passing a ``datetime``
      where a day is expected raises ``TypeError`` (its date would depend on its zone);
    - a day or instant outside ``first_session`` … ``last_session`` raises
      ``MarketCalendarBoundsError`` (a ``ValueError``), except for the report dates given to
      ``sessions_until`` / ``sessions_until_many`` (see there).
    """

    __slots__ = ("_closes", "_early_close", "_opens", "_session_dates", "_sessions")

    def __init__(self, exchange_calendar: exchange_calendars.ExchangeCalendar) -> None:
        schedule = exchange_calendar.schedule
        self._sessions: np.ndarray = schedule.index.to_numpy().astype("datetime64[D]")
        # Opens and closes as naive UTC microseconds: the unit of numpy's conversion of a datetime.
        self._opens: np.ndarray = (
            schedule["open"].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        )
        self._closes: np.ndarray = (
            schedule["close"].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        )
        early_closes = exchange_calendar.early_closes.to_numpy().astype("datetime64[D]")
        self._early_close: np.ndarray = np.isin(self._sessions, early_closes)
        self._session_dates: list[date] = self._sessions.tolist()
        if not self._session_dates:
            raise ValueError("the exchange calendar has no sessions")

    @classmethod
    def build(cls, start: date, end: date) -> MarketCalendar:
        """Build the XNYS calendar for the sessions from ``start`` to ``end`` (both inclusive).

        Does not read the clock. Costs about 0.1 s for 70 years of sessions; use
        ``get_market_calendar`` for the shared instance instead of building one per check.
        """
        with warnings.catch_warnings():
            # exchange_calendars 4.13 reads ``Series.values`` on tz-aware columns, which pandas 3
            # deprecates; the warning concerns the library, not this code, and would fire on every
            # build.
            warnings.filterwarnings(
                "ignore",
                message=r"Series\.values returning an ndarray",
                category=DeprecationWarning,
            )
            exchange_calendar = exchange_calendars.get_calendar(EXCHANGE_CODE, start=start, end=end)
        return cls(exchange_calendar)

    def __repr__(self) -> str:
        return f"MarketCalendar({EXCHANGE_CODE}, {self.first_session} … {self.last_session})"

    @property
    def first_session(self) -> date:
        """The first session the calendar knows (a New York date)."""
        return self._session_dates[0]

    @property
    def last_session(self) -> date:
        """The last session the calendar knows (a New York date)."""
        return self._session_dates[-1]

    def covers(self, day: date) -> bool:
        """Whether ``day`` lies within ``first_session`` … ``last_session`` (inclusive)."""
        return self.first_session <= _require_day(day) <= self.last_session

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` falls within a regular NYSE session.

        The open is inclusive and the close exclusive: 09:30:00 ET is open, 16:00:00 ET (13:00:00
        on an early close) is closed, matching the library's default "left" side. Holidays and
        weekends are closed. Raises ``ValueError`` on a naive ``now``.
        """
        instant = _utc_microseconds(now)
        self._check_in_bounds(_new_york_date(now))
        index = int(np.searchsorted(self._opens, instant, side="right")) - 1
        return index >= 0 and bool(instant < self._closes[index])

    def is_session(self, day: date) -> bool:
        """Whether the New York date ``day`` is a trading session (not a weekend or holiday)."""
        return self._find_session(day) is not None

    def session_open(self, day: date) -> datetime:
        """The opening instant of the session ``day`` (aware, UTC).

        ``ValueError`` if ``day`` is not a session.
        """
        return _aware_utc(self._opens[self._session_index(day)])

    def session_close(self, day: date) -> datetime:
        """The closing instant of the session ``day`` (aware, UTC), 13:00 ET on an early close.

        ``ValueError`` if ``day`` is not a session.
        """
        return _aware_utc(self._closes[self._session_index(day)])

    def is_early_close(self, day: date) -> bool:
        """Whether the session ``day`` closes early (13:00 ET); ``False`` for a non-session day."""
        index = self._find_session(day)
        return index is not None and bool(self._early_close[index])

    def current_session(self, now: datetime) -> date:
        """The session ``now`` belongs to, as a New York date.

        ``now``'s New York date if that date is a session (before the open, during the session and
        after the close alike), else the next session after it. Raises ``ValueError`` on a naive
        ``now``.
        """
        day = _new_york_date(now)
        if self.is_session(day):
            return day
        return self.next_session(day)

    def next_session(self, day: date) -> date:
        """The first session strictly after ``day`` (``day`` need not be a session)."""
        value = self._bounded_day(day)
        index = int(np.searchsorted(self._sessions, value, side="right"))
        if index >= len(self._session_dates):
            raise MarketCalendarBoundsError(f"no session after {day} within {self!r}")
        return self._session_dates[index]

    def previous_session(self, day: date) -> date:
        """The last session strictly before ``day`` (``day`` need not be a session)."""
        value = self._bounded_day(day)
        index = int(np.searchsorted(self._sessions, value, side="left")) - 1
        if index < 0:
            raise MarketCalendarBoundsError(f"no session before {day} within {self!r}")
        return self._session_dates[index]

    def sessions_between(self, start: date, end: date) -> list[date]:
        """The sessions from ``start`` to ``end``, both inclusive, oldest first.

        ``[]`` when ``start`` is after ``end``.
        """
        low = int(np.searchsorted(self._sessions, self._bounded_day(start), side="left"))
        high = int(np.searchsorted(self._sessions, self._bounded_day(end), side="right"))
        return self._session_dates[low:high]

    def last_sessions(self, end: date, count: int) -> list[date]:
        """The ``count`` sessions ending at ``end`` (inclusive if a session), oldest first.

        Raises ``ValueError`` on a negative ``count`` and ``MarketCalendarBoundsError`` when the
        calendar holds fewer than ``count`` sessions up to ``end``.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        high = int(np.searchsorted(self._sessions, self._bounded_day(end), side="right"))
        low = high - count
        if low < 0:
            raise MarketCalendarBoundsError(
                f"only {high} sessions up to {end} within {self!r}, {count} requested"
            )
        return self._session_dates[low:high]

    def sessions_until(self, current_session: date, target: date) -> int | None:
        """How many sessions away a performance report dated ``target`` is, in sessions.

        0 when ``target`` is ``current_session``, 1 when it falls in the next session, and so on. A
        ``target`` that is not a session (weekend, holiday) counts as the next session after it: a
        Saturday report after a Friday current session is 1 away. ``None`` when ``target`` is before
        ``current_session`` (already past). O(log n).

        ``current_session`` must be a session within the bounds (``ValueError`` otherwise). A
        ``target`` after ``last_session`` returns the count up to the end of the calendar plus one:
        a lower bound, which for a calendar from ``get_market_calendar`` (always at least 30 days
        of sessions beyond the date it was fetched for) is above any proximity threshold, so that
        one far-dated report does not fail a whole cycle.
        """
        current_index = self._session_index(current_session)
        value = _day64(target)
        if value < self._sessions[current_index]:
            return None
        return int(np.searchsorted(self._sessions, value, side="left")) - current_index

    def sessions_until_many(
        self, current_session: date, targets: Sequence[date]
    ) -> list[int | None]:
        """``sessions_until`` for each of ``targets``, in order, with one vectorized search.

        Same conventions and units (sessions) as ``sessions_until``.
        """
        current_index = self._session_index(current_session)
        if len(targets) == 0:
            return []
        values = np.array([_day64(target) for target in targets], dtype="datetime64[D]")
        distances = np.searchsorted(self._sessions, values, side="left") - current_index
        past = values < self._sessions[current_index]
        return [
            None if is_past else int(distance)
            for is_past, distance in zip(past.tolist(), distances.tolist(), strict=True)
        ]

    def first_session_of_week(self, day: date) -> date:
        """The first session of the ISO week (Monday–Sunday) containing ``day``.

        The Monday, or the Tuesday when Monday is a holiday (e.g. 2026-01-20 for the week of Martin
        Luther King Jr. Day). Raises ``ValueError`` for a week without any session.
        """
        monday = _require_day(day) - timedelta(days=day.weekday())
        sunday = monday + timedelta(days=6)
        index = int(np.searchsorted(self._sessions, self._bounded_day(monday), side="left"))
        if index < len(self._session_dates) and self._session_dates[index] <= sunday:
            return self._session_dates[index]
        if sunday > self.last_session:
            raise MarketCalendarBoundsError(f"the week of {day} runs past {self!r}")
        raise ValueError(f"the week of {day} has no session")

    def _check_in_bounds(self, day: date) -> None:
        if not self.first_session <= day <= self.last_session:
            raise MarketCalendarBoundsError(f"{day} is outside {self!r}")

    def _bounded_day(self, day: date) -> np.datetime64:
        self._check_in_bounds(_require_day(day))
        return np.datetime64(day, "D")

    def _find_session(self, day: date) -> int | None:
        value = self._bounded_day(day)
        index = int(np.searchsorted(self._sessions, value, side="left"))
        if index < len(self._session_dates) and self._sessions[index] == value:
            return index
        return None

    def _session_index(self, day: date) -> int:
        index = self._find_session(day)
        if index is None:
            raise ValueError(f"{day} is not a {EXCHANGE_CODE} session")
        return index


_cache_lock = threading.Lock()
_cached: MarketCalendar | None = None


def get_market_calendar(now: datetime | None = None) -> MarketCalendar:
    """The process-wide XNYS ``MarketCalendar``, built once and rebuilt only when it runs short.

    The calendar spans from 2000-01-01 (earlier if ``now`` is) to max(today, ``now``) + 2 years.
    It is rebuilt, replacing the shared instance, when the New York date of ``now`` is within 30
    days of its last session or beyond it (a process running for months, a simulated clock), or
    within a year of its first session; a rebuilt calendar always covers the previous one's span.
    The build is guarded by a lock, so concurrent callers share one instance.

    This function reads the clock (``datetime.now``) to pick the bounds of a calendar it builds
    and, when ``now`` is None, to know which date to cover; it never feeds the clock into an
    answer. Pass the engine's ``now`` (aware; a naive one raises ``ValueError``) so that simulated
    time is covered.
    """
    global _cached
    reference = _new_york_date(now) if now is not None else _today()
    calendar = _cached
    if calendar is not None and _is_comfortably_inside(calendar, reference):
        return calendar
    with _cache_lock:
        calendar = _cached
        if calendar is not None and _is_comfortably_inside(calendar, reference):
            return calendar
        start = min(_DEFAULT_START, reference - _HISTORY_SPAN)
        end = max(_today(), reference) + _FUTURE_SPAN
        if calendar is not None:
            start = min(start, calendar.first_session)
            end = max(end, calendar.last_session)
        calendar = MarketCalendar.build(start, end)
        _cached = calendar
        return calendar


def clear_market_calendar_cache() -> None:
    """Drop the process-wide calendar; the next ``get_market_calendar`` call builds a new one."""
    global _cached
    with _cache_lock:
        _cached = None


def _is_comfortably_inside(calendar: MarketCalendar, day: date) -> bool:
    return (
        calendar.first_session + _HISTORY_MARGIN <= day <= calendar.last_session - _REBUILD_MARGIN
    )


def _today() -> date:
    return datetime.now(MARKET_TIME_ZONE).date()


def _require_aware(now: datetime) -> None:
    if not isinstance(now, datetime):
        raise TypeError(f"expected a datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware datetime")


def _new_york_date(now: datetime) -> date:
    _require_aware(now)
    return now.astimezone(MARKET_TIME_ZONE).date()


def _utc_microseconds(now: datetime) -> np.datetime64:
    _require_aware(now)
    return np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "us")


def _aware_utc(value: np.datetime64) -> datetime:
    return value.item().replace(tzinfo=UTC)


def _require_day(day: date) -> date:
    # A datetime is a date subclass; its calendar date would depend on its zone, so refuse it.
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__}")
    return day


def _day64(day: date) -> np.datetime64:
    return np.datetime64(_require_day(day), "D")
