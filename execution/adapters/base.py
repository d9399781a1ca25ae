"""Value types and the protocol shared by every execution adapter.

An execution adapter turns an ``OrderRequest`` (an execution request in the source's words) into an
``ExecutionResponse`` from the broker (the execution API). Adapters are plain Python: no Django, no
database, and a clock (injected) only to date a retry after a rate limit. Quantities are whole
units (``Decimal``), values are dollars per unit (``Decimal``), timestamps are aware UTC
``datetime`` objects.

Fail-closed contract: ``submit`` never raises for a transport problem and never resubmits by itself.
When the broker's answer is missing or unreadable the response is ``UNKNOWN``; the caller reconciles
it with ``lookup(client_order_id)`` and never blindly submits again.

The ``client_order_id`` the broker sees is at most 48 characters, derived from the order's 64-hex
idempotency key by ``execution.keys.client_order_id_for``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

# The longest client_order_id sent to the broker (48, the Alpaca-compatible API's bound);
# ``execution.keys.client_order_id_for`` derives one of 44 characters from an idempotency key.
from execution.keys import MAX_CLIENT_ORDER_ID_LENGTH

SIDES = frozenset({"buy", "sell"})
# ``OrderRequest`` carries no limit or stop price, so only market orders can be expressed.
ORDER_TYPES = frozenset({"market"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})


class BrokerUnavailable(Exception):
    """The broker gave no usable answer to a read (account, positions).

    ``reason`` is machine-readable ("timeout", "connection_error", "http_503",
    "unreadable_response", "rate_limited", "rate_limiter_unavailable", a broker message…);
    ``http_status`` is the HTTP code or ``None`` when no response arrived (or nothing was sent);
    ``retry_at`` (aware UTC) is when the broker or the client-side limiter allows the next
    request, ``None`` when unknown.
    """

    def __init__(
        self,
        reason: str,
        http_status: int | None = None,
        *,
        retry_at: datetime | None = None,
    ) -> None:
        super().__init__(reason if http_status is None else f"{reason} (HTTP {http_status})")
        self.reason = reason
        self.http_status = http_status
        self.retry_at = retry_at


@dataclass(frozen=True)
class OrderRequest:
    """One order to send to the broker.

    ``client_order_id`` is the idempotency key: the broker refuses a second order with the same id.
    ``quantity`` is a whole number of units, greater than zero. Raises ``ValueError`` on bad input.
    """

    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    order_type: str = "market"
    time_in_force: str = "day"

    def __post_init__(self) -> None:
        if not isinstance(self.client_order_id, str) or not self.client_order_id.strip():
            raise ValueError("client_order_id must be a non-empty string")
        if len(self.client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH:
            raise ValueError(
                f"client_order_id longer than {MAX_CLIENT_ORDER_ID_LENGTH} characters (derive it "
                "from the idempotency key with execution.keys.client_order_id_for)"
            )
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise ValueError("symbol must be a non-empty string")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {sorted(SIDES)}, got {self.side!r}")
        # bool is an int subclass and float loses precision: both are refused.
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, Decimal | int):
            raise ValueError(f"quantity must be a Decimal, got {type(self.quantity).__name__}")
        quantity = Decimal(self.quantity)
        if not quantity.is_finite() or quantity <= 0:
            raise ValueError(f"quantity must be greater than 0, got {self.quantity}")
        if quantity != quantity.to_integral_value():
            raise ValueError(f"quantity must be a whole number of units, got {self.quantity}")
        if self.order_type not in ORDER_TYPES:
            raise ValueError(f"order_type must be one of {sorted(ORDER_TYPES)}")
        if self.time_in_force not in TIME_IN_FORCE:
            raise ValueError(f"time_in_force must be one of {sorted(TIME_IN_FORCE)}")
        object.__setattr__(self, "quantity", quantity)


class ResponseStatus(StrEnum):
    """What the broker did with an order, as far as the adapter can tell.

    ``REJECTED`` covers every end without a complete fill: refused, canceled, expired, done for
    the day (``ExecutionResponse.broker_status`` tells which; a partial fill is kept).
    ``REPLACED``: the broker replaced the order by another (``replaced_by``); it will not change
    any more, but its fills continue on the replacing order.
    """

    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REPLACED = "replaced"
    UNKNOWN = "unknown"
    NOT_FOUND = "not_found"


FINAL_STATUSES = frozenset({ResponseStatus.FILLED, ResponseStatus.REJECTED})


@dataclass(frozen=True)
class ExecutionResponse:
    """The broker's answer to ``submit`` or ``lookup``.

    ``filled_quantity`` is in units (0 unless filled or partially filled; a canceled or expired
    order may still carry a partial fill, which must be booked). ``fill_value`` is the average fill
    price in dollars per unit, ``None`` without a fill. ``filled_at`` is aware UTC. ``reason`` is a
    short machine-readable reason for REJECTED / UNKNOWN, "" otherwise. ``retryable`` is True only
    when the broker definitely did not accept the order and a later submit is safe (HTTP 429, or
    the client-side rate limit kept it from being sent). ``raw`` is JSON-serialisable (what was
    sent and received) and never holds a secret.

    ``broker_status`` is the broker's own word for the order ("filled", "canceled", "expired",
    "done_for_day", "pending_cancel"…), "" when no order came back. ``replaced_by`` is the
    broker id of the replacing order when the status is REPLACED. ``retry_at`` (aware UTC) is
    when the next request may be sent after a rate limit, ``None`` when unknown or not limited.
    """

    status: ResponseStatus
    broker_order_id: str | None
    filled_quantity: Decimal
    fill_value: Decimal | None
    filled_at: datetime | None
    reason: str
    retryable: bool
    raw: dict[str, Any] = field(default_factory=dict)
    broker_status: str = ""
    replaced_by: str | None = None
    retry_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.filled_quantity < 0:
            raise ValueError("filled_quantity cannot be negative")
        if self.filled_at is not None and self.filled_at.utcoffset() is None:
            raise ValueError("filled_at must be timezone-aware")
        if self.retry_at is not None and self.retry_at.utcoffset() is None:
            raise ValueError("retry_at must be timezone-aware")
        if self.retryable and self.status is not ResponseStatus.REJECTED:
            raise ValueError("only a REJECTED response can be retryable")
        if (self.replaced_by is not None) != (self.status is ResponseStatus.REPLACED):
            raise ValueError("replaced_by is set exactly when the status is REPLACED")

    @property
    def is_final(self) -> bool:
        """True when the order will not change any more and what it filled can be booked:
        filled, or ended without a complete fill (REJECTED: refused, canceled, expired, done for
        the day). A REPLACED order is not final for the books: follow ``replaced_by``."""
        return self.status in FINAL_STATUSES

    @property
    def is_replaced(self) -> bool:
        """True when the broker replaced this order by ``replaced_by``."""
        return self.status is ResponseStatus.REPLACED

    @property
    def is_ambiguous(self) -> bool:
        """True when the broker may or may not hold the order: reconcile by ``lookup``."""
        return self.status is ResponseStatus.UNKNOWN

    @property
    def has_fill(self) -> bool:
        """True when some quantity was filled, whatever the status."""
        return self.filled_quantity > 0

    @classmethod
    def unknown(
        cls, reason: str, raw: dict[str, Any], *, retry_at: datetime | None = None
    ) -> ExecutionResponse:
        """An ambiguous answer: the broker may hold the order."""
        return cls(
            ResponseStatus.UNKNOWN,
            None,
            Decimal(0),
            None,
            None,
            reason,
            False,
            raw,
            retry_at=retry_at,
        )

    @classmethod
    def rejected(
        cls,
        reason: str,
        raw: dict[str, Any],
        *,
        retryable: bool = False,
        retry_at: datetime | None = None,
    ) -> ExecutionResponse:
        """A refusal: the broker does not hold a live order for this request."""
        return cls(
            ResponseStatus.REJECTED,
            None,
            Decimal(0),
            None,
            None,
            reason,
            retryable,
            raw,
            retry_at=retry_at,
        )

    @classmethod
    def not_found(cls, raw: dict[str, Any]) -> ExecutionResponse:
        """The broker has never seen this client_order_id."""
        return cls(ResponseStatus.NOT_FOUND, None, Decimal(0), None, None, "", False, raw)


@dataclass(frozen=True)
class BrokerAccount:
    """The account at the broker: balances in dollars and whether it may trade.

    ``status`` is the broker's word ("ACTIVE", "ACCOUNT_UPDATED", "ONBOARDING",
    "SUBMISSION_FAILED", "ACCOUNT_CLOSED"…); the flags are the broker's blocks. The defaults
    describe an account that may not trade (no status, no buying power), so a caller that
    forgets them fails closed. ``execution.account_rules.check_account`` judges an order
    against it.
    """

    cash: Decimal
    equity: Decimal
    raw: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    trading_blocked: bool = False
    account_blocked: bool = False
    trade_suspended_by_user: bool = False
    buying_power: Decimal = Decimal(0)


@dataclass(frozen=True)
class BrokerPosition:
    """One open position at the broker: units (negative when short) and average entry in $/unit."""

    symbol: str
    quantity: Decimal
    average_entry_value: Decimal
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RequestLimiter(Protocol):
    """Client-side budget of requests to the broker, shared by every process of the desk.

    ``acquire()`` takes one request from the budget and returns 0, or returns the seconds to
    wait before one is available (taking nothing). A limiter may also offer
    ``hold_until(moment)``: the broker answered 429 and allows nothing before ``moment``
    (aware UTC); the adapter calls it when present.
    """

    def acquire(self) -> float: ...


@runtime_checkable
class ExecutionAdapter(Protocol):
    """What the execution worker needs from a broker."""

    name: str

    def submit(self, request: OrderRequest) -> ExecutionResponse:
        """Send one order once; never raises for transport errors (UNKNOWN instead)."""
        ...

    def lookup(self, client_order_id: str) -> ExecutionResponse:
        """The broker's current view of an order; NOT_FOUND when it never saw it."""
        ...

    def lookup_by_broker_id(self, broker_order_id: str) -> ExecutionResponse:
        """The broker's current view of an order by the broker's own id (the order status
        sync, and following ``replaced_by``); NOT_FOUND when it does not know the id."""
        ...

    def account(self) -> BrokerAccount:
        """Cash, equity, buying power and the account's state; raises ``BrokerUnavailable``
        without a usable answer."""
        ...

    def positions(self) -> list[BrokerPosition]:
        """Open positions; raises ``BrokerUnavailable`` without a usable answer."""
        ...
