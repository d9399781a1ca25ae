"""``/api/v1/entities/``: upsert by symbol (all or nothing) and the list."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portfolio.models import Entity
from tests import factories

URL = "/api/v1/entities/"


def post(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [("anonymous", 401), ("no_role", 403), ("viewer", 403), ("ingest", 201), ("operator", 201)],
)
def test_only_ingest_and_operator_may_post(request, db, client_name, expected):
    client = request.getfixturevalue(client_name)

    response = post(client, {"symbol": "AAPL", "name": "Apple", "sector": "Technology"})

    assert response.status_code == expected


@pytest.mark.parametrize("client_name", ["viewer", "ingest", "operator"])
def test_readers(request, db, client_name):
    assert request.getfixturevalue(client_name).get(URL).status_code == 200


def test_entities_are_upserted_by_symbol(ingest):
    first = post(ingest, [{"symbol": "aapl", "name": "Apple", "sector": "Technology"}])
    assert first.status_code == 201
    assert first.json() == {"rows": 1, "created": 1, "updated": 0, "unchanged": 0}

    second = post(
        ingest,
        [
            {"symbol": "AAPL", "name": "Apple Inc.", "sector": "Technology"},
            {"symbol": "XOM", "sector": "Energy"},
        ],
    )

    assert second.status_code == 201
    assert second.json() == {"rows": 2, "created": 1, "updated": 1, "unchanged": 0}
    assert Entity.objects.get(symbol="AAPL").name == "Apple Inc."
    assert Entity.objects.get(symbol="XOM").name == ""
    again = post(ingest, {"symbol": "XOM", "sector": "Energy"})
    assert again.status_code == 200 and again.json()["unchanged"] == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"symbol": "AB$C", "sector": "Tech"}, "symbol 'AB$C' is not 1-16 letters"),
        ({"symbol": "ZZZ"}, "sector is required"),
        ({"symbol": "ZZZ", "sector": ["Tech"]}, "sector ['Tech'] is not a string or a number"),
        ({"symbol": "AAPL", "sector": "Tech"}, "symbol AAPL repeats item 0"),
        ("AAPL", "expected a JSON object, got string"),
    ],
)
def test_a_bad_item_refuses_the_batch(ingest, bad, message):
    response = post(ingest, [{"symbol": "AAPL", "sector": "Tech"}, bad])

    assert response.status_code == 400
    assert message in response.json()["errors"]["1"][0]
    assert not Entity.objects.exists()


def test_the_list_filters_by_sector_and_walks_by_cursor(viewer, db):
    for i in range(5):
        factories.make_entity(f"E{i}", sector="Energy" if i % 2 else "Tech")

    page = viewer.get(URL + "?page_size=2").json()
    assert [row["symbol"] for row in page["results"]] == ["E0", "E1"]
    assert [row["symbol"] for row in viewer.get(page["next"]).json()["results"]] == ["E2", "E3"]
    energy = viewer.get(URL + "?sector=Energy").json()["results"]
    assert [row["symbol"] for row in energy] == ["E1", "E3"]


def test_list_queries_do_not_grow_with_the_page_size(viewer, db):
    for i in range(40):
        factories.make_entity(f"Q{i:02d}")

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(viewer.get(f"{URL}?page_size={page_size}").json()["results"]) == page_size
        return len(captured)

    assert queries(3) == queries(30)
