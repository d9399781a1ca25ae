"""The test broker itself (tests/broker_server.py), through plain ``requests`` calls.

It is test infrastructure, but every HTTP adapter and worker test trusts it to behave as an
Alpaca-compatible broker does, so what it answers is pinned here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.broker_server import FakeBroker, FillPolicy

CLOCK = datetime(2026, 3, 2, 15, 30, 0, 123456, tzinfo=UTC)
STAMP = "2026-03-02T15:30:00.123456000Z"
ORDERS = "/v2/orders"
LOOKUP = "/v2/orders:by_client_order_id"
PATIENT = (2.0, 5.0)


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    with FakeBroker(prices={"AAPL": "100", "MSFT": "250.50"}, clock=lambda: CLOCK) as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


class Client:
    """Plain HTTP calls to the broker with its keys."""

    def __init__(self, broker: FakeBroker, session: requests.Session, key_id: str | None = None):
        self.broker = broker
        self.session = session
        self.headers = {
            "APCA-API-KEY-ID": key_id or broker.key_id,
            "APCA-API-SECRET-KEY": broker.secret_key,
        }

    def call(self, method: str, path: str, timeout: Any = PATIENT, **kwargs: Any):
        return self.session.request(
            method, self.broker.url + path, headers=self.headers, timeout=timeout, **kwargs
        )

    def order(
        self,
        coid: str = "c-1",
        symbol: str = "AAPL",
        side: str = "buy",
        qty: Any = 10,
        *,
        timeout: Any = PATIENT,
    ):
        body = {
            "symbol": symbol,
            "qty": str(qty),
            "side": side,
            "type": "market",
            "time_in_force": "day",
            "client_order_id": coid,
        }
        return self.call("POST", ORDERS, json=body, timeout=timeout)

    def get(self, path: str, **params: str):
        return self.call("GET", path, params=params or None)


@pytest.fixture
def client(broker: FakeBroker, http: requests.Session) -> Client:
    return Client(broker, http)


# Orders ---------------------------------------------------------------------------------------


def test_a_market_order_fills_at_once_with_the_real_order_fields(client, broker) -> None:
    answer = client.order(qty=10)

    assert answer.status_code == 200
    order = answer.json()
    assert order["status"] == "filled"
    assert (order["qty"], order["filled_qty"], order["filled_avg_price"]) == ("10", "10", "100")
    for name in ("created_at", "updated_at", "submitted_at", "filled_at"):
        assert order[name] == STAMP
    assert order["canceled_at"] is order["expired_at"] is None
    assert order["replaced_by"] is order["replaces"] is None
    assert (order["symbol"], order["side"], order["type"], order["time_in_force"]) == (
        "AAPL",
        "buy",
        "market",
        "day",
    )
    assert broker.orders["c-1"] == order
    assert broker.positions == {"AAPL": Decimal(10)}
    assert broker.executions("c-1") == 1


def test_an_order_is_read_by_id_by_client_order_id_and_in_the_lists(client, broker) -> None:
    filled = client.order("c-1").json()
    broker.set_fill_policy(FillPolicy(mode="open"), client_order_id="c-2")
    working = client.order("c-2").json()

    assert client.get(f"{ORDERS}/{filled['id']}").json() == filled
    assert client.get(LOOKUP, client_order_id="c-2").json() == working
    ids = {
        status: [o["id"] for o in client.get(ORDERS, status=status).json()]
        for status in ("open", "closed", "all")
    }
    assert ids == {
        "open": [working["id"]],
        "closed": [filled["id"]],
        "all": [working["id"], filled["id"]],
    }
    assert [o["id"] for o in client.get(ORDERS, status="all", direction="asc").json()] == [
        filled["id"],
        working["id"],
    ]
    assert client.get(ORDERS, status="all", limit="1").json()[0]["id"] == working["id"]
    assert client.get(ORDERS, status="all", symbols="MSFT").json() == []
    assert client.get(ORDERS, status="everything").status_code == 422


def test_unknown_orders_are_404_json(client) -> None:
    for answer in (client.get(f"{ORDERS}/nope"), client.get(LOOKUP, client_order_id="nope")):
        assert answer.status_code == 404
        assert answer.json() == {"code": 40410000, "message": "order not found"}


def test_a_repeated_client_order_id_is_refused_and_not_executed(client, broker) -> None:
    client.order("c-1")

    again = client.order("c-1", qty=3)

    assert again.status_code == 422
    assert again.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    assert broker.executions("c-1") == 1
    assert broker.positions == {"AAPL": Decimal(10)}


@pytest.mark.parametrize(("length", "code"), [(48, 200), (49, 422)])
def test_client_order_id_is_at_most_48_characters(client, length: int, code: int) -> None:
    assert client.order("x" * length).status_code == code


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"symbol": "ZZZZ"}, "asset not found: ZZZZ"),
        ({"side": "short"}, "side must be buy or sell"),
        ({"qty": "0"}, "qty must be > 0"),
        ({"qty": "lots"}, "qty must be > 0"),
        ({"type": "limit"}, "this fake broker only supports market orders"),
        ({"time_in_force": "forever"}, "invalid time_in_force"),
    ],
)
def test_an_invalid_order_is_422(client, broker, change: dict, message: str) -> None:
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    answer = client.call("POST", ORDERS, json={**body, "client_order_id": "c-1", **change})

    assert answer.status_code == 422
    assert answer.json()["message"] == message
    assert broker.orders == {}


def test_a_body_that_is_not_a_json_object_is_400(client) -> None:
    answer = client.call("POST", ORDERS, data=b"[1, 2]")

    assert answer.status_code == 400


# Fill policies --------------------------------------------------------------------------------


def test_an_open_order_stays_working_until_advanced(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="open", status="accepted"), symbol="AAPL")

    order = client.order(qty=10).json()

    assert (order["status"], order["filled_qty"], order["filled_at"]) == ("accepted", "0", None)
    assert client.get(LOOKUP, client_order_id="c-1").json()["status"] == "accepted"
    assert broker.positions == {}

    advanced = broker.advance("c-1")

    assert (advanced["status"], advanced["filled_qty"]) == ("filled", "10")
    assert broker.positions == {"AAPL": Decimal(10)}
    with pytest.raises(ValueError):
        broker.advance("c-1")


def test_a_symbol_policy_leaves_other_symbols_filling_at_once(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="open"), symbol="AAPL")

    assert client.order("c-1", symbol="AAPL").json()["status"] == "new"
    assert client.order("c-2", symbol="MSFT", qty=1).json()["status"] == "filled"

    broker.set_fill_policy(None, symbol="AAPL")
    assert client.order("c-3", symbol="AAPL").json()["status"] == "filled"


def test_an_order_policy_wins_over_the_symbol_and_the_default(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="open", status="pending_new"))
    broker.set_fill_policy(FillPolicy(mode="open", status="held"), symbol="AAPL")
    broker.set_fill_policy(FillPolicy(), client_order_id="c-1")

    assert client.order("c-1").json()["status"] == "filled"
    assert client.order("c-2").json()["status"] == "held"
    assert client.order("c-3", symbol="MSFT", qty=1).json()["status"] == "pending_new"


def test_partial_fills_advance_step_by_step_and_average_their_prices(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=4), client_order_id="c-1")

    first = client.order(qty=10).json()
    broker.set_price("AAPL", "110")
    second = broker.advance("c-1")
    third = broker.advance("c-1")

    assert (first["status"], first["filled_qty"], first["filled_avg_price"]) == (
        "partially_filled",
        "4",
        "100",
    )
    assert (second["status"], second["filled_qty"], second["filled_avg_price"]) == (
        "partially_filled",
        "8",
        "105.0000",
    )
    # The last step fills only what is left: 2 units at 110.
    assert (third["status"], third["filled_qty"], third["filled_avg_price"]) == (
        "filled",
        "10",
        "106.0000",
    )
    assert broker.positions == {"AAPL": Decimal(10)}
    assert Decimal(broker.account["cash"]) == Decimal(100000) - 4 * 100 - 6 * 110


def test_partial_default_step_is_half_rounded_down(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial"))

    assert client.order(qty=5).json()["filled_qty"] == "2"
    assert client.order("c-2", qty=1).json()["status"] == "filled"


def test_advance_on_get_moves_the_order_at_each_read(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=3, advance_on_get=True))
    order = client.order(qty=7).json()

    reads = [client.get(LOOKUP, client_order_id="c-1").json() for _ in range(2)]
    by_id = client.get(f"{ORDERS}/{order['id']}").json()

    assert [r["filled_qty"] for r in (order, *reads, by_id)] == ["3", "6", "7", "7"]
    assert by_id["status"] == "filled"


@pytest.mark.parametrize("end", ["expired", "canceled", "done_for_day"])
def test_a_limit_ends_the_order_with_its_partial_fill(client, broker, end: str) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=2, limit=4, end=end))
    client.order(qty=10)
    broker.advance("c-1")

    ended = broker.advance("c-1")

    assert (ended["status"], ended["filled_qty"], ended["filled_avg_price"]) == (end, "4", "100")
    assert broker.positions == {"AAPL": Decimal(4)}
    assert client.get(ORDERS, status="closed").json()[0]["status"] == end
    if end == "expired":
        assert ended["expired_at"] == STAMP
    if end == "canceled":
        assert ended["canceled_at"] == STAMP


def test_end_order_and_set_order_status(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=3))
    client.order(qty=10)

    pending = broker.set_order_status("c-1", "pending_cancel")
    expired = broker.end_order("c-1", "expired")

    assert (pending["status"], pending["filled_qty"]) == ("pending_cancel", "3")
    assert (expired["status"], expired["filled_qty"], expired["expired_at"]) == (
        "expired",
        "3",
        STAMP,
    )
    with pytest.raises(ValueError):
        broker.end_order("c-1", "canceled")
    with pytest.raises(ValueError):
        broker.end_order("c-1", "filled")


def test_fill_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        FillPolicy(mode="sometimes")
    with pytest.raises(ValueError):
        FillPolicy(mode="open", status="filled")
    with pytest.raises(ValueError):
        FillPolicy(mode="partial", step=0)
    with pytest.raises(ValueError):
        FillPolicy(end="replaced")


def test_order_status_injection_still_forces_a_status(client, broker) -> None:
    broker.inject("order_status", order_status="canceled", filled_qty=3)

    order = client.order(qty=5).json()

    assert (order["status"], order["filled_qty"], order["canceled_at"]) == ("canceled", "3", STAMP)
    assert broker.positions == {"AAPL": Decimal(3)}


# Cancel and replace ---------------------------------------------------------------------------


def test_cancel_keeps_the_partial_fill_and_cannot_happen_twice(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=4))
    order = client.order(qty=10).json()

    canceled = client.call("DELETE", f"{ORDERS}/{order['id']}")
    again = client.call("DELETE", f"{ORDERS}/{order['id']}")

    assert (canceled.status_code, canceled.content) == (204, b"")
    stored = broker.orders["c-1"]
    assert (stored["status"], stored["filled_qty"], stored["canceled_at"]) == (
        "canceled",
        "4",
        STAMP,
    )
    assert again.status_code == 422
    assert client.call("DELETE", f"{ORDERS}/unknown").status_code == 404
    with pytest.raises(ValueError):
        broker.advance("c-1")


def test_cancel_all_cancels_every_working_order(client, broker) -> None:
    client.order("c-1")
    broker.set_fill_policy(FillPolicy(mode="open"))
    client.order("c-2")
    client.order("c-3")

    answer = client.call("DELETE", ORDERS)

    assert answer.status_code == 207
    assert sorted(item["body"]["client_order_id"] for item in answer.json()) == ["c-2", "c-3"]
    assert [o["status"] for o in broker.orders.values()] == ["filled", "canceled", "canceled"]


def test_replace_links_both_orders_and_keeps_the_old_fill(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), client_order_id="c-1")
    old = client.order(qty=10).json()

    answer = client.call(
        "PATCH", f"{ORDERS}/{old['id']}", json={"qty": "6", "client_order_id": "c-1b"}
    )

    assert answer.status_code == 200
    new = answer.json()
    replaced = client.get(f"{ORDERS}/{old['id']}").json()
    assert (replaced["status"], replaced["replaced_by"], replaced["filled_qty"]) == (
        "replaced",
        new["id"],
        "2",
    )
    assert replaced["replaced_at"] == STAMP
    assert (new["replaces"], new["client_order_id"], new["qty"]) == (old["id"], "c-1b", "6")
    # Worked under the old order's policy: its first step filled at once.
    assert (new["status"], new["filled_qty"]) == ("partially_filled", "2")
    assert broker.positions == {"AAPL": Decimal(4)}


@pytest.mark.parametrize("status", ["accepted", "pending_new"])
def test_an_order_that_is_not_replaceable_is_422(client, broker, status: str) -> None:
    broker.set_fill_policy(FillPolicy(mode="open", status=status))
    order = client.order().json()

    answer = client.call("PATCH", f"{ORDERS}/{order['id']}", json={"qty": "3"})

    assert answer.status_code == 422
    assert broker.orders["c-1"]["status"] == status


def test_replace_refuses_a_client_order_id_in_use(client, broker) -> None:
    client.order("c-0")
    broker.set_fill_policy(FillPolicy(mode="open"))
    order = client.order("c-1").json()

    answer = client.call("PATCH", f"{ORDERS}/{order['id']}", json={"client_order_id": "c-0"})

    assert answer.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    assert broker.orders["c-1"]["status"] == "new"


# Account, buying power, positions -------------------------------------------------------------


def test_account_has_the_real_fields(client, broker) -> None:
    account = client.get("/v2/account").json()

    assert account["status"] == "ACTIVE"
    assert (account["cash"], account["buying_power"], account["equity"]) == (
        "100000",
        "100000",
        "100000",
    )
    assert account["currency"] == "USD"
    for flag in ("trading_blocked", "account_blocked", "trade_suspended_by_user"):
        assert account[flag] is False
    assert account["pattern_day_trader"] is False


def test_account_fields_are_settable(client, broker) -> None:
    broker.set_account(
        status="ACCOUNT_UPDATED", pattern_day_trader=True, cash="500", buying_power="120"
    )

    account = client.get("/v2/account").json()

    assert (account["status"], account["pattern_day_trader"]) == ("ACCOUNT_UPDATED", True)
    assert (account["cash"], account["buying_power"]) == ("500", "120")
    with pytest.raises(ValueError):
        broker.set_account(status="SLEEPING")
    with pytest.raises(ValueError):
        broker.set_account(margin="lots")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "ACCOUNT_CLOSED"}, "account is not active"),
        ({"status": "ONBOARDING"}, "account is not active"),
        ({"status": "SUBMISSION_FAILED"}, "account is not active"),
        ({"account_blocked": True}, "account is blocked"),
        ({"trading_blocked": True}, "trading is blocked for this account"),
        ({"trade_suspended_by_user": True}, "trading is suspended by the account owner"),
    ],
)
def test_an_account_that_may_not_trade_refuses_every_order(
    client, broker, fields: dict, message: str
) -> None:
    broker.set_position("AAPL", 5, "90")
    broker.set_account(**fields)

    for side in ("buy", "sell"):
        answer = client.order(f"c-{side}", side=side, qty=1)
        assert answer.status_code == 403
        assert answer.json() == {"code": 40310000, "message": message}
    assert broker.orders == {}


@pytest.mark.parametrize(("qty", "code"), [(12, 200), (13, 403)])
def test_a_buy_over_the_buying_power_is_403(client, broker, qty: int, code: int) -> None:
    broker.set_account(buying_power="1200")

    answer = client.order(qty=qty)

    assert answer.status_code == code
    if code == 403:
        assert answer.json() == {"code": 40310000, "message": "insufficient buying power"}


def test_working_buys_reserve_buying_power(client, broker) -> None:
    broker.set_account(cash="1000")
    broker.set_fill_policy(FillPolicy(mode="open"))

    client.order("c-1", qty=6)

    assert client.get("/v2/account").json()["buying_power"] == "400"
    assert client.order("c-2", qty=5).status_code == 403
    assert client.order("c-3", qty=4).status_code == 200


def test_a_sell_beyond_the_units_not_already_offered_is_403(client, broker) -> None:
    broker.set_position("AAPL", 10, "90")
    broker.set_fill_policy(FillPolicy(mode="open"))
    client.order("s-1", side="sell", qty=6)

    refused = client.order("s-2", side="sell", qty=5)

    assert refused.status_code == 403
    assert "available: 4" in refused.json()["message"]
    assert client.order("s-3", side="sell", qty=4).status_code == 200


def test_positions_move_with_every_fill(client, broker) -> None:
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), client_order_id="c-2")
    client.order("c-1", qty=4)
    client.order("c-2", side="sell", qty=3)
    broker.set_price("AAPL", "120")

    (position,) = client.get("/v2/positions").json()

    assert position["symbol"] == "AAPL"
    assert (position["qty"], position["side"]) == ("2", "long")
    assert Decimal(position["avg_entry_price"]) == 100
    assert position["market_value"] == "240"
    broker.advance("c-2")
    assert client.get("/v2/positions").json()[0]["qty"] == "1"


# Rate limit -----------------------------------------------------------------------------------


def test_every_answer_carries_the_rate_limit_headers(client, broker) -> None:
    before = time.time()
    answers = [client.get("/v2/account"), client.order(), client.get(f"{ORDERS}/none")]

    for n, answer in enumerate(answers, start=1):
        assert answer.headers["X-Ratelimit-Limit"] == "200"
        assert answer.headers["X-Ratelimit-Remaining"] == str(200 - n)
        reset = int(answer.headers["X-Ratelimit-Reset"])
        assert math.ceil(before + 60) <= reset <= math.ceil(time.time() + 60)


def test_past_the_limit_requests_are_429_and_not_handled(broker, http) -> None:
    broker.set_rate_limit(5)
    client = Client(broker, http)
    for n in range(5):
        assert client.order(f"c-{n}", qty=1).status_code == 200

    refused = client.order("c-5", qty=1)

    assert refused.status_code == 429
    assert refused.json() == {"message": "too many requests."}
    assert refused.headers["X-Ratelimit-Remaining"] == "0"
    assert "c-5" not in broker.orders
    assert broker.count("POST", ORDERS) == 6

    other = Client(broker, http, key_id="another-key")
    assert other.get("/v2/account").status_code == 403  # counted apart: its own window
    broker.reset_rate_limit()
    assert client.order("c-6", qty=1).status_code == 200


def test_without_a_limit_there_are_no_rate_limit_headers(broker, http) -> None:
    broker.set_rate_limit(None)

    answer = Client(broker, http).get("/v2/account")

    assert "X-Ratelimit-Limit" not in answer.headers


# Faults ---------------------------------------------------------------------------------------


def test_delay_answers_late_and_still_stores_the_order(client, broker) -> None:
    broker.inject("delay", seconds=1.0, method="POST")

    with pytest.raises(requests.Timeout):
        client.order(timeout=(1.0, 0.2))

    _wait_for(lambda: "c-1" in broker.orders)


def test_stall_times_out_before_accepting(client, broker) -> None:
    broker.inject("stall", seconds=1.0, method="POST")

    with pytest.raises(requests.Timeout):
        client.order(timeout=(1.0, 0.2))

    assert broker.orders == {}
    assert client.get(LOOKUP, client_order_id="c-1").status_code == 404


def test_accept_then_delay_times_out_after_accepting(client, broker) -> None:
    broker.inject("accept_then_delay", seconds=2.0, method="POST")

    with pytest.raises(requests.Timeout):
        client.order(timeout=(1.0, 0.3))

    assert broker.orders["c-1"]["status"] == "filled"


def test_reset_before_accepting_stores_nothing(client, broker) -> None:
    broker.inject("reset", method="POST")

    with pytest.raises(requests.ConnectionError):
        client.order()

    assert broker.orders == {}


def test_reset_after_accepting_keeps_the_order(client, broker) -> None:
    broker.inject("accept_then_reset", method="POST")

    with pytest.raises(requests.ConnectionError):
        client.order()

    assert broker.orders["c-1"]["status"] == "filled"


def test_accept_then_fail_answers_the_given_status_after_storing(client, broker) -> None:
    broker.inject("accept_then_fail", status=502, method="POST")

    answer = client.order()

    assert answer.status_code == 502
    assert broker.executions("c-1") == 1


@pytest.mark.parametrize("kind", ["garbage", "accept_then_garbage"])
def test_unreadable_json(client, broker, kind: str) -> None:
    broker.inject(kind, method="POST")

    answer = client.order()

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        answer.json()
    assert ("c-1" in broker.orders) is (kind == "accept_then_garbage")


@pytest.mark.parametrize(
    ("kind", "code", "body"),
    [
        (
            "insufficient_buying_power",
            403,
            {"code": 40310000, "message": "insufficient buying power"},
        ),
        ("duplicate", 422, {"code": 40010001, "message": "client_order_id must be unique"}),
        ("rate_limited", 429, {"message": "too many requests."}),
    ],
)
def test_injected_broker_refusals_store_nothing(client, broker, kind, code, body) -> None:
    broker.inject(kind, method="POST", seconds=30)

    answer = client.order()

    assert (answer.status_code, answer.json()) == (code, body)
    assert broker.orders == {}
    if kind == "rate_limited":
        assert answer.headers["X-Ratelimit-Remaining"] == "0"
        assert int(answer.headers["X-Ratelimit-Reset"]) >= math.ceil(time.time() + 29)


def test_respond_sends_the_status_body_and_headers(client, broker) -> None:
    broker.inject(
        "respond", status=429, body={"message": "slow down"}, headers={"Retry-After": "7"}
    )

    answer = client.get("/v2/account")

    assert (answer.status_code, answer.json()) == (429, {"message": "slow down"})
    assert answer.headers["Retry-After"] == "7"


def test_nth_applies_to_the_nth_matching_request_only(client, broker) -> None:
    broker.inject("respond", status=503, nth=3, method="POST")

    codes = [client.order(f"c-{n}", qty=1).status_code for n in range(5)]

    assert codes == [200, 200, 503, 200, 200]
    assert "c-2" not in broker.orders


def test_times_none_applies_to_every_matching_request(client, broker) -> None:
    broker.inject("respond", status=500, times=None, nth=2, path="/v2/account")

    codes = [client.get("/v2/account").status_code for _ in range(4)]

    assert codes == [200, 500, 500, 500]
    assert client.get("/v2/positions").status_code == 200
    broker.clear_injections()
    assert client.get("/v2/account").status_code == 200


def test_a_waiting_injection_lets_an_earlier_match_apply(client, broker) -> None:
    broker.inject("respond", status=500, nth=2, method="GET")
    broker.inject("respond", status=502, method="GET")

    codes = [client.get("/v2/account").status_code for _ in range(3)]

    assert codes == [502, 500, 200]


def test_auth_is_checked(broker, http) -> None:
    bare = http.get(broker.url + "/v2/account", timeout=PATIENT)
    wrong = http.get(
        broker.url + "/v2/account",
        headers={"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": "wrong"},
        timeout=PATIENT,
    )

    assert bare.status_code == 401
    assert wrong.status_code == 403


def test_unknown_route_is_plain_404_and_wrong_method_405(client) -> None:
    missing = client.get("/v2/elsewhere")

    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert client.call("POST", "/v2/account", json={}).status_code == 405


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the broker never got there"
        time.sleep(0.05)
