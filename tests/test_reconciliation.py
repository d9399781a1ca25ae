"""Position reconciliation: the broker's positions and cash against the books.

The rule (``portfolio.reconciliation_rules``) is tested table-driven without a database; the
run (``execution.reconciliation``) against the fake broker over real HTTP on 127.0.0.1, with
the books built by ``portfolio.books.book_fill`` as the worker builds them; the hold through
the real decision cycle, the execution gate, the audited acknowledgement, the command, the
task and the admin.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from decisions.rules import Candidate, CheckConfig, PoolView, evaluate_act, evaluate_defer
from decisions.sizing import SizingConfig
from decisions.tasks import reconcile_positions_all
from decisions.vocabulary import SkipReason
from execution.adapters import AlpacaHttpAdapter, BrokerUnavailable
from execution.models import Order
from execution.reconciliation import reconcile_positions
from execution.risk import GateReason
from execution.selectors import pool_as_of
from execution.worker import process_order
from portfolio.actions import acknowledge_reconciliation
from portfolio.books import book_fill
from portfolio.errors import ActionError
from portfolio.models import OperatorAction, Pool, ReconciliationEvent
from portfolio.reconciliation_rules import (
    Difference,
    Subject,
    compare_books_with_broker,
    is_known_difference,
)
from portfolio.selectors import account_as_of
from tests import factories
from tests.broker_server import FakeBroker
from tests.test_sizing import MODERATE

D = Decimal
HELD = "RCNA"
OTHER = "RCNB"
PRICE = "100"
#: What the books paid for HELD: below its bars, so the commitment is not declining.
PAID = "90"

# --- the rule ---------------------------------------------------------------------------------


def units(symbol: str, books: str, broker: str) -> Difference:
    return Difference(Subject.UNITS, symbol, D(books), D(broker))


@pytest.mark.parametrize(
    ("books", "positions", "differences"),
    [
        pytest.param({"A": D("10")}, [("A", D("10"))], [], id="equal"),
        pytest.param({"A": D("10")}, [("A", D("10.000"))], [], id="equal-other-exponent"),
        pytest.param({"A": D("10")}, [("A", D("11"))], [units("A", "10", "11")], id="broker-more"),
        pytest.param({"A": D("10")}, [("A", D("9"))], [units("A", "10", "9")], id="broker-less"),
        pytest.param(
            {"A": D("10")},
            [("A", D("10.000000001"))],
            [units("A", "10", "10.000000001")],
            id="no-tolerance-for-units",
        ),
        pytest.param({"A": D("10")}, [], [units("A", "10", "0")], id="broker-has-none"),
        pytest.param({}, [("Z", D("5"))], [units("Z", "0", "5")], id="broker-only"),
        pytest.param({}, [("Z", D("-5"))], [units("Z", "0", "-5")], id="broker-short"),
        pytest.param({"A": D("0")}, [("A", D("0"))], [], id="zeros-are-no-position"),
        pytest.param({"A": D("10")}, [("A", D("4")), ("A", D("6"))], [], id="listed-twice-summed"),
        pytest.param(
            {"B": D("1"), "A": D("1")},
            [("A", D("2")), ("B", D("2"))],
            [units("A", "1", "2"), units("B", "1", "2")],
            id="sorted-by-symbol",
        ),
    ],
)
def test_units_are_compared_exactly(books, positions, differences):
    result = compare_books_with_broker(books, positions)

    assert list(result.differences) == differences
    assert result.cash_compared is False
    judged = {s for s, q in books.items() if q} | {s for s, q in positions if q}
    assert {symbol for _, symbol in result.compared} == judged


@pytest.mark.parametrize(
    ("books_cash", "broker_cash", "differs"),
    [
        pytest.param("1000.00", "1000.00", False, id="equal"),
        pytest.param("1000.00", "1000.01", False, id="equal-to-the-tolerance"),
        pytest.param("1000.00", "999.99", False, id="equal-to-the-tolerance-below"),
        pytest.param("1000.00", "1000.0101", True, id="just-above-the-tolerance"),
        pytest.param("1000.00", "990", True, id="ten-dollars-short"),
    ],
)
def test_cash_is_compared_within_its_tolerance(books_cash, broker_cash, differs):
    result = compare_books_with_broker(
        {},
        [],
        books_cash=D(books_cash),
        broker_cash=D(broker_cash),
        cash_tolerance=D("0.01"),
    )

    assert result.cash_compared is True
    expected = [Difference(Subject.CASH, "", D(books_cash), D(broker_cash))] if differs else []
    assert list(result.differences) == expected
    assert (("cash", "") in result.agreed) is (not differs)


def test_cash_without_both_sides_is_not_compared():
    result = compare_books_with_broker({}, [], books_cash=D("1"), broker_cash=None)

    assert result.cash_compared is False and result.differences == ()


def test_a_negative_cash_tolerance_is_refused():
    with pytest.raises(ValueError, match="cash_tolerance"):
        compare_books_with_broker({}, [], cash_tolerance=D("-0.01"))


def test_skipped_symbols_are_not_compared_and_are_reported_when_held():
    result = compare_books_with_broker(
        {"A": D("10"), "B": D("1")},
        [("A", D("12")), ("B", D("2"))],
        skip_symbols={"A", "NOT-HELD"},
    )

    assert result.differences == (units("B", "1", "2"),)
    assert result.skipped == frozenset({"A"})


@pytest.mark.parametrize(
    ("difference", "acknowledged", "known"),
    [
        pytest.param(units("A", "10", "12"), None, False, id="never-acknowledged"),
        pytest.param(units("A", "10", "12"), D("2"), True, id="same-delta"),
        pytest.param(units("A", "20", "22"), D("2"), True, id="same-delta-books-moved"),
        pytest.param(units("A", "10", "13"), D("2"), False, id="delta-grew"),
        pytest.param(units("A", "10", "8"), D("2"), False, id="delta-reversed"),
    ],
)
def test_a_difference_is_known_when_its_delta_was_acknowledged(difference, acknowledged, known):
    assert is_known_difference(difference, acknowledged) is known


# --- the engine's check -----------------------------------------------------------------------

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def view(**overrides) -> PoolView:
    values = {
        "tier": MODERATE,
        "total_value": D("100000"),
        "reserve_balance": D("0"),
        "cash": D("100000"),
        "halted": False,
        "active_breakers": (),
        "breaker_until": None,
        "entity_cooldowns": {},
        "in_execution_window": True,
        "active_commitments": 0,
        "declining_commitments": 0,
        "sector_values": {},
        "pool_exposure": D("0"),
    }
    return PoolView(**{**values, **overrides})


def candidate(action: str = "act", **overrides) -> Candidate:
    values = {
        "recommendation_id": "rec-1",
        "symbol": "AAPL",
        "sector": "tech",
        "action": action,
        "confidence": D("0.70"),
        "current_value": D("10"),
        "atr": D("0.5"),
        "open_units": D("5"),
    }
    return Candidate(**{**values, **overrides})


def act(pool: PoolView, **overrides):
    sizing = SizingConfig(absolute_commitment_cap=D("1000000"))
    return evaluate_act(candidate(**overrides), pool, CheckConfig(), sizing, NOW)


@pytest.mark.parametrize(
    ("pool", "reason", "checks_run"),
    [
        pytest.param(view(), "", 7, id="not-held-acts"),
        pytest.param(view(reduce_only=frozenset({"MSFT"})), "", 7, id="another-entity-held"),
        pytest.param(
            view(reduce_only=frozenset({"AAPL"})), "reconciliation_hold", 2, id="held-skips"
        ),
        pytest.param(
            view(reduce_only=frozenset({"AAPL"}), halted=True),
            "pool_halted",
            1,
            id="halt-comes-first",
        ),
        pytest.param(
            view(reduce_only=frozenset({"AAPL"}), entity_cooldowns={"AAPL": NOW + timedelta(1)}),
            "entity_cooldown_active",
            1,
            id="cooldown-comes-first",
        ),
        pytest.param(
            view(reduce_only=frozenset({"AAPL"}), in_execution_window=False),
            "reconciliation_hold",
            2,
            id="hold-before-the-window",
        ),
    ],
)
def test_held_entity_is_skipped_right_after_the_circuit_breaker_check(pool, reason, checks_run):
    evaluation = act(pool)

    assert evaluation.skip_reason == reason
    assert len(evaluation.checks) == checks_run
    if checks_run >= 2:
        hold = evaluation.checks[1]
        assert hold.name == "reconciliation"
        assert hold.passed is (reason != "reconciliation_hold")
    if reason == "reconciliation_hold":
        assert evaluation.skip_reason is SkipReason.RECONCILIATION_HOLD
        assert evaluation.processed is False  # a candidate again once acknowledged


def test_an_exit_of_a_held_entity_is_not_blocked():
    evaluation = evaluate_defer(candidate("defer"), view(reduce_only=frozenset({"AAPL"})))

    assert evaluation.outcome == "defer" and evaluation.exit_units == D("5")


def test_the_gate_and_the_engine_name_the_hold_alike():
    assert GateReason.RECONCILIATION_HOLD.value == SkipReason.RECONCILIATION_HOLD.value


# --- the run against the fake broker ----------------------------------------------------------


def book(pool: Pool, symbol: str, quantity: str, value: str = PAID, *, side: str = "buy"):
    """A fill booked into the pool's books as the worker books the broker's answer."""
    with transaction.atomic():
        locked = Pool.objects.select_for_update().get(pk=pool.pk)
        book_fill(
            locked,
            entity_id=symbol,
            side=side,
            units=D(quantity),
            value=D(value),
            filled_at=NOW,
            now=NOW,
        )


@pytest.fixture
def broker(settings):
    """The execution API's account: 10 RCNA bought at 90 out of 100,000."""
    with FakeBroker(prices={HELD: PRICE, OTHER: "50"}, cash="99100") as server:
        server.set_position(HELD, "10", PAID)
        yield server.configure(settings, timeout=2)


