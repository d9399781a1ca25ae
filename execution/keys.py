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
