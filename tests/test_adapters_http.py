"""AlpacaHttpAdapter against a real HTTP server (tests/broker_server.py), never patched."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from execution.account_rules import check_account
from execution.adapters import (
    AlpacaHttpAdapter,
    BrokerUnavailable,
    ExecutionAdapter,
    OrderRequest,
    RequestLimiter,
    ResponseStatus,
)
from execution.adapters.http import retry_at_from_headers
from tests.broker_server import FakeBroker, FillPolicy

FILL_TIME = datetime(2026, 3, 2, 15, 30, 0, 123456, tzinfo=UTC)
ORDERS = "/v2/orders"
LOOKUP = "/v2/orders:by_client_order_id"
# Normal calls get a generous read timeout so a slow CI machine cannot make them flaky; the
# timeout tests use IMPATIENT against a server delay ten times longer.
PATIENT = (2.0, 5.0)
IMPATIENT = (0.5, 0.2)


def _session() -> requests.Session:
    session = requests.Session()
    # Proxy variables from the environment must not reroute 127.0.0.1.
    session.trust_env = False
    return session


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    with FakeBroker(prices={"AAPL": "187.25", "MSFT": "410.10"}, clock=lambda: FILL_TIME) as fake:
        yield fake


@pytest.fixture
def adapter(broker: FakeBroker) -> AlpacaHttpAdapter:
    return AlpacaHttpAdapter(
        broker.url, broker.key_id, broker.secret_key, timeout=PATIENT, session=_session()
    )


@pytest.fixture
def impatient(broker: FakeBroker) -> AlpacaHttpAdapter:
    return AlpacaHttpAdapter(
        broker.url, broker.key_id, broker.secret_key, timeout=IMPATIENT, session=_session()
    )


def _order(client_order_id: str = "coid-1", side: str = "buy", qty: int = 5) -> OrderRequest:
    return OrderRequest(client_order_id, "AAPL", side, Decimal(qty))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_adapter_satisfies_the_protocol(adapter: AlpacaHttpAdapter) -> None:
    assert isinstance(adapter, ExecutionAdapter)
    assert adapter.name == "http"


def test_market_buy_fills_and_sends_string_numbers_and_auth_headers(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    response = adapter.submit(_order())

    assert response.status is ResponseStatus.FILLED
    assert response.filled_quantity == Decimal("5")
    assert response.fill_value == Decimal("187.25")
    assert response.filled_at == FILL_TIME
    assert response.broker_order_id == broker.orders["coid-1"]["id"]
    assert (response.reason, response.retryable, response.is_final) == ("", False, True)

    (sent,) = broker.received
    assert (sent.method, sent.path) == ("POST", ORDERS)
    assert sent.body == {
        "symbol": "AAPL",
        "qty": "5",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": "coid-1",
    }
    assert sent.headers["apca-api-key-id"] == broker.key_id
    assert sent.headers["apca-api-secret-key"] == broker.secret_key

    dumped = json.dumps(response.raw)
    assert broker.secret_key not in dumped
    assert response.raw["http_status"] == 200
    assert response.raw["request"]["qty"] == "5"


def test_trailing_slash_in_base_url_is_tolerated(broker: FakeBroker) -> None:
    adapter = AlpacaHttpAdapter(
        broker.url + "/", broker.key_id, broker.secret_key, PATIENT, _session()
    )

    assert adapter.submit(_order()).status is ResponseStatus.FILLED
    assert broker.received[0].path == ORDERS


@pytest.mark.parametrize(
    "base_url", ["", "ftp://broker.example", "broker.example:443", "http://", "https://x/?a=1"]
)
def test_invalid_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError):
        AlpacaHttpAdapter(base_url, "key", "secret")


def test_repr_does_not_show_the_secret(adapter: AlpacaHttpAdapter, broker: FakeBroker) -> None:
    assert broker.secret_key not in repr(adapter)


@pytest.mark.parametrize(
    ("broker_status", "expected", "reason"),
    [
        ("filled", ResponseStatus.FILLED, ""),
        ("partially_filled", ResponseStatus.PARTIALLY_FILLED, ""),
        ("new", ResponseStatus.ACCEPTED, ""),
        ("accepted", ResponseStatus.ACCEPTED, ""),
        ("pending_new", ResponseStatus.ACCEPTED, ""),
        ("accepted_for_bidding", ResponseStatus.ACCEPTED, ""),
        ("calculated", ResponseStatus.ACCEPTED, ""),
        ("held", ResponseStatus.ACCEPTED, ""),
        # Stopped and suspended orders may still trade: not final.
        ("stopped", ResponseStatus.ACCEPTED, ""),
        ("suspended", ResponseStatus.ACCEPTED, ""),
        ("pending_cancel", ResponseStatus.ACCEPTED, ""),
        ("pending_replace", ResponseStatus.ACCEPTED, ""),
        ("rejected", ResponseStatus.REJECTED, "rejected"),
        ("canceled", ResponseStatus.REJECTED, "canceled"),
        ("expired", ResponseStatus.REJECTED, "expired"),
        ("done_for_day", ResponseStatus.REJECTED, "done_for_day"),
        ("some_new_status", ResponseStatus.UNKNOWN, "some_new_status"),
    ],
)
def test_broker_order_status_maps_to_response_status(
    broker: FakeBroker,
    adapter: AlpacaHttpAdapter,
    broker_status: str,
    expected: ResponseStatus,
    reason: str,
) -> None:
    broker.inject("order_status", order_status=broker_status)

    response = adapter.submit(_order(qty=4))

    assert response.status is expected
    assert response.reason == reason
    assert response.broker_status == broker_status
    assert response.retryable is False
    assert response.replaced_by is None
    assert response.is_final is (expected in (ResponseStatus.FILLED, ResponseStatus.REJECTED))
    assert response.broker_order_id == broker.orders["coid-1"]["id"]
    if expected is ResponseStatus.PARTIALLY_FILLED:
        assert (response.filled_quantity, response.fill_value) == (Decimal(2), Decimal("187.25"))
    elif expected is not ResponseStatus.FILLED:
        assert (response.filled_quantity, response.fill_value) == (Decimal(0), None)


def test_canceled_order_keeps_its_partial_fill(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("order_status", order_status="canceled", filled_qty=3)

    response = adapter.submit(_order(qty=5))

    assert response.status is ResponseStatus.REJECTED
    assert (response.reason, response.broker_status) == ("canceled", "canceled")
    assert response.has_fill and response.is_final
    assert (response.filled_quantity, response.fill_value) == (Decimal(3), Decimal("187.25"))


def test_a_working_order_with_a_fill_is_partially_filled(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("order_status", order_status="pending_cancel", filled_qty=2)

    response = adapter.submit(_order(qty=5))

    assert response.status is ResponseStatus.PARTIALLY_FILLED
    assert (response.broker_status, response.is_final) == ("pending_cancel", False)
    assert (response.filled_quantity, response.fill_value) == (Decimal(2), Decimal("187.25"))


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a", "status": "canceled", "filled_qty": "3", "filled_avg_price": None},
        {"id": "a", "status": "partially_filled", "filled_qty": "0"},
        {"id": "a", "status": "replaced", "filled_qty": "0"},
    ],
)
def test_an_order_that_cannot_be_booked_or_followed_is_unreadable(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, body: dict
) -> None:
    broker.inject("respond", status=200, body=body)

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "unreadable_response")


def test_duplicate_client_order_id_is_resolved_by_lookup_without_resubmitting(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    first = adapter.submit(_order())
    before = len(broker.received)

    second = adapter.submit(_order())

    later = broker.received[before:]
    assert [(item.method, item.path) for item in later] == [("POST", ORDERS), ("GET", LOOKUP)]
    assert later[1].query == {"client_order_id": "coid-1"}
    assert second.status is ResponseStatus.FILLED
    assert second.broker_order_id == first.broker_order_id
    assert second.raw["http_status"] == 422
    assert second.raw["lookup"]["http_status"] == 200
    # Held once at the broker: no second fill.
    assert adapter.positions()[0].quantity == Decimal(5)


def test_duplicate_reported_after_a_lost_answer_returns_the_broker_order(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("accept_then_fail", status=503)
    assert adapter.submit(_order()).status is ResponseStatus.UNKNOWN

    again = adapter.submit(_order())

    assert again.status is ResponseStatus.FILLED
    assert again.broker_order_id == broker.orders["coid-1"]["id"]
    assert broker.count("POST", ORDERS) == 2
    assert len(broker.orders) == 1


def test_unknown_symbol_422_is_rejected_with_the_broker_message(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    response = adapter.submit(OrderRequest("coid-1", "ZZZZ", "buy", Decimal(1)))

    assert response.status is ResponseStatus.REJECTED
    assert response.reason == "asset not found: ZZZZ"
    assert response.retryable is False
    assert response.raw["http_status"] == 422
    assert broker.count("POST") == 1
    assert broker.count("GET") == 0


def test_insufficient_buying_power_403_is_rejected(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    response = adapter.submit(_order(qty=10_000))

    assert response.status is ResponseStatus.REJECTED
    assert response.reason == "insufficient buying power"
    assert broker.orders == {}


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_other_4xx_is_rejected_with_the_json_message(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, code: int
) -> None:
    broker.inject("respond", status=code, body={"code": code * 100_000, "message": "qty invalid"})

    response = adapter.submit(_order())

    assert response.status is ResponseStatus.REJECTED
    assert (response.reason, response.retryable) == ("qty invalid", False)
    assert broker.count("POST", ORDERS) == 1


def test_4xx_without_json_message_falls_back_to_http_code(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("respond", status=400, body="<html>bad request</html>")

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.REJECTED, "http_400")
    assert response.raw["body"] == "<html>bad request</html>"


def test_wrong_secret_is_rejected_and_never_echoed(broker: FakeBroker) -> None:
    adapter = AlpacaHttpAdapter(broker.url, broker.key_id, "wrong-secret", PATIENT, _session())

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.REJECTED, "forbidden")
    assert "wrong-secret" not in json.dumps(response.raw)


def test_rate_limit_429_is_rejected_and_retryable(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("respond", status=429, body={"message": "too many requests"})

    response = adapter.submit(_order())

    assert response.status is ResponseStatus.REJECTED
    assert (response.reason, response.retryable) == ("rate_limited", True)
    assert broker.orders == {}
    assert broker.count("POST", ORDERS) == 1


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_error_is_unknown_and_not_resubmitted(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, code: int
) -> None:
    broker.inject("respond", status=code, body="<html>oops</html>")

    response = adapter.submit(_order())

    assert response.status is ResponseStatus.UNKNOWN
    assert response.is_ambiguous
    assert (response.reason, response.retryable) == (f"http_{code}", False)
    assert response.raw["http_status"] == code
    assert broker.count("POST", ORDERS) == 1


def test_read_timeout_is_unknown_and_sent_exactly_once(
    broker: FakeBroker, impatient: AlpacaHttpAdapter
) -> None:
    broker.inject("delay", seconds=2.0, method="POST", path=ORDERS)

    started = time.monotonic()
    response = impatient.submit(_order())
    elapsed = time.monotonic() - started

    assert response.status is ResponseStatus.UNKNOWN
    assert (response.reason, response.retryable) == ("timeout", False)
    assert response.raw["http_status"] is None
    assert response.raw["error"]
    assert elapsed < 1.5
    assert broker.count("POST", ORDERS) == 1


def test_connection_refused_is_unknown() -> None:
    adapter = AlpacaHttpAdapter(
        f"http://127.0.0.1:{_closed_port()}", "key", "secret", PATIENT, _session()
    )

    response = adapter.submit(_order())

    assert response.status is ResponseStatus.UNKNOWN
    assert (response.reason, response.retryable) == ("connection_error", False)
    assert "secret" not in json.dumps(response.raw)


def test_hang_up_after_accepting_is_unknown_and_lookup_finds_the_fill(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("accept_then_fail", status=0)

    response = adapter.submit(_order())
    found = adapter.lookup("coid-1")

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "connection_error")
    assert found.status is ResponseStatus.FILLED
    assert found.filled_quantity == Decimal(5)
    assert broker.count("POST", ORDERS) == 1


def test_accept_then_503_is_unknown_and_lookup_finds_the_fill(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("accept_then_fail", status=503)

    response = adapter.submit(_order())
    found = adapter.lookup("coid-1")

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "http_503")
    assert found.status is ResponseStatus.FILLED
    assert found.broker_order_id == broker.orders["coid-1"]["id"]
    assert (found.filled_quantity, found.fill_value) == (Decimal(5), Decimal("187.25"))
    assert found.filled_at == FILL_TIME
    assert broker.count("POST", ORDERS) == 1


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>502 Bad Gateway</body></html>",
        "",
        {"status": "filled"},
        {"id": "abc"},
        ["not", "an", "order"],
        {"id": "abc", "status": "filled", "filled_qty": "lots", "filled_avg_price": "1"},
        {"id": "abc", "status": "filled", "filled_qty": "5", "filled_avg_price": None},
        {"id": "abc", "status": "new", "filled_at": "yesterday"},
    ],
)
def test_unreadable_2xx_body_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, body: Any
) -> None:
    broker.inject("respond", status=200, body=body)

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "unreadable_response")
    json.dumps(response.raw)


def test_long_text_body_is_cut_to_2000_characters_in_raw(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("respond", status=200, body="x" * 5_000)

    response = adapter.submit(_order())

    assert response.raw["body"] == "x" * 2_000


def test_redirect_is_not_followed_and_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("respond", status=307, body={"message": "moved"})

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "http_307")
    assert broker.count() == 1


def test_lookup_of_an_unknown_order_is_not_found(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    response = adapter.lookup("never-sent")

    assert response.status is ResponseStatus.NOT_FOUND
    assert (response.broker_order_id, response.reason) == (None, "")
    assert broker.received[0].query == {"client_order_id": "never-sent"}


def test_lookup_404_without_json_is_unknown_not_absent(broker: FakeBroker) -> None:
    # A wrong path prefix reaches no broker route: that is not the broker saying "never seen".
    adapter = AlpacaHttpAdapter(
        broker.url + "/wrong", broker.key_id, broker.secret_key, PATIENT, _session()
    )

    response = adapter.lookup("coid-1")

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "http_404")


@pytest.mark.parametrize(
    ("inject", "reason"),
    [
        ({"kind": "respond", "status": 503}, "http_503"),
        ({"kind": "respond", "status": 429}, "rate_limited"),
        ({"kind": "respond", "status": 200, "body": "garbage"}, "unreadable_response"),
        ({"kind": "delay", "seconds": 2.0}, "timeout"),
    ],
)
def test_lookup_without_a_usable_answer_is_unknown(
    broker: FakeBroker,
    adapter: AlpacaHttpAdapter,
    impatient: AlpacaHttpAdapter,
    inject: dict[str, Any],
    reason: str,
) -> None:
    adapter.submit(_order())
    broker.inject(path=LOOKUP, **inject)
    client = impatient if inject["kind"] == "delay" else adapter

    response = client.lookup("coid-1")

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, reason)


def test_lookup_answering_another_order_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    other = {"id": "x", "client_order_id": "someone-else", "status": "new", "filled_qty": "0"}
    broker.inject("respond", status=200, body=other, path=LOOKUP)

    response = adapter.lookup("coid-1")

    assert (response.status, response.reason) == (
        ResponseStatus.UNKNOWN,
        "client_order_id_mismatch",
    )


def test_account_and_positions_parse_string_numbers(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    adapter.submit(_order(qty=10))
    adapter.submit(OrderRequest("coid-2", "MSFT", "buy", Decimal(2)))
    adapter.submit(_order("coid-3", side="sell", qty=4))
    broker.set_price("AAPL", "190.00")

    account = adapter.account()
    positions = adapter.positions()

    cash = (
        Decimal("100000") - 10 * Decimal("187.25") - 2 * Decimal("410.10") + 4 * Decimal("187.25")
    )
    assert account.cash == cash
    assert account.equity == cash + 6 * Decimal("190.00") + 2 * Decimal("410.10")
    assert [(p.symbol, p.quantity, p.average_entry_value) for p in positions] == [
        ("AAPL", Decimal(6), Decimal("187.25")),
        ("MSFT", Decimal(2), Decimal("410.10")),
    ]
    assert positions[0].raw["symbol"] == "AAPL"
    json.dumps(account.raw)


@pytest.mark.parametrize("path", ["/v2/account", "/v2/positions"])
@pytest.mark.parametrize(
    ("inject", "reason"),
    [
        ({"kind": "respond", "status": 503}, "http_503"),
        ({"kind": "respond", "status": 500}, "http_500"),
        ({"kind": "respond", "status": 200, "body": "<html>garbage</html>"}, "unreadable_response"),
        ({"kind": "respond", "status": 200, "body": {"unexpected": True}}, "unreadable_response"),
        ({"kind": "delay", "seconds": 2.0}, "timeout"),
    ],
)
def test_account_and_positions_raise_broker_unavailable(
    broker: FakeBroker,
    adapter: AlpacaHttpAdapter,
    impatient: AlpacaHttpAdapter,
    path: str,
    inject: dict[str, Any],
    reason: str,
) -> None:
    broker.inject(path=path, **inject)
    client = impatient if inject["kind"] == "delay" else adapter
    read = client.account if path == "/v2/account" else client.positions

    with pytest.raises(BrokerUnavailable) as caught:
        read()

    assert caught.value.reason == reason


def test_account_on_a_closed_port_raises_broker_unavailable() -> None:
    adapter = AlpacaHttpAdapter(
        f"http://127.0.0.1:{_closed_port()}", "key", "secret", PATIENT, _session()
    )

    with pytest.raises(BrokerUnavailable) as caught:
        adapter.positions()

    assert caught.value.reason == "connection_error"


class _TimeoutRecordingSession(requests.Session):
    """A real session that remembers the timeout each call carried."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.timeouts: list[Any] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(method, url, *args, **kwargs)


