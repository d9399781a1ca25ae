"""HTTP execution adapter for an Alpaca-compatible broker REST API, through ``requests``.

Endpoints: ``POST /v2/orders``, ``GET /v2/orders:by_client_order_id``, ``GET /v2/orders/{id}``,
``GET /v2/account``, ``GET /v2/positions``; auth headers ``APCA-API-KEY-ID`` /
``APCA-API-SECRET-KEY``; numbers in JSON are strings. Every call carries a (connect, read)
timeout in seconds.

Fail-closed: a POST is sent at most once per ``submit``. A timeout, a connection error (which can
happen after the broker received the order), a 5xx or an unreadable 2xx answer gives ``UNKNOWN``:
the caller reconciles with ``lookup`` and never blindly resubmits. Only a 429, or a request the
limiter kept back, is reported as retryable: the broker certainly does not hold that order.
``raw`` never holds the keys.

What each answer to ``submit`` becomes:

=============================================  ==============================================
broker answer                                  ``ExecutionResponse``
=============================================  ==============================================
2xx with an order                              the order's status, mapped below
422 "client_order_id must be unique"           the ``lookup`` of that id (the broker holds it)
429                                            REJECTED "rate_limited", retryable, ``retry_at``
other 4xx (403 insufficient buying power,      REJECTED with the broker's message, not
account blocked, 422 invalid order…)           retryable
3xx, 5xx, timeout, connection error or reset,  UNKNOWN (reconcile by ``lookup``)
unreadable body
not sent: the client-side limiter's budget     REJECTED "rate_limited", retryable, ``retry_at``
is spent
not sent: the limiter failed                   REJECTED "rate_limiter_unavailable", retryable
=============================================  ==============================================

An order's status (``status`` in the order JSON, kept as ``broker_status``):

===========================================  ===================  =========  ==================
broker status                                ``ResponseStatus``   is_final   fill kept
===========================================  ===================  =========  ==================
filled                                       FILLED               yes        all
partially_filled                             PARTIALLY_FILLED     no         so far
new, accepted, pending_new, held,            ACCEPTED, or         no         so far
accepted_for_bidding, calculated, stopped,   PARTIALLY_FILLED
suspended, pending_cancel, pending_replace   with a fill
canceled, expired, rejected, done_for_day    REJECTED (reason:    yes        the partial fill
                                             the broker status)
replaced                                     REPLACED             no         its own fills;
                                             (``replaced_by``)               follow replaced_by
anything else                                UNKNOWN (reason:     no         —
                                             the broker status)
===========================================  ===================  =========  ==================

``done_for_day`` is final for the desk's day orders (a day order does not come back the next
day). A fill without a quantity or an average price cannot be booked: UNKNOWN
"unreadable_response".

Rate limits: a 429 carries ``retry_at`` from ``X-Ratelimit-Reset`` (unix seconds) or
``Retry-After`` (seconds, or an HTTP date), the later of the two, ``None`` when neither is there.
With a ``limiter`` (``execution.adapters.base.RequestLimiter``; ``execution.ratelimit`` keeps one
per API key in the cache for every process of the desk) every request first takes one from its
budget; when it is spent nothing is sent. Reads (``account``, ``positions``) raise
``BrokerUnavailable("rate_limited")`` with ``retry_at``; ``lookup`` and ``lookup_by_broker_id``
answer UNKNOWN "rate_limited" with ``retry_at``. After a broker 429 the limiter is told to hold
until ``retry_at`` when it offers ``hold_until``.

A ``requests.Session`` is not guaranteed thread-safe: use one adapter per thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from execution.adapters.base import (
    BrokerAccount,
    BrokerPosition,
    BrokerUnavailable,
    ExecutionResponse,
    OrderRequest,
    RequestLimiter,
    ResponseStatus,
)

logger = logging.getLogger(__name__)

ORDERS_PATH = "/v2/orders"
LOOKUP_PATH = "/v2/orders:by_client_order_id"
ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
RAW_TEXT_LIMIT = 2_000
DUPLICATE_MESSAGE = "client_order_id must be unique"
RATE_LIMITED = "rate_limited"
LIMITER_UNAVAILABLE = "rate_limiter_unavailable"
#: An ``X-Ratelimit-Reset`` below this (2001-09-09) is read as seconds from now, not a date.
EPOCH_FLOOR = 1_000_000_000

#: Broker statuses of an order it is still working.
OPEN_BROKER_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "held",
        "accepted_for_bidding",
        "calculated",
        "stopped",
        "suspended",
        "pending_cancel",
        "pending_replace",
    }
)
#: Broker statuses of an order that ended without a complete fill.
ENDED_BROKER_STATUSES = frozenset({"canceled", "expired", "rejected", "done_for_day"})

BROKER_STATUS_MAP: dict[str, ResponseStatus] = {
    "filled": ResponseStatus.FILLED,
    "partially_filled": ResponseStatus.PARTIALLY_FILLED,
    "replaced": ResponseStatus.REPLACED,
    **dict.fromkeys(OPEN_BROKER_STATUSES, ResponseStatus.ACCEPTED),
    **dict.fromkeys(ENDED_BROKER_STATUSES, ResponseStatus.REJECTED),
}


class _Unreadable(Exception):
    """A 2xx body that cannot be trusted."""


class _Exchange:
    """One HTTP round trip as the adapter saw it."""

    def __init__(
        self,
        http_status: int | None = None,
        body: Any = None,
        is_json: bool = False,
        error: str | None = None,
        failure: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        self.http_status = http_status
        self.body = body
        self.is_json = is_json
        self.error = error
        # "timeout", "connection_error", "request_error" when no response arrived;
        # "rate_limited" or "rate_limiter_unavailable" when nothing was sent.
        self.failure = failure
        self.retry_at = retry_at

    @property
    def sent(self) -> bool:
        return self.failure not in (RATE_LIMITED, LIMITER_UNAVAILABLE)

    def raw(self, sent: dict[str, Any]) -> dict[str, Any]:
        raw = {
            "request": sent,
            "http_status": self.http_status,
            "body": self.body,
            "error": self.error,
        }
        if self.retry_at is not None:
            raw["retry_at"] = self.retry_at.isoformat()
        if not self.sent:
            raw["sent"] = False
        return raw

    def message(self) -> str:
        """The broker's JSON "message", else ``http_<code>``."""
        if self.is_json and isinstance(self.body, dict):
            message = self.body.get("message")
            if isinstance(message, str) and message.strip():
                return message.strip()
        return f"http_{self.http_status}"


