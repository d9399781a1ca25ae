"""Paper execution adapter: fills every order at once at the latest value, in memory.

Needs nothing external. The clock (``now``) and the value source (``price_of``) are injected, so
an instance belongs to one cycle or one task; its memory of orders, cash and positions lives as long
as the instance. Duplicate detection therefore only covers the orders this instance has seen; the
unique idempotency key in the ``orders`` table is what guards against a duplicate across processes.

``account()`` and ``positions()`` are derived from the fills of this instance only, starting from
``cash`` and no positions; the account is always ``ACTIVE``, unblocked, with its cash as buying
power. Buying power and held quantity are not enforced: that is the risk evaluation's job, and a
short-lived instance cannot know the pool's holdings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from execution.adapters.base import (
    BrokerAccount,
    BrokerPosition,
    ExecutionResponse,
    OrderRequest,
    ResponseStatus,
)

VALUE_QUANTUM = Decimal("0.0001")
BPS = Decimal(10_000)


def paper_broker_order_id(client_order_id: str) -> str:
    """The paper broker's order id: ``"paper-"`` + the first 16 hex chars of sha256(client id)."""
    digest = hashlib.sha256(client_order_id.encode("utf-8")).hexdigest()
    return f"paper-{digest[:16]}"


def apply_slippage(value: Decimal, side: str, slippage_bps: Decimal) -> Decimal:
    """Fill value in $/unit after slippage, rounded half-up to 4 decimal places.

    A buy pays ``value × (1 + bps/10000)``, a sell receives ``value × (1 − bps/10000)``;
    ``slippage_bps`` is in basis points (10 = 0.10 %).
    """
    factor = slippage_bps / BPS
    adjusted = value * (1 + factor) if side == "buy" else value * (1 - factor)
    return adjusted.quantize(VALUE_QUANTUM, rounding=ROUND_HALF_UP)


