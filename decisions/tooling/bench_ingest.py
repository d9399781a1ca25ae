"""Benchmark ``ingest``: recommendations POSTed through a real HTTP server against a bulk insert.

The API's ingest path (authentication, the throttle, JSON parsing, ``parse_recommendation``
for every item, the reference checks, one ``bulk_create`` per batch, the trigger of a
decision cycle) is timed end to end through Django's WSGI handler served on 127.0.0.1,
and compared with ``bulk_create`` of the same rows alone, in the same run and database. Run
through ``manage.py bench ingest``, which creates and destroys a throwaway database.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from decisions.models import Recommendation
from portfolio.actions import create_pool
from portfolio.models import Entity
from project.api.roles import INGEST, role_group

URL_PATH = "/api/v1/recommendations/"


@dataclass(frozen=True)
class IngestSpec:
    recommendations: int = 10_000
    batch: int = 1_000
    entities: int = 500
    repeat: int = 3
    seed: int = 5


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


class IngestServer:
    """Django's WSGI handler on 127.0.0.1 (a free port) in one thread, requests served
    one after the other. An in-memory SQLite test database exists only inside the connection
    that created it, so the server thread then borrows that connection (as Django's live
    server tests do); otherwise the thread opens its own, as a production worker would."""

    def __init__(self) -> None:
        # The handler project.wsgi serves, without its start-up refusal of the development
        # SECRET_KEY: this server lives for one benchmark on a throwaway database.
        application = get_wsgi_application()
        main = connections["default"]
        self._shared = main if main.vendor == "sqlite" else None
        if self._shared is not None and not self._shared.is_in_memory_db():
            self._shared = None
        self.httpd = WSGIServer(("127.0.0.1", 0), _QuietHandler)
        self.httpd.set_app(application)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self._serve, name="bench-ingest", daemon=True)

    def _serve(self) -> None:
        if self._shared is not None:
            connections["default"] = self._shared
        try:
            self.httpd.serve_forever(poll_interval=0.05)
        finally:
            if self._shared is None:
                connections.close_all()

    def __enter__(self) -> IngestServer:
        if self._shared is not None:
            self._shared.inc_thread_sharing()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self._thread.join()
        self.httpd.server_close()
        if self._shared is not None:
            self._shared.dec_thread_sharing()


def _rows(spec: IngestSpec, symbols: list[str], now, rng: random.Random) -> list[dict]:
    return [
        {
            "id": f"ingest-{i:06d}",
            "entity": rng.choice(symbols),
            "action": "act" if rng.random() < 0.9 else "defer",
            "mode": "simulation_eligible",
            "confidence": str(round(rng.uniform(0.45, 0.99), 4)),
            "generated_at": (now - timedelta(minutes=rng.randint(1, 110))).isoformat(),
            "thesis": "benchmark",
            "risk_classification": "medium",
        }
        for i in range(spec.recommendations)
    ]


def _model(row: dict) -> Recommendation:
    return Recommendation(
        id=row["id"],
        entity_id=row["entity"],
        action=row["action"],
        mode=row["mode"],
        confidence=Decimal(row["confidence"]),
        generated_at=datetime.fromisoformat(row["generated_at"]),
        thesis=row["thesis"],
        risk_classification=row["risk_classification"],
    )


def _post(url: str, token: str, body: bytes) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        return response.status


def bench_ingest(spec: IngestSpec, progress: Callable[[str], None]) -> dict:
    """Time ``spec.recommendations`` recommendations POSTed in batches of ``spec.batch`` to
    ``/api/v1/recommendations/`` through a real HTTP server, against ``bulk_create`` of the
    same rows (batches of 1,000, one transaction). Medians of ``spec.repeat`` runs, seconds."""
    rng = random.Random(spec.seed)
    now = timezone.now()
    symbols = [f"I{i:04d}" for i in range(spec.entities)]
    Entity.objects.bulk_create(
        [
            Entity(symbol=s, name=f"Bench {s}", sector=f"Sector {i % 10}")
            for i, s in enumerate(symbols)
        ]
    )
    # A pool that takes the recommendations, so the trigger of a decision cycle runs too.
    create_pool(
        "bench-ingest",
        mode="simulation",
        cash=Decimal("100000"),
        now=now,
        actor="bench",
        reason="benchmark pool",
    )
    user = get_user_model().objects.create_user("bench-ingest")
    user.groups.add(role_group(INGEST))
    token = Token.objects.create(user=user).key
    rows = _rows(spec, symbols, now, rng)
    bodies = [
        json.dumps(rows[start : start + spec.batch]).encode()
        for start in range(0, len(rows), spec.batch)
    ]
    progress(
        f"{spec.recommendations} recommendations, {len(bodies)} batches of {spec.batch}, "
        f"{sum(map(len, bodies)) / 1e6:.1f} MB of JSON"
    )
    bulk_times, http_times = [], []
    with IngestServer() as server:
        for run in range(spec.repeat):
            models = [_model(row) for row in rows]
            start = time.perf_counter()
            with transaction.atomic():
                Recommendation.objects.bulk_create(models, batch_size=1000)
            bulk_times.append(time.perf_counter() - start)
            Recommendation.objects.all().delete()

            start = time.perf_counter()
            statuses = [_post(server.url + URL_PATH, token, body) for body in bodies]
            http_times.append(time.perf_counter() - start)
            if set(statuses) != {201} or Recommendation.objects.count() != len(rows):
                raise RuntimeError(f"ingest answered {statuses}")
            Recommendation.objects.all().delete()
            progress(
                f"run {run + 1}: bulk insert {bulk_times[-1]:.3f} s, "
                f"HTTP ingest {http_times[-1]:.3f} s"
            )
    bulk_s = statistics.median(bulk_times)
    http_s = statistics.median(http_times)
    return {
        "benchmark": "ingest",
        "database": connection.vendor,
        "recommendations": spec.recommendations,
        "batch": spec.batch,
        "recs_per_s": round(spec.recommendations / http_s),
        "bulk_insert_s": round(bulk_s, 4),
        "http_s": round(http_s, 4),
        "ratio": round(http_s / bulk_s, 2) if bulk_s else None,
        "runs": spec.repeat,
        "http_runs_s": [round(t, 4) for t in http_times],
    }