def test_every_call_carries_the_timeout(broker: FakeBroker) -> None:
    session = _TimeoutRecordingSession()
    adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key, (1.5, 4.0), session)

    adapter.submit(_order())
    adapter.lookup("coid-1")
    adapter.account()
    adapter.positions()

    assert session.timeouts == [(1.5, 4.0)] * 4


# Order status sync: by the broker's id, working orders, replacements ---------------------------


def test_lookup_by_broker_id_reads_the_order(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    submitted = adapter.submit(_order())

    found = adapter.lookup_by_broker_id(submitted.broker_order_id)

    assert found.status is ResponseStatus.FILLED
    assert (found.broker_order_id, found.broker_status) == (submitted.broker_order_id, "filled")
    assert (found.filled_quantity, found.fill_value) == (Decimal(5), Decimal("187.25"))
    assert broker.received[-1].path == f"{ORDERS}/{submitted.broker_order_id}"
    assert found.raw["request"] == {"broker_order_id": submitted.broker_order_id}


def test_lookup_by_broker_id_of_an_unknown_id_is_not_found(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    response = adapter.lookup_by_broker_id("no/such id")

    assert response.status is ResponseStatus.NOT_FOUND
    # The id is one path segment, whatever it holds.
    assert broker.received[0].path == f"{ORDERS}/no%2Fsuch%20id"
    with pytest.raises(ValueError):
        adapter.lookup_by_broker_id(" ")


def test_lookup_by_broker_id_answering_another_order_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    other = {"id": "someone-else", "status": "new", "filled_qty": "0"}
    broker.inject("respond", status=200, body=other)

    response = adapter.lookup_by_broker_id("mine")

    assert (response.status, response.reason) == (
        ResponseStatus.UNKNOWN,
        "broker_order_id_mismatch",
    )


def test_partial_fills_progress_until_filled_and_only_then_are_final(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=2, advance_on_get=True))

    submitted = adapter.submit(_order(qty=5))
    reads = [adapter.lookup_by_broker_id(submitted.broker_order_id) for _ in range(2)]

    progress = [(r.status, r.filled_quantity, r.is_final) for r in (submitted, *reads)]
    assert progress == [
        (ResponseStatus.PARTIALLY_FILLED, Decimal(2), False),
        (ResponseStatus.PARTIALLY_FILLED, Decimal(4), False),
        (ResponseStatus.FILLED, Decimal(5), True),
    ]
    assert adapter.positions()[0].quantity == Decimal(5)


@pytest.mark.parametrize("end", ["expired", "canceled", "done_for_day"])
def test_an_order_ended_with_a_partial_fill_is_final_and_keeps_it(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, end: str
) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=2, limit=2, end=end))
    submitted = adapter.submit(_order(qty=5))
    broker.advance("coid-1")

    found = adapter.lookup("coid-1")

    assert (submitted.status, submitted.is_final) == (ResponseStatus.PARTIALLY_FILLED, False)
    assert (found.status, found.reason, found.broker_status) == (ResponseStatus.REJECTED, end, end)
    assert found.is_final and found.has_fill
    assert (found.filled_quantity, found.fill_value) == (Decimal(2), Decimal("187.25"))


def test_a_canceled_open_order_is_final_without_a_fill(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_fill_policy(FillPolicy(mode="open", status="accepted"))
    submitted = adapter.submit(_order())
    requests.delete(
        f"{broker.url}{ORDERS}/{submitted.broker_order_id}",
        headers=_auth(broker),
        timeout=PATIENT,
    )

    found = adapter.lookup_by_broker_id(submitted.broker_order_id)

    assert (submitted.status, submitted.is_final) == (ResponseStatus.ACCEPTED, False)
    assert (found.status, found.broker_status, found.is_final) == (
        ResponseStatus.REJECTED,
        "canceled",
        True,
    )
    assert not found.has_fill and found.fill_value is None


def test_a_replaced_order_is_not_final_and_points_to_its_replacement(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=1), client_order_id="coid-1")
    old = adapter.submit(_order(qty=4))
    new = requests.patch(
        f"{broker.url}{ORDERS}/{old.broker_order_id}",
        json={"qty": "3", "client_order_id": "coid-1r"},
        headers=_auth(broker),
        timeout=PATIENT,
    ).json()

    replaced = adapter.lookup("coid-1")
    followed = adapter.lookup_by_broker_id(replaced.replaced_by)
    broker.advance("coid-1r", 2)
    done = adapter.lookup_by_broker_id(replaced.replaced_by)

    assert (replaced.status, replaced.reason, replaced.broker_status) == (
        ResponseStatus.REPLACED,
        "replaced",
        "replaced",
    )
    assert replaced.is_replaced and not replaced.is_final and not replaced.is_ambiguous
    assert replaced.replaced_by == new["id"]
    # The replaced order keeps what it filled before; the replacement reports its own fills.
    assert replaced.filled_quantity == Decimal(1)
    assert (followed.status, followed.filled_quantity) == (ResponseStatus.PARTIALLY_FILLED, 1)
    assert (done.status, done.filled_quantity, done.is_final) == (
        ResponseStatus.FILLED,
        Decimal(3),
        True,
    )


