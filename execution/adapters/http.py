"""HTTP execution adapter for an Alpaca-compatible broker REST API, through ``requests``.

Endpoints: ``POST /v2/orders``, ``GET /v2/orders:by_client_order_id``, ``GET /v2/account``,
``GET /v2/positions``; auth headers ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``; numbers in JSON
are strings. Every call carries a (connect, read) timeout in seconds.

Fail-closed: a POST is sent at most once per ``submit``. A timeout, a connection error (which can
happen after the broker received the order), a 5xx or an unreadable 2xx answer gives ``UNKNOWN``:
the caller reconciles with ``lookup`` and never blindly resubmits. Only a 429 is reported as
retryable, because the broker refused the request. ``raw`` never holds the keys.

A ``requests.Session`` is not guaranteed thread-safe: use one adapter per thread.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests

from execution.adapters.base import (
    BrokerAccount,
    BrokerPosition,
    BrokerUnavailable,
    ExecutionResponse,
    OrderRequest,
    ResponseStatus,
)

ORDERS_PATH = "/v2/orders"
LOOKUP_PATH = "/v2/orders:by_client_order_id"
ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
RAW_TEXT_LIMIT = 2_000
DUPLICATE_MESSAGE = "client_order_id must be unique"

BROKER_STATUS_MAP: dict[str, ResponseStatus] = {
    "filled": ResponseStatus.FILLED,
    "partially_filled": ResponseStatus.PARTIALLY_FILLED,
    **dict.fromkeys(
        ("new", "accepted", "pending_new", "accepted_for_bidding", "calculated", "held"),
        ResponseStatus.ACCEPTED,
    ),
    **dict.fromkeys(
        ("rejected", "canceled", "expired", "done_for_day", "stopped", "suspended"),
        ResponseStatus.REJECTED,
    ),
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
    ) -> None:
        self.http_status = http_status
        self.body = body
        self.is_json = is_json
        self.error = error
        # "timeout", "connection_error" or "request_error" when no response arrived.
        self.failure = failure

    def raw(self, sent: dict[str, Any]) -> dict[str, Any]:
        return {
            "request": sent,
            "http_status": self.http_status,
            "body": self.body,
            "error": self.error,
        }

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
    new ``requests.Session``.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_key: str,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
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

    def __repr__(self) -> str:
        return f"AlpacaHttpAdapter(base_url={self.base_url!r})"

    def submit(self, request: OrderRequest) -> ExecutionResponse:
        """POST the order once and map the broker's answer.

        2xx → the order's mapped status; 422 "client_order_id must be unique" → the result of
        ``lookup`` (the broker already holds the order; UNKNOWN if the lookup cannot find it);
        429 → REJECTED "rate_limited", retryable; other 4xx → REJECTED with the broker's message;
        5xx, timeout, connection error, unreadable body, anything else → UNKNOWN.
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

        if code is None:
            return ExecutionResponse.unknown(exchange.failure or "request_error", raw)
        if 200 <= code < 300:
            return _order_response(exchange, raw)
        if code == 429:
            return ExecutionResponse.rejected("rate_limited", raw, retryable=True)
        if code == 422 and DUPLICATE_MESSAGE in exchange.message().lower():
            return self._resolve_duplicate(request.client_order_id, raw)
        if 400 <= code < 500:
            return ExecutionResponse.rejected(exchange.message(), raw)
        return ExecutionResponse.unknown(f"http_{code}", raw)

    def lookup(self, client_order_id: str) -> ExecutionResponse:
        """GET the order by its client_order_id and map it.

        404 with a JSON body → NOT_FOUND. A 404 without JSON (a proxy or a wrong base URL rather
        than the broker's answer), any other error, a timeout or an unreadable body → UNKNOWN.
        """
        params = {"client_order_id": client_order_id}
        exchange = self._send("GET", LOOKUP_PATH, params=params)
        raw = exchange.raw(params)
        code = exchange.http_status

        if code is None:
            return ExecutionResponse.unknown(exchange.failure or "request_error", raw)
        if 200 <= code < 300:
            response = _order_response(exchange, raw)
            body = exchange.body
            returned_id = body.get("client_order_id") if isinstance(body, dict) else None
            if returned_id not in (None, client_order_id):
                return ExecutionResponse.unknown("client_order_id_mismatch", raw)
            return response
        if code == 404 and exchange.is_json:
            return ExecutionResponse.not_found(raw)
        if code == 429:
            return ExecutionResponse.unknown("rate_limited", raw)
        return ExecutionResponse.unknown(f"http_{code}", raw)

    def account(self) -> BrokerAccount:
        """Cash and equity in dollars from ``GET /v2/account``; raises ``BrokerUnavailable``."""
        body = self._read_json("GET", ACCOUNT_PATH)
        if not isinstance(body, dict):
            raise BrokerUnavailable("unreadable_response", 200)
        try:
            return BrokerAccount(
                cash=_required_decimal(body, "cash"),
                equity=_required_decimal(body, "equity"),
                raw=body,
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
        return ExecutionResponse(
            status=found.status,
            broker_order_id=found.broker_order_id,
            filled_quantity=found.filled_quantity,
            fill_value=found.fill_value,
            filled_at=found.filled_at,
            reason=found.reason,
            retryable=found.retryable,
            raw=merged,
        )

    def _read_json(self, method: str, path: str) -> Any:
        exchange = self._send(method, path)
        code = exchange.http_status
        if code is None:
            raise BrokerUnavailable(exchange.failure or "request_error")
        if code == 429:
            raise BrokerUnavailable("rate_limited", code)
        if not 200 <= code < 300:
            reason = exchange.message() if 400 <= code < 500 else f"http_{code}"
            raise BrokerUnavailable(reason, code)
        if not exchange.is_json:
            raise BrokerUnavailable("unreadable_response", code)
        return exchange.body

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> _Exchange:
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

        try:
            body = json.loads(
                response.content, parse_float=Decimal, parse_constant=_refuse_constant
            )
        except ValueError:
            text = response.text[:RAW_TEXT_LIMIT]
            return _Exchange(response.status_code, self._redact(text))
        return _Exchange(response.status_code, _jsonable(body), is_json=True)

    def _redact(self, value: object) -> str:
        return str(value).replace(self._secret_key, "***")


def _validate_base_url(base_url: str) -> str:
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or a fragment")
    return base_url.rstrip("/")


def _order_response(exchange: _Exchange, raw: dict[str, Any]) -> ExecutionResponse:
    """Map an order JSON body; UNKNOWN "unreadable_response" when it cannot be trusted."""
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
    except _Unreadable:
        return ExecutionResponse.unknown("unreadable_response", raw)

    status = BROKER_STATUS_MAP.get(broker_status, ResponseStatus.UNKNOWN)
    if status in (ResponseStatus.FILLED, ResponseStatus.PARTIALLY_FILLED) and (
        filled_quantity == 0 or fill_value is None
    ):
        # A fill without a quantity or a value cannot be booked.
        return ExecutionResponse.unknown("unreadable_response", raw)
    if filled_quantity == 0:
        fill_value = None
    # A refused or unmapped order carries the broker's own status word as its reason.
    reason = broker_status if status in (ResponseStatus.REJECTED, ResponseStatus.UNKNOWN) else ""
    return ExecutionResponse(
        status=status,
        broker_order_id=broker_order_id,
        filled_quantity=filled_quantity,
        fill_value=fill_value,
        filled_at=filled_at,
        reason=reason,
        retryable=False,
        raw=raw,
    )


def _required_str(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise _Unreadable(f"missing {key}")
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
