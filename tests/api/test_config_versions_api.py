"""GET /api/v1/config-versions/…: the versions, one with its document, and the diff of two."""

from __future__ import annotations

from datetime import timedelta

import pytest

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from portfolio import actions
from portfolio.models import ConfigVersion
from tests import factories
from tests.api.conftest import walk

URL = "/api/v1/config-versions/"


def decide(pool, now, symbol):
    factories.add_bars(symbol, now)
    rec = factories.make_recommendation(symbol, now)
    run_decision_cycle(pool.pk, now, dispatch=False)
    return DecisionRecord.objects.get(pool=pool, recommendation=rec)


@pytest.fixture
def versions(session_now, db):
    """Pool ``one`` decides, the moderate tier's sector cap changes, ``one`` decides again;
    pool ``two`` (its own loss limit) decides once."""
    one = factories.make_pool(now=session_now, name="one")
    two = factories.make_pool(now=session_now, name="two")
    first = decide(one, session_now, "AAA").config_version
    actions.change_tier_params(
        "moderate", {"max_sector_pct": "0.25"}, actor="ops", reason="narrower", now=session_now
    )
    second = decide(one, session_now + timedelta(minutes=1), "BBB").config_version
    actions.change_engine_config(
        two, {"daily_loss_pct": "0.04"}, actor="ops", reason="tighter", now=session_now
    )
    third = decide(two, session_now + timedelta(minutes=2), "CCC").config_version
    return first, second, third


def test_list_is_newest_first_and_narrows_by_pool(viewer, versions):
    first, second, third = versions

    assert walk(viewer, URL, key="digest") == [third.digest, second.digest, first.digest]
    assert walk(viewer, URL, key="digest", pool="one") == [second.digest, first.digest]
    assert walk(viewer, URL, key="digest", pool="nope") == []
    row = viewer.get(URL).json()["results"][0]
    assert row == {
        "digest": third.digest,
        "created_at": row["created_at"],
        "first_pool": "two",
    }


def test_detail_has_the_document_and_takes_a_prefix(viewer, versions):
    _, second, _ = versions

    whole = viewer.get(f"{URL}{second.digest}/")
    short = viewer.get(f"{URL}{second.digest[:8]}/")

    assert whole.status_code == 200 and short.json() == whole.json()
    body = whole.json()
    assert body["content"] == second.content
    assert body["content"]["tiers"]["moderate"]["max_sector_pct"] == "0.25"
    assert body["first_pool"] == "one"


@pytest.mark.parametrize("digest", ["0" * 64, "abc", "not-hex-at-all", "g" * 64])
def test_detail_of_no_version_is_a_json_404(viewer, versions, digest):
    response = viewer.get(f"{URL}{digest}/")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_diff_names_each_change_with_its_sentence(viewer, versions):
    first, second, third = versions

    response = viewer.get(f"{URL}{second.digest}/diff/", {"against": first.digest[:10]})

    assert response.status_code == 200
    body = response.json()
    assert body["from_version"] == first.digest and body["to_version"] == second.digest
    assert body["changes"] == [
        {
            "path": "tiers.moderate.max_sector_pct",
            "setting": "max_sector_pct",
            "tier": "moderate",
            "before": "0.3",
            "after": "0.25",
            "sentence": "changed `max_sector_pct` of moderate from 0.3 to 0.25",
        }
    ]
    assert body["summary"] == (
        f"version {first.digest[:8]} → {second.digest[:8]}: "
        "changed `max_sector_pct` of moderate from 0.3 to 0.25"
    )
    across = viewer.get(f"{URL}{third.digest}/diff/", {"against": second.digest}).json()
    assert [c["sentence"] for c in across["changes"]] == [
        "changed `daily_loss_pct` from 0.05 to 0.04"
    ]


def test_diff_against_itself_is_empty(viewer, versions):
    first, _, _ = versions
    body = viewer.get(f"{URL}{first.digest}/diff/", {"against": first.digest}).json()
    assert body["changes"] == [] and body["summary"].endswith("no setting changed")


@pytest.mark.parametrize("against", [None, "", "0" * 64, "xyz"])
def test_diff_without_a_version_to_compare_against_is_a_400(viewer, versions, against):
    first, _, _ = versions
    params = {} if against is None else {"against": against}

    response = viewer.get(f"{URL}{first.digest}/diff/", params)

    assert response.status_code == 400
    assert "against" in response.json()["errors"]


def test_a_decision_names_its_version(viewer, versions):
    _, second, _ = versions
    decision = DecisionRecord.objects.get(config_version=second)

    body = viewer.get(f"/api/v1/decisions/{decision.pk}/").json()

    assert body["config_version"] == second.digest


def test_a_decision_older_than_versions_has_none(viewer, versions):
    DecisionRecord.objects.update(config_version=None)
    rows = viewer.get("/api/v1/decisions/").json()["results"]
    assert rows and all(row["config_version"] is None for row in rows)


@pytest.mark.parametrize(
    ("role", "status"), [("anonymous", 401), ("no_role", 403), ("ingest", 403), ("operator", 200)]
)
def test_only_readers_read_versions(request, versions, role, status):
    client = request.getfixturevalue(role)
    assert client.get(URL).status_code == status
    assert client.get(f"{URL}{versions[0].digest}/").status_code == status


def test_versions_cannot_be_written(operator, versions):
    response = operator.post(URL, {"digest": "0" * 64, "content": {}}, format="json")
    assert response.status_code == 405
    assert ConfigVersion.objects.count() == 3