# Faults that leave the outcome unknown ---------------------------------------------------------


def test_timeout_before_the_broker_accepted_is_unknown_and_lookup_finds_nothing(
    broker: FakeBroker, impatient: AlpacaHttpAdapter, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("stall", seconds=2.0, method="POST")

    response = impatient.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "timeout")
    assert adapter.lookup("coid-1").status is ResponseStatus.NOT_FOUND


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("accept_then_delay", "timeout"),
        ("accept_then_reset", "connection_error"),
        ("accept_then_garbage", "unreadable_response"),
    ],
)
def test_a_lost_answer_after_accepting_is_unknown_and_lookup_finds_the_fill(
    broker: FakeBroker,
    impatient: AlpacaHttpAdapter,
    adapter: AlpacaHttpAdapter,
    kind: str,
    reason: str,
) -> None:
    broker.inject(kind, seconds=2.0, method="POST")

    response = impatient.submit(_order())

    assert (response.status, response.reason, response.retryable) == (
        ResponseStatus.UNKNOWN,
        reason,
        False,
    )
    assert adapter.lookup("coid-1").status is ResponseStatus.FILLED
    assert broker.count("POST", ORDERS) == 1


def test_a_reset_before_accepting_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("reset", method="POST")

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "connection_error")
    assert broker.orders == {}


