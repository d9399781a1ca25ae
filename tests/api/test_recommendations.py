"""``/api/v1/recommendations/``: ingest (all or nothing, idempotent on id), the decision cycle
it triggers, and the list with its filters and cursor pagination."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from decisions.models import DecisionRecord, Recommendation
from decisions.tasks import triggered_cycle
from execution.models import Order
from tests import factories
from tests.api.conftest import queued_tasks, take_queued_tasks

URL = "/api/v1/recommendations/"


@pytest.fixture
def clock(monkeypatch, session_now):
    """The wall clock stopped at ``session_now`` (a regular session), for the API, the
    freshness of recommendations and the triggered cycle alike."""
    monkeypatch.setattr("django.utils.timezone.now", lambda: session_now)
    return session_now


@pytest.fixture
def entities(db, session_now):
    factories.add_bars("AAPL", session_now)
    factories.add_bars("MSFT", session_now, sector="Energy", start=60)


def item(now: datetime, **overrides) -> dict:
    data = {
        "id": "rec-1",
        "entity": "AAPL",
        "action": "act",
        "mode": "simulation_eligible",
        "confidence": "0.72",
        "generated_at": (now - timedelta(minutes=5)).isoformat(),
        "thesis": "breakout",
        "risk_classification": "medium",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


@pytest.fixture(autouse=True)
def _empty_queue(task_queue):
    """Every test starts and ends with an empty task queue."""


def post(client, body, **extra):
    return client.post(URL, json.dumps(body), content_type="application/json", **extra)


def queued_cycles() -> list[int]:
    """The pools of the decision cycles waiting in django-q2's queue."""
    tasks = queued_tasks()
    return sorted(t["args"][0] for t in tasks if t["func"] == "decisions.tasks.triggered_cycle")


# ---------------------------------------------------------------------------------------------
# Roles


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [("anonymous", 401), ("no_role", 403), ("viewer", 403), ("ingest", 201), ("operator", 201)],
)
def test_only_ingest_and_operator_may_post(request, clock, entities, client_name, expected):
    client = request.getfixturevalue(client_name)

    response = post(client, item(clock))

    assert response.status_code == expected
    assert Recommendation.objects.exists() == (expected == 201)


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [("anonymous", 401), ("no_role", 403), ("viewer", 200), ("ingest", 200), ("operator", 200)],
)
def test_ingest_viewer_and_operator_may_read(request, db, client_name, expected):
    client = request.getfixturevalue(client_name)

    assert client.get(URL).status_code == expected


# ---------------------------------------------------------------------------------------------
# Ingest


def test_one_object_is_stored_with_its_values(ingest, clock, entities):
    response = post(ingest, item(clock, entity="aapl", confidence=0.123456))

    assert response.status_code == 201
    assert response.json() == {
        "rows": 1,
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "cycles_requested": 0,
    }
    stored = Recommendation.objects.get()
    assert (stored.entity_id, stored.confidence) == ("AAPL", Decimal("0.12346"))
    assert stored.generated_at == clock - timedelta(minutes=5)


def test_a_list_is_stored_in_one_go(ingest, clock, entities):
    body = [item(clock, id=f"rec-{i}", entity="MSFT" if i % 2 else "AAPL") for i in range(25)]

    response = post(ingest, body)

    assert response.status_code == 201
    assert response.json()["created"] == 25
    assert Recommendation.objects.filter(entity_id="MSFT").count() == 12


def test_the_same_payload_again_changes_nothing(ingest, clock, entities):
    body = [item(clock), item(clock, id="rec-2")]
    assert post(ingest, body).status_code == 201
    received = list(Recommendation.objects.values_list("id", "received_at"))

    again = post(ingest, body)

    assert again.status_code == 200
    assert again.json()["created"] == 0 and again.json()["unchanged"] == 2
    assert list(Recommendation.objects.values_list("id", "received_at")) == received


def test_a_stored_id_with_another_payload_is_a_conflict_and_nothing_is_written(
    ingest, clock, entities
):
    assert post(ingest, item(clock)).status_code == 201

    response = post(ingest, [item(clock, id="rec-new"), item(clock, confidence="0.9")])

    assert response.status_code == 409
    assert response.json()["errors"] == {
        "1.id": ["id 'rec-1' is already stored with a different payload"]
    }
    assert list(Recommendation.objects.values_list("id", "confidence")) == [
        ("rec-1", Decimal("0.72"))
    ]


