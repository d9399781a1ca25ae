"""Configuration versions: the canonical document, its digest, the stored versions every
decision record names, their differences, and the admin pages that show them."""

from __future__ import annotations

import hashlib
import importlib
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from portfolio import actions, config_versions
from portfolio.config import ENGINE_CONFIG_FIELDS, TIER_FIELDS
from portfolio.config_versions import (
    Change,
    config_document,
    describe_changes,
    diff_documents,
    diff_versions,
    digest_of,
    ensure_version,
    previous_version,
)
from portfolio.models import ConfigVersion, EngineConfig, RiskTierConfig
from portfolio.tiers import TierParams
from tests import factories

# --- the document and its digest (pure) -------------------------------------------------------


def _tiers(**moderate_changes) -> list[TierParams]:
    moderate = {
        "min_confidence": Decimal("0.55"),
        "max_position_pct": Decimal("0.10"),
        "stop_loss_atr_multiplier": Decimal("2.0"),
        "reward_risk_ratio": Decimal("1.5"),
        "max_sector_pct": Decimal("0.30"),
        "max_portfolio_heat": Decimal("0.20"),
    } | moderate_changes
    return [
        TierParams(
            name="conservative",
            min_confidence=Decimal("0.75"),
            max_position_pct=Decimal("0.05"),
            stop_loss_atr_multiplier=Decimal("1.5"),
            reward_risk_ratio=Decimal("2.0"),
            max_sector_pct=Decimal("0.20"),
            max_portfolio_heat=Decimal("0.10"),
        ),
        TierParams(name="moderate", **moderate),
    ]


def test_the_digest_is_the_sha256_of_the_sorted_compact_json():
    document = {"tiers": {"b": "0.3"}, "engine": {"z": 1, "a": True}}

    expected = hashlib.sha256(b'{"engine":{"a":true,"z":1},"tiers":{"b":"0.3"}}').hexdigest()

    assert digest_of(document) == expected
    assert len(expected) == 64


def test_the_document_holds_every_engine_setting_and_every_tier_parameter():
    document = config_document(EngineConfig(), _tiers())

    assert set(document) == {"format", "engine", "tiers"}
    assert list(document["engine"]) == list(ENGINE_CONFIG_FIELDS)
    assert {"id", "pool", "pool_id", "updated_at"}.isdisjoint(document["engine"])
    assert set(document["tiers"]) == {"conservative", "moderate"}
    assert set(document["tiers"]["moderate"]) == set(TIER_FIELDS)
    # Decimals as text without trailing zeros; counts and switches keep their JSON type.
    assert document["engine"]["daily_loss_pct"] == "0.05"
    assert document["engine"]["absolute_commitment_cap"] == "50"
    assert document["engine"]["atr_period"] == 14
    assert document["engine"]["market_data_fallback"] is False
    assert document["tiers"]["moderate"]["max_sector_pct"] == "0.3"


def test_equal_settings_written_differently_give_the_same_digest():
    stored = EngineConfig(daily_loss_pct=Decimal("0.050000"), siphon_pct=Decimal("0.2000"))
    typed = EngineConfig(daily_loss_pct=Decimal("0.05"), siphon_pct=Decimal("0.2"))
    as_mapping = {name: getattr(typed, name) for name in ENGINE_CONFIG_FIELDS}

    digests = {
        digest_of(config_document(stored, _tiers())),
        digest_of(config_document(typed, list(reversed(_tiers())))),
        digest_of(config_document(as_mapping, _tiers(max_sector_pct=Decimal("0.300000")))),
    }

    assert len(digests) == 1


@pytest.mark.parametrize(
    ("engine", "tiers"),
    [
        ({"daily_loss_pct": Decimal("0.04")}, {}),
        ({"market_data_fallback": True}, {}),
        ({"atr_period": 15}, {}),
        ({}, {"max_sector_pct": Decimal("0.25")}),
        ({}, {"min_confidence": Decimal("0.551")}),
    ],
)
def test_any_changed_setting_changes_the_digest(engine, tiers):
    base = digest_of(config_document(EngineConfig(), _tiers()))
    changed = digest_of(config_document(EngineConfig(**engine), _tiers(**tiers)))
    assert changed != base


