"""A fake Alpaca-compatible broker served over real HTTP on 127.0.0.1, for tests.

Usage::

    with FakeBroker(prices={"AAPL": "100.00"}) as broker:
        adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key)
        broker.inject("respond", status=503, method="POST", path="/v2/orders")
        ...
        assert broker.count("POST", "/v2/orders") == 1

It keeps its own order book, account and positions, enforces buying power, the account's
blocks and a rate limit per API key, and can be told to misbehave request by request.

API (everything else is private):

- ``FakeBroker(prices=None, *, cash="100000", key_id="test-key-id",
  secret_key="test-secret-key", clock=None, rate_limit=200, rate_window=60.0)``: ``prices``
  maps symbol → $/unit (str, int or Decimal); only those symbols are tradable. ``cash`` is the
  starting cash in dollars. ``clock()`` returns the aware time stamped on orders (default: wall
  clock, UTC). ``rate_limit`` requests per ``rate_window`` seconds per API key (``None``: no
  limit and no rate-limit headers).
- ``start()`` → self, ``stop()`` (idempotent, releases delayed requests at once), or use it as a
  context manager. ``url`` is ``http://127.0.0.1:<port>`` once started. ``configure(settings,
  timeout=None)`` points the execution API settings at this broker.
- ``set_price(symbol, price)`` (``None`` makes the symbol unknown); ``set_position(symbol, qty,
  avg_entry_price)`` seeds or replaces a position (qty 0 removes it).
- ``set_account(**fields)``: ``status`` (``ACTIVE``, ``ACCOUNT_UPDATED``, ``ONBOARDING``,
  ``SUBMISSION_FAILED``, ``ACCOUNT_CLOSED``…), ``trading_blocked``, ``account_blocked``,
  ``trade_suspended_by_user``, ``pattern_day_trader`` (bools), ``currency``, ``cash``,
  ``buying_power`` and ``equity`` (dollars; ``None`` derives them again: buying power is cash
  less what the working buy orders reserve, equity is cash plus the positions at their
  prices). ``account`` is the JSON ``GET /v2/account`` would answer.
- Fill policies: ``set_fill_policy(policy, *, symbol=None, client_order_id=None)`` applies a
  ``FillPolicy`` to one order (by its client_order_id, set before it is sent), to a symbol,
  or (neither) to every other order; ``None`` removes it. Modes: ``"immediate"`` fills at once
  (the default); ``"open"`` leaves the order working with ``status`` (``new``, ``accepted``,
  ``pending_new``, ``held``) and nothing filled; ``"partial"`` fills ``step`` units at once
  (``partially_filled``) and leaves the rest working. A working order moves on with
  ``advance(client_order_id, qty=None)`` (``step`` more units, the rest when ``step`` is
  ``None`` in ``"open"`` mode), or on each ``GET`` of it when ``advance_on_get``. With
  ``limit``, filling stops there and the next step ends the order with ``end`` (``expired``,
  ``canceled``, ``done_for_day``) keeping its partial fill.
- ``end_order(client_order_id, status)`` ends a working order as ``canceled``, ``expired``,
  ``done_for_day`` or ``rejected`` (a partial fill stays); ``set_order_status(client_order_id,
  status)`` puts any status on it as is (``pending_cancel``, ``pending_replace``, ``held``…).
  Both return the order's JSON.
- ``set_rate_limit(limit, window=60.0)`` changes the limit and starts every key's window anew;
  ``reset_rate_limit()`` only starts the windows anew.
- ``inject(kind, *, times=1, nth=1, method=None, path=None, seconds=1.0, status=None,
  body=None, headers=None, order_status=None, filled_qty=None)`` switches a behaviour on for
  ``times`` matching requests starting with the ``nth`` one (``times=None``: every one from
  there until ``clear_injections()``). ``method``/``path`` filter the requests it applies to
  (``None`` matches any; ``path`` excludes the query string). One behaviour applies per request:
  the first injected that matches and whose turn has come. Kinds:

  - ``"delay"``: a slow answer: wait ``seconds`` (≤ 30), then handle the request normally (a
    POST is still stored: the client timed out but the broker accepted, late).
  - ``"stall"``: timeout before accepting: hold the connection ``seconds``, then close it
    unanswered; the request is not handled (no order).
  - ``"accept_then_delay"``: timeout after accepting: handle the request at once (the order
    exists), then wait ``seconds`` before answering.
  - ``"respond"``: answer ``status`` (default 503) with ``body`` and ``headers`` and do nothing
    else. ``body`` dict or list → JSON; str or bytes → sent as is with ``text/html``
    (non-JSON garbage); ``None`` → ``{"code": ..., "message": ...}``.
  - ``"rate_limited"``: answer 429 ``{"message": "too many requests."}`` with
    ``X-Ratelimit-Remaining: 0`` and the reset ``seconds`` from now (``headers`` may add
    ``Retry-After``); nothing handled.
  - ``"insufficient_buying_power"``: answer 403 ``{"code": 40310000, "message": "insufficient
    buying power"}``; nothing handled.
  - ``"duplicate"``: answer 422 ``{"code": 40010001, "message": "client_order_id must be
    unique"}``; nothing handled.
  - ``"garbage"``: answer ``status`` (default 200) with a cut-off JSON body; nothing handled.
  - ``"reset"``: reset the connection (TCP RST) without handling the request.
  - ``"accept_then_fail"``: handle the request normally (store and fill the order), then answer
    ``status`` (default 503) with ``body`` (default a text body); ``status=0`` closes the
    connection without any answer instead.
  - ``"accept_then_reset"``: handle the request normally, then reset the connection.
  - ``"accept_then_garbage"``: handle the request normally, then answer 200 with the real
    answer cut off in the middle (unreadable JSON).
  - ``"order_status"``: for ``POST /v2/orders`` only, store the order with broker status
    ``order_status`` and ``filled_qty`` units filled (default: all for "filled", half rounded
    down for "partially_filled", none otherwise).

- ``clear_injections()``; ``received`` (a copy of every request, in arrival order, as
  ``ReceivedRequest(method, path, query, headers, body)`` with ``body`` parsed JSON or text);
  ``count(method=None, path=None)``; ``orders`` (a copy of the stored orders by
  client_order_id).
- ``executions(client_order_id=None)``: how many POSTs were executed (stored) per
  client_order_id (a refused duplicate is not one); ``positions``: units held by symbol.
- ``listen(label)`` → the URL of one more listener on 127.0.0.1 serving the same broker, whose
  requests are labelled ``label``; ``pause_listener(label)`` stops accepting on it (connections
  wait in the kernel's backlog, unread), ``close_listener(label)`` closes it (a waiting
  connection is dropped unread). ``exchanges``: every request as ``Exchange(label, method,
  path, client_order_id, received_at, answered_at)`` (aware UTC; ``answered_at`` None until the
  answer is written). ``on_request(hook)``: ``hook(stage, exchange)`` is called in the server
  thread with stage ``"received"`` before the request is handled (it may block, bounded by its
  own code) and ``"answered"`` after the answer is written; ``None`` removes it.

Routes (numbers in JSON are strings; both auth headers are checked: 401 when missing, 403 when
wrong; an unknown route answers a plain-text 404, as a Go server does):

- ``POST /v2/orders``: market orders only. 422 ``{"code": 40010001, "message":
  "client_order_id must be unique"}`` on a repeated client_order_id, 422 for an invalid order,
  an unknown symbol or a client_order_id over 48 characters; 403 ``{"code": 40310000}`` when the
  account is not ACTIVE or is blocked, for a buy whose notional (qty × price) exceeds the
  buying power ("insufficient buying power"), or for selling more than is held and not already
  offered by working sells.
- ``GET /v2/orders/{id}``, ``GET /v2/orders:by_client_order_id?client_order_id=…`` (404 JSON
  when unknown), ``GET /v2/orders?status=open|closed|all&limit=&direction=&symbols=``.
- ``DELETE /v2/orders/{id}``: a working order becomes ``canceled`` (its partial fill stays),
  204 without a body; 422 when it is no longer cancelable; ``DELETE /v2/orders`` cancels every
  working order (207, one entry per order).
- ``PATCH /v2/orders/{id}`` (``qty``, ``time_in_force``, ``client_order_id``): an order in
  ``new``, ``partially_filled`` or ``held`` becomes ``replaced`` with ``replaced_by`` the new
  order's id; the new order carries ``replaces`` and is worked under the old one's policy; the
  old order keeps what it filled. 422 when it cannot be replaced.
- ``GET /v2/account``, ``GET /v2/positions`` (``qty``, ``avg_entry_price``, ``market_value``,
  ``side``…; moved by every fill).

Every answer carries ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset``
(unix seconds at which the key's window starts anew) while a limit is set; past the limit a
request is answered 429 ``{"message": "too many requests."}`` and not handled. Each key's
window starts with its first request.

It speaks HTTP/1.1 with kept-alive connections, as a broker's API does: a batch's requests
share one connection, and an answer the client can no longer read (a stall, a reset, a hang-up)
closes its connection. Bounded by design: a 5 s socket timeout (an idle connection is closed
after it), a 1 MiB body cap, delays of at most 30 s that ``stop()`` interrupts, and a bind on
127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ORDERS_PATH = "/v2/orders"
ORDER_PATH_PREFIX = "/v2/orders/"
LOOKUP_PATH = "/v2/orders:by_client_order_id"
ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
KNOWN_PATHS = (ORDERS_PATH, LOOKUP_PATH, ACCOUNT_PATH, POSITIONS_PATH)

#: Answered without handling the request.
REPLY_KINDS = frozenset(
    {"respond", "rate_limited", "insufficient_buying_power", "duplicate", "garbage"}
)
KINDS = frozenset(
    {
        "delay",
        "stall",
        "accept_then_delay",
        "reset",
        "accept_then_fail",
        "accept_then_reset",
        "accept_then_garbage",
        "order_status",
    }
    | REPLY_KINDS
)
MAX_BODY_BYTES = 1 << 20
MAX_DELAY_SECONDS = 30.0
MAX_CLIENT_ORDER_ID_LENGTH = 48
VALUE_QUANTUM = Decimal("0.0001")
ZERO = Decimal(0)

TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
#: Statuses of an order the broker is still working.
WORKING_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "held",
        "pending_cancel",
        "pending_replace",
        "accepted_for_bidding",
        "calculated",
        "stopped",
        "suspended",
    }
)
#: Statuses an order never leaves.
CLOSED_STATUSES = frozenset(
    {"filled", "canceled", "expired", "replaced", "done_for_day", "rejected"}
)
ORDER_STATUSES = WORKING_STATUSES | CLOSED_STATUSES
OPEN_POLICY_STATUSES = frozenset({"new", "accepted", "pending_new", "held"})
END_STATUSES = frozenset({"canceled", "expired", "done_for_day", "rejected"})
CANCELABLE = WORKING_STATUSES - {"pending_cancel"}
#: Alpaca refuses to replace an order that is accepted, pending_new, pending_cancel or
#: pending_replace.
REPLACEABLE = frozenset({"new", "partially_filled", "held"})
ACCOUNT_STATUSES = frozenset(
    {
        "ONBOARDING",
        "SUBMISSION_FAILED",
        "SUBMITTED",
        "ACCOUNT_UPDATED",
        "APPROVAL_PENDING",
        "ACTIVE",
        "REJECTED",
        "ACCOUNT_CLOSED",
        "INACTIVE",
        "DISABLED",
    }
)
ACCOUNT_FLAGS = (
    "trading_blocked",
    "account_blocked",
    "trade_suspended_by_user",
    "pattern_day_trader",
)
TOO_MANY_REQUESTS = {"message": "too many requests."}


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


@dataclass(frozen=True)
class FillPolicy:
    """How the broker works an order once it has accepted it (see the module docstring).

    ``step`` and ``limit`` are units; ``step`` ``None`` means half the quantity rounded down
    (at least one unit) in ``"partial"`` mode and the whole remainder in ``"open"`` mode.
    """

    mode: str = "immediate"
    status: str = "new"
    step: Decimal | str | int | None = None
    limit: Decimal | str | int | None = None
    end: str = "expired"
    advance_on_get: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("immediate", "open", "partial"):
            raise ValueError("mode must be immediate, open or partial")
        if self.status not in OPEN_POLICY_STATUSES:
            raise ValueError(f"status must be one of {sorted(OPEN_POLICY_STATUSES)}")
        if self.end not in END_STATUSES:
            raise ValueError(f"end must be one of {sorted(END_STATUSES)}")
        for name in ("step", "limit"):
            value = getattr(self, name)
            if value is not None:
                number = Decimal(value)
                if not number.is_finite() or number <= 0:
                    raise ValueError(f"{name} must be > 0")
                object.__setattr__(self, name, number)


IMMEDIATE = FillPolicy()


@dataclass
class _Behaviour:
    kind: str
    times: int | None
    skip: int
    method: str | None
    path: str | None
    seconds: float
    status: int | None
    body: Any
    headers: dict[str, str]
    order_status: str | None
    filled_qty: Decimal | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # dict/list → JSON, str/bytes → text, None → no body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class _Window:
    started: float  # monotonic
    reset_at: int  # unix seconds
    used: int = 0


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
        rate_limit: int | None = 200,
        rate_window: float = 60.0,
    ) -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._prices = {symbol: Decimal(price) for symbol, price in (prices or {}).items()}
        self._cash = Decimal(cash)
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}
        self._orders: dict[str, dict[str, Any]] = {}
        self._by_id: dict[str, str] = {}
        self._order_policies: dict[str, FillPolicy] = {}
        self._policies: dict[tuple[str, str] | None, FillPolicy] = {}
        self._account: dict[str, Any] = {
            "status": "ACTIVE",
            "currency": "USD",
            "buying_power": None,
            "equity": None,
            **dict.fromkeys(ACCOUNT_FLAGS, False),
        }
        self._behaviours: list[_Behaviour] = []
        self._received: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._executions: dict[str, int] = {}
        self._exchanges: list[Exchange] = []
        self._listeners: dict[str, tuple[_Server, threading.Thread]] = {}
        self._hook: Callable[[str, Exchange], None] | None = None
        self._rate_limit: int | None = None
        self._rate_window = 60.0
        self._windows: dict[str, _Window] = {}
        self.set_rate_limit(rate_limit, rate_window)

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

    def set_account(self, **fields: Any) -> None:
        """Set account fields (see the module docstring); an unknown field is a ValueError."""
        with self._lock:
            for name, value in fields.items():
                if name == "status":
                    if value not in ACCOUNT_STATUSES:
                        raise ValueError(f"status must be one of {sorted(ACCOUNT_STATUSES)}")
                    self._account["status"] = value
                elif name in ACCOUNT_FLAGS:
                    self._account[name] = bool(value)
                elif name == "currency":
                    self._account["currency"] = str(value)
                elif name == "cash":
                    self._cash = Decimal(value)
                elif name in ("buying_power", "equity"):
                    self._account[name] = None if value is None else Decimal(value)
                else:
                    raise ValueError(f"unknown account field {name!r}")

    @property
    def account(self) -> dict[str, Any]:
        """The account as ``GET /v2/account`` answers it."""
        with self._lock:
            return self._account_body()

    def set_fill_policy(
        self,
        policy: FillPolicy | None,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
    ) -> None:
        """Work one order, a symbol's orders or (neither given) every other order by ``policy``;
        ``None`` removes the policy (the default is to fill at once)."""
        if symbol is not None and client_order_id is not None:
            raise ValueError("give symbol or client_order_id, not both")
        if client_order_id is not None:
            scope: tuple[str, str] | None = ("order", client_order_id)
        elif symbol is not None:
            scope = ("symbol", symbol)
        else:
            scope = None
        with self._lock:
            if policy is None:
                self._policies.pop(scope, None)
            else:
                self._policies[scope] = policy

    def advance(self, client_order_id: str, qty: Decimal | str | int | None = None) -> dict:
        """Work the order one step further (``qty`` units when given); its JSON afterwards."""
        with self._lock:
            stored = self._stored(client_order_id)
            if stored["status"] not in WORKING_STATUSES:
                raise ValueError(f"order {client_order_id} is {stored['status']}, not working")
            self._advance(stored, None if qty is None else Decimal(qty))
            return dict(stored)

    def end_order(self, client_order_id: str, status: str) -> dict:
        """End a working order as ``status`` (canceled, expired, done_for_day, rejected),
        keeping its partial fill; its JSON afterwards."""
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {sorted(END_STATUSES)}")
        with self._lock:
            stored = self._stored(client_order_id)
            if stored["status"] not in WORKING_STATUSES:
                raise ValueError(f"order {client_order_id} is {stored['status']}, not working")
            self._end(stored, status)
            return dict(stored)

    def set_order_status(self, client_order_id: str, status: str) -> dict:
        """Put ``status`` on the order as is (nothing else changes); its JSON afterwards."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}")
        with self._lock:
            stored = self._stored(client_order_id)
            stored["status"] = status
            stored["updated_at"] = _timestamp(self._clock())
            return dict(stored)

    def set_rate_limit(self, limit: int | None, window: float = 60.0) -> None:
        """``limit`` requests per ``window`` seconds per API key (``None``: unlimited); every
        key's window starts anew."""
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 or None")
        if window <= 0:
            raise ValueError("window must be positive seconds")
        with self._lock:
            self._rate_limit = limit
            self._rate_window = float(window)
            self._windows.clear()

    def reset_rate_limit(self) -> None:
        """Start every key's rate-limit window anew."""
        with self._lock:
            self._windows.clear()

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        nth: int = 1,
        method: str | None = None,
        path: str | None = None,
        seconds: float = 1.0,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        order_status: str | None = None,
        filled_qty: Decimal | str | int | None = None,
    ) -> None:
        """Switch a behaviour on for ``times`` matching requests from the ``nth`` one (see the
        module docstring)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if nth < 1:
            raise ValueError("nth must be >= 1")
        if not 0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"seconds must be in [0, {MAX_DELAY_SECONDS}]")
        if kind == "order_status":
            if not order_status:
                raise ValueError("order_status is required for kind 'order_status'")
            method, path = "POST", ORDERS_PATH
        if status is None:
            status = {"respond": 503, "accept_then_fail": 503, "garbage": 200}.get(kind)
        behaviour = _Behaviour(
            kind=kind,
            times=times,
            skip=nth - 1,
            method=method.upper() if method else None,
            path=path,
            seconds=seconds,
            status=status,
            body=body,
            headers=dict(headers or {}),
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
                if not behaviour.matches(request.method, request.path):
                    continue
                if behaviour.skip > 0:
                    behaviour.skip -= 1
                    continue
                if behaviour.times is not None:
                    behaviour.times -= 1
                    if behaviour.times == 0:
                        self._behaviours.remove(behaviour)
                return behaviour
        return None

    def _count_request(self, key: str) -> tuple[dict[str, str], bool]:
        """Count one request against ``key``'s window: its rate-limit headers, and whether it is
        over the limit."""
        with self._lock:
            limit = self._rate_limit
            if limit is None:
                return {}, False
            now = time.monotonic()
            window = self._windows.get(key)
            if window is None or now - window.started >= self._rate_window:
                window = _Window(now, math.ceil(time.time() + self._rate_window))
                self._windows[key] = window
            window.used += 1
            headers = {
                "X-Ratelimit-Limit": str(limit),
                "X-Ratelimit-Remaining": str(max(0, limit - window.used)),
                "X-Ratelimit-Reset": str(window.reset_at),
            }
            return headers, window.used > limit

    def _injected_reply(self, behaviour: _Behaviour, headers: dict[str, str]) -> _Reply:
        kind = behaviour.kind
        extra = {**headers, **behaviour.headers}
        if kind == "rate_limited":
            reset = math.ceil(time.time() + behaviour.seconds)
            limit = headers.get("X-Ratelimit-Limit", str(self._rate_limit or 200))
            extra = {
                **headers,
                "X-Ratelimit-Limit": limit,
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Reset": str(reset),
                **behaviour.headers,
            }
            return _Reply(429, dict(TOO_MANY_REQUESTS), extra)
        if kind == "insufficient_buying_power":
            return _Reply(403, {"code": 40310000, "message": "insufficient buying power"}, extra)
        if kind == "duplicate":
            return _Reply(
                422, {"code": 40010001, "message": "client_order_id must be unique"}, extra
            )
        if kind == "garbage":
            body = behaviour.body if behaviour.body is not None else b'{"id": "7f3c", "status": "fi'
            return _Reply(behaviour.status or 200, body, extra, "application/json")
        body = behaviour.body
        if body is None:
            body = {"code": (behaviour.status or 503) * 100_000, "message": "injected failure"}
        return _Reply(behaviour.status or 503, body, extra)

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

        method, path = request.method, request.path
        if path == ORDERS_PATH:
            if method == "POST":
                return self._create_order(raw_body, forced)
            if method == "GET":
                return self._list_orders(request.query)
            if method == "DELETE":
                return self._cancel_all()
            return _Reply(405, "405 method not allowed")
        if path.startswith(ORDER_PATH_PREFIX) and len(path) > len(ORDER_PATH_PREFIX):
            order_id = unquote(path[len(ORDER_PATH_PREFIX) :])
            if method == "GET":
                return self._get_by_id(order_id)
            if method == "DELETE":
                return self._cancel(order_id)
            if method == "PATCH":
                return self._replace(order_id, raw_body)
            return _Reply(405, "405 method not allowed")
        route = (method, path)
        if route == ("GET", LOOKUP_PATH):
            return self._lookup(request.query.get("client_order_id", ""))
        if route == ("GET", ACCOUNT_PATH):
            with self._lock:
                return _Reply(200, self._account_body())
        if route == ("GET", POSITIONS_PATH):
            return self._positions_body()
        if path in KNOWN_PATHS:
            return _Reply(405, "405 method not allowed")
        return _Reply(404, "404 page not found")

    # Orders (the lock is held by every method below that starts with a verb) ----------------

    def _create_order(self, raw_body: bytes, forced: _Behaviour | None) -> _Reply:
        order = _parse_object(raw_body)
        if order is None:
            return _Reply(400, {"code": 40010000, "message": "request body format is invalid"})

        client_order_id = order.get("client_order_id") or str(uuid.uuid4())
        symbol = order.get("symbol")
        side = order.get("side")
        qty = _decimal(order.get("qty"))

        with self._lock:
            refusal = self._refuse_account()
            if refusal is not None:
                return refusal
            if not isinstance(client_order_id, str) or (
                len(client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH
            ):
                return _invalid(
                    f"client_order_id must be at most {MAX_CLIENT_ORDER_ID_LENGTH} characters"
                )
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
            if order.get("time_in_force") not in TIME_IN_FORCE:
                return _invalid("invalid time_in_force")
            refusal = self._refuse_size(symbol, side, qty)
            if refusal is not None:
                return refusal

            policy = self._policy_for(client_order_id, symbol)
            stored = self._new_order(client_order_id, symbol, side, qty, order["time_in_force"])
            self._executions[client_order_id] = self._executions.get(client_order_id, 0) + 1
            if forced is not None and forced.kind == "order_status":
                self._force_status(stored, forced)
            else:
                self._start(stored, policy)
            return _Reply(200, dict(stored))

    def _refuse_account(self) -> _Reply | None:
        account = self._account
        if account["status"] != "ACTIVE":
            return _forbidden("account is not active")
        if account["account_blocked"]:
            return _forbidden("account is blocked")
        if account["trading_blocked"]:
            return _forbidden("trading is blocked for this account")
        if account["trade_suspended_by_user"]:
            return _forbidden("trading is suspended by the account owner")
        return None

    def _refuse_size(
        self, symbol: str, side: str, qty: Decimal, *, released: dict | None = None
    ) -> _Reply | None:
        """403 for a buy over the buying power or a sell over the units available;
        ``released`` is an order whose reservation is handed back (the order being replaced)."""
        price = self._prices[symbol]
        if side == "buy":
            available = self._buying_power()
            if released is not None and released["side"] == "buy":
                available += self._reserved_value(released)
            if qty * price > available:
                return _forbidden("insufficient buying power")
            return None
        held = self._positions.get(symbol, (ZERO, ZERO))[0]
        offered = sum(
            (
                _remaining(item)
                for item in self._orders.values()
                if item["symbol"] == symbol
                and item["side"] == "sell"
                and item["status"] in WORKING_STATUSES
                and item is not released
            ),
            ZERO,
        )
        available = held - offered
        if qty > available:
            return _forbidden(
                f"insufficient qty available for order (requested: {qty}, available: {available})"
            )
        return None

    def _buying_power(self) -> Decimal:
        base = self._account["buying_power"]
        if base is None:
            base = self._cash
        reserved = sum(
            (
                self._reserved_value(item)
                for item in self._orders.values()
                if item["side"] == "buy" and item["status"] in WORKING_STATUSES
            ),
            ZERO,
        )
        return base - reserved

    def _reserved_value(self, stored: dict) -> Decimal:
        return _remaining(stored) * self._prices.get(stored["symbol"], ZERO)

    def _policy_for(self, client_order_id: str, symbol: str) -> FillPolicy:
        return (
            self._policies.get(("order", client_order_id))
            or self._policies.get(("symbol", symbol))
            or self._policies.get(None)
            or IMMEDIATE
        )

    def _new_order(
        self, client_order_id: str, symbol: str, side: str, qty: Decimal, time_in_force: str
    ) -> dict[str, Any]:
        now = _timestamp(self._clock())
        stored = {
            "id": str(uuid.uuid4()),
            "client_order_id": client_order_id,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"asset:{symbol}")),
            "symbol": symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": str(qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "order_type": "market",
            "type": "market",
            "side": side,
            "time_in_force": time_in_force,
            "limit_price": None,
            "stop_price": None,
            "status": "pending_new",
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }
        self._orders[client_order_id] = stored
        self._by_id[stored["id"]] = client_order_id
        return stored

    def _start(self, stored: dict, policy: FillPolicy) -> None:
        self._order_policies[stored["client_order_id"]] = policy
        if policy.mode == "immediate":
            self._fill(stored, Decimal(stored["qty"]))
            return
        stored["status"] = policy.status
        if policy.mode == "partial":
            self._advance(stored, None)

    def _force_status(self, stored: dict, forced: _Behaviour) -> None:
        qty = Decimal(stored["qty"])
        status = forced.order_status or "filled"
        if forced.filled_qty is not None:
            filled = forced.filled_qty
        elif status == "filled":
            filled = qty
        elif status == "partially_filled":
            filled = (qty / 2).to_integral_value(rounding=ROUND_FLOOR)
        else:
            filled = ZERO
        self._order_policies[stored["client_order_id"]] = FillPolicy(mode="open")
        if filled > 0:
            self._fill(stored, filled)
        stored["status"] = status
        stamp = stored["updated_at"]
        if status == "canceled":
            stored["canceled_at"] = stamp
        elif status == "expired":
            stored["expired_at"] = stamp
        elif status == "rejected":
            stored["failed_at"] = stamp

    def _advance(self, stored: dict, qty: Decimal | None) -> None:
        """One step of the order's policy: fill ``qty`` (or the policy's step), or end it."""
        policy = self._order_policies.get(stored["client_order_id"], IMMEDIATE)
        total = Decimal(stored["qty"])
        filled = Decimal(stored["filled_qty"])
        remaining = total - filled
        if qty is None:
            cap = policy.limit if policy.limit is not None else total
            if filled >= cap:
                self._end(stored, policy.end)
                return
            if policy.step is not None:
                qty = policy.step
            elif policy.mode == "partial":
                qty = max(Decimal(1), (total / 2).to_integral_value(rounding=ROUND_FLOOR))
            else:
                qty = remaining
            qty = min(qty, cap - filled)
        if not 0 < qty <= remaining:
            raise ValueError(f"cannot fill {qty} of {remaining} remaining")
        self._fill(stored, qty)

    def _fill(self, stored: dict, qty: Decimal) -> None:
        """Fill ``qty`` more units at the symbol's price and book them."""
        symbol, side = stored["symbol"], stored["side"]
        price = self._prices.get(symbol)
        if price is None:
            raise ValueError(f"no price for {symbol}")
        before = Decimal(stored["filled_qty"])
        previous = Decimal(stored["filled_avg_price"] or 0)
        after = before + qty
        average = ((before * previous + qty * price) / after).quantize(
            VALUE_QUANTUM, rounding=ROUND_HALF_UP
        )
        now = _timestamp(self._clock())
        stored["filled_qty"] = str(after)
        # Fills at one price read back as the price was written (187.25, not 187.2500).
        stored["filled_avg_price"] = str(price if average == price else average)
        stored["filled_at"] = now
        stored["updated_at"] = now
        stored["status"] = "filled" if after == Decimal(stored["qty"]) else "partially_filled"
        self._book_fill(symbol, side, qty, price)

    def _end(self, stored: dict, status: str) -> None:
        now = _timestamp(self._clock())
        stored["status"] = status
        stored["updated_at"] = now
        if status == "canceled":
            stored["canceled_at"] = now
        elif status == "expired":
            stored["expired_at"] = now
        elif status == "rejected":
            stored["failed_at"] = now

    def _book_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        units, average = self._positions.get(symbol, (ZERO, ZERO))
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

    def _stored(self, client_order_id: str) -> dict[str, Any]:
        stored = self._orders.get(client_order_id)
        if stored is None:
            raise KeyError(f"no order with client_order_id {client_order_id!r}")
        return stored

    def _read(self, stored: dict | None) -> _Reply:
        """A GET of one order: advanced first when its policy says so."""
        if stored is None:
            return _Reply(404, {"code": 40410000, "message": "order not found"})
        policy = self._order_policies.get(stored["client_order_id"], IMMEDIATE)
        if policy.advance_on_get and stored["status"] in WORKING_STATUSES:
            self._advance(stored, None)
        return _Reply(200, dict(stored))

    def _lookup(self, client_order_id: str) -> _Reply:
        with self._lock:
            return self._read(self._orders.get(client_order_id))

    def _get_by_id(self, order_id: str) -> _Reply:
        with self._lock:
            client_order_id = self._by_id.get(order_id)
            return self._read(None if client_order_id is None else self._orders[client_order_id])

    def _list_orders(self, query: dict[str, str]) -> _Reply:
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            return _invalid("status must be open, closed or all")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return _invalid("limit must be an integer")
        if not 1 <= limit <= 500:
            return _invalid("limit must be between 1 and 500")
        direction = query.get("direction", "desc")
        if direction not in ("asc", "desc"):
            return _invalid("direction must be asc or desc")
        symbols = {s for s in query.get("symbols", "").split(",") if s}
        with self._lock:
            items = [
                dict(item)
                for item in self._orders.values()  # insertion order: oldest first
                if (status == "all" or (status == "open") == (item["status"] in WORKING_STATUSES))
                and (not symbols or item["symbol"] in symbols)
            ]
        if direction == "desc":
            items.reverse()
        return _Reply(200, items[:limit])

    def _cancel(self, order_id: str) -> _Reply:
        with self._lock:
            client_order_id = self._by_id.get(order_id)
            if client_order_id is None:
                return _Reply(404, {"code": 40410000, "message": "order not found"})
            stored = self._orders[client_order_id]
            if stored["status"] not in CANCELABLE:
                return _Reply(
                    422,
                    {"code": 42210000, "message": f"order is {stored['status']}: not cancelable"},
                )
            self._end(stored, "canceled")
        return _Reply(204, None)

    def _cancel_all(self) -> _Reply:
        with self._lock:
            results = []
            for stored in self._orders.values():
                if stored["status"] in CANCELABLE:
                    self._end(stored, "canceled")
                    results.append({"id": stored["id"], "status": 200, "body": dict(stored)})
        return _Reply(207, results)

    def _replace(self, order_id: str, raw_body: bytes) -> _Reply:
        changes = _parse_object(raw_body)
        if changes is None:
            return _Reply(400, {"code": 40010000, "message": "request body format is invalid"})
        with self._lock:
            old_client_id = self._by_id.get(order_id)
            if old_client_id is None:
                return _Reply(404, {"code": 40410000, "message": "order not found"})
            old = self._orders[old_client_id]
            if old["status"] not in REPLACEABLE:
                return _Reply(
                    422, {"code": 42210000, "message": f"order is {old['status']}: not replaceable"}
                )
            refusal = self._refuse_account()
            if refusal is not None:
                return refusal
            qty = _decimal(changes.get("qty", old["qty"]))
            if not qty.is_finite() or qty <= 0:
                return _invalid("qty must be > 0")
            time_in_force = changes.get("time_in_force", old["time_in_force"])
            if time_in_force not in TIME_IN_FORCE:
                return _invalid("invalid time_in_force")
            client_order_id = changes.get("client_order_id") or str(uuid.uuid4())
            if not isinstance(client_order_id, str) or (
                len(client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH
            ):
                return _invalid(
                    f"client_order_id must be at most {MAX_CLIENT_ORDER_ID_LENGTH} characters"
                )
            if client_order_id in self._orders:
                return _invalid("client_order_id must be unique")
            refusal = self._refuse_size(old["symbol"], old["side"], qty, released=old)
            if refusal is not None:
                return refusal

            policy = self._order_policies.get(old_client_id, IMMEDIATE)
            new = self._new_order(client_order_id, old["symbol"], old["side"], qty, time_in_force)
            new["replaces"] = old["id"]
            old["status"] = "replaced"
            old["replaced_by"] = new["id"]
            old["replaced_at"] = old["updated_at"] = new["created_at"]
            self._start(new, policy)
            return _Reply(200, dict(new))

    def _account_body(self) -> dict[str, Any]:
        account = self._account
        market_value = sum(
            (units * self._prices.get(symbol, average))
            for symbol, (units, average) in self._positions.items()
        )
        cash = self._cash
        equity = account["equity"] if account["equity"] is not None else cash + market_value
        buying_power = self._buying_power()
        return {
            "id": "00000000-0000-4000-8000-000000000000",
            "account_number": "PAFAKE0001",
            "status": account["status"],
            "crypto_status": "INACTIVE",
            "currency": account["currency"],
            "cash": str(cash),
            "buying_power": str(buying_power),
            "regt_buying_power": str(buying_power),
            "daytrading_buying_power": str(buying_power),
            "non_marginable_buying_power": str(buying_power),
            "long_market_value": str(market_value),
            "short_market_value": "0",
            "portfolio_value": str(equity),
            "equity": str(equity),
            "last_equity": str(equity),
            "multiplier": "1",
            "shorting_enabled": False,
            "pattern_day_trader": account["pattern_day_trader"],
            "trading_blocked": account["trading_blocked"],
            "transfers_blocked": False,
            "account_blocked": account["account_blocked"],
            "trade_suspended_by_user": account["trade_suspended_by_user"],
            "created_at": "2026-01-02T14:30:00Z",
        }

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
                        "qty_available": str(units),
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
    protocol_version = "HTTP/1.1"
    timeout = 5
    # Each answer leaves in one write (flushed after each request): the status line and headers
    # in one segment and the body in another would wait on the client's delayed ACK.
    wbufsize = 64 * 1024

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        broker = self.server.broker
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is left unread: the connection is done
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
        limit_headers, over_limit = broker._count_request(
            request.headers.get("apca-api-key-id", "")
        )
        exchange = broker._exchange(self.server.label, request)
        kind = behaviour.kind if behaviour is not None else None

        if kind in ("delay", "stall") and broker._stopping.wait(behaviour.seconds):
            # Stopped while waiting: hang up rather than answer late.
            self.close_connection = True
            return
        if kind == "stall":
            self.close_connection = True
            return
        if kind == "reset":
            self._reset()
            return
        if kind in REPLY_KINDS:
            self._send(broker._injected_reply(behaviour, limit_headers))
            broker._answered(exchange)
            return
        if over_limit:
            self._send(_Reply(429, dict(TOO_MANY_REQUESTS), limit_headers))
            broker._answered(exchange)
            return

        reply = broker._handle(request, behaviour, raw_body)
        reply = _Reply(reply.status, reply.body, limit_headers, reply.content_type)
        if kind == "accept_then_fail":
            if not behaviour.status:
                # Hang up without an answer: the client sees a connection error.
                self.close_connection = True
                return
            body = behaviour.body
            if body is None:
                body = f"{behaviour.status} upstream failure"
            reply = _Reply(behaviour.status, body, {**limit_headers, **behaviour.headers})
        elif kind == "accept_then_reset":
            self._reset()
            return
        elif kind == "accept_then_garbage":
            whole = json.dumps(reply.body).encode("utf-8")
            reply = _Reply(200, whole[: len(whole) // 2], limit_headers, "application/json")
        elif kind == "accept_then_delay" and broker._stopping.wait(behaviour.seconds):
            self.close_connection = True
            return
        self._send(reply)
        broker._answered(exchange)

    def _reset(self) -> None:
        """Close with a TCP reset (linger 0) instead of an orderly shutdown."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send(self, reply: _Reply) -> None:
        if reply.body is None:
            payload = b""
            content_type = None
        elif isinstance(reply.body, dict | list):
            payload = json.dumps(reply.body).encode("utf-8")
            content_type = "application/json; charset=utf-8"
        else:
            text = reply.body
            payload = text if isinstance(text, bytes) else str(text).encode("utf-8")
            content_type = "text/html; charset=utf-8"
        if reply.content_type is not None:
            content_type = reply.content_type
        try:
            self.send_response(reply.status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client already gave up (timeout); nothing is owed to it.
            pass


def _parse_object(raw_body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw_body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal("NaN")


def _remaining(stored: dict) -> Decimal:
    return Decimal(stored["qty"]) - Decimal(stored["filled_qty"])


def _invalid(message: str) -> _Reply:
    return _Reply(422, {"code": 40010001, "message": message})


def _forbidden(message: str) -> _Reply:
    return _Reply(403, {"code": 40310000, "message": message})


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with nanosecond digits, as Alpaca writes them."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000Z"
