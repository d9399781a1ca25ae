"""AlpacaHttpAdapter against a real HTTP server (tests/broker_server.py), never patched."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from execution.adapters import (
    AlpacaHttpAdapter,
    BrokerUnavailable,
    ExecutionAdapter,
    OrderRequest,
    ResponseStatus,
)
from tests.broker_server import FakeBroker

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
        ("rejected", ResponseStatus.REJECTED, "rejected"),
        ("canceled", ResponseStatus.REJECTED, "canceled"),
        ("expired", ResponseStatus.REJECTED, "expired"),
        ("done_for_day", ResponseStatus.REJECTED, "done_for_day"),
        ("stopped", ResponseStatus.REJECTED, "stopped"),
        ("suspended", ResponseStatus.REJECTED, "suspended"),
        ("pending_cancel", ResponseStatus.UNKNOWN, "pending_cancel"),
        ("replaced", ResponseStatus.UNKNOWN, "replaced"),
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
    assert response.retryable is False
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
    assert response.reason == "canceled"
    assert response.has_fill
    assert (response.filled_quantity, response.fill_value) == (Decimal(3), Decimal("187.25"))


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
