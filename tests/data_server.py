"""A fake Alpaca-compatible market data API served over real HTTP on 127.0.0.1, for tests.

Usage::

    with FakeDataApi() as api:
        api.set_trade("AAPL", "187.12", "2026-11-18T15:59:59.123456789Z")
        api.set_bars("AAPL", [{"t": "2026-11-18T05:00:00Z", "o": 1, "h": 2, "l": 1, "c": 2,
                               "v": 10}])
        client = AlpacaDataClient(api.url, api.key_id, api.secret_key)
        api.inject(status=503)            # the next request answers 503
        api.inject(delay=2.0)             # the next request waits 2 s, then answers
        api.inject(body="<html>")         # the next request answers 200 with garbage

Routes: ``GET /v2/stocks/{symbol}/trades/latest`` (``{"symbol", "trade": {"t", "p", "s", …}}``;
404 JSON for an unknown symbol) and ``GET /v2/stocks/{symbol}/bars`` (the bars between the
``start`` and ``end`` dates, ``page_size`` per page with ``next_page_token``). Prices are JSON
numbers, as the data API writes them. Both auth headers are checked (401 missing, 403 wrong).
``received`` lists every request (path, query, headers); ``count(path_suffix)`` counts them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class DataRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Injection:
    status: int = 200
    body: Any = None
    delay: float = 0.0


class FakeDataApi:
    """The market data API on 127.0.0.1 with switchable faults; see the module docstring."""

    def __init__(
        self,
        *,
        key_id: str = "data-key-id",
        secret_key: str = "data-secret-key",
        page_size: int = 2,
    ) -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        self.page_size = page_size
        self._lock = threading.Lock()
        self._trades: dict[str, dict[str, Any]] = {}
        self._bars: dict[str, list[dict[str, Any]]] = {}
        self._injections: list[_Injection] = []
        self._received: list[DataRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeDataApi:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeDataApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_trade(self, symbol: str, price: Any, at: str) -> None:
        """The latest trade of ``symbol``: ``price`` as given (a float or an int is a JSON
        number, as the data API writes it; text is a JSON string), ``at`` an RFC 3339
        timestamp."""
        with self._lock:
            self._trades[symbol] = {"t": at, "x": "V", "p": price, "s": 100, "c": ["@"], "i": 1}

    def set_bars(self, symbol: str, bars: list[dict[str, Any]]) -> None:
        with self._lock:
            self._bars[symbol] = list(bars)

    def inject(self, *, status: int = 200, body: Any = None, delay: float = 0.0) -> None:
        """The next request is answered ``status`` with ``body`` (``None``: a JSON error for
        a non-2xx status, the normal answer for a 2xx one) after ``delay`` seconds."""
        with self._lock:
            self._injections.append(_Injection(status, body, delay))

    @property
    def received(self) -> list[DataRequest]:
        with self._lock:
            return list(self._received)

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for r in self.received if r.path.endswith(path_suffix))

    # called from the server threads

    def _take(self, request: DataRequest) -> _Injection | None:
        with self._lock:
            self._received.append(request)
            return self._injections.pop(0) if self._injections else None

    def _answer(self, request: DataRequest) -> tuple[int, Any]:
        key = request.headers.get("apca-api-key-id")
        secret = request.headers.get("apca-api-secret-key")
        if not key or not secret:
            return 401, {"message": "request is not authorized"}
        if key != self.key_id or secret != self.secret_key:
            return 403, {"message": "forbidden"}
        parts = request.path.split("/")
        # /v2/stocks/{symbol}/trades/latest or /v2/stocks/{symbol}/bars
        if len(parts) >= 5 and parts[1:3] == ["v2", "stocks"]:
            symbol = unquote(parts[3])
            rest = parts[4:]
            with self._lock:
                if rest == ["trades", "latest"]:
                    trade = self._trades.get(symbol)
                    if trade is None:
                        return 404, {"message": "not found"}
                    return 200, {"symbol": symbol, "trade": dict(trade)}
                if rest == ["bars"]:
                    return 200, self._page(symbol, request.query)
        return 404, "404 page not found"

    def _page(self, symbol: str, query: dict[str, str]) -> dict[str, Any]:
        start, end = query.get("start", ""), query.get("end", "9999")
        bars = [b for b in self._bars.get(symbol, []) if start <= str(b["t"])[:10] <= end]
        offset = int(query.get("page_token") or 0)
        page = bars[offset : offset + self.page_size]
        following = offset + self.page_size
        return {
            "bars": page,
            "symbol": symbol,
            "next_page_token": str(following) if following < len(bars) else None,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeDataApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = 5

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        request = DataRequest(
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        injection = api._take(request)
        if injection is not None and injection.delay and api._stopping.wait(injection.delay):
            return
        status, body = api._answer(request)
        if injection is not None and (injection.status != 200 or injection.body is not None):
            status = injection.status
            body = injection.body if injection.body is not None else {"message": "injected"}
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            content_type = "application/json"
        else:
            payload = str(body).encode()
            content_type = "text/html"
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass
