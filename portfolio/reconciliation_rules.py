"""Position reconciliation, the rule: the books against the broker's account. Pure.

The books hold units per entity (the open commitments) and cash; the broker reports its open
positions and its account's cash. ``compare_books_with_broker`` lists every difference. Units
are compared exactly (``Decimal``, no tolerance: one unit more or less is a difference); cash
within ``cash_tolerance`` dollars (the broker may keep cents where the books keep four
decimal places). Entities the caller could not judge in this run (an order of theirs still
on its way, a fill booked while the broker was read) are left out, as is the cash when the
caller says so: a pending order makes books and broker differ for a moment without anything
being wrong (docs/operations.md, "Position reconciliation").

Nothing here reads the clock or the database; ``execution.reconciliation`` loads the books and
asks the broker, and records what this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal("0")


class Subject(StrEnum):
    """What a difference is about (the values of ``ReconciliationEvent.subject``)."""

    UNITS = "units"
    CASH = "cash"


@dataclass(frozen=True)
class Difference:
    """One difference: ``books`` and ``broker`` in units (``subject`` units, of ``symbol``)
    or in dollars (``subject`` cash, ``symbol`` blank)."""

    subject: Subject
    symbol: str
    books: Decimal
    broker: Decimal

    @property
    def key(self) -> tuple[str, str]:
        """(subject, symbol): what an open reconciliation event is unique on, per pool."""
        return (str(self.subject), self.symbol)

    @property
    def delta(self) -> Decimal:
        """The broker's value less the books'."""
        return self.broker - self.books


@dataclass(frozen=True)
class ReconciliationComparison:
    """What one comparison found.

    ``differences`` sorted by subject (units first) and symbol; ``agreed`` the (subject,
    symbol) keys compared and found equal; ``skipped`` the symbols left out; ``cash_compared``
    whether the cash was compared.
    """

    differences: tuple[Difference, ...]
    agreed: frozenset[tuple[str, str]]
    skipped: frozenset[str]
    cash_compared: bool

    @property
    def compared(self) -> frozenset[tuple[str, str]]:
        """Every (subject, symbol) key judged in this comparison, equal or not."""
        return self.agreed | {d.key for d in self.differences}


def broker_units(positions: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """Units by symbol from the broker's positions ((symbol, quantity) pairs; a short is
    negative): a symbol listed twice is summed, a zero quantity is no position."""
    units: dict[str, Decimal] = {}
    for symbol, quantity in positions:
        units[symbol] = units.get(symbol, ZERO) + quantity
    return {symbol: quantity for symbol, quantity in units.items() if quantity != 0}


def compare_books_with_broker(
    books_units: Mapping[str, Decimal],
    positions: Iterable[tuple[str, Decimal]],
    *,
    books_cash: Decimal | None = None,
    broker_cash: Decimal | None = None,
    cash_tolerance: Decimal = ZERO,
    skip_symbols: Iterable[str] = (),
) -> ReconciliationComparison:
    """The differences between the books and the broker.

    ``books_units`` maps each entity to the units the books hold (zero: none); ``positions``
    are the broker's (symbol, quantity) pairs. Every symbol either side holds is compared,
    except ``skip_symbols``: units must be equal exactly. The cash is compared only when both
    ``books_cash`` and ``broker_cash`` are given (dollars); it differs when the absolute
    difference is above ``cash_tolerance`` (dollars, ≥ 0; equal to the tolerance agrees).
    """
    if cash_tolerance < 0:
        raise ValueError("cash_tolerance must be at least 0")
    skipped = frozenset(skip_symbols)
    at_broker = broker_units(positions)
    books = {symbol: units for symbol, units in books_units.items() if units != 0}
    differences: list[Difference] = []
    agreed: set[tuple[str, str]] = set()
    for symbol in sorted((books.keys() | at_broker.keys()) - skipped):
        ours, theirs = books.get(symbol, ZERO), at_broker.get(symbol, ZERO)
        if ours == theirs:
            agreed.add((str(Subject.UNITS), symbol))
        else:
            differences.append(Difference(Subject.UNITS, symbol, ours, theirs))
    cash_compared = books_cash is not None and broker_cash is not None
    if cash_compared:
        if abs(broker_cash - books_cash) > cash_tolerance:
            differences.append(Difference(Subject.CASH, "", books_cash, broker_cash))
        else:
            agreed.add((str(Subject.CASH), ""))
    return ReconciliationComparison(
        differences=tuple(differences),
        agreed=frozenset(agreed),
        skipped=skipped & (books.keys() | at_broker.keys()),
        cash_compared=cash_compared,
    )


def is_known_difference(difference: Difference, acknowledged_delta: Decimal | None) -> bool:
    """Whether ``difference`` is one an operator already acknowledged: the broker's value less
    the books' equal to that of the subject's last acknowledged event (units outside the
    pool's books an operator accepted keep the same delta whatever the pool trades)."""
    return acknowledged_delta is not None and difference.delta == acknowledged_delta