class PaperAdapter:
    """Simulated broker that fills the whole quantity immediately.

    ``price_of(symbol)`` returns the latest value in $/unit or ``None``; ``now`` (aware) is the fill
    time; ``slippage_bps`` is in basis points (≥ 0); ``cash`` is the starting cash in dollars.
    """

    name = "paper"

    def __init__(
        self,
        price_of: Callable[[str], Decimal | None],
        now: datetime,
        slippage_bps: Decimal = Decimal("0"),
        cash: Decimal = Decimal("0"),
    ) -> None:
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        slippage_bps = Decimal(slippage_bps)
        if not slippage_bps.is_finite() or slippage_bps < 0 or slippage_bps >= BPS:
            raise ValueError("slippage_bps must be in [0, 10000)")
        self._price_of = price_of
        self._now = now.astimezone(UTC)
        self._slippage_bps = slippage_bps
        self._cash = Decimal(cash)
        self._orders: dict[str, ExecutionResponse] = {}
        self._by_broker_id: dict[str, str] = {}
        # symbol -> (units, average entry value in $/unit); units are negative when short.
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}

    def submit(self, request: OrderRequest) -> ExecutionResponse:
        """Fill ``request`` in full at the latest value adjusted by slippage.

        REJECTED "no_current_value" when ``price_of`` has no positive value (nothing is stored, as a
        broker that refuses a request keeps nothing); REJECTED "duplicate_client_order_id" when this
        instance already holds the client_order_id (the original order is untouched and its id is in
        ``raw["existing_broker_order_id"]``).
        """
        sent = _request_payload(request)
        existing = self._orders.get(request.client_order_id)
        if existing is not None:
            raw = {"request": sent, "existing_broker_order_id": existing.broker_order_id}
            return ExecutionResponse.rejected("duplicate_client_order_id", raw)

        value = self._price_of(request.symbol)
        if value is None or not Decimal(value).is_finite() or Decimal(value) <= 0:
            raw = {"request": sent, "value": None if value is None else str(value)}
            return ExecutionResponse.rejected("no_current_value", raw)

        fill_value = apply_slippage(Decimal(value), request.side, self._slippage_bps)
        broker_order_id = paper_broker_order_id(request.client_order_id)
        raw = {
            "request": sent,
            "value": str(value),
            "slippage_bps": str(self._slippage_bps),
            "broker_order_id": broker_order_id,
            "filled_qty": str(request.quantity),
            "filled_avg_price": str(fill_value),
            "filled_at": self._now.isoformat(),
        }
        response = ExecutionResponse(
            status=ResponseStatus.FILLED,
            broker_order_id=broker_order_id,
            filled_quantity=request.quantity,
            fill_value=fill_value,
            filled_at=self._now,
            reason="",
            retryable=False,
            raw=raw,
            broker_status="filled",
        )
        self._orders[request.client_order_id] = response
        self._by_broker_id[broker_order_id] = request.client_order_id
        self._book_fill(request.symbol, request.side, request.quantity, fill_value)
        return response

    def lookup(self, client_order_id: str) -> ExecutionResponse:
        """The stored response for ``client_order_id``, or NOT_FOUND."""
        stored = self._orders.get(client_order_id)
        if stored is None:
            return ExecutionResponse.not_found({"request": {"client_order_id": client_order_id}})
        return stored

    def lookup_by_broker_id(self, broker_order_id: str) -> ExecutionResponse:
        """The stored response for the order with ``broker_order_id``, or NOT_FOUND."""
        client_order_id = self._by_broker_id.get(broker_order_id)
        if client_order_id is None:
            return ExecutionResponse.not_found({"request": {"broker_order_id": broker_order_id}})
        return self._orders[client_order_id]

    def account(self) -> BrokerAccount:
        """Cash (starting cash − buys + sells) and equity (cash + positions at the latest value);
        ``ACTIVE``, unblocked, with the cash as buying power.

        A position without a current value is counted at its average entry value.
        """
        equity = self._cash
        for symbol, (units, average) in self._positions.items():
            value = self._price_of(symbol)
            mark = Decimal(value) if value is not None and Decimal(value) > 0 else average
            equity += units * mark
        raw = {
            "cash": str(self._cash),
            "equity": str(equity),
            "buying_power": str(self._cash),
            "status": "ACTIVE",
            "source": "paper",
        }
        return BrokerAccount(
            cash=self._cash,
            equity=equity,
            raw=raw,
            status="ACTIVE",
            trading_blocked=False,
            account_blocked=False,
            trade_suspended_by_user=False,
            buying_power=self._cash,
        )

    def positions(self) -> list[BrokerPosition]:
        """Open positions from this instance's fills, sorted by symbol."""
        return [
            BrokerPosition(
                symbol=symbol,
                quantity=units,
                average_entry_value=average,
                raw={"symbol": symbol, "qty": str(units), "avg_entry_price": str(average)},
            )
            for symbol, (units, average) in sorted(self._positions.items())
        ]

    def _book_fill(self, symbol: str, side: str, quantity: Decimal, value: Decimal) -> None:
        signed = quantity if side == "buy" else -quantity
        self._cash -= signed * value
        units, average = self._positions.get(symbol, (Decimal(0), Decimal(0)))
        new_units = units + signed
        if new_units == 0:
            self._positions.pop(symbol, None)
            return
        if units == 0 or (units > 0) == (signed > 0):
            # Opening or adding: the average entry is the unit-weighted mean.
            average = ((abs(units) * average + quantity * value) / abs(new_units)).quantize(
                VALUE_QUANTUM, rounding=ROUND_HALF_UP
            )
        elif (units > 0) != (new_units > 0):
            # Crossed through zero: the remainder was opened at this fill's value.
            average = value
        self._positions[symbol] = (new_units, average)


def _request_payload(request: OrderRequest) -> dict[str, str]:
    return {
        "symbol": request.symbol,
        "qty": str(request.quantity),
        "side": request.side,
        "type": request.order_type,
        "time_in_force": request.time_in_force,
        "client_order_id": request.client_order_id,
    }
