"""``bench chaos``, small: two real clusters killed while orders flow, then broker and books agree.

Needs PostgreSQL and Redis (``REDIS_URL``, a database the run flushes). The clusters are other
processes: they see only committed rows, so the test runs on the test database with real
transactions (``transactional_db``) and leaves it empty behind it.
"""

from __future__ import annotations

import os

import pytest

from decisions.tooling.bench_chaos import ChaosSpec, bench_chaos

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (as CI sets)"),
]


def test_killed_clusters_leave_no_duplicate_lost_unsettled_or_disagreeing_order(
    transactional_db,
):
    lines: list[str] = []

    figures = bench_chaos(
        ChaosSpec(orders=30, kills=2, symbols=5, feed_seconds=15, settle_timeout=60),
        lines.append,
    )

    assert figures["orders"] == 30 and figures["kills"] == 2
    assert figures["stages"].get("random", 0) == 0, lines  # each kill landed where aimed
    assert figures["duplicates"] == 0
    assert figures["lost"] == 0
    assert figures["unsettled"] == 0, lines
    assert figures["disagreeing"] == 0
    assert figures["max_settle_s"] is not None and figures["max_settle_s"] <= 90