def test_an_injected_duplicate_the_broker_cannot_find_is_unknown(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("duplicate", method="POST")

    response = adapter.submit(_order())

    assert (response.status, response.reason) == (
        ResponseStatus.UNKNOWN,
        "duplicate_client_order_id",
    )
    assert response.raw["lookup"]["http_status"] == 404


def test_injected_insufficient_buying_power_is_rejected_for_good(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.inject("insufficient_buying_power", method="POST")

    response = adapter.submit(_order())

    assert (response.status, response.reason, response.retryable) == (
        ResponseStatus.REJECTED,
        "insufficient buying power",
        False,
    )


# Account --------------------------------------------------------------------------------------


def test_account_reads_the_status_blocks_and_buying_power(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_account(status="ACCOUNT_UPDATED", trading_blocked=True, buying_power="2500.50")

    account = adapter.account()

    assert (account.status, account.buying_power) == ("ACCOUNT_UPDATED", Decimal("2500.50"))
    assert (account.trading_blocked, account.account_blocked, account.trade_suspended_by_user) == (
        True,
        False,
        False,
    )
    assert check_account(account, "buy", Decimal(1)) == (False, "account_not_active")


def test_an_active_account_passes_the_check_up_to_its_buying_power(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_account(buying_power="1000")

    account = adapter.account()

    assert check_account(account, "buy", Decimal(1000)) == (True, "")
    assert check_account(account, "buy", Decimal("1000.01")) == (
        False,
        "insufficient_buying_power",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"cash": "1", "equity": "1", "buying_power": "1"},
        {"cash": "1", "equity": "1", "status": "ACTIVE"},
        {"cash": "1", "equity": "1", "status": "ACTIVE", "buying_power": "1", "trading_blocked": 0},
    ],
)
def test_an_account_without_status_or_buying_power_is_unreadable(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, body: dict
) -> None:
    broker.inject("respond", status=200, body=body, path="/v2/account")

    with pytest.raises(BrokerUnavailable) as caught:
        adapter.account()

    assert caught.value.reason == "unreadable_response"


def test_a_blocked_account_at_the_broker_rejects_the_order(
    broker: FakeBroker, adapter: AlpacaHttpAdapter
) -> None:
    broker.set_account(account_blocked=True)

    response = adapter.submit(_order())

    assert (response.status, response.reason, response.retryable) == (
        ResponseStatus.REJECTED,
        "account is blocked",
        False,
    )


# Rate limits ----------------------------------------------------------------------------------

RESET = 1_900_000_000


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Ratelimit-Reset": str(RESET)}, datetime.fromtimestamp(RESET, UTC)),
        (
            {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},
            datetime(2026, 10, 21, 7, 28, tzinfo=UTC),
        ),
        (
            {"X-Ratelimit-Reset": str(RESET), "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},
            datetime.fromtimestamp(RESET, UTC),
        ),
        ({"Retry-After": "later"}, None),
        ({}, None),
    ],
)
def test_a_broker_429_carries_when_to_retry(
    broker: FakeBroker, adapter: AlpacaHttpAdapter, headers: dict, expected: datetime | None
) -> None:
    broker.set_rate_limit(None)  # only the injected headers
    broker.inject("respond", status=429, body={"message": "too many requests."}, headers=headers)

    response = adapter.submit(_order())

    assert (response.status, response.reason, response.retryable) == (
        ResponseStatus.REJECTED,
        "rate_limited",
        True,
    )
    assert response.retry_at == expected
    if expected is not None:
        assert response.raw["retry_at"] == expected.isoformat()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-reset": "1900000000"}, datetime.fromtimestamp(RESET, UTC)),
        ({"X-RateLimit-Reset": "30"}, FILL_TIME + timedelta(seconds=30)),
        ({"Retry-After": "120"}, FILL_TIME + timedelta(seconds=120)),
        (
            {"Retry-After": "120", "Date": "Mon, 02 Mar 2026 15:00:00 GMT"},
            datetime(2026, 3, 2, 15, 2, tzinfo=UTC),
        ),
        ({"Retry-After": "-5"}, None),
        ({"X-Ratelimit-Reset": "NaN"}, None),
    ],
)
def test_retry_at_from_headers(headers: dict, expected: datetime | None) -> None:
    assert retry_at_from_headers(headers, lambda: FILL_TIME) == expected