@pytest.fixture
def http_pool(db, session_now, broker) -> Pool:
    """The only pool on the execution API, its books matching the broker's account."""
    pool = factories.make_pool(now=session_now, name="recon")
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    factories.add_bars(HELD, session_now)
    factories.add_bars(OTHER, session_now, sector="Energy", start=50)
    book(pool, HELD, "10")
    return Pool.objects.get(pk=pool.pk)


def events(pool: Pool):
    return ReconciliationEvent.objects.filter(pool=pool).order_by("id")


def test_books_that_match_the_broker_record_nothing(http_pool, broker, session_now):
    result = reconcile_positions(http_pool, session_now)

    assert result.compared and result.differences == ()
    assert result.detail == "books and broker agree"
    assert result.cash_compared and result.cash_detail == "compared"
    assert not events(http_pool).exists()
    assert broker.count("GET", "/v2/positions") == 1 and broker.count("GET", "/v2/account") == 1
    assert broker.count("POST") == 0


def test_a_unit_difference_opens_one_event_and_holds_the_entity(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)

    result = reconcile_positions(http_pool, session_now)

    (event,) = events(http_pool)
    assert (event.subject, event.symbol, event.status) == ("units", HELD, "open")
    assert (event.books_value, event.broker_value, event.difference) == (D(10), D(12), D(2))
    assert (event.first_seen_at, event.last_seen_at, event.seen_count) == (
        session_now,
        session_now,
        1,
    )
    assert result.opened == (event.pk,) and result.differences == (units(HELD, "10", "12"),)
    assert pool_as_of(http_pool, session_now).reduce_only == frozenset({HELD})
    assert account_as_of(http_pool, session_now).reduce_only == frozenset({HELD})
    # Nothing sent, nothing booked: the books still say 10.
    assert broker.count("POST") == 0
    assert http_pool.commitments.get(entity_id=HELD).units == D(10)


