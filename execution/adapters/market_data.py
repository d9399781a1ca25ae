"""HTTP client of an Alpaca-compatible market data API (v2), through ``requests``.

Endpoints: ``GET /v2/stocks/{symbol}/trades/latest`` (the latest trade: its price and time) and
``GET /v2/stocks/{symbol}/bars`` (daily bars, paged with ``page_token``); auth headers
``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``. Every call carries a (connect, read) timeout in
seconds.

Fail-closed, for a caller that runs inside the decision cycle: a timeout, a connection error, a
non-2xx answer, an unreadable or incomplete body gives ``None`` (latest trade) or ``[]`` (bars)
and a logged warning — never an exception, never a value that the API did not send. Prices are
``Decimal`` read from the JSON text (never through a float); times are aware UTC.

``failures`` counts the calls that got no usable answer for a reason that is not the symbol's
(no answer, a 5xx, a 429), so a caller can stop asking a source that is down. A
``requests.Session`` is not guaranteed thread-safe: use one client per thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

import requests

logger = logging.getLogger(__name__)

LATEST_TRADE_PATH = "/v2/stocks/{symbol}/trades/latest"
BARS_PATH = "/v2/stocks/{symbol}/bars"
#: Bars per page asked for (the API's maximum is 10,000).
BARS_PAGE_LIMIT = 1000
#: Pages read at most for one symbol: a server handing out page tokens forever is cut short.
MAX_BAR_PAGES = 20


@dataclass(frozen=True)
class Bar:
    """One bar as the data API sent it: ``at`` its start (aware UTC; a daily bar starts at
    midnight New York time), prices in $/unit, ``volume`` in units. Not checked for sanity:
    the caller validates it as any imported bar (``portfolio.imports.validate_snapshots``)."""

    at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


class _Unreadable(Exception):
    """A 2xx body that cannot be trusted."""


class AlpacaDataClient:
    """Alpaca-compatible market data client; see the module docstring.

    ``base_url`` is ``http(s)://host[:port][/prefix]`` (a trailing slash is tolerated);
    ``timeout`` is (connect, read) in seconds, or one number for both; ``session`` defaults to
    a new ``requests.Session``.
    """

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_key: str,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not carry a query or a fragment")
        if not key_id or not secret_key:
            raise ValueError("key_id and secret_key are required")
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        if connect <= 0 or read <= 0:
            raise ValueError("timeouts must be positive seconds")
        self.base_url = base_url.rstrip("/")
        self.timeout = (float(connect), float(read))
        self._key_id = key_id
        self._secret_key = secret_key
        self._session = session if session is not None else requests.Session()
        self.failures = 0

    def __repr__(self) -> str:
        return f"AlpacaDataClient(base_url={self.base_url!r})"

    def latest_trade(self, symbol: str) -> tuple[Decimal, datetime] | None:
        """(price in $/unit, time of the trade in UTC) of ``symbol``'s latest trade, or None
        (logged) without a usable answer: no answer, not 2xx, no ``trade``, a price that is not
        a positive finite number, a time without a readable timestamp."""
        body = self._get(LATEST_TRADE_PATH.format(symbol=quote(symbol, safe="")), {}, symbol)
        if body is None:
            return None
        try:
            if not isinstance(body, dict) or not isinstance(body.get("trade"), dict):
                raise _Unreadable("no trade object")
            trade = body["trade"]
            price = _positive_decimal(trade, "p")
            at = _timestamp(trade, "t")
        except _Unreadable as exc:
            logger.warning("market data: latest trade of %s unreadable (%s)", symbol, exc)
            return None
        return price, at

    def daily_bars(self, symbol: str, start: date, end: date) -> list[Bar]:
        """The daily bars of ``symbol`` from ``start`` to ``end`` (New York dates, inclusive),
        oldest first, every page read (at most ``MAX_BAR_PAGES``); ``[]`` (logged) when any
        page has no usable answer, so a partial series is never taken for a whole one."""
        params: dict[str, str] = {
            "timeframe": "1Day",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "limit": str(BARS_PAGE_LIMIT),
            "adjustment": "raw",
        }
        path = BARS_PATH.format(symbol=quote(symbol, safe=""))
        bars: list[Bar] = []
        for _ in range(MAX_BAR_PAGES):
            body = self._get(path, params, symbol)
            if body is None:
                return []
            try:
                if not isinstance(body, dict):
                    raise _Unreadable("not a JSON object")
                # A symbol without bars in the range comes back as null.
                items = body.get("bars")
                items = [] if items is None else items
                if not isinstance(items, list):
                    raise _Unreadable("bars is not a list")
                bars.extend(_bar(item) for item in items)
                token = body.get("next_page_token")
                if token is not None and (not isinstance(token, str) or not token):
                    raise _Unreadable("bad next_page_token")
            except _Unreadable as exc:
                logger.warning("market data: bars of %s unreadable (%s)", symbol, exc)
                return []
            if token is None:
                return sorted(bars, key=lambda bar: bar.at)
            params = {**params, "page_token": token}
        logger.warning("market data: bars of %s still paging after %s pages", symbol, MAX_BAR_PAGES)
        return []

    def _get(self, path: str, params: dict[str, str], symbol: str) -> Any:
        """The JSON body of a 2xx answer, or None (logged)."""
        headers = {
            "APCA-API-KEY-ID": self._key_id,
            "APCA-API-SECRET-KEY": self._secret_key,
            "Accept": "application/json",
        }
        try:
            response = self._session.get(
                self.base_url + path,
                params=params,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            self.failures += 1
            logger.warning(
                "market data: no answer for %s (%s: %s)",
                symbol,
                type(exc).__name__,
                self._redact(exc),
            )
            return None
        code = response.status_code
        if not 200 <= code < 300:
            if code >= 500 or code == 429:
                self.failures += 1
            logger.warning("market data: HTTP %s for %s %s", code, symbol, path)
            return None
        try:
            return json.loads(response.content, parse_float=Decimal, parse_constant=_refuse)
        except ValueError:
            logger.warning("market data: unreadable answer for %s %s (not JSON)", symbol, path)
            return None

    def _redact(self, value: object) -> str:
        return str(value).replace(self._secret_key, "***")


def _refuse(name: str) -> Any:
    """NaN and Infinity are not JSON and cannot be a price."""
    raise ValueError(f"non-finite JSON constant {name}")


def _decimal(body: dict[str, Any], key: str) -> Decimal:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise _Unreadable(f"missing or bad {key}")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise _Unreadable(f"bad {key}") from exc
    if not number.is_finite():
        raise _Unreadable(f"bad {key}")
    return number


def _positive_decimal(body: dict[str, Any], key: str) -> Decimal:
    number = _decimal(body, key)
    if number <= 0:
        raise _Unreadable(f"{key} is not > 0")
    return number


def _timestamp(body: dict[str, Any], key: str) -> datetime:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _Unreadable(f"missing {key}")
    text = value.strip()
    # RFC 3339 with nanoseconds ("…59.123456789Z"): Python reads at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Unreadable(f"bad {key}") from exc
    if moment.utcoffset() is None:
        raise _Unreadable(f"{key} has no offset")
    return moment.astimezone(UTC)


def _bar(item: Any) -> Bar:
    if not isinstance(item, dict):
        raise _Unreadable("a bar is not an object")
    volume = _decimal(item, "v") if item.get("v") is not None else Decimal(0)
    if volume != volume.to_integral_value():
        raise _Unreadable("bad v")
    return Bar(
        at=_timestamp(item, "t"),
        open=_decimal(item, "o"),
        high=_decimal(item, "h"),
        low=_decimal(item, "l"),
        close=_decimal(item, "c"),
        volume=int(volume),
    )