def test_a_new_id_next_to_an_unchanged_one_is_created(ingest, clock, entities):
    post(ingest, item(clock))

    response = post(ingest, [item(clock), item(clock, id="rec-2")])

    assert response.status_code == 201
    assert (response.json()["created"], response.json()["unchanged"]) == (1, 1)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"confidence": 1.7}, "1.confidence", "confidence 1.7 is not in [0, 1]"),
        ({"confidence": "high"}, "1.confidence", "confidence 'high' is not a number"),
        ({"confidence": True}, "1.confidence", "confidence True is not a number"),
        ({"entity": "NOPE"}, "1.entity", "unknown entity NOPE"),
        ({"entity": 7}, "1.entity", "entity 7 is not a string"),
        ({"action": "buy"}, "1.action", "action 'buy' is not one of"),
        ({"mode": None}, "1.mode", "missing field mode"),
        ({"id": ""}, "1.id", "id is empty"),
        ({"id": "rec-0"}, "1.id", "id 'rec-0' repeats item 0"),
        ({"generated_at": "2099-06-01T10:00:00Z"}, "1.generated_at", "is in the future"),
        ({"generated_at": "2026-11-18T10:00:00"}, "1.generated_at", "has no UTC offset"),
        ({"generated_at": "9999-12-31T23:59:59-10:00"}, "1.generated_at", "is out of range"),
        ({"thesis": ["a"]}, "1.thesis", "thesis is not a string"),
    ],
)
def test_a_bad_item_refuses_the_batch_with_the_reason(
    ingest, clock, entities, body, field, message
):
    batch = [item(clock, id="rec-0"), item(clock, **body), item(clock, id="rec-2")]

    response = post(ingest, batch)

    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid input: nothing was written."
    assert message in " ".join(response.json()["errors"][field])
    assert not Recommendation.objects.exists()


def test_every_problem_of_every_item_is_listed(ingest, clock, entities):
    batch = [item(clock, action="buy", confidence=2), item(clock, id="r2", mode="live")]

    errors = post(ingest, batch).json()["errors"]

    assert set(errors) == {"0.action", "0.confidence", "1.mode"}


def test_a_value_a_few_seconds_ahead_is_clock_skew_and_accepted(ingest, clock, entities):
    ahead = (clock + timedelta(seconds=60)).isoformat()

    assert post(ingest, item(clock, generated_at=ahead)).status_code == 201


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"id": "rec-1", ', "JSON parse error"),
        ('{"id": "rec-1", "confidence": NaN}', "JSON parse error"),
        ('"just a string"', None),
        ("[]", None),
        ("[1, 2]", None),
    ],
)
def test_a_malformed_body_is_a_400_and_nothing_is_written(ingest, clock, entities, raw, reason):
    response = ingest.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    if reason:
        assert reason in response.json()["detail"]
    else:
        assert response.json()["errors"]
    assert not Recommendation.objects.exists()


@override_settings(API_MAX_BATCH=10)
def test_a_list_longer_than_the_batch_limit_is_refused(ingest, clock, entities):
    response = post(ingest, [item(clock, id=f"r{i}") for i in range(11)])

    assert response.status_code == 400
    assert "at most 10 per call" in response.json()["errors"]["non_field_errors"][0]
    assert not Recommendation.objects.exists()


def test_a_list_of_10001_is_refused_at_the_default_limit(ingest, clock, entities):
    response = post(ingest, [{"id": str(i)} for i in range(10_001)])

    assert response.status_code == 400
    assert "10001 items; at most 10000" in response.json()["errors"]["non_field_errors"][0]


@override_settings(API_MAX_BODY_BYTES=2048)
def test_a_body_larger_than_the_limit_is_a_413(ingest, clock, entities):
    response = post(ingest, [item(clock, id=f"r{i}") for i in range(20)])

    assert response.status_code == 413
    assert not Recommendation.objects.exists()


def test_writes_are_throttled(ingest, clock, entities, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "ingest": "2/min"}
    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [post(ingest, item(clock, id=f"r{i}")).status_code for i in range(3)]
        reads = ingest.get(URL).status_code
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original

    assert codes == [201, 201, 429]
    assert reads == 200  # reading is not throttled
    assert Recommendation.objects.count() == 2


# ---------------------------------------------------------------------------------------------
# The decision cycle a fresh recommendation triggers


def test_a_fresh_act_recommendation_queues_one_cycle_per_eligible_pool(
    ingest, clock, entities, django_capture_on_commit_callbacks
):
    first = factories.make_pool(now=clock)
    second = factories.make_pool(now=clock)
    production = factories.make_pool(now=clock, mode="production")

    with django_capture_on_commit_callbacks(execute=True):
        response = post(ingest, [item(clock), item(clock, id="rec-2", entity="MSFT")])

    assert response.json()["cycles_requested"] == 2
    assert queued_cycles() == sorted([first.pk, second.pk])
    assert production.pk not in queued_cycles()


