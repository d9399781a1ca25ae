"""``/api/v1/market-snapshots/``: batch upsert of bars (all or nothing) and the list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portfolio.models import MarketSnapshot
from tests import factories

URL = "/api/v1/market-snapshots/"


@pytest.fixture
def entities(db):
    factories.make_entity("AAPL")
    factories.make_entity("MSFT")


def bar(**overrides) -> dict:
    data = {
        "entity": "AAPL",
        "as_of": "2026-11-24",
        "open": "100",
        "high": "102",
        "low": "99",
        "close": "101.5",
        "volume": 1200,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def post(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [("anonymous", 401), ("no_role", 403), ("viewer", 403), ("ingest", 201), ("operator", 201)],
)
def test_only_ingest_and_operator_may_post(request, entities, client_name, expected):
    assert post(request.getfixturevalue(client_name), bar()).status_code == expected


@pytest.mark.parametrize("client_name", ["viewer", "ingest", "operator"])
def test_readers(request, db, client_name):
    assert request.getfixturevalue(client_name).get(URL).status_code == 200


def test_bars_are_upserted_on_entity_and_as_of(ingest, entities):
    first = post(ingest, [bar(), bar(entity="msft", close=101, open=None, volume=None)])
    assert first.status_code == 201 and first.json()["created"] == 2
    stored = MarketSnapshot.objects.get(entity_id="AAPL")
    assert stored.as_of == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # the session's close
    assert (stored.close, stored.volume) == (Decimal("101.5"), 1200)
    assert MarketSnapshot.objects.get(entity_id="MSFT").open is None

    second = post(ingest, [bar(as_of="2026-11-24T16:00:00-05:00", close="101.75"), bar()][:1])

    assert second.status_code == 201
    assert second.json() == {"rows": 1, "created": 0, "updated": 1, "unchanged": 0}
    assert MarketSnapshot.objects.get(entity_id="AAPL").close == Decimal("101.75")
    again = post(ingest, bar(close="101.75"))
    assert again.status_code == 200 and again.json()["unchanged"] == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"as_of": "2099-06-01T10:00:00-04:00"},
            "as_of 2099-06-01T14:00:00+00:00 is in the future",
        ),
        ({"as_of": "9999-12-31T23:59:59-10:00"}, "is out of range"),
        ({"as_of": "2026-11-26"}, "is not an NYSE session"),
        ({"entity": "NOPE"}, "unknown symbol NOPE"),
        ({"close": 0}, "close 0 must be > 0"),
        ({"close": "103"}, "close 103 is above high 102"),
        ({"close": ...}, "close is required"),
        ({"close": True}, "close True is not a string or a number"),
        ({"close": "101.12345"}, "more than 4 decimal places"),
        ({"volume": -3}, "volume '-3' is not a non-negative integer"),
        ({"as_of": "2026-11-24T21:00:00Z"}, "repeats item 0"),
    ],
)
def test_a_bad_item_refuses_the_batch(ingest, entities, bad, message):
    response = post(ingest, [bar(), bar(**bad)])

    assert response.status_code == 400
    assert message in response.json()["errors"]["1"][0]
    assert not MarketSnapshot.objects.exists()


def test_a_nan_is_refused(ingest, entities):
    raw = json.dumps(bar()).replace('"101.5"', "NaN")

    response = ingest.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert not MarketSnapshot.objects.exists()


def test_the_list_is_newest_first_and_filters(viewer, entities, session_now):
    factories.add_bars("AAPL", session_now, sessions=5)
    factories.add_bars("MSFT", session_now, sessions=5)

    rows = viewer.get(URL + "?entity=aapl").json()["results"]
    assert [row["entity"] for row in rows] == ["AAPL"] * 5
    assert rows[0]["as_of"] > rows[-1]["as_of"]
    after = rows[2]["as_of"].replace("+", "%2B")
    newer = viewer.get(f"{URL}?entity=AAPL&as_of_after={after}").json()["results"]
    assert len(newer) == 3
    assert viewer.get(URL + "?as_of_before=never").status_code == 400


def test_list_queries_do_not_grow_with_the_page_size(viewer, entities, session_now):
    factories.add_bars("AAPL", session_now, sessions=40)

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(viewer.get(f"{URL}?page_size={page_size}").json()["results"]) == page_size
        return len(captured)

    assert queries(4) == queries(40)