def test_diff_names_each_changed_setting_in_a_sentence():
    before = config_document(EngineConfig(), _tiers())
    after = config_document(
        EngineConfig(daily_loss_pct=Decimal("0.04"), market_data_fallback=True),
        _tiers(max_sector_pct=Decimal("0.25")),
    )

    changes = diff_documents(before, after)

    assert [c.sentence for c in changes] == [
        "changed `daily_loss_pct` from 0.05 to 0.04",
        "changed `market_data_fallback` from off to on",
        "changed `max_sector_pct` of moderate from 0.3 to 0.25",
    ]
    assert changes[2] == Change(("tiers", "moderate", "max_sector_pct"), "0.3", "0.25")
    assert changes[2].tier == "moderate" and changes[0].tier is None
    assert diff_documents(after, after) == []


def test_diff_names_settings_present_on_one_side_only():
    before = {"engine": {"a": "1"}, "tiers": {}}
    after = {"engine": {"b": 2}, "tiers": {"moderate": {"x": "0.1"}}}

    assert [c.sentence for c in diff_documents(before, after)] == [
        "removed `a` (was 1)",
        "added `b` (2)",
        "added `x` of moderate (0.1)",
    ]


def test_describe_changes_leads_with_both_short_digests():
    changes = [Change(("tiers", "moderate", "max_sector_pct"), "0.3", "0.25")]
    line = describe_changes("b3f2c1d0" + "0" * 56, "9a8e7f6d" + "1" * 56, changes)
    assert (
        line == "version b3f2c1d0 → 9a8e7f6d: changed `max_sector_pct` of moderate from 0.3 to 0.25"
    )
    assert describe_changes("a" * 64, "a" * 64, []).endswith("no setting changed")


# --- stored versions and the decision cycle ---------------------------------------------------


def _decide(pool, now, symbol, confidence="0.80"):
    if not DecisionRecord.objects.filter(entity_id=symbol).exists():
        factories.add_bars(symbol, now)
    rec = factories.make_recommendation(symbol, now, confidence=confidence)
    run_decision_cycle(pool.pk, now, dispatch=False)
    return DecisionRecord.objects.get(pool=pool, recommendation=rec)


def test_every_decision_record_names_the_version_it_was_made_with(pool, session_now):
    first = _decide(pool, session_now, "AAA")
    second = _decide(pool, session_now + timedelta(minutes=1), "BBB", confidence="0.10")

    version = ConfigVersion.objects.get()
    assert first.config_version == version and second.config_version == version
    assert version.first_pool == pool
    config = EngineConfig.objects.get(pool=pool)
    assert version.digest == digest_of(config_document(config, RiskTierConfig.objects.all()))
    assert version.content == config_document(config, RiskTierConfig.objects.all())


def test_two_pools_with_the_same_settings_share_one_version(session_now, db):
    one = factories.make_pool(now=session_now)
    two = factories.make_pool(now=session_now)

    a = _decide(one, session_now, "AAA")
    b = _decide(two, session_now, "BBB")

    assert ConfigVersion.objects.count() == 1
    assert a.config_version_id == b.config_version_id


def test_a_changed_tier_parameter_makes_a_new_version(pool, session_now):
    first = _decide(pool, session_now, "AAA")
    actions.change_tier_params(
        "moderate",
        {"max_sector_pct": "0.25"},
        actor="ops",
        reason="narrower sectors",
        now=session_now,
    )
    second = _decide(pool, session_now + timedelta(minutes=1), "BBB")

    assert first.config_version_id != second.config_version_id
    assert ConfigVersion.objects.count() == 2
    changes = diff_versions(first.config_version, second.config_version)
    assert [c.sentence for c in changes] == [
        "changed `max_sector_pct` of moderate from 0.3 to 0.25"
    ]
    decisions = DecisionRecord.objects.filter(pool=pool)
    assert previous_version(second.config_version, decisions) == first.config_version
    assert previous_version(first.config_version, decisions) is None


