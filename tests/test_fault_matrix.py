"""The fault matrix (docs/operations.md, "Fault matrix"), row by row, against the real parts.

The table is read from the document itself: each row names a fault, what the worker sees, the
statuses the order passes through, its final state, the POSTs sent for it, the orders the
broker holds for it and the units booked. Each row has a case here that runs the real path: an
order queued by a decision cycle for a pool on the HTTP adapter, the fault injected at the test
broker (tests/broker_server.py, a real HTTP server on 127.0.0.1), the worker, then the
recovery a desk runs (reconciliation by lookup, the lease settler, the worker again for an
order back in ``queued``, the order status sync) until the order is final. A row without a
case, or a case without a row, fails.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.db.models import Sum

from decisions.engine import run_decision_cycle
from execution.adapters import OrderRequest
from execution.keys import client_order_id_for
from execution.models import Order, OrderStatus, RiskEvaluation
from execution.sync import sync_order_status
from execution.worker import (
    STALE_SUBMITTING,
    ProcessResult,
    build_adapter,
    process_order,
    reconcile_order,
    settle_expired_leases,
)
from portfolio.models import Commitment, Pool
from tests import factories
from tests.broker_server import FakeBroker, FillPolicy

SYMBOL = "FAULT"
PRICE = "101.25"
ORDERS = "/v2/orders"
DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
SECTION = "## Fault matrix"
COLUMNS = (
    "fault",
    "what the worker sees",
    "how it ends",
    "order's final state",
    "POSTs sent for it",
    "orders the broker holds for it",
    "units booked",
)
#: Statuses an order never leaves.
FINAL = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.REJECTED,
        OrderStatus.RISK_REJECTED,
        OrderStatus.CANCELLED,
    }
)
#: Recovery steps at most, and wall-clock seconds at most, before an order must be final.
MAX_STEPS = 60
MAX_RUN_S = 20.0
#: The longest the desk waits for a late request to land, in seconds.
MAX_WAIT_S = 10.0
#: How long an order left ``queued`` waits for its next hand-out, in seconds.
HAND_OUT_AGAIN_S = 0.2
#: The reset of the injected 429, in seconds.
RATE_LIMIT_RESET_S = 1


# --- the table ------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def fault_table() -> dict[str, dict[str, str]]:
    """The rows of the first table of the "Fault matrix" section, by fault name (the first
    cell up to its parenthesis), each a dict of column → cell."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION) + 1
    body = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            body.append(line)
        elif body:
            break
    assert len(body) > 2, f"no table under {SECTION!r} in {DOC.name}"
    header = tuple(_cells(body[0]))
    assert header == COLUMNS, header
    rows: dict[str, dict[str, str]] = {}
    for line in body[2:]:
        row = dict(zip(header, _cells(line), strict=True))
        name = fault_name(row["fault"])
        assert name not in rows, f"two rows for {name!r}"
        rows[name] = row
    return rows


def fault_name(cell: str) -> str:
    return cell.split(" (", 1)[0].strip()


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _status_and_detail(cell: str) -> tuple[str, str | None]:
    """``\\`status\\` (\\`detail\\`)`` → (status, detail); the detail is optional."""
    match = re.match(r"^`(\w+)`(?: \(`([^`]+)`\))?", cell)
    assert match, f"cannot read a status from {cell!r}"
    assert match.group(1) in OrderStatus.values, f"{match.group(1)!r} is no order status"
    return match.group(1), match.group(2)


def _broker_orders(cell: str) -> tuple[int, int]:
    """``1`` or ``1 + 1 replacement`` → (orders under the client order id, replacements)."""
    match = re.fullmatch(r"(\d+)(?: \+ (\d+) replacements?)?", cell)
    assert match, f"cannot read a count of orders from {cell!r}"
    return int(match.group(1)), int(match.group(2) or 0)


def _units(cell: str, order: Order) -> Decimal:
    if cell == "all":
        return order.quantity
    if cell == "none":
        return Decimal(0)
    assert re.fullmatch(r"\d+", cell), f"cannot read units from {cell!r}"
    return Decimal(cell)


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Run:
    """One row's run: the order, its client order id and the broker."""

    broker: object
    order: Order
    client_order_id: str
    now: datetime
    case: str
    first: ProcessResult | None = None
    path: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def _inject(kind: str, **options) -> Callable[[Run], None]:
    def arrange(run: Run) -> None:
        run.broker.inject(kind, method="POST", path=ORDERS, **options)

    return arrange


def _account(**fields) -> Callable[[Run], None]:
    def arrange(run: Run) -> None:
        run.broker.set_account(**fields)

    return arrange


def _account_unreadable(run: Run) -> None:
    run.broker.inject("respond", status=503, method="GET", path="/v2/account")


