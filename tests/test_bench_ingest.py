"""``bench ingest``: a small run through the real HTTP server inside the suite."""

from __future__ import annotations

import json
import urllib.request

from decisions.models import Recommendation
from decisions.tooling.bench_ingest import IngestServer, IngestSpec, bench_ingest


def test_ingest_bench_posts_every_recommendation_and_reports_its_figures(transactional_db):
    lines: list[str] = []

    figures = bench_ingest(
        IngestSpec(recommendations=60, batch=25, entities=5, repeat=2), lines.append
    )

    assert figures["benchmark"] == "ingest"
    assert figures["recommendations"] == 60 and figures["runs"] == 2
    assert figures["http_s"] > 0 and figures["bulk_insert_s"] > 0
    assert abs(figures["recs_per_s"] - 60 / figures["http_s"]) < 0.01 * figures["recs_per_s"] + 1
    assert figures["ratio"] > 0  # HTTP time over bulk-insert time, both medians
    assert any("HTTP ingest" in line for line in lines)
    assert not Recommendation.objects.exists()  # each run cleans up after itself
    json.dumps(figures)


def test_the_bench_server_answers_on_127_0_0_1(transactional_db):
    with IngestServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(server.url + "/api/v1/recommendations/")
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401  # no token: the real authentication answered
        else:
            raise AssertionError("an anonymous read was allowed")