def test_a_repeated_difference_updates_the_open_event(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    later = session_now + timedelta(minutes=15)
    broker.set_position(HELD, "13", PRICE)

    result = reconcile_positions(http_pool, later)

    (event,) = events(http_pool)
    assert result.opened == () and result.seen_again == (event.pk,)
    assert (event.seen_count, event.first_seen_at, event.last_seen_at) == (2, session_now, later)
    assert event.broker_value == D(13)  # the values as last seen


def test_a_difference_that_disappears_leaves_the_event_open(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    broker.set_position(HELD, "10", PRICE)
    later = session_now + timedelta(minutes=15)

    result = reconcile_positions(http_pool, later)

    (event,) = events(http_pool)
    assert result.differences == () and result.agreed == (event.pk,)
    assert event.status == "open" and event.agreed_at == later and event.seen_count == 1
    assert pool_as_of(http_pool, later).reduce_only == frozenset({HELD})
    # It comes back: the event is seen again and no longer counts as agreed.
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, later + timedelta(minutes=15))
    event.refresh_from_db()
    assert event.agreed_at is None and event.seen_count == 2


def test_a_position_unknown_to_the_books_holds_that_symbol(http_pool, broker, session_now):
    broker.set_position("NOTBOOKED", "3", "7")

    reconcile_positions(http_pool, session_now)

    (event,) = events(http_pool)
    assert (event.symbol, event.books_value, event.broker_value) == ("NOTBOOKED", 0, 3)
    assert pool_as_of(http_pool, session_now).reduce_only == frozenset({"NOTBOOKED"})


def test_acknowledging_lifts_the_hold_and_is_audited(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    event = events(http_pool).get()
    later = session_now + timedelta(minutes=5)

    result = acknowledge_reconciliation(
        event, actor="ops", reason="manual buy at the broker", now=later, via="command"
    )

    event.refresh_from_db()
    assert (event.status, event.acknowledged_by, event.acknowledged_at) == (
        "acknowledged",
        "ops",
        later,
    )
    assert event.acknowledge_reason == "manual buy at the broker"
    row = OperatorAction.objects.get(action="acknowledge_reconciliation")
    assert result.record == row and (row.pool, row.actor, row.via) == (http_pool, "ops", "command")
    assert row.before["status"] == "open" and row.before["broker"] == "12"
    assert row.after == {"event": event.pk, "status": "acknowledged"}
    assert pool_as_of(http_pool, later).reduce_only == frozenset()
    # The same difference again is the one acknowledged: no new event, no new hold.
    again = reconcile_positions(http_pool, later + timedelta(minutes=15))
    assert again.known == (units(HELD, "10", "12"),) and again.opened == ()
    assert events(http_pool).count() == 1
    # A different one opens a new event.
    broker.set_position(HELD, "15", PRICE)
    third = reconcile_positions(http_pool, later + timedelta(minutes=30))
    assert len(third.opened) == 1 and events(http_pool).filter(status="open").count() == 1


def test_acknowledging_twice_is_refused_and_writes_nothing(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    event = events(http_pool).get()
    acknowledge_reconciliation(event, actor="ops", reason="checked", now=session_now)

    with pytest.raises(ActionError) as refused:
        acknowledge_reconciliation(event, actor="other", reason="again", now=session_now)

    assert "already acknowledged by ops" in refused.value.errors["event"]
    assert OperatorAction.objects.filter(action="acknowledge_reconciliation").count() == 1
    event.refresh_from_db()
    assert event.acknowledged_by == "ops"


@pytest.mark.parametrize(("actor", "reason", "field"), [("", "r", "actor"), ("ops", " ", "reason")])
def test_acknowledging_needs_who_and_why(http_pool, broker, session_now, actor, reason, field):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    event = events(http_pool).get()

    with pytest.raises(ActionError) as refused:
        acknowledge_reconciliation(event, actor=actor, reason=reason, now=session_now)

    assert field in refused.value.errors
    assert events(http_pool).get().status == "open"


def test_at_most_one_open_event_per_subject_in_the_database(http_pool, session_now):
    values = {"pool": http_pool, "subject": "units", "symbol": HELD, "books_value": 1}
    values |= {"broker_value": 2, "first_seen_at": session_now, "last_seen_at": session_now}
    ReconciliationEvent.objects.create(**values)

    with pytest.raises(IntegrityError), transaction.atomic():
        ReconciliationEvent.objects.create(**values)


def test_an_unavailable_broker_records_nothing(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    broker.inject("respond", status=503, method="GET", path="/v2/positions")

    with pytest.raises(BrokerUnavailable):
        reconcile_positions(http_pool, session_now)

    assert not events(http_pool).exists()


def test_an_unavailable_account_records_nothing(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    broker.inject("respond", status=500, method="GET", path="/v2/account")

    with pytest.raises(BrokerUnavailable):
        reconcile_positions(http_pool, session_now)

    assert not events(http_pool).exists()


def test_an_entity_with_an_order_on_its_way_is_skipped(http_pool, broker, session_now):
    broker.set_position(HELD, "12", PRICE)
    factories.make_recommendation(HELD, session_now)
    run_decision_cycle(http_pool.pk, session_now, dispatch=False)
    assert Order.objects.filter(pool=http_pool, status="queued", entity_id=HELD).exists()

    result = reconcile_positions(http_pool, session_now)

    assert result.skipped == (HELD,) and result.differences == ()
    assert not result.cash_compared
    assert result.cash_detail == "not compared: an order of the pool is not final yet"
    assert not events(http_pool).exists()


def test_a_cash_difference_opens_a_cash_event_that_holds_no_entity(http_pool, broker, session_now):
    book(http_pool, OTHER, "2", "50", side="buy")  # the broker never saw this one
    broker.set_position(OTHER, "2", "50")

    result = reconcile_positions(http_pool, session_now)

    (event,) = events(http_pool)
    assert (event.subject, event.symbol) == ("cash", "")
    assert (event.books_value, event.broker_value) == (D("99000"), D("99100"))
    assert result.cash_compared
    assert pool_as_of(http_pool, session_now).reduce_only == frozenset()


def test_pools_sharing_the_account_are_compared_together_without_cash(
    http_pool, broker, session_now
):
    second = factories.make_pool(now=session_now, name="recon-2")
    Pool.objects.filter(pk=second.pk).update(adapter="http")
    book(second, HELD, "5")
    broker.set_position(HELD, "15", PRICE)  # 10 of the first pool + 5 of the second

    first = reconcile_positions(http_pool, session_now)
    other = reconcile_positions(Pool.objects.get(pk=second.pk), session_now)

    assert first.differences == () and other.differences == ()
    assert not first.cash_compared
    assert first.cash_detail == "not compared: other pools share the broker account"
    broker.set_position(HELD, "14", PRICE)
    reconcile_positions(http_pool, session_now)
    (event,) = events(http_pool)
    assert (event.books_value, event.broker_value) == (D(15), D(14))


def test_a_paper_pool_is_not_reconciled(db, session_now, broker):
    pool = factories.make_pool(now=session_now)

    result = reconcile_positions(pool, session_now)

    assert not result.compared and "paper broker" in result.detail
    assert broker.count() == 0


def test_an_adapter_given_explicitly_is_compared_with_this_pool_alone(db, session_now, broker):
    pool = factories.make_pool(now=session_now)
    factories.add_bars(HELD, session_now)
    book(pool, HELD, "7")
    adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key)

    result = reconcile_positions(pool, session_now, adapter)

    assert result.differences == (units(HELD, "7", "10"),) and not result.cash_compared


def test_the_run_asks_the_broker_and_reads_the_books_in_a_fixed_number_of_queries(
    http_pool, broker, session_now, settings
):
    # The client-side rate limit counts its requests in the cache: in memory here, so its
    # round trips (Redis in production) are not counted as the run's queries.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    for n in range(4):
        broker.set_position(f"EXTRA{n}", "1", "1")

    with CaptureQueriesContext(connection) as first:
        reconcile_positions(http_pool, session_now)
    with CaptureQueriesContext(connection) as second:
        reconcile_positions(http_pool, session_now + timedelta(minutes=15))

    assert events(http_pool).count() == 4
    transaction_statements = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")

    def data(captured) -> int:
        return sum(
            1 for q in captured.captured_queries if not q["sql"].startswith(transaction_statements)
        )

    # Books twice (units, orders, cash, plus the account's pools), the lock, the open
    # events, the acknowledged ones and the insert; then the update instead of the insert.
    assert data(first) == 11
    assert data(second) == 10


def test_the_read_model_reads_the_holds_in_one_query(http_pool, session_now):
    with CaptureQueriesContext(connection) as captured:
        account_as_of(http_pool, session_now)

    assert len(captured.captured_queries) == 5


# --- the hold, end to end ---------------------------------------------------------------------


def test_the_engine_skips_entries_in_a_held_entity_until_acknowledged(
    http_pool, broker, session_now
):
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    rec = factories.make_recommendation(HELD, session_now)

    run_decision_cycle(http_pool.pk, session_now, dispatch=False)

    decision = DecisionRecord.objects.get(recommendation=rec)
    assert (decision.outcome, decision.skip_reason, decision.processed) == (
        "skip",
        "reconciliation_hold",
        False,
    )
    hold = next(c for c in decision.decision_trace["checks"] if c["check"] == "reconciliation")
    assert hold["passed"] is False and hold["observed"] == HELD
    assert not Order.objects.filter(pool=http_pool).exists()

    acknowledge_reconciliation(
        events(http_pool).get(), actor="ops", reason="booked by hand", now=session_now
    )
    run_decision_cycle(http_pool.pk, session_now + timedelta(minutes=1), dispatch=False)

    assert DecisionRecord.objects.filter(recommendation=rec, outcome="act").exists()
    assert Order.objects.filter(pool=http_pool, side="buy", entity_id=HELD).count() == 1


def test_the_gate_refuses_a_buy_of_a_held_entity_queued_before_the_hold(
    http_pool, broker, session_now
):
    factories.make_recommendation(HELD, session_now)
    run_decision_cycle(http_pool.pk, session_now, dispatch=False)
    (entry,) = Order.objects.filter(pool=http_pool, status="queued")
    # The hold comes in while the entry waits (a run never judges an entity with an order on
    # its way, so the event stands for one recorded between the run's reads and the queueing).
    ReconciliationEvent.objects.create(
        pool=http_pool,
        subject="units",
        symbol=HELD,
        books_value=10,
        broker_value=12,
        first_seen_at=session_now,
        last_seen_at=session_now,
    )

    result = process_order(entry.pk, session_now)

    assert result.status == "risk_rejected" and result.detail == "reconciliation_hold"
    assert broker.count("POST", "/v2/orders") == 0
    evaluation = entry.risk_evaluations.get()
    assert evaluation.reasons == ["reconciliation_hold"]


# --- the command and the task -----------------------------------------------------------------


def run_command(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("reconcile_positions", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_what_differs(http_pool, broker):
    broker.set_position(HELD, "12", PRICE)

    text = run_command("--pool", "recon")

    event = events(http_pool).get()
    assert text.splitlines()[0] == "pool recon: 1 difference(s), 1 event(s) opened"
    assert f"  {HELD} units: books 10, broker 12 (event {event.pk}, opened)" in text
    assert "  cash: compared" in text
    again = run_command("--pool", "recon")
    assert f"(event {event.pk}, seen again)" in again


def test_the_command_prints_json(http_pool, broker):
    broker.set_position(HELD, "12", PRICE)

    body = json.loads(run_command("--pool", "recon", "--json"))

    event = events(http_pool).get()
    assert body["compared"] is True and body["opened"] == [event.pk]
    assert body["differences"] == [
        {"subject": "units", "symbol": HELD, "books": "10", "broker": "12", "event": event.pk}
    ]


def test_the_command_refuses_an_unknown_pool(db):
    with pytest.raises(CommandError, match="no pool named 'nope'"):
        run_command("--pool", "nope")


def test_the_command_fails_when_the_broker_does_not_answer(http_pool, broker):
    broker.inject("respond", status=503, method="GET", path="/v2/positions")

    with pytest.raises(CommandError, match="broker unavailable"):
        run_command("--pool", "recon")

    assert not events(http_pool).exists()


def test_the_command_says_a_paper_pool_is_not_reconciled(db, session_now):
    pool = factories.make_pool(now=session_now, name="paper-one")

    text = run_command("--pool", pool.name)

    assert "not reconciled: the paper broker keeps no account of its own" in text


def test_the_task_reconciles_every_pool_and_reports_an_unavailable_broker(
    http_pool, broker, session_now
):
    factories.make_pool(now=session_now, name="paper-two")
    broker.set_position(HELD, "12", PRICE)

    lines = reconcile_positions_all()

    assert lines == [
        "paper-two: not reconciled: the paper broker keeps no account of its own (its "
        "positions are the books)",
        "recon: 1 difference(s), 1 event(s) opened",
    ]
    broker.inject("respond", status=503, method="GET", path="/v2/positions")
    assert reconcile_positions_all()[1].startswith("recon: broker unavailable (http_503")


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def open_event(http_pool, broker, session_now) -> ReconciliationEvent:
    broker.set_position(HELD, "12", PRICE)
    reconcile_positions(http_pool, session_now)
    return events(http_pool).get()


def acknowledge_url(event: ReconciliationEvent) -> str:
    return reverse("admin:portfolio_reconciliationevent_acknowledge", args=[event.pk])


def test_the_admin_page_shows_the_hold_and_the_acknowledge_button(admin_client, open_event):
    page = admin_client.get(
        reverse("admin:portfolio_reconciliationevent_change", args=[open_event.pk])
    )

    text = page.content.decode()
    assert page.status_code == 200
    assert acknowledge_url(open_event) in text
    assert f"still differing at the last run: {HELD} held reduce-only" in text


def test_the_admin_says_an_open_event_whose_difference_is_gone_stays_open(
    admin_client, open_event, broker, http_pool, session_now
):
    broker.set_position(HELD, "10", PRICE)
    reconcile_positions(http_pool, session_now + timedelta(minutes=15))

    page = admin_client.get(reverse("admin:portfolio_reconciliationevent_changelist"))

    assert "difference gone since" in page.content.decode()
    assert "still held until an operator acknowledges" in page.content.decode()


def test_acknowledging_in_the_admin_asks_for_a_reason(admin_client, open_event, http_pool):
    empty = admin_client.post(acknowledge_url(open_event), {"reason": " "})
    assert empty.status_code == 200 and "reason" in empty.context["form"].errors

    response = admin_client.post(acknowledge_url(open_event), {"reason": "fixed at the broker"})

    assert response.status_code == 302
    open_event.refresh_from_db()
    assert (open_event.status, open_event.acknowledged_by) == ("acknowledged", "admin")
    row = OperatorAction.objects.get(action="acknowledge_reconciliation")
    assert (row.via, row.reason) == ("admin", "fixed at the broker")
    again = admin_client.post(acknowledge_url(open_event), {"reason": "twice"})
    assert again.status_code == 200 and "already acknowledged" in again.content.decode()
    assert OperatorAction.objects.filter(action="acknowledge_reconciliation").count() == 1


def test_only_users_who_may_change_pools_acknowledge(client, open_event):
    user = User.objects.create_user("looker", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_reconciliationevent"),
        Permission.objects.get(codename="view_pool"),
    )
    client.force_login(user)

    page = client.get(reverse("admin:portfolio_reconciliationevent_change", args=[open_event.pk]))
    assert page.status_code == 200 and acknowledge_url(open_event) not in page.content.decode()
    assert client.post(acknowledge_url(open_event), {"reason": "x"}).status_code == 403
    open_event.refresh_from_db()
    assert open_event.status == "open"


def test_the_pool_page_links_its_open_events(admin_client, open_event, http_pool):
    page = admin_client.get(reverse("admin:portfolio_pool_change", args=[http_pool.pk]))

    assert "open reconciliation events" in page.content.decode()


def test_the_schedule_runs_the_task_every_15_minutes_of_the_session_hours(db):
    from importlib import import_module
    from zoneinfo import ZoneInfo

    from django_q.models import Schedule

    from decisions.schedules import SCHEDULES, setup_schedules

    (spec,) = [s for s in SCHEDULES if s.func == "decisions.tasks.reconcile_positions_all"]
    module, _, name = spec.func.rpartition(".")
    assert getattr(import_module(module), name) is reconcile_positions_all
    setup_schedules()
    local = Schedule.objects.get(name=spec.name).next_run.astimezone(ZoneInfo("America/New_York"))
    assert 9 <= local.hour <= 16 and local.minute % 15 == 0 and local.weekday() < 5
