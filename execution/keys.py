"""Deterministic idempotency keys (source: "a deterministic idempotency key is generated from
the job's entity identifier, action, quantity, and decision ID")."""

from __future__ import annotations

import hashlib
from decimal import Decimal

QUANTITY_STEP = Decimal("0.0001")


def derive_idempotency_key(symbol: str, action: str, quantity: Decimal, reference: str) -> str:
    """``sha256(entity|action|quantity|reference)`` as 64 hex characters.

    ``reference`` is the decision id for decided orders, or a stable description of the
    trigger (``commitment:42:risk_threshold``) for orders the monitors create. The quantity is
    normalised to the stored precision, so the key computed before and after a database round
    trip is the same.
    """
    qty = format(quantity.quantize(QUANTITY_STEP), "f")
    raw = f"{symbol}|{action}|{qty}|{reference}"
    return hashlib.sha256(raw.encode()).hexdigest()


#: Prefix of every client_order_id derived from an idempotency key; its "1" names the derivation,
#: so another one could be told apart at the broker.
CLIENT_ORDER_ID_PREFIX = "ik1-"
#: Hex characters of the idempotency key kept in the client_order_id.
CLIENT_ORDER_ID_HEX = 40
#: The broker's bound on a client_order_id (``execution.adapters.base`` checks the same).
MAX_CLIENT_ORDER_ID_LENGTH = 48
_HEX = frozenset("0123456789abcdef")


def client_order_id_for(idempotency_key: str) -> str:
    """The ``client_order_id`` sent to the broker for the order with ``idempotency_key``:
    ``"ik1-"`` + the key's first 40 hex characters (44 characters; the broker takes at most 48).

    Deterministic, so every resend and every lookup of one order uses the same id, and the
    broker's refusal of a repeated client_order_id keeps guarding against a double execution.
    Collisions are negligible: the key is a SHA-256 digest, so its first 40 hex characters are
    160 uniformly distributed bits; among n orders the chance that two share a prefix is about
    n² / 2¹⁶¹, under 10⁻³⁰ for a billion orders (and the unique key in the ``orders`` table
    would refuse such a pair anyway when the full keys are equal). Keeping a prefix of the key,
    rather than a second hash, lets an operator find the order from what the broker shows
    (``idempotency_key__startswith=idempotency_key_prefix(client_order_id)``).

    Raises ``ValueError`` unless ``idempotency_key`` is 64 lowercase hex characters (what
    ``derive_idempotency_key`` returns).
    """
    if (
        not isinstance(idempotency_key, str)
        or len(idempotency_key) != 64
        or not _HEX.issuperset(idempotency_key)
    ):
        raise ValueError("idempotency_key must be 64 lowercase hex characters")
    return CLIENT_ORDER_ID_PREFIX + idempotency_key[:CLIENT_ORDER_ID_HEX]


def idempotency_key_prefix(client_order_id: str) -> str | None:
    """The idempotency key's first 40 hex characters inside a ``client_order_id_for`` id, or
    ``None`` when ``client_order_id`` was not derived that way."""
    hex_part = client_order_id.removeprefix(CLIENT_ORDER_ID_PREFIX)
    if (
        hex_part == client_order_id
        or len(hex_part) != CLIENT_ORDER_ID_HEX
        or not _HEX.issuperset(hex_part)
    ):
        return None
    return hex_part