def _landed_earlier(run: Run) -> None:
    """An earlier send of the same order reached the broker (its answer never came back)."""
    order = run.order
    adapter = build_adapter(order.pool, run.now)
    answer = adapter.submit(
        OrderRequest(
            client_order_id=run.client_order_id,
            symbol=order.entity_id,
            side=order.side,
            quantity=order.quantity,
        )
    )
    assert answer.status == "filled", answer


def _partial(run: Run) -> None:
    run.broker.set_fill_policy(
        FillPolicy(mode="partial", step=2), client_order_id=run.client_order_id
    )


def _booked(order: Order) -> Decimal:
    """Units of the pool's commitment in the order's entity."""
    units = Commitment.objects.filter(pool=order.pool, entity_id=order.entity_id).aggregate(
        units=Sum("units")
    )["units"]
    return units or Decimal(0)


def _cancel_the_rest(run: Run) -> None:
    """The part filled so far is in the books already; then the broker cancels the rest."""
    assert _booked(run.order) == 2, "a partial fill is booked as it arrives"
    run.broker.end_order(run.client_order_id, "canceled")


def _left_working(run: Run) -> None:
    run.broker.set_fill_policy(FillPolicy(mode="open"), client_order_id=run.client_order_id)


def _replace_and_fill(run: Run) -> None:
    """The broker's own desk replaces the working order (``PATCH``), and the replacement fills."""
    broker = run.broker
    held = broker.orders[run.client_order_id]
    answer = requests.patch(
        f"{broker.url}{ORDERS}/{held['id']}",
        json={"time_in_force": "gtc"},
        headers={"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": broker.secret_key},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    broker.advance(answer.json()["client_order_id"])


def _sent_after_reset(run: Run) -> None:
    """The second send leaves no sooner than the first answer's ``X-Ratelimit-Reset``."""
    first, second = [
        e
        for e in run.broker.exchanges
        if e.method == "POST" and e.client_order_id == run.client_order_id
    ]
    # The broker's reset is ceil(time of its answer + RATE_LIMIT_RESET_S): never before this.
    reset = datetime.fromtimestamp(
        math.ceil(first.received_at.timestamp() + RATE_LIMIT_RESET_S), UTC
    )
    assert second.received_at >= reset, (first, second, reset)


@dataclass(frozen=True)
class Case:
    arrange: Callable[[Run], None] | None = None
    #: What happens at the broker once the worker has its answer.
    then: Callable[[Run], None] | None = None
    #: The request lands at the broker after the client gave up: the desk's staleness window
    #: (minutes) is far longer than that, so it has landed before the window ends.
    lands_late: bool = False
    #: What the row says beyond the table's columns, checked once the order is final.
    check: Callable[[Run], None] | None = None


CASES: dict[str, Case] = {
    "timeout before accepting": Case(_inject("stall", seconds=2)),
    "timeout after accepting": Case(_inject("accept_then_delay", seconds=2)),
    "slow answer, landing after the timeout": Case(_inject("delay", seconds=2), lands_late=True),
    "connection reset before accepting": Case(_inject("reset")),
    "connection reset after accepting": Case(_inject("accept_then_reset")),
    "5xx before accepting": Case(_inject("respond", status=503)),
    "5xx after accepting": Case(_inject("accept_then_fail", status=503)),
    "unreadable JSON before accepting": Case(_inject("garbage")),
    "unreadable JSON after accepting": Case(_inject("accept_then_garbage")),
    "429": Case(_inject("rate_limited", seconds=RATE_LIMIT_RESET_S), check=_sent_after_reset),
    "403 insufficient buying power": Case(_inject("insufficient_buying_power")),
    "422 duplicate id, the broker holds the order": Case(_landed_earlier),
    "422 duplicate id the broker cannot find": Case(_inject("duplicate")),
    "account blocked": Case(_account(account_blocked=True)),
    "account not active": Case(_account(status="ACCOUNT_UPDATED")),
    "buying power below the order": Case(_account(buying_power="100")),
    "account read fails": Case(_account_unreadable),
    "partial fill, then the rest canceled": Case(_partial, then=_cancel_the_rest),
    "replaced at the broker": Case(_left_working, then=_replace_and_fill),
}


# --- the desk -------------------------------------------------------------------------------


def _status(order_id: int) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order_id)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + MAX_WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def _step(run: Run) -> None:
    """One recovery step for the order as it stands, as the desk's runs would take it."""
    order = Order.objects.get(pk=run.order.pk)
    status = order.status
    if status == OrderStatus.QUEUED:
        # Handed out again (the settler's or the sweeper's task, or a task due at a retry
        # time): the worker decides whether it may go now.
        result = process_order(order.pk, run.now)
        run.steps.append(f"worker: {result.status} ({result.detail})")
        if _status(order.pk) == OrderStatus.QUEUED:
            time.sleep(HAND_OUT_AGAIN_S)
    elif status == OrderStatus.SUBMITTING and order.lease_expires_at is not None:
        expired = max(order.lease_expires_at, datetime.now(UTC)) + timedelta(seconds=1)
        results = settle_expired_leases(expired, order_ids=[order.pk])
        run.steps.append(f"settler: {results}")
    elif status in (OrderStatus.UNKNOWN, OrderStatus.SUBMITTING):
        result = reconcile_order(order.pk, run.now)
        run.steps.append(f"reconcile: {result.status} ({result.detail})")
        if result.status == status:
            # Nothing to conclude yet: the desk's next runs come after the staleness window,
            # by which time a request still on its way has landed.
            if CASES[run.case].lands_late:
                _wait_until(lambda: run.client_order_id in run.broker.orders, "the late request")
            run.now += STALE_SUBMITTING + timedelta(seconds=1)
    else:  # accepted, partially_filled: the broker is still working it
        result = sync_order_status(order.pk, run.now)
        run.steps.append(f"sync: {result.status} ({result.detail})")
        run.now += timedelta(minutes=1)
    current = _status(order.pk)
    if current != run.path[-1]:
        run.path.append(current)