def test_a_changed_engine_setting_makes_a_new_version(pool, session_now):
    first = _decide(pool, session_now, "AAA")
    actions.change_engine_config(
        pool, {"daily_loss_pct": "0.04"}, actor="ops", reason="tighter", now=session_now
    )
    second = _decide(pool, session_now + timedelta(minutes=1), "BBB")

    changes = diff_versions(first.config_version, second.config_version)
    assert [c.sentence for c in changes] == ["changed `daily_loss_pct` from 0.05 to 0.04"]


def test_a_cycle_without_candidates_stores_no_version(pool, session_now):
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert not ConfigVersion.objects.exists()


def test_ensure_version_twice_in_one_transaction_keeps_one_row(pool):
    document = config_document(EngineConfig(), _tiers())

    assert ensure_version(document, pool=pool) == ensure_version(document) == digest_of(document)
    assert ConfigVersion.objects.get().first_pool == pool


# --- committed only, and the query the cycle pays ---------------------------------------------


@pytest.fixture
def _source_tiers():
    """Transactional tests flush the tables between tests, data migrations included."""
    from django.apps import apps

    migration = importlib.import_module("portfolio.migrations.0002_risk_tiers")
    migration.create_tiers(apps, None)


@pytest.mark.django_db(transaction=True)
def test_a_version_written_by_a_rolled_back_transaction_is_not_remembered(_source_tiers):
    document = config_document(EngineConfig(), _tiers())
    digest = digest_of(document)

    with pytest.raises(RuntimeError), transaction.atomic():
        ensure_version(document)
        raise RuntimeError("the cycle failed after storing the version")

    assert not ConfigVersion.objects.exists()
    assert not config_versions._is_known(digest)
    ensure_version(document)  # autocommit: stored, then remembered
    assert ConfigVersion.objects.filter(pk=digest).exists()
    assert config_versions._is_known(digest)


@pytest.mark.django_db(transaction=True)
def test_a_known_version_costs_the_cycle_one_query(_source_tiers, session_now):
    """Deliberate: the version adds one query to a cycle that decides (the tiers' rows) once
    its digest is known to the process; the first time, one more (the insert)."""
    pool = factories.make_pool(now=session_now)
    _decide(pool, session_now, "AAA")  # commits: the version is known from now on
    factories.add_bars("BBB", session_now)
    factories.make_recommendation("BBB", session_now)

    with CaptureQueriesContext(connection) as ctx:
        run_decision_cycle(pool.pk, session_now + timedelta(minutes=1), dispatch=False)

    sql = [q["sql"] for q in ctx.captured_queries]
    assert not [q for q in sql if "config_versions" in q]
    tier_queries = [q for q in sql if "risk_tier_configs" in q]
    # One of them is the read model's (the pool's own tier), the other the version's.
    assert len(tier_queries) == 2, tier_queries
    assert DecisionRecord.objects.filter(config_version__isnull=False).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_flush_forgets_the_known_versions(_source_tiers):
    from django.core.management import call_command

    document = config_document(EngineConfig(), _tiers())
    ensure_version(document)
    assert config_versions._is_known(digest_of(document))

    call_command("flush", verbosity=0, interactive=False)

    assert not config_versions._is_known(digest_of(document))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_engines_storing_the_same_new_version_both_succeed(_source_tiers):
    """The second insert waits on the first's uncommitted row, then does nothing: neither
    fails (a plain INSERT would raise an IntegrityError in the second)."""
    document = config_document(EngineConfig(), _tiers())
    first_inserted = threading.Event()
    results: list[str] = []
    errors: list[BaseException] = []

    def first():
        try:
            with transaction.atomic():
                results.append(ensure_version(document))
                first_inserted.set()
                # Hold the row uncommitted until the second engine is waiting on it.
                second_waiting.wait(timeout=10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            first_inserted.set()
            connection.close()

    def second():
        try:
            first_inserted.wait(timeout=10)
            with transaction.atomic():
                second_waiting.set()
                results.append(ensure_version(document))
        except BaseException as exc:
            errors.append(exc)
        finally:
            second_waiting.set()
            connection.close()

    second_waiting = threading.Event()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert results == [digest_of(document)] * 2
    assert ConfigVersion.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_pools_deciding_at_once_with_a_new_version_both_decide(_source_tiers, session_now):
    pools = [factories.make_pool(now=session_now) for _ in range(2)]
    for symbol in ("R0", "R1"):
        factories.add_bars(symbol, session_now)
        factories.make_recommendation(symbol, session_now)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(pool_id):
        try:
            barrier.wait(timeout=10)
            run_decision_cycle(pool_id, session_now, dispatch=False)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(p.pk,)) for p in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert ConfigVersion.objects.count() == 1
    records = DecisionRecord.objects.all()
    assert records.count() == 4  # each pool takes both recommendations
    assert not records.filter(config_version__isnull=True).exists()


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def two_versions(pool, session_now):
    first = _decide(pool, session_now, "AAA")
    actions.change_tier_params(
        "moderate", {"max_sector_pct": "0.25"}, actor="ops", reason="narrower", now=session_now
    )
    second = _decide(pool, session_now + timedelta(minutes=1), "BBB")
    return first.config_version, second.config_version


