"""PaperAdapter and the adapter value types: plain pytest, no database, no network."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from execution.account_rules import check_account
from execution.adapters import (
    ExecutionAdapter,
    ExecutionResponse,
    OrderRequest,
    PaperAdapter,
    ResponseStatus,
    apply_slippage,
    paper_broker_order_id,
)

NOW = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def _prices(**values: str) -> Any:
    table = {symbol: Decimal(value) for symbol, value in values.items()}
    return table.get


def _order(client_order_id: str = "coid-1", side: str = "buy", qty: int = 10) -> OrderRequest:
    return OrderRequest(client_order_id, "AAPL", side, Decimal(qty))


def test_paper_adapter_satisfies_the_protocol() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW)

    assert isinstance(adapter, ExecutionAdapter)
    assert adapter.name == "paper"


def test_fills_whole_quantity_at_the_latest_value() -> None:
    adapter = PaperAdapter(_prices(AAPL="187.25"), NOW)

    response = adapter.submit(_order(qty=10))

    assert response.status is ResponseStatus.FILLED
    assert response.filled_quantity == Decimal(10)
    assert response.fill_value == Decimal("187.2500")
    assert response.filled_at == NOW
    assert (response.reason, response.retryable, response.is_final) == ("", False, True)
    json.dumps(response.raw)


def test_fill_time_is_reported_in_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    adapter = PaperAdapter(_prices(AAPL="100"), NOW.astimezone(eastern))

    filled_at = adapter.submit(_order()).filled_at

    assert filled_at == NOW
    assert filled_at is not None and filled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("side", "value", "bps", "expected"),
    [
        ("buy", "100", "10", "100.1000"),
        ("sell", "100", "10", "99.9000"),
        ("buy", "100", "0", "100.0000"),
        ("sell", "100", "0", "100.0000"),
        ("buy", "33.3333", "5", "33.3500"),  # 33.34996665 rounds half-up to 4 dp
        ("sell", "33.3333", "5", "33.3166"),  # 33.31663335
        ("buy", "0.00005", "0", "0.0001"),  # half-up at the 4th decimal place
    ],
)
def test_slippage_moves_the_fill_against_the_pool(
    side: str, value: str, bps: str, expected: str
) -> None:
    adapter = PaperAdapter(_prices(AAPL=value), NOW, slippage_bps=Decimal(bps))

    response = adapter.submit(_order(side=side))

    assert response.fill_value == Decimal(expected)
    assert apply_slippage(Decimal(value), side, Decimal(bps)) == Decimal(expected)


@pytest.mark.parametrize("value", [None, Decimal(0), Decimal("-1")])
def test_no_current_value_is_rejected_and_not_stored(value: Decimal | None) -> None:
    adapter = PaperAdapter(lambda symbol: value, NOW)

    response = adapter.submit(_order())

    assert response.status is ResponseStatus.REJECTED
    assert (response.reason, response.retryable) == ("no_current_value", False)
    assert (response.broker_order_id, response.filled_quantity) == (None, Decimal(0))
    assert adapter.lookup("coid-1").status is ResponseStatus.NOT_FOUND
    assert adapter.positions() == []


def test_duplicate_client_order_id_is_rejected_and_keeps_the_first_fill() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW)
    first = adapter.submit(_order(qty=10))

    second = adapter.submit(_order(qty=10))

    assert second.status is ResponseStatus.REJECTED
    assert (second.reason, second.retryable) == ("duplicate_client_order_id", False)
    assert second.raw["existing_broker_order_id"] == first.broker_order_id
    assert adapter.lookup("coid-1") == first
    assert adapter.positions()[0].quantity == Decimal(10)


def test_lookup_returns_the_stored_response_or_not_found() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW)
    filled = adapter.submit(_order())

    assert adapter.lookup("coid-1") == filled
    missing = adapter.lookup("never-sent")
    assert missing.status is ResponseStatus.NOT_FOUND
    assert (missing.broker_order_id, missing.reason, missing.is_final) == (None, "", False)


def test_broker_order_id_is_deterministic_across_instances() -> None:
    expected = "paper-" + hashlib.sha256(b"coid-1").hexdigest()[:16]

    one = PaperAdapter(_prices(AAPL="100"), NOW).submit(_order()).broker_order_id
    two = PaperAdapter(_prices(AAPL="250"), NOW + timedelta(days=1)).submit(_order())

    assert one == two.broker_order_id == expected == paper_broker_order_id("coid-1")
    assert paper_broker_order_id("coid-2") != expected


def test_account_and_positions_follow_the_fills() -> None:
    values = {"AAPL": Decimal("100"), "MSFT": Decimal("400")}
    adapter = PaperAdapter(values.get, NOW, cash=Decimal("10000"))
    adapter.submit(_order("a", qty=10))
    values["AAPL"] = Decimal("110")
    adapter.submit(_order("b", qty=10))
    adapter.submit(OrderRequest("c", "MSFT", "buy", Decimal(2)))
    adapter.submit(_order("d", side="sell", qty=5))
    values["AAPL"] = Decimal("120")

    positions = adapter.positions()
    account = adapter.account()

    assert [(p.symbol, p.quantity, p.average_entry_value) for p in positions] == [
        ("AAPL", Decimal(15), Decimal("105.0000")),
        ("MSFT", Decimal(2), Decimal("400")),
    ]
    cash = Decimal(10000) - 1000 - 1100 - 800 + 5 * 110  # the sale filled at 110
    assert account.cash == cash
    assert account.equity == cash + 15 * Decimal(120) + 2 * Decimal(400)


def test_the_paper_account_is_active_with_its_cash_as_buying_power() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW, cash=Decimal("1000"))
    adapter.submit(_order(qty=3))

    account = adapter.account()

    assert (account.status, account.buying_power) == ("ACTIVE", Decimal(700))
    assert not (account.trading_blocked or account.account_blocked)
    assert not account.trade_suspended_by_user
    assert check_account(account, "buy", Decimal(700)) == (True, "")
    assert check_account(account, "buy", Decimal("700.01")) == (False, "insufficient_buying_power")
    json.dumps(account.raw)


def test_lookup_by_broker_id_returns_the_stored_response_or_not_found() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW)
    filled = adapter.submit(_order())

    assert adapter.lookup_by_broker_id(filled.broker_order_id) == filled
    assert (filled.broker_status, filled.replaced_by, filled.retry_at) == ("filled", None, None)
    assert adapter.lookup_by_broker_id("paper-0000").status is ResponseStatus.NOT_FOUND


def test_selling_everything_closes_the_position() -> None:
    adapter = PaperAdapter(_prices(AAPL="100"), NOW)
    adapter.submit(_order("a", qty=3))
    adapter.submit(_order("b", side="sell", qty=3))

    assert adapter.positions() == []
    assert adapter.account().cash == Decimal(0)


def test_position_without_a_current_value_is_counted_at_entry() -> None:
    values = {"AAPL": Decimal("50")}
    adapter = PaperAdapter(values.get, NOW, cash=Decimal("1000"))
    adapter.submit(_order(qty=4))
    del values["AAPL"]

    assert adapter.account().equity == Decimal(1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": datetime(2026, 3, 2, 15, 30)}, "timezone-aware"),
        ({"slippage_bps": Decimal("-1")}, "slippage_bps"),
        ({"slippage_bps": Decimal("10000")}, "slippage_bps"),
    ],
)
def test_paper_adapter_refuses_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"price_of": _prices(AAPL="1"), "now": NOW, **kwargs}

    with pytest.raises(ValueError, match=message):
        PaperAdapter(**arguments)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"client_order_id": ""}, "client_order_id"),
        ({"client_order_id": "   "}, "client_order_id"),
        ({"client_order_id": "x" * 49}, "client_order_id"),
        ({"symbol": ""}, "symbol"),
        ({"side": "hold"}, "side"),
        ({"side": "BUY"}, "side"),
        ({"quantity": Decimal(0)}, "greater than 0"),
        ({"quantity": Decimal(-3)}, "greater than 0"),
        ({"quantity": Decimal("1.5")}, "whole"),
        ({"quantity": Decimal("NaN")}, "greater than 0"),
        ({"quantity": Decimal("Infinity")}, "greater than 0"),
        ({"quantity": 2.0}, "Decimal"),
        ({"quantity": True}, "Decimal"),
        ({"quantity": "5"}, "Decimal"),
        ({"order_type": "limit"}, "order_type"),
        ({"time_in_force": "forever"}, "time_in_force"),
    ],
)
def test_order_request_refuses_bad_input(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "client_order_id": "coid-1",
        "symbol": "AAPL",
        "side": "buy",
        "quantity": Decimal(5),
        **changes,
    }

    with pytest.raises(ValueError, match=message):
        OrderRequest(**fields)


def test_order_request_accepts_whole_decimal_with_exponent_and_int() -> None:
    assert OrderRequest("c", "AAPL", "sell", Decimal("5.000")).quantity == Decimal(5)
    assert OrderRequest("c", "AAPL", "sell", 7).quantity == Decimal(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "final", "ambiguous"),
    [
        (ResponseStatus.FILLED, True, False),
        (ResponseStatus.REJECTED, True, False),
        (ResponseStatus.PARTIALLY_FILLED, False, False),
        (ResponseStatus.ACCEPTED, False, False),
        (ResponseStatus.UNKNOWN, False, True),
        (ResponseStatus.NOT_FOUND, False, False),
        (ResponseStatus.REPLACED, False, False),
    ],
)
def test_response_status_properties(status: ResponseStatus, final: bool, ambiguous: bool) -> None:
    replaced_by = "new-id" if status is ResponseStatus.REPLACED else None
    response = ExecutionResponse(
        status, None, Decimal(0), None, None, "", False, {}, replaced_by=replaced_by
    )

    assert (response.is_final, response.is_ambiguous) == (final, ambiguous)
    assert response.is_replaced is (status is ResponseStatus.REPLACED)


def test_replaced_by_goes_with_the_replaced_status_only() -> None:
    with pytest.raises(ValueError, match="replaced_by"):
        ExecutionResponse(ResponseStatus.REPLACED, "a", Decimal(0), None, None, "", False, {})
    with pytest.raises(ValueError, match="replaced_by"):
        ExecutionResponse(
            ResponseStatus.FILLED, "a", Decimal(1), Decimal(1), NOW, "", False, {}, replaced_by="b"
        )


def test_retry_at_must_be_aware() -> None:
    with pytest.raises(ValueError, match="retry_at"):
        ExecutionResponse.rejected(
            "rate_limited", {}, retryable=True, retry_at=datetime(2026, 1, 1)
        )
    response = ExecutionResponse.unknown("rate_limited", {}, retry_at=NOW)
    assert response.retry_at == NOW and not response.retryable


def test_only_a_rejection_can_be_retryable() -> None:
    with pytest.raises(ValueError, match="retryable"):
        ExecutionResponse(ResponseStatus.UNKNOWN, None, Decimal(0), None, None, "x", True, {})