def test_the_brokers_own_limit_rejects_the_order_with_its_reset(broker: FakeBroker) -> None:
    broker.set_rate_limit(3)
    adapter = AlpacaHttpAdapter(broker.url, broker.key_id, broker.secret_key, PATIENT, _session())
    before = datetime.now(UTC)
    sent = [adapter.submit(_order(f"coid-{n}", qty=1)) for n in range(4)]

    assert [r.status for r in sent] == [ResponseStatus.FILLED] * 3 + [ResponseStatus.REJECTED]
    refused = sent[-1]
    assert (refused.reason, refused.retryable) == ("rate_limited", True)
    assert before < refused.retry_at <= datetime.now(UTC) + timedelta(seconds=61)
    assert "coid-3" not in broker.orders

    looked_up = adapter.lookup("coid-0")
    assert (looked_up.status, looked_up.reason) == (ResponseStatus.UNKNOWN, "rate_limited")
    assert looked_up.retry_at == refused.retry_at
    with pytest.raises(BrokerUnavailable) as caught:
        adapter.account()
    assert (caught.value.reason, caught.value.http_status) == ("rate_limited", 429)
    assert caught.value.retry_at == refused.retry_at


class _Budget:
    """A limiter with a fixed number of requests and then a fixed wait, counting its calls."""

    def __init__(self, requests_left: int, wait: float = 12.5) -> None:
        self.left = requests_left
        self.wait = wait
        self.calls = 0
        self.held: list[datetime] = []

    def acquire(self) -> float:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            return 0.0
        return self.wait

    def hold_until(self, moment: datetime) -> None:
        self.held.append(moment)