class AlpacaHttpAdapter:
    """Alpaca-compatible REST client.

    ``base_url`` is ``http(s)://host[:port][/prefix]`` (a trailing slash is tolerated);
    ``timeout`` is (connect, read) in seconds and applies to every call; ``session`` defaults to a
    new ``requests.Session``. ``limiter`` (optional, a ``RequestLimiter``) is asked before every
    request; ``clock()`` (aware UTC, default the wall clock) only dates a ``retry_at`` that the
    limiter or a ``Retry-After`` in seconds gives as a delay.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_key: str,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
        *,
        limiter: RequestLimiter | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.base_url = _validate_base_url(base_url)
        if not key_id or not secret_key:
            raise ValueError("key_id and secret_key are required")
        connect, read = timeout
        if connect <= 0 or read <= 0:
            raise ValueError("timeouts must be positive seconds")
        self._key_id = key_id
        self._secret_key = secret_key
        self.timeout = (float(connect), float(read))
        self._session = session if session is not None else requests.Session()
        self.limiter = limiter
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"AlpacaHttpAdapter(base_url={self.base_url!r})"

    def submit(self, request: OrderRequest) -> ExecutionResponse:
        """POST the order once and map the broker's answer (the table in the module docstring).

        A 422 "client_order_id must be unique" is resolved by ``lookup`` (UNKNOWN if the lookup
        cannot find it); nothing is ever sent twice.
        """
        payload = {
            "symbol": request.symbol,
            "qty": str(request.quantity),
            "side": request.side,
            "type": request.order_type,
            "time_in_force": request.time_in_force,
            "client_order_id": request.client_order_id,
        }
        exchange = self._send("POST", ORDERS_PATH, json_body=payload)
        raw = exchange.raw(payload)
        code = exchange.http_status

        if not exchange.sent:
            return ExecutionResponse.rejected(
                exchange.failure or RATE_LIMITED, raw, retryable=True, retry_at=exchange.retry_at
            )
        if code is None:
            return ExecutionResponse.unknown(exchange.failure or "request_error", raw)
        if 200 <= code < 300:
            return _order_response(exchange, raw)
        if code == 429:
            return ExecutionResponse.rejected(
                RATE_LIMITED, raw, retryable=True, retry_at=exchange.retry_at
            )
        if code == 422 and DUPLICATE_MESSAGE in exchange.message().lower():
            return self._resolve_duplicate(request.client_order_id, raw)
        if 400 <= code < 500:
            return ExecutionResponse.rejected(exchange.message(), raw)
        return ExecutionResponse.unknown(f"http_{code}", raw)

    def lookup(self, client_order_id: str) -> ExecutionResponse:
        """GET the order by its client_order_id and map it.

        404 with a JSON body → NOT_FOUND. A 404 without JSON (a proxy or a wrong base URL rather
        than the broker's answer), any other error, a timeout or an unreadable body → UNKNOWN;
        rate-limited (by the broker or the limiter) → UNKNOWN "rate_limited" with ``retry_at``.
        """
        params = {"client_order_id": client_order_id}
        exchange = self._send("GET", LOOKUP_PATH, params=params)
        return _order_read(
            exchange, exchange.raw(params), ("client_order_id", client_order_id), "client_order_id"
        )

    def lookup_by_broker_id(self, broker_order_id: str) -> ExecutionResponse:
        """GET the order by the broker's own id (``GET /v2/orders/{id}``) and map it, as
        ``lookup`` does; an answer about another order is UNKNOWN "broker_order_id_mismatch".
        Raises ``ValueError`` for an empty id."""
        if not isinstance(broker_order_id, str) or not broker_order_id.strip():
            raise ValueError("broker_order_id must be a non-empty string")
        path = f"{ORDERS_PATH}/{quote(broker_order_id, safe='')}"
        exchange = self._send("GET", path)
        raw = exchange.raw({"broker_order_id": broker_order_id})
        return _order_read(exchange, raw, ("id", broker_order_id), "broker_order_id")

    def account(self) -> BrokerAccount:
        """The account from ``GET /v2/account``: cash, equity and buying power in dollars, the
        status and the blocks; raises ``BrokerUnavailable`` without a usable answer (a missing
        ``status`` or ``buying_power`` included; a block flag that is absent reads as False)."""
        body = self._read_json("GET", ACCOUNT_PATH)
        if not isinstance(body, dict):
            raise BrokerUnavailable("unreadable_response", 200)
        try:
            return BrokerAccount(
                cash=_required_decimal(body, "cash"),
                equity=_required_decimal(body, "equity"),
                raw=body,
                status=_required_str(body, "status"),
                trading_blocked=_flag(body, "trading_blocked"),
                account_blocked=_flag(body, "account_blocked"),
                trade_suspended_by_user=_flag(body, "trade_suspended_by_user"),
                buying_power=_required_decimal(body, "buying_power"),
            )
        except _Unreadable as exc:
            raise BrokerUnavailable("unreadable_response", 200) from exc

    def positions(self) -> list[BrokerPosition]:
        """Open positions from ``GET /v2/positions`` (units, $/unit).

        Raises ``BrokerUnavailable`` without a usable answer.
        """
        body = self._read_json("GET", POSITIONS_PATH)
        if not isinstance(body, list):
            raise BrokerUnavailable("unreadable_response", 200)
        try:
            return [
                BrokerPosition(
                    symbol=_required_str(item, "symbol"),
                    quantity=_required_decimal(item, "qty"),
                    average_entry_value=_required_decimal(item, "avg_entry_price"),
                    raw=item,
                )
                for item in body
            ]
        except _Unreadable as exc:
            raise BrokerUnavailable("unreadable_response", 200) from exc

    def _resolve_duplicate(self, client_order_id: str, raw: dict[str, Any]) -> ExecutionResponse:
        found = self.lookup(client_order_id)
        merged = {**raw, "lookup": found.raw}
        if found.status is ResponseStatus.NOT_FOUND:
            # The broker claims to hold it yet cannot find it: leave it to reconciliation.
            return ExecutionResponse.unknown("duplicate_client_order_id", merged)
        # A retryable lookup is not a retryable submit: the broker holds the order.
        return dataclasses.replace(found, raw=merged, retryable=False)

    def _read_json(self, method: str, path: str) -> Any:
        exchange = self._send(method, path)
        code = exchange.http_status
        if not exchange.sent:
            raise BrokerUnavailable(exchange.failure or RATE_LIMITED, retry_at=exchange.retry_at)
        if code is None:
            raise BrokerUnavailable(exchange.failure or "request_error")
        if code == 429:
            raise BrokerUnavailable(RATE_LIMITED, code, retry_at=exchange.retry_at)
        if not 200 <= code < 300:
            reason = exchange.message() if 400 <= code < 500 else f"http_{code}"
            raise BrokerUnavailable(reason, code)
        if not exchange.is_json:
            raise BrokerUnavailable("unreadable_response", code)
        return exchange.body

    def _admit(self) -> _Exchange | None:
        """Take one request from the limiter's budget; an exchange that was never sent when
        there is none (or the limiter failed), else ``None``."""
        if self.limiter is None:
            return None
        try:
            wait = float(self.limiter.acquire())
        except Exception as exc:  # a limiter that cannot count must not let requests through
            logger.warning("rate limiter unavailable: %s", exc)
            return _Exchange(error=self._redact(exc), failure=LIMITER_UNAVAILABLE)
        if wait <= 0:
            return None
        retry_at = self._clock() + timedelta(seconds=wait)
        return _Exchange(
            error=f"client-side rate limit: next request in {wait:.3f} s",
            failure=RATE_LIMITED,
            retry_at=retry_at,
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> _Exchange:
        refused = self._admit()
        if refused is not None:
            return refused
        headers = {
            "APCA-API-KEY-ID": self._key_id,
            "APCA-API-SECRET-KEY": self._secret_key,
            "Accept": "application/json",
        }
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                json=json_body,
                params=params,
                headers=headers,
                timeout=self.timeout,
                # A redirected POST may be replayed as a GET or resent elsewhere: never follow.
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            return _Exchange(error=self._redact(exc), failure="timeout")
        except requests.ConnectionError as exc:
            # May happen after the request was sent: never read as "not received".
            return _Exchange(error=self._redact(exc), failure="connection_error")
        except requests.RequestException as exc:
            return _Exchange(error=self._redact(exc), failure="request_error")

        retry_at = None
        if response.status_code == 429:
            retry_at = retry_at_from_headers(response.headers, self._clock)
            self._hold(retry_at)
        try:
            body = json.loads(
                response.content, parse_float=Decimal, parse_constant=_refuse_constant
            )
        except ValueError:
            text = response.text[:RAW_TEXT_LIMIT]
            return _Exchange(response.status_code, self._redact(text), retry_at=retry_at)
        return _Exchange(response.status_code, _jsonable(body), is_json=True, retry_at=retry_at)

    def _hold(self, retry_at: datetime | None) -> None:
        hold_until = getattr(self.limiter, "hold_until", None)
        if retry_at is None or hold_until is None:
            return
        try:
            hold_until(retry_at)
        except Exception as exc:  # the broker's 429 is answer enough on its own
            logger.warning("rate limiter could not hold until %s: %s", retry_at, exc)

    def _redact(self, value: object) -> str:
        return str(value).replace(self._secret_key, "***")


def retry_at_from_headers(
    headers: Any, clock: Callable[[], datetime] | None = None
) -> datetime | None:
    """When a rate-limited request may be sent again, from a response's headers (aware UTC).

    ``X-Ratelimit-Reset`` is unix seconds (a value below 10⁹ is read as seconds from now);
    ``Retry-After`` is seconds from the response's ``Date`` (or from ``clock()`` without one)
    or an HTTP date. With both, the later wins; ``None`` when neither can be read. ``headers``
    is a case-insensitive mapping (``requests``' response headers) or a plain dict.
    """
    lowered = {str(name).lower(): str(value) for name, value in dict(headers).items()}
    now = clock or (lambda: datetime.now(UTC))
    candidates = []
    reset = _number(lowered.get("x-ratelimit-reset"))
    if reset is not None:
        if reset >= EPOCH_FLOOR:
            candidates.append(datetime.fromtimestamp(reset, UTC))
        else:
            candidates.append(now() + timedelta(seconds=reset))
    retry_after = lowered.get("retry-after", "").strip()
    if retry_after:
        delay = _number(retry_after)
        if delay is not None:
            base = _http_date(lowered.get("date")) or now()
            candidates.append(base + timedelta(seconds=delay))
        else:
            moment = _http_date(retry_after)
            if moment is not None:
                candidates.append(moment)
    return max(candidates) if candidates else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return value


def _http_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _validate_base_url(base_url: str) -> str:
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or a fragment")
    return base_url.rstrip("/")


def _order_read(
    exchange: _Exchange, raw: dict[str, Any], expected: tuple[str, str], mismatch: str
) -> ExecutionResponse:
    """Map the answer to a GET of one order; the body's ``expected[0]`` must be ``expected[1]``
    (else UNKNOWN "<mismatch>_mismatch")."""
    code = exchange.http_status
    if not exchange.sent:
        return ExecutionResponse.unknown(
            exchange.failure or RATE_LIMITED, raw, retry_at=exchange.retry_at
        )
    if code is None:
        return ExecutionResponse.unknown(exchange.failure or "request_error", raw)
    if 200 <= code < 300:
        response = _order_response(exchange, raw)
        body = exchange.body
        key, value = expected
        returned = body.get(key) if isinstance(body, dict) else None
        if returned not in (None, value):
            return ExecutionResponse.unknown(f"{mismatch}_mismatch", raw)
        return response
    if code == 404 and exchange.is_json:
        return ExecutionResponse.not_found(raw)
    if code == 429:
        return ExecutionResponse.unknown(RATE_LIMITED, raw, retry_at=exchange.retry_at)
    return ExecutionResponse.unknown(f"http_{code}", raw)


def _order_response(exchange: _Exchange, raw: dict[str, Any]) -> ExecutionResponse:
    """Map an order JSON body (the status table in the module docstring); UNKNOWN
    "unreadable_response" when it cannot be trusted."""
    body = exchange.body
    try:
        if not exchange.is_json or not isinstance(body, dict):
            raise _Unreadable("not a JSON object")
        broker_order_id = _required_str(body, "id")
        broker_status = _required_str(body, "status").lower()
        filled_quantity = _optional_decimal(body, "filled_qty") or Decimal(0)
        fill_value = _optional_decimal(body, "filled_avg_price")
        filled_at = _optional_time(body, "filled_at")
        if filled_quantity < 0 or (fill_value is not None and fill_value <= 0):
            raise _Unreadable("negative fill")
        # A fill without a value cannot be booked, whatever the status says.
        if filled_quantity > 0 and fill_value is None:
            raise _Unreadable("fill without a value")
        status = BROKER_STATUS_MAP.get(broker_status, ResponseStatus.UNKNOWN)
        if status in (ResponseStatus.FILLED, ResponseStatus.PARTIALLY_FILLED) and (
            filled_quantity == 0
        ):
            raise _Unreadable("fill without a quantity")
        replaced_by = None
        if status is ResponseStatus.REPLACED:
            # A replaced order that does not say by what cannot be followed.
            replaced_by = _required_str(body, "replaced_by")
    except _Unreadable:
        return ExecutionResponse.unknown("unreadable_response", raw)

    if status is ResponseStatus.ACCEPTED and filled_quantity > 0:
        # Still working (pending_cancel, held…) with part of it filled.
        status = ResponseStatus.PARTIALLY_FILLED
    if filled_quantity == 0:
        fill_value = None
    # An ended, replaced or unmapped order carries the broker's own status word as its reason.
    reason = (
        broker_status
        if status in (ResponseStatus.REJECTED, ResponseStatus.REPLACED, ResponseStatus.UNKNOWN)
        else ""
    )
    return ExecutionResponse(
        status=status,
        broker_order_id=broker_order_id,
        filled_quantity=filled_quantity,
        fill_value=fill_value,
        filled_at=filled_at,
        reason=reason,
        retryable=False,
        raw=raw,
        broker_status=broker_status,
        replaced_by=replaced_by,
    )


def _required_str(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise _Unreadable(f"missing {key}")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Unreadable(f"bad {key}")
    return value


def _optional_decimal(body: dict[str, Any], key: str) -> Decimal | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _Unreadable(f"bad {key}")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise _Unreadable(f"bad {key}") from exc
    if not number.is_finite():
        raise _Unreadable(f"bad {key}")
    return number


def _required_decimal(body: Any, key: str) -> Decimal:
    number = _optional_decimal(body, key) if isinstance(body, dict) else None
    if number is None:
        raise _Unreadable(f"missing {key}")
    return number


def _optional_time(body: dict[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Unreadable(f"bad {key}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _Unreadable(f"bad {key}") from exc
    if moment.utcoffset() is None:
        # The broker speaks UTC; a naive timestamp is read as UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON and cannot be a price or a quantity."""
    raise ValueError(f"non-finite JSON constant {name}")


def _jsonable(value: Any) -> Any:
    """The parsed body with Decimals back as strings, so ``raw`` stays JSON-serialisable."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
