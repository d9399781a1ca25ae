"""``/api/v1/performance-reports/``: report dates added (all or nothing) and the list."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portfolio.imports import REPORT_HORIZON_DAYS
from portfolio.models import PerformanceReport
from tests import factories

URL = "/api/v1/performance-reports/"


@pytest.fixture
def entities(db):
    factories.make_entity("AAPL")
    factories.make_entity("MSFT")


def post(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [("anonymous", 401), ("no_role", 403), ("viewer", 403), ("ingest", 201), ("operator", 201)],
)
def test_only_ingest_and_operator_may_post(request, entities, client_name, expected):
    client = request.getfixturevalue(client_name)

    assert post(client, {"entity": "AAPL", "report_date": "2026-12-10"}).status_code == expected


@pytest.mark.parametrize("client_name", ["viewer", "ingest", "operator"])
def test_readers(request, db, client_name):
    assert request.getfixturevalue(client_name).get(URL).status_code == 200


def test_dates_are_added_and_a_stored_date_is_unchanged(ingest, entities):
    body = [
        {"entity": "aapl", "report_date": "2026-12-10"},
        {"entity": "MSFT", "report_date": "2027-01-28"},
    ]
    first = post(ingest, body)
    assert first.status_code == 201 and first.json()["created"] == 2

    again = post(ingest, body)

    assert again.status_code == 200
    assert again.json() == {"rows": 2, "created": 0, "updated": 0, "unchanged": 2}
    assert PerformanceReport.objects.count() == 2


def test_a_date_beyond_the_horizon_is_refused_with_the_reason(ingest, entities):
    today = timezone.now().astimezone(factories.NEW_YORK).date()
    edge = today + timedelta(days=REPORT_HORIZON_DAYS)
    body = [
        {"entity": "AAPL", "report_date": edge.isoformat()},
        {"entity": "AAPL", "report_date": "2099-06-01"},
    ]

    response = post(ingest, body)

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "1": [
            f"report_date 2099-06-01 is more than {REPORT_HORIZON_DAYS} days ahead "
            f"(after {edge.isoformat()})"
        ]
    }
    assert not PerformanceReport.objects.exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"entity": "NOPE", "report_date": "2026-12-10"}, "unknown symbol NOPE"),
        ({"entity": "AAPL", "report_date": "12/10/2026"}, "is not a date YYYY-MM-DD"),
        ({"entity": "AAPL", "report_date": 20261210}, "is not a date YYYY-MM-DD"),
        ({"entity": "AAPL"}, "is not a date YYYY-MM-DD"),
    ],
)
def test_a_bad_item_refuses_the_batch(ingest, entities, bad, message):
    response = post(ingest, [{"entity": "MSFT", "report_date": "2026-12-10"}, bad])

    assert response.status_code == 400
    assert message in response.json()["errors"]["1"][0]
    assert not PerformanceReport.objects.exists()


def test_the_list_is_latest_first_and_filters(viewer, entities):
    for symbol, day in [("AAPL", 3), ("MSFT", 10), ("AAPL", 20)]:
        factories.add_report(symbol, date(2026, 12, day))

    def dates(query: str = "") -> list[tuple[str, str]]:
        rows = viewer.get(URL + query).json()["results"]
        return [(row["entity"], row["report_date"]) for row in rows]

    assert dates() == [("AAPL", "2026-12-20"), ("MSFT", "2026-12-10"), ("AAPL", "2026-12-03")]
    assert dates("?entity=aapl") == [("AAPL", "2026-12-20"), ("AAPL", "2026-12-03")]
    assert dates("?report_date_after=2026-12-04&report_date_before=2026-12-19") == [
        ("MSFT", "2026-12-10")
    ]
    assert viewer.get(URL + "?report_date_after=soon").status_code == 400


def test_list_queries_do_not_grow_with_the_page_size(viewer, entities):
    for day in range(1, 29):
        factories.add_report("AAPL", date(2026, 2, day))

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(viewer.get(f"{URL}?page_size={page_size}").json()["results"]) == page_size
        return len(captured)

    assert queries(2) == queries(25)