def test_admin_version_page_shows_settings_and_the_change_from_the_previous_one(
    admin_client, two_versions
):
    first, second = two_versions
    url = reverse("admin:portfolio_configversion_change", args=[second.digest])

    html = admin_client.get(url).content.decode()

    assert "changed <code>max_sector_pct</code>" in html or "`max_sector_pct`" in html
    assert "of moderate from 0.3 to 0.25" in html
    assert first.digest[:8] in html
    assert "absolute_commitment_cap" in html and "stop_loss_atr_multiplier" in html


def test_admin_compare_page_lists_every_difference(admin_client, two_versions):
    first, second = two_versions
    url = reverse("admin:portfolio_configversion_compare")

    response = admin_client.get(url, {"from": first.digest[:8], "to": second.digest})

    assert response.status_code == 200
    assert [c.sentence for c in response.context["changes"]] == [
        "changed `max_sector_pct` of moderate from 0.3 to 0.25"
    ]
    bad = admin_client.get(url, {"from": "zzzz", "to": second.digest})
    assert bad.context["changes"] is None and bad.context["errors"]


def test_admin_compare_action_needs_exactly_two_versions(admin_client, two_versions):
    first, second = two_versions
    url = reverse("admin:portfolio_configversion_changelist")

    both = admin_client.post(
        url, {"action": "compare_selected", "_selected_action": [first.pk, second.pk]}
    )
    one = admin_client.post(url, {"action": "compare_selected", "_selected_action": [first.pk]})

    assert both.status_code == 302 and "compare/?from=" + first.digest in both["Location"]
    assert one.status_code == 302 and "compare" not in one["Location"]


def test_admin_decision_page_links_its_version(admin_client, two_versions):
    _, second = two_versions
    decision = DecisionRecord.objects.get(config_version=second)
    url = reverse("admin:decisions_decisionrecord_change", args=[decision.pk])

    html = admin_client.get(url).content.decode()

    assert reverse("admin:portfolio_configversion_change", args=[second.digest]) in html


def test_the_decisions_export_carries_the_version_digest(pool, session_now):
    import json
    from io import StringIO

    from decisions.exports import export_audit

    decision = _decide(pool, session_now, "AAA")
    out = StringIO()

    export_audit("decisions", pool.name, out)

    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row["config_version_id"] == decision.config_version_id
    assert len(row["config_version_id"]) == 64