def run_row(run: Run, case: Case) -> None:
    """Inject, run the worker, let the broker move on, then recover until final."""
    if case.arrange is not None:
        case.arrange(run)
    run.first = process_order(run.order.pk, run.now)
    run.path.append(_status(run.order.pk))
    if case.then is not None:
        case.then(run)
    deadline = time.monotonic() + MAX_RUN_S
    for _ in range(MAX_STEPS):
        if run.path[-1] in FINAL:
            return
        if time.monotonic() > deadline:
            break
        _step(run)
    raise AssertionError(f"not final: path {run.path}; steps {run.steps}")


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={SYMBOL: PRICE}, rate_limit=None) as server:
        yield server.configure(settings, timeout=1)


@pytest.fixture
def queued_order(db, session_now, broker) -> Order:
    """One entry order queued by a decision cycle, for a pool on the HTTP adapter."""
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    factories.add_bars(SYMBOL, session_now)
    factories.make_recommendation(SYMBOL, session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    (order,) = Order.objects.filter(pool=pool)
    assert order.status == OrderStatus.QUEUED and order.quantity > 2
    return order


def test_every_row_has_a_case_and_every_case_a_row():
    rows = fault_table()

    assert sorted(set(rows) - set(CASES)) == [], "rows of the table without a test case"
    assert sorted(set(CASES) - set(rows)) == [], "test cases without a row in the table"


def _posts(broker, client_order_id: str) -> int:
    return sum(
        1
        for r in broker.received
        if r.method == "POST"
        and r.path == ORDERS
        and isinstance(r.body, dict)
        and r.body.get("client_order_id") == client_order_id
    )


def _replacements(broker, client_order_id: str) -> int:
    """Orders at the broker that replace the order held under ``client_order_id`` (and their
    own replacements)."""
    orders = broker.orders
    held = orders.get(client_order_id)
    count = 0
    while held is not None and held.get("replaced_by"):
        held = next((o for o in orders.values() if o["id"] == held["replaced_by"]), None)
        count += held is not None
    return count


@pytest.mark.parametrize("name", list(CASES))
def test_fault_matrix_row(name, queued_order, broker, session_now):
    rows = fault_table()
    assert name in rows, f"no row {name!r} in the fault matrix of {DOC.name}"
    row = rows[name]
    client_order_id = client_order_id_for(queued_order.idempotency_key)
    run = Run(broker, queued_order, client_order_id, session_now, name)

    run_row(run, CASES[name])

    trail = f"path {run.path}; steps {run.steps}; first {run.first}"
    order = Order.objects.get(pk=queued_order.pk)
    # What the worker sees.
    sees, detail = _status_and_detail(row["what the worker sees"])
    assert run.first.status == sees, trail
    if detail is not None:
        assert detail in run.first.detail, trail
    if sees == OrderStatus.RISK_REJECTED:
        evaluation = RiskEvaluation.objects.get(order=order)
        assert not evaluation.passed and detail in evaluation.reasons, evaluation.reasons
    # The statuses between the worker's answer and the final state.
    between = [s for s in _spans(row["how it ends"]) if s in OrderStatus.values]
    assert run.path[1:-1] == between, trail
    # The final state.
    final, reason = _status_and_detail(row["order's final state"])
    assert order.status == final, trail
    if reason is not None:
        assert reason in order.status_reason, (order.status_reason, trail)
    # What reached the broker.
    assert _posts(broker, client_order_id) == int(row["POSTs sent for it"]), trail
    held, replaced = _broker_orders(row["orders the broker holds for it"])
    assert broker.executions(client_order_id) == held, trail
    assert (client_order_id in broker.orders) == bool(held), trail
    assert _replacements(broker, client_order_id) == replaced, trail
    # The books, and the broker's position: the same units.
    units = _units(row["units booked"], order)
    assert _booked(order) == units, trail
    assert order.filled_quantity == units, trail
    assert broker.positions.get(SYMBOL, Decimal(0)) == units, trail
    # What the row says beyond its columns.
    if CASES[name].check is not None:
        CASES[name].check(run)
