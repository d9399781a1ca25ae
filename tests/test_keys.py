"""execution.keys: the idempotency key and the client_order_id derived from it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.adapters import OrderRequest
from execution.keys import (
    MAX_CLIENT_ORDER_ID_LENGTH,
    client_order_id_for,
    derive_idempotency_key,
    idempotency_key_prefix,
)

KEY = derive_idempotency_key("AAPL", "act", Decimal("5"), "decision:42")


def test_client_order_id_is_a_prefix_and_40_hex_characters_of_the_key() -> None:
    client_order_id = client_order_id_for(KEY)

    assert client_order_id == "ik1-" + KEY[:40]
    assert len(client_order_id) == 44 <= MAX_CLIENT_ORDER_ID_LENGTH == 48
    assert client_order_id_for(KEY) == client_order_id
    assert idempotency_key_prefix(client_order_id) == KEY[:40]
    assert KEY.startswith(idempotency_key_prefix(client_order_id))


def test_different_keys_give_different_client_order_ids() -> None:
    keys = {
        derive_idempotency_key(symbol, "act", Decimal(qty), f"decision:{n}")
        for symbol in ("AAPL", "MSFT")
        for qty in (1, 2)
        for n in range(250)
    }

    assert len({client_order_id_for(key) for key in keys}) == len(keys) == 1000


def test_the_derived_id_passes_the_order_request_and_the_raw_key_does_not() -> None:
    request = OrderRequest(client_order_id_for(KEY), "AAPL", "buy", Decimal(5))

    assert request.client_order_id == "ik1-" + KEY[:40]
    with pytest.raises(ValueError, match="client_order_id_for"):
        OrderRequest(KEY, "AAPL", "buy", Decimal(5))
    assert OrderRequest("x" * 48, "AAPL", "buy", Decimal(5)).client_order_id == "x" * 48


@pytest.mark.parametrize("key", ["", KEY[:63], KEY + "0", KEY.upper(), "g" * 64, None])
def test_only_a_64_hex_key_is_accepted(key) -> None:
    with pytest.raises(ValueError):
        client_order_id_for(key)


@pytest.mark.parametrize("client_order_id", ["coid-1", "ik1-" + "0" * 39, "ik1-" + "Z" * 40, KEY])
def test_ids_not_derived_from_a_key_have_no_key_prefix(client_order_id: str) -> None:
    assert idempotency_key_prefix(client_order_id) is None
