"""Whether the broker account may take an order: pure.

The broker refuses an order from an account that is not active, that is blocked, or whose
trading its owner suspended, and a buy larger than the buying power (HTTP 403). Checking the
account read just before (``GET /v2/account``, ``execution.adapters.BrokerAccount``) says so
before the order is sent, with a reason of its own rather than the broker's message.

Fail-closed: only the status ``ACTIVE`` may trade. The broker's other statuses
(``ACCOUNT_UPDATED``, ``ONBOARDING``, ``SUBMISSION_FAILED``, ``APPROVAL_PENDING``,
``ACCOUNT_CLOSED``…) all stop orders here, since none of them promises that an order will be
accepted.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, Protocol

ACTIVE = "ACTIVE"
SIDES = frozenset({"buy", "sell"})


class AccountReason(StrEnum):
    """Why the account may not take an order."""

    ACCOUNT_NOT_ACTIVE = "account_not_active"
    ACCOUNT_BLOCKED = "account_blocked"
    TRADING_BLOCKED = "trading_blocked"
    TRADE_SUSPENDED_BY_USER = "trade_suspended_by_user"
    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"


class AccountState(Protocol):
    """What the check reads of an account (``execution.adapters.BrokerAccount`` has it)."""

    status: str
    trading_blocked: bool
    account_blocked: bool
    trade_suspended_by_user: bool
    buying_power: Decimal


class AccountCheck(NamedTuple):
    """``passed``, and the ``AccountReason`` value when it did not ("" when it did)."""

    passed: bool
    reason: str


def check_account(account: AccountState, side: str, notional: Decimal) -> AccountCheck:
    """Whether ``account`` may take an order of ``side`` ("buy" or "sell") worth ``notional``
    dollars (units × value in $/unit, ≥ 0).

    The first failing check is the reason, in this order: the status is not ``ACTIVE``
    (``account_not_active``), ``account_blocked``, ``trading_blocked``,
    ``trade_suspended_by_user``, then, for a buy only, a notional above the buying power
    (``insufficient_buying_power``; a notional equal to it passes). A sell needs no buying
    power: it frees some. Raises ``ValueError`` for an unknown side or a negative notional.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {sorted(SIDES)}, got {side!r}")
    notional = Decimal(notional)
    if not notional.is_finite() or notional < 0:
        raise ValueError(f"notional must be a finite amount >= 0, got {notional}")
    if (account.status or "").upper() != ACTIVE:
        return AccountCheck(False, AccountReason.ACCOUNT_NOT_ACTIVE.value)
    if account.account_blocked:
        return AccountCheck(False, AccountReason.ACCOUNT_BLOCKED.value)
    if account.trading_blocked:
        return AccountCheck(False, AccountReason.TRADING_BLOCKED.value)
    if account.trade_suspended_by_user:
        return AccountCheck(False, AccountReason.TRADE_SUSPENDED_BY_USER.value)
    if side == "buy" and notional > account.buying_power:
        return AccountCheck(False, AccountReason.INSUFFICIENT_BUYING_POWER.value)
    return AccountCheck(True, "")
