"""check_account: pure, table-driven at the boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from execution.account_rules import AccountReason, check_account
from execution.adapters import BrokerAccount


@dataclass(frozen=True)
class Account:
    status: str = "ACTIVE"
    trading_blocked: bool = False
    account_blocked: bool = False
    trade_suspended_by_user: bool = False
    buying_power: Decimal = Decimal("1000.00")


@pytest.mark.parametrize(
    ("account", "side", "notional", "expected"),
    [
        (Account(), "buy", Decimal("999.99"), (True, "")),
        (Account(), "buy", Decimal("1000.00"), (True, "")),
        (Account(), "buy", Decimal("1000.01"), (False, "insufficient_buying_power")),
        (Account(), "buy", Decimal("0"), (True, "")),
        (
            Account(buying_power=Decimal(0)),
            "buy",
            Decimal("0.01"),
            (False, "insufficient_buying_power"),
        ),
        (
            Account(buying_power=Decimal(-5)),
            "buy",
            Decimal("0"),
            (False, "insufficient_buying_power"),
        ),
        # A sell frees buying power: it needs none.
        (Account(buying_power=Decimal(0)), "sell", Decimal("5000"), (True, "")),
        (Account(status="active"), "buy", Decimal("1"), (True, "")),
        (Account(status="ACCOUNT_UPDATED"), "buy", Decimal("1"), (False, "account_not_active")),
        (Account(status="ONBOARDING"), "sell", Decimal("1"), (False, "account_not_active")),
        (Account(status="SUBMISSION_FAILED"), "buy", Decimal("1"), (False, "account_not_active")),
        (Account(status="ACCOUNT_CLOSED"), "sell", Decimal("1"), (False, "account_not_active")),
        (Account(status=""), "buy", Decimal("1"), (False, "account_not_active")),
        (Account(account_blocked=True), "sell", Decimal("1"), (False, "account_blocked")),
        (Account(trading_blocked=True), "sell", Decimal("1"), (False, "trading_blocked")),
        (
            Account(trade_suspended_by_user=True),
            "buy",
            Decimal("1"),
            (False, "trade_suspended_by_user"),
        ),
        # The first failing check is the reason.
        (
            Account(status="ACCOUNT_CLOSED", account_blocked=True, trading_blocked=True),
            "buy",
            Decimal("5000"),
            (False, "account_not_active"),
        ),
        (
            Account(account_blocked=True, trading_blocked=True),
            "buy",
            Decimal("5000"),
            (False, "account_blocked"),
        ),
        (
            Account(trading_blocked=True, trade_suspended_by_user=True),
            "buy",
            Decimal("5000"),
            (False, "trading_blocked"),
        ),
        (
            Account(trade_suspended_by_user=True),
            "buy",
            Decimal("5000"),
            (False, "trade_suspended_by_user"),
        ),
    ],
)
def test_check_account(account: Account, side: str, notional: Decimal, expected) -> None:
    result = check_account(account, side, notional)

    assert result == expected
    passed, reason = result
    assert (result.passed, result.reason) == (passed, reason)
    if not passed:
        assert reason in set(AccountReason)


def test_a_broker_account_with_only_balances_fails_closed() -> None:
    account = BrokerAccount(cash=Decimal(100), equity=Decimal(100))

    assert check_account(account, "sell", Decimal(1)) == (False, "account_not_active")


@pytest.mark.parametrize(
    ("side", "notional"), [("short", Decimal(1)), ("buy", Decimal(-1)), ("buy", Decimal("NaN"))]
)
def test_bad_input_is_refused(side: str, notional: Decimal) -> None:
    with pytest.raises(ValueError):
        check_account(Account(), side, notional)
