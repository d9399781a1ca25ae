"""A fake Alpaca-compatible broker served over real HTTP on 127.0.0.1, for tests.

Usage::

    with FakeBroker(prices={"AAPL": "100.00"}) as broker:
        adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key)
        broker.inject("respond", status=503, method="POST", path="/v2/orders")
        ...
        assert broker.count("POST", "/v2/orders") == 1

API (everything else is private):

- ``FakeBroker(prices=None, *, cash="100000", key_id="test-key-id",
  secret_key="test-secret-key", clock=None)``: ``prices`` maps symbol → $/unit (str, int or
  Decimal); only those symbols are tradable. ``cash`` is the starting cash in dollars. ``clock()``
  returns the aware time stamped on orders (default: wall clock, UTC).
- ``start()`` → self, ``stop()`` (idempotent, releases delayed requests at once), or use it as a
  context manager. ``url`` is ``http://127.0.0.1:<port>`` once started.
- ``set_price(symbol, price)`` (``None`` makes the symbol unknown); ``set_position(symbol, qty,
  avg_entry_price)`` seeds or replaces a position (qty 0 removes it).
- ``inject(kind, *, times=1, method=None, path=None, seconds=1.0, status=None, body=None,
  order_status=None, filled_qty=None)`` switches a behaviour on for the next ``times`` matching
  requests (``times=None``: until ``clear_injections()``). ``method``/``path`` filter the
  requests it applies to (``None`` matches any; ``path`` excludes the query string). One behaviour
  applies per request, the first injected that matches. Kinds:

  - ``"delay"``: wait ``seconds`` (≤ 30), then handle the request normally (a POST is still
    stored: the client timed out but the broker accepted).
  - ``"respond"``: answer ``status`` (default 503) with ``body`` and do nothing else. ``body``
    dict or list → JSON; str or bytes → sent as is with ``text/html`` (non-JSON garbage);
    ``None`` → ``{"code": ..., "message": ...}``.
  - ``"accept_then_fail"``: handle the request normally (store and fill the order), then answer
    ``status`` (default 503) with a text body; ``status=0`` closes the connection without any
    answer instead.
  - ``"order_status"``: for ``POST /v2/orders`` only, store the order with broker status
    ``order_status`` and ``filled_qty`` units filled (default: all for "filled", half rounded down
    for "partially_filled", none otherwise).

- ``clear_injections()``; ``received`` (a copy of every request, in arrival order, as
  ``ReceivedRequest(method, path, query, headers, body)`` with ``body`` parsed JSON or text);
  ``count(method=None, path=None)``; ``orders`` (a copy of the stored orders by client_order_id).
- ``executions(client_order_id=None)``: how many POSTs were executed (stored, filled) per
  client_order_id (a refused duplicate is not one); ``positions``: units held by symbol.
- ``listen(label)`` → the URL of one more listener on 127.0.0.1 serving the same broker, whose
  requests are labelled ``label``; ``pause_listener(label)`` stops accepting on it (connections
  wait in the kernel's backlog, unread), ``close_listener(label)`` closes it (a waiting
  connection is dropped unread). ``exchanges``: every request as ``Exchange(label, method,
  path, client_order_id, received_at, answered_at)`` (aware UTC; ``answered_at`` None until the
  answer is written). ``on_request(hook)``: ``hook(stage, exchange)`` is called in the server
  thread with stage ``"received"`` before the request is handled (it may block, bounded by its
  own code) and ``"answered"`` after the answer is written; ``None`` removes it.

Routes: ``POST /v2/orders`` (market orders fill at once at the symbol's price; 422 ``{"code":
40010001, "message": "client_order_id must be unique"}`` on a duplicate; 422 for an invalid order
or an unknown symbol; 403 for insufficient buying power or selling more than held),
``GET /v2/orders:by_client_order_id?client_order_id=…`` (404 JSON when unknown), ``GET
/v2/account``, ``GET /v2/positions``. Numbers in JSON are strings. Both auth headers are checked
(401 when missing, 403 when wrong). An unknown route answers a plain-text 404, as a Go server does.

Bounded by design: HTTP/1.0 (one request per connection), a 5 s socket timeout, a 1 MiB body cap,
delays of at most 30 s that ``stop()`` interrupts, and a bind on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ORDERS_PATH = "/v2/orders"
LOOKUP_PATH = "/v2/orders:by_client_order_id"
ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
KINDS = frozenset({"delay", "respond", "accept_then_fail", "order_status"})
MAX_BODY_BYTES = 1 << 20
MAX_DELAY_SECONDS = 30.0
VALUE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake broker received it (before any check)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Exchange:
    """One request and when it arrived and was answered, labelled by its listener."""

    label: str
    method: str
    path: str
    client_order_id: str
    received_at: datetime
    answered_at: datetime | None = None


@dataclass
class _Behaviour:
    kind: str
    times: int | None
    method: str | None
    path: str | None
    seconds: float
    status: int | None
    body: Any
    order_status: str | None
    filled_qty: Decimal | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # dict/list → JSON, str/bytes → text


class FakeBroker:
    """Alpaca-compatible broker on 127.0.0.1 with switchable faults; see the module docstring."""

    def __init__(
        self,
        prices: dict[str, Decimal | str | int] | None = None,
        *,
        cash: Decimal | str | int = "100000",
        key_id: str = "test-key-id",
        secret_key: str = "test-secret-key",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._prices = {symbol: Decimal(price) for symbol, price in (prices or {}).items()}
        self._cash = Decimal(cash)
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}
        self._orders: dict[str, dict[str, Any]] = {}
        self._behaviours: list[_Behaviour] = []
        self._received: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._executions: dict[str, int] = {}
        self._exchanges: list[Exchange] = []
        self._listeners: dict[str, tuple[_Server, threading.Thread]] = {}
        self._hook: Callable[[str, Exchange], None] | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeBroker:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeBroker already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.broker = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-broker",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; delayed requests are released at once."""
        self._stopping.set()
        for label in list(self._listeners):
            self.close_listener(label)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeBroker not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def configure(self, settings, *, timeout: int | None = None) -> FakeBroker:
        """Point the execution API settings (a pytest-django ``settings``) at this broker, with
        its keys; ``timeout`` sets ``EXECUTION_API_TIMEOUT`` when given."""
        settings.EXECUTION_API_URL = self.url
        settings.EXECUTION_API_KEY_ID = self.key_id
        settings.EXECUTION_API_SECRET_KEY = self.secret_key
        if timeout is not None:
            settings.EXECUTION_API_TIMEOUT = timeout
        return self

    def listen(self, label: str) -> str:
        """One more listener serving this broker, its requests labelled ``label``; its URL."""
        if not label or label in self._listeners:
            raise ValueError(f"listener label {label!r} is empty or taken")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.broker = self
        server.label = label
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-broker-{label}",
            daemon=True,
        )
        thread.start()
        self._listeners[label] = (server, thread)
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    def pause_listener(self, label: str) -> None:
        """Stop accepting on ``label``'s listener: new connections wait unread in the backlog."""
        server, thread = self._listeners[label]
        server.shutdown()
        thread.join(timeout=5)

    def close_listener(self, label: str) -> None:
        """Close ``label``'s listener; connections waiting in its backlog are dropped unread."""
        entry = self._listeners.pop(label, None)
        if entry is None:
            return
        server, thread = entry
        if thread.is_alive():
            server.shutdown()
            thread.join(timeout=5)
        server.server_close()

    def on_request(self, hook: Callable[[str, Exchange], None] | None) -> None:
        """Call ``hook(stage, exchange)`` around every request (see the module docstring)."""
        self._hook = hook

    # Set-up and inspection -----------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | int | None) -> None:
        """Set the fill price in $/unit; ``None`` makes the symbol unknown to the broker."""
        with self._lock:
            if price is None:
                self._prices.pop(symbol, None)
            else:
                self._prices[symbol] = Decimal(price)

    def set_position(
        self, symbol: str, qty: Decimal | str | int, avg_entry_price: Decimal | str | int
    ) -> None:
        """Seed or replace a position (units, $/unit); cash is not touched. qty 0 removes it."""
        with self._lock:
            if Decimal(qty) == 0:
                self._positions.pop(symbol, None)
            else:
                self._positions[symbol] = (Decimal(qty), Decimal(avg_entry_price))

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        seconds: float = 1.0,
        status: int | None = None,
        body: Any = None,
        order_status: str | None = None,
        filled_qty: Decimal | str | int | None = None,
    ) -> None:
        """Switch a behaviour on for the next ``times`` matching requests (see module docstring)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if not 0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"seconds must be in [0, {MAX_DELAY_SECONDS}]")
        if kind == "order_status":
            if not order_status:
                raise ValueError("order_status is required for kind 'order_status'")
            method, path = "POST", ORDERS_PATH
        if status is None:
            status = 503 if kind in ("respond", "accept_then_fail") else None
        behaviour = _Behaviour(
            kind=kind,
            times=times,
            method=method.upper() if method else None,
            path=path,
            seconds=seconds,
            status=status,
            body=body,
            order_status=order_status,
            filled_qty=None if filled_qty is None else Decimal(filled_qty),
        )
        with self._lock:
            self._behaviours.append(behaviour)

    def clear_injections(self) -> None:
        """Switch every injected behaviour off."""
        with self._lock:
            self._behaviours.clear()

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many received requests match ``method`` and ``path`` (``None`` matches any)."""
        return sum(
            1
            for item in self.received
            if (method is None or item.method == method.upper())
            and (path is None or item.path == path)
        )

    @property
    def orders(self) -> dict[str, dict[str, Any]]:
        """Stored orders as their JSON dicts, by client_order_id (a copy)."""
        with self._lock:
            return {key: dict(value) for key, value in self._orders.items()}

    def executions(self, client_order_id: str | None = None) -> int | dict[str, int]:
        """POSTs executed (stored) for ``client_order_id``, or all of them by client_order_id."""
        with self._lock:
            if client_order_id is not None:
                return self._executions.get(client_order_id, 0)
            return dict(self._executions)

    @property
    def positions(self) -> dict[str, Decimal]:
        """Units held by symbol."""
        with self._lock:
            return {symbol: units for symbol, (units, _) in self._positions.items()}

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request with its listener's label and its times, oldest first (copies)."""
        with self._lock:
            return [Exchange(**vars(item)) for item in self._exchanges]

    # Request handling (called from server threads) ----------------------------------------

    def _record(self, request: ReceivedRequest) -> _Behaviour | None:
        with self._lock:
            self._received.append(request)
            for behaviour in self._behaviours:
                if behaviour.matches(request.method, request.path):
                    if behaviour.times is not None:
                        behaviour.times -= 1
                        if behaviour.times == 0:
                            self._behaviours.remove(behaviour)
                    return behaviour
        return None

    def _exchange(self, label: str, request: ReceivedRequest) -> Exchange:
        body = request.body if isinstance(request.body, dict) else {}
        exchange = Exchange(
            label=label,
            method=request.method,
            path=request.path,
            client_order_id=str(
                body.get("client_order_id") or request.query.get("client_order_id") or ""
            ),
            received_at=self._clock(),
        )
        with self._lock:
            self._exchanges.append(exchange)
        hook = self._hook
        if hook is not None:
            hook("received", exchange)
        return exchange

    def _answered(self, exchange: Exchange) -> None:
        with self._lock:
            exchange.answered_at = self._clock()
        hook = self._hook
        if hook is not None:
            hook("answered", exchange)

    def _handle(
        self, request: ReceivedRequest, forced: _Behaviour | None, raw_body: bytes
    ) -> _Reply:
        key = request.headers.get("apca-api-key-id")
        secret = request.headers.get("apca-api-secret-key")
        if not key or not secret:
            return _Reply(401, {"code": 40110000, "message": "request is not authorized"})
        if key != self.key_id or secret != self.secret_key:
            return _Reply(403, {"code": 40310000, "message": "forbidden"})

        route = (request.method, request.path)
        if route == ("POST", ORDERS_PATH):
            return self._create_order(raw_body, forced)
        if route == ("GET", LOOKUP_PATH):
            return self._lookup(request.query.get("client_order_id", ""))
        if route == ("GET", ACCOUNT_PATH):
            return self._account()
        if route == ("GET", POSITIONS_PATH):
            return self._positions_body()
        if request.path in (ORDERS_PATH, LOOKUP_PATH, ACCOUNT_PATH, POSITIONS_PATH):
            return _Reply(405, "405 method not allowed")
        return _Reply(404, "404 page not found")

    def _create_order(self, raw_body: bytes, forced: _Behaviour | None) -> _Reply:
        try:
            order = json.loads(raw_body)
        except ValueError:
            order = None
        if not isinstance(order, dict):
            return _Reply(400, {"code": 40010000, "message": "request body format is invalid"})

        client_order_id = order.get("client_order_id") or str(uuid.uuid4())
        symbol = order.get("symbol")
        side = order.get("side")
        try:
            qty = Decimal(str(order.get("qty")))
        except InvalidOperation:
            qty = Decimal("NaN")

        with self._lock:
            if client_order_id in self._orders:
                return _invalid("client_order_id must be unique")
            if not symbol or symbol not in self._prices:
                return _invalid(f"asset not found: {symbol}")
            if side not in ("buy", "sell"):
                return _invalid("side must be buy or sell")
            if not qty.is_finite() or qty <= 0:
                return _invalid("qty must be > 0")
            if order.get("type") != "market":
                return _invalid("this fake broker only supports market orders")
            if order.get("time_in_force") not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
                return _invalid("invalid time_in_force")

            price = self._prices[symbol]
            held = self._positions.get(symbol, (Decimal(0), Decimal(0)))[0]
            if side == "buy" and qty * price > self._cash:
                return _Reply(403, {"code": 40310000, "message": "insufficient buying power"})
            if side == "sell" and qty > held:
                message = (
                    f"insufficient qty available for order (requested: {qty}, available: {held})"
                )
                return _Reply(403, {"code": 40310000, "message": message})

            status = "filled"
            filled = qty
            if forced is not None and forced.kind == "order_status":
                status = forced.order_status or "filled"
                if forced.filled_qty is not None:
                    filled = forced.filled_qty
                elif status == "partially_filled":
                    filled = (qty / 2).to_integral_value(rounding=ROUND_FLOOR)
                elif status != "filled":
                    filled = Decimal(0)

            now = _timestamp(self._clock())
            stored = {
                "id": str(uuid.uuid4()),
                "client_order_id": client_order_id,
                "created_at": now,
                "updated_at": now,
                "submitted_at": now,
                "filled_at": now if filled > 0 else None,
                "expired_at": None,
                "canceled_at": None,
                "failed_at": None,
                "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"asset:{symbol}")),
                "symbol": symbol,
                "asset_class": "us_equity",
                "notional": None,
                "qty": str(qty),
                "filled_qty": str(filled),
                "filled_avg_price": str(price) if filled > 0 else None,
                "order_class": "",
                "order_type": "market",
                "type": "market",
                "side": side,
                "time_in_force": order.get("time_in_force"),
                "limit_price": None,
                "stop_price": None,
                "status": status,
                "extended_hours": False,
            }
            self._orders[client_order_id] = stored
            self._executions[client_order_id] = self._executions.get(client_order_id, 0) + 1
            if filled > 0:
                self._book_fill(symbol, side, filled, price)
            return _Reply(200, dict(stored))

    def _book_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        units, average = self._positions.get(symbol, (Decimal(0), Decimal(0)))
        if side == "buy":
            self._cash -= qty * price
            total = units + qty
            average = ((units * average + qty * price) / total).quantize(
                VALUE_QUANTUM, rounding=ROUND_HALF_UP
            )
            self._positions[symbol] = (total, average)
        else:
            self._cash += qty * price
            if units - qty == 0:
                self._positions.pop(symbol, None)
            else:
                self._positions[symbol] = (units - qty, average)

    def _lookup(self, client_order_id: str) -> _Reply:
        with self._lock:
            stored = self._orders.get(client_order_id)
        if stored is None:
            return _Reply(404, {"code": 40410000, "message": "order not found"})
        return _Reply(200, dict(stored))

    def _account(self) -> _Reply:
        with self._lock:
            market_value = sum(
                (units * self._prices.get(symbol, average))
                for symbol, (units, average) in self._positions.items()
            )
            cash = self._cash
        equity = cash + market_value
        return _Reply(
            200,
            {
                "id": "00000000-0000-4000-8000-000000000000",
                "account_number": "PAFAKE0001",
                "status": "ACTIVE",
                "currency": "USD",
                "cash": str(cash),
                "buying_power": str(cash),
                "long_market_value": str(market_value),
                "portfolio_value": str(equity),
                "equity": str(equity),
                "last_equity": str(equity),
            },
        )

    def _positions_body(self) -> _Reply:
        with self._lock:
            items = []
            for symbol, (units, average) in sorted(self._positions.items()):
                current = self._prices.get(symbol, average)
                items.append(
                    {
                        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"asset:{symbol}")),
                        "symbol": symbol,
                        "exchange": "FAKE",
                        "asset_class": "us_equity",
                        "qty": str(units),
                        "avg_entry_price": str(average),
                        "side": "long" if units > 0 else "short",
                        "market_value": str(units * current),
                        "cost_basis": str(units * average),
                        "current_price": str(current),
                        "unrealized_pl": str(units * (current - average)),
                    }
                )
        return _Reply(200, items)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    broker: FakeBroker
    label = ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here, not an error worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = 5

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        broker = self.server.broker
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(_Reply(413, "413 request entity too large"))
            return
        raw_body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode("utf-8", "replace")
        request = ReceivedRequest(
            method=method,
            path=parts.path,
            query=query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        behaviour = broker._record(request)
        exchange = broker._exchange(self.server.label, request)

        delayed = behaviour is not None and behaviour.kind == "delay"
        if delayed and broker._stopping.wait(behaviour.seconds):
            # Stopped while waiting: hang up rather than answer late.
            return
        if behaviour is not None and behaviour.kind == "respond":
            reply_body = behaviour.body
            if reply_body is None:
                reply_body = {"code": behaviour.status * 100_000, "message": "injected failure"}
            self._send(_Reply(behaviour.status or 503, reply_body))
            return

        reply = broker._handle(request, behaviour, raw_body)
        if behaviour is not None and behaviour.kind == "accept_then_fail":
            if not behaviour.status:
                # Hang up without an answer: the client sees a connection error.
                self.close_connection = True
                return
            reply = _Reply(behaviour.status, f"{behaviour.status} upstream failure")
        self._send(reply)
        broker._answered(exchange)

    def _send(self, reply: _Reply) -> None:
        if isinstance(reply.body, dict | list):
            payload = json.dumps(reply.body).encode("utf-8")
            content_type = "application/json; charset=utf-8"
        else:
            text = reply.body
            payload = text if isinstance(text, bytes) else str(text).encode("utf-8")
            content_type = "text/html; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client already gave up (timeout); nothing is owed to it.
            pass


def _invalid(message: str) -> _Reply:
    return _Reply(422, {"code": 40010001, "message": message})


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with nanosecond digits, as Alpaca writes them."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000Z"