def test_a_second_post_while_a_cycle_is_queued_queues_none_and_after_it_runs_queues_again(
    ingest, clock, entities, pool, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, item(clock, id="rec-1"))
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, item(clock, id="rec-2"))
    assert queued_cycles() == [pool.pk]

    take_queued_tasks()  # the cluster took the task…
    triggered_cycle(pool.pk)  # …and ran it
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, item(clock, id="rec-3"))

    assert queued_cycles() == [pool.pk]


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"action": "monitor"}, "not an executable action"),
        ({"generated_at": "2026-11-18T10:00:00Z"}, "older than the pool's age limit"),
        ({"mode": "simulation_eligible"}, "a production pool takes production-eligible only"),
    ],
)
def test_a_recommendation_no_pool_can_take_queues_nothing(
    ingest, clock, entities, django_capture_on_commit_callbacks, overrides, why
):
    factories.make_pool(now=clock, mode="production")

    with django_capture_on_commit_callbacks(execute=True):
        response = post(ingest, item(clock, **overrides))

    assert response.status_code == 201
    assert queued_cycles() == [], why


def test_an_unchanged_recommendation_queues_nothing(
    ingest, clock, entities, pool, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, item(clock))
    take_queued_tasks()
    triggered_cycle(pool.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(ingest, item(clock))

    assert response.status_code == 200
    assert queued_cycles() == []


def test_end_to_end_the_posted_recommendation_becomes_a_decision_and_a_queued_order(
    ingest, clock, entities, pool, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, item(clock, confidence="0.80"))
    (task,) = queued_tasks()

    triggered_cycle(*task["args"])

    decision = DecisionRecord.objects.get(pool=pool, recommendation_id="rec-1")
    assert decision.outcome == "act"
    order = Order.objects.get(decision=decision)
    assert order.status == "queued" and order.side == "buy"


# ---------------------------------------------------------------------------------------------
# Reading


def test_the_list_is_newest_first_and_filters(viewer, db, session_now, entities):
    for minutes, symbol, action, mode in [
        (50, "AAPL", "act", "simulation_eligible"),
        (40, "MSFT", "defer", "production_eligible"),
        (30, "AAPL", "monitor", "simulation_eligible"),
        (20, "MSFT", "act", "simulation_eligible"),
    ]:
        factories.make_recommendation(
            symbol,
            session_now,
            action=action,
            mode=mode,
            age_minutes=minutes,
            rec_id=f"r{minutes}",
        )

    def ids(query: str = "") -> list[str]:
        response = viewer.get(URL + query)
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == ["r20", "r30", "r40", "r50"]
    assert ids("?entity=aapl") == ["r30", "r50"]
    assert ids("?action=act") == ["r20", "r50"]
    assert ids("?mode=production_eligible") == ["r40"]
    after = (session_now - timedelta(minutes=45)).isoformat().replace("+", "%2B")
    before = (session_now - timedelta(minutes=25)).isoformat().replace("+", "%2B")
    assert ids(f"?generated_at_after={after}&generated_at_before={before}") == ["r30", "r40"]
    row = viewer.get(URL + "?entity=MSFT&action=act").json()["results"][0]
    assert row["entity"] == "MSFT" and row["confidence"] == "0.80000"


@pytest.mark.parametrize(
    "query",
    [
        "?action=buy",
        "?generated_at_after=yesterday",
        "?generated_at_before=9999-12-31T23:59:59-10:00",
    ],
)
def test_a_bad_filter_is_a_400(viewer, db, query):
    response = viewer.get(URL + query)

    assert response.status_code == 400
    assert response.json()["errors"]


def test_an_invalid_cursor_is_a_404(viewer, db):
    assert viewer.get(URL + "?cursor=not-a-cursor").status_code == 404


def test_the_cursor_walks_every_row_once(viewer, db, session_now, entities):
    for i in range(7):
        factories.make_recommendation("AAPL", session_now, age_minutes=i, rec_id=f"p{i}")
    seen, url = [], URL + "?page_size=3"
    while url:
        page = viewer.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]

    assert seen == [f"p{i}" for i in range(7)]
    assert "count" not in page


def test_list_queries_do_not_grow_with_the_page_size(viewer, db, session_now, entities):
    for i in range(60):
        factories.make_recommendation("AAPL", session_now, age_minutes=i)

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = viewer.get(f"{URL}?page_size={page_size}")
        assert len(response.json()["results"]) == page_size
        assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
        return len(captured)

    assert queries(5) == queries(50)
