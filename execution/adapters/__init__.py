"""Execution adapters: turn an order into a broker's answer (paper or Alpaca-compatible HTTP),
and read the market data API (``market_data``).

Plain Python, no Django: the execution worker builds an adapter from settings and passes it in.
"""

from __future__ import annotations

from execution.adapters.base import (
    BrokerAccount,
    BrokerPosition,
    BrokerUnavailable,
    ExecutionAdapter,
    ExecutionResponse,
    OrderRequest,
    RequestLimiter,
    ResponseStatus,
)
from execution.adapters.http import AlpacaHttpAdapter
from execution.adapters.market_data import AlpacaDataClient, Bar
from execution.adapters.paper import PaperAdapter, apply_slippage, paper_broker_order_id

__all__ = [
    "AlpacaDataClient",
    "AlpacaHttpAdapter",
    "Bar",
    "BrokerAccount",
    "BrokerPosition",
    "BrokerUnavailable",
    "ExecutionAdapter",
    "ExecutionResponse",
    "OrderRequest",
    "PaperAdapter",
    "RequestLimiter",
    "ResponseStatus",
    "apply_slippage",
    "paper_broker_order_id",
]