def _limited(broker: FakeBroker, limiter: Any) -> AlpacaHttpAdapter:
    return AlpacaHttpAdapter(
        broker.url,
        broker.key_id,
        broker.secret_key,
        PATIENT,
        _session(),
        limiter=limiter,
        clock=lambda: FILL_TIME,
    )


def test_a_spent_budget_sends_nothing_and_says_when_to_retry(broker: FakeBroker) -> None:
    limiter = _Budget(1)
    adapter = _limited(broker, limiter)
    assert isinstance(limiter, RequestLimiter)

    first = adapter.submit(_order("coid-1"))
    second = adapter.submit(_order("coid-2"))

    assert first.status is ResponseStatus.FILLED
    assert (second.status, second.reason, second.retryable) == (
        ResponseStatus.REJECTED,
        "rate_limited",
        True,
    )
    assert second.retry_at == FILL_TIME + timedelta(seconds=12.5)
    assert second.raw["sent"] is False and second.raw["http_status"] is None
    assert broker.count() == 1

    lookup = adapter.lookup("coid-1")
    by_id = adapter.lookup_by_broker_id(first.broker_order_id)
    for response in (lookup, by_id):
        assert (response.status, response.reason) == (ResponseStatus.UNKNOWN, "rate_limited")
        assert response.retry_at == second.retry_at
    for read in (adapter.account, adapter.positions):
        with pytest.raises(BrokerUnavailable) as caught:
            read()
        assert (caught.value.reason, caught.value.http_status) == ("rate_limited", None)
        assert caught.value.retry_at == second.retry_at
    assert broker.count() == 1
    assert limiter.calls == 6


