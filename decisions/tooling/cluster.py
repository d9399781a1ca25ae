"""What the cluster benchmarks share: the refusal of SQLite, the environment of a real
``manage.py qcluster`` subprocess, starting, killing and stopping one, and a pool of entities
with bars that trades through the HTTP execution adapter.

The benchmarks run against a throwaway PostgreSQL database (``manage.py bench`` creates and
drops it) and the Redis database of ``REDIS_URL``, which they flush: the clusters they start
take their tasks from it. The test broker (``tests/broker_server.py``) is served from the
benchmark's own process.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from decisions.tooling.benchmarks import daily_bar
from portfolio.actions import create_pool
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Entity, MarketSnapshot, Pool, PoolRiskConfig

ROOT = Path(__file__).resolve().parent.parent.parent
START_WITHIN_S = 60
STOP_WITHIN_S = 30


class BenchUnavailable(Exception):
    """The benchmark cannot run here (no PostgreSQL, no Redis, outside a session)."""


def require_postgres_and_redis() -> None:
    """Refuse anything but PostgreSQL with Redis: SQLite has no row locks for two clusters."""
    if connection.vendor != "postgresql":
        raise BenchUnavailable(
            "this benchmark runs real qcluster processes against PostgreSQL: set DATABASE_URL "
            f"to a PostgreSQL server (the configured database is {connection.vendor})"
        )
    if not settings.REDIS_URL:
        raise BenchUnavailable(
            "this benchmark needs Redis for the task queue: set REDIS_URL to a Redis database "
            "it may flush (e.g. redis://127.0.0.1:6379/9)"
        )


def database_url() -> str:
    """The URL of the database this process is connected to (the throwaway one)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(db['NAME'], safe='')}"


def flush_redis() -> None:
    """Empty the Redis database of ``REDIS_URL``: no task of an earlier run is left in it."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def cluster_env(broker_url: str, key_id: str, secret_key: str, workers: int) -> dict[str, str]:
    """The environment of a cluster on this process's database and Redis, trading with the
    test broker at ``broker_url``; a random SECRET_KEY shared by every cluster of the run
    (the tasks are signed with it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "REQUIRE_SECRET_KEY")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=run_secret_key(),
        DEBUG="0",
        Q_WORKERS=str(workers),
        EXECUTION_API_URL=broker_url,
        EXECUTION_API_KEY_ID=key_id,
        EXECUTION_API_SECRET_KEY=secret_key,
        EXECUTION_API_TIMEOUT="10",
        # The test broker runs without a rate limit: no client-side budget either.
        EXECUTION_API_RATE_LIMIT="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_secret_key() -> str:
    """The SECRET_KEY of this process and its clusters. The clusters refuse the development
    key, and django-q2 signs every task with the key (read once, into ``Conf``): on the
    development key this process switches both to a random key of its own for the run."""
    from django_q.conf import Conf

    if settings.SECRET_KEY_IS_DEVELOPMENT:
        settings.SECRET_KEY = secrets.token_urlsafe(50)
        settings.SECRET_KEY_IS_DEVELOPMENT = False
        Conf.SECRET_KEY = settings.SECRET_KEY
    return settings.SECRET_KEY


class ClusterProcess:
    """One ``manage.py qcluster`` in its own process group, its output in a temporary file."""

    def __init__(self, label: str, env: dict[str, str]) -> None:
        self.label = label
        self.env = env
        self.log = Path(tempfile.mkstemp(prefix=f"bench-qcluster-{label}-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> ClusterProcess:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_running()
        return self

    def wait_running(self) -> None:
        deadline = time.monotonic() + START_WITHIN_S
        while "running." not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise RuntimeError(f"qcluster {self.label} exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"qcluster {self.label} not running after {START_WITHIN_S} s")
            time.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole cluster (leader, sentinel, workers, monitor, pusher) at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_WITHIN_S)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after ``STOP_WITHIN_S``; the log removed."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=STOP_WITHIN_S)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self.log.unlink(missing_ok=True)


def build_http_pool(
    name: str, symbols: int, now: datetime, rng: random.Random, sessions: int = 30
) -> tuple[Pool, dict[str, Decimal]]:
    """A simulation pool on the HTTP adapter with ``symbols`` entities (ten sectors) and
    ``sessions`` daily bars each up to the last session before ``now``; the execution gate's
    limits raised so that every benchmark order passes it. Returns the pool and each symbol's
    last close ($/unit), the price the test broker fills at."""
    pool = create_pool(
        name,
        mode="simulation",
        cash=Decimal("1000000000"),
        tier="aggressive",
        adapter="http",
        now=now,
        actor="bench",
        reason="benchmark pool",
    )
    PoolRiskConfig.objects.filter(pool=pool).update(
        max_open_commitments=100_000,
        max_sector_pct=Decimal("1"),
        max_daily_loss_pct=Decimal("1"),
        max_order_notional=Decimal("100000000"),
        max_orders_per_minute=1_000_000,
    )
    calendar = get_market_calendar(now)
    days = calendar.last_sessions(
        calendar.previous_session(calendar.current_session(now)), sessions
    )
    names = [f"{name[:4].upper()}{i:03d}" for i in range(symbols)]
    Entity.objects.bulk_create(
        [Entity(symbol=s, name=s, sector=f"Sector {i % 10}") for i, s in enumerate(names)],
        ignore_conflicts=True,
    )
    prices, bars = {}, []
    for symbol in names:
        value = 20 + 80 * rng.random()
        for day in days:
            value *= 1 + rng.gauss(0, 0.015)
            close = Decimal(str(round(value, 2)))
            bars.append(daily_bar(symbol, calendar.session_close(day), close))
        prices[symbol] = close
    MarketSnapshot.objects.bulk_create(bars, batch_size=5000)
    return pool, prices