def test_a_broker_429_tells_the_limiter_to_hold(broker: FakeBroker) -> None:
    limiter = _Budget(5)
    broker.inject("rate_limited", seconds=20, method="POST")

    response = _limited(broker, limiter).submit(_order())

    assert limiter.held == [response.retry_at]
    assert response.retry_at is not None


def test_a_failing_limiter_sends_nothing(broker: FakeBroker) -> None:
    class Broken:
        def acquire(self) -> float:
            raise ConnectionError("cache down")

    adapter = _limited(broker, Broken())

    response = adapter.submit(_order())

    assert (response.status, response.reason, response.retryable) == (
        ResponseStatus.REJECTED,
        "rate_limiter_unavailable",
        True,
    )
    with pytest.raises(BrokerUnavailable) as caught:
        adapter.account()
    assert caught.value.reason == "rate_limiter_unavailable"
    assert broker.count() == 0


@pytest.mark.django_db
def test_the_shared_limiter_keeps_the_sixth_order_from_the_broker(broker: FakeBroker) -> None:
    from django.core.cache import cache

    from execution.ratelimit import CacheRateLimiter

    def limiter() -> CacheRateLimiter:
        return CacheRateLimiter(broker.key_id, limit=5, window=60, cache=cache)

    # Two adapters, as two processes of the desk would hold, share the budget in the cache.
    one, two = _limited(broker, limiter()), _limited(broker, limiter())
    answers = [(one if n % 2 else two).submit(_order(f"coid-{n}", qty=1)) for n in range(6)]

    assert [a.status for a in answers] == [ResponseStatus.FILLED] * 5 + [ResponseStatus.REJECTED]
    assert (answers[-1].reason, answers[-1].retryable) == ("rate_limited", True)
    assert answers[-1].retry_at is not None
    assert broker.count("POST", ORDERS) == 5
    assert len(broker.orders) == 5


@pytest.mark.django_db
def test_a_broker_429_holds_the_shared_limiter(broker: FakeBroker) -> None:
    from django.core.cache import cache

    from execution.ratelimit import CacheRateLimiter

    limiter = CacheRateLimiter(broker.key_id, limit=100, cache=cache)
    adapter = _limited(broker, limiter)
    broker.inject("rate_limited", seconds=30, method="POST")

    refused = adapter.submit(_order("coid-1"))
    again = adapter.submit(_order("coid-2"))

    assert refused.raw["http_status"] == 429
    assert (again.reason, again.raw["sent"]) == ("rate_limited", False)
    assert broker.count("POST", ORDERS) == 1


def _auth(broker: FakeBroker) -> dict[str, str]:
    return {"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": broker.secret_key}
