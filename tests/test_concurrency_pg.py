"""Concurrency on PostgreSQL: row locks and SKIP LOCKED are what make these hold.

SQLite ignores ``select_for_update``; these tests are skipped there (see conftest.py).
"""

from __future__ import annotations

import importlib
import threading
from decimal import Decimal

import pytest
from django.db import connection

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from execution.models import Order, RiskEvaluation
from execution.worker import process_order
from portfolio.models import Commitment, EngineConfig
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _source_tiers():
    """Transactional tests flush the tables between tests, data migrations included."""
    from django.apps import apps

    migration = importlib.import_module("portfolio.migrations.0002_risk_tiers")
    migration.create_tiers(apps, None)


def _in_threads(target, args_list):
    """Run ``target`` once per args tuple, all released at the same instant."""
    barrier = threading.Barrier(len(args_list))
    errors: list[BaseException] = []
    results: list = [None] * len(args_list)

    def run(i, args):
        try:
            barrier.wait(timeout=10)
            results[i] = target(*args)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def test_two_engines_produce_one_processed_decision_per_recommendation(session_now):
    pool = factories.make_pool(now=session_now)
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=100)
    recs = []
    for i in range(12):
        symbol = f"C{i:02d}"
        factories.add_bars(symbol, session_now, sector=f"S{i % 6}", start=20 + i)
        recs.append(factories.make_recommendation(symbol, session_now, confidence="0.80"))

    _in_threads(lambda: run_decision_cycle(pool.pk, session_now, dispatch=False), [(), (), ()])

    processed = DecisionRecord.objects.filter(pool=pool, processed=True)
    assert processed.count() == len(recs)
    assert sorted(processed.values_list("recommendation_id", flat=True)) == sorted(
        r.id for r in recs
    )
    # One order per act decision, never two.
    assert Order.objects.filter(pool=pool).count() == processed.filter(outcome="act").count()


def test_two_workers_on_one_order_fill_it_once(session_now):
    pool = factories.make_pool(now=session_now)
    factories.add_bars("W1", session_now)
    factories.make_recommendation("W1", session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    order = Order.objects.get(pool=pool)

    results = _in_threads(lambda: process_order(order.pk, session_now), [(), (), ()])

    assert sorted(str(r.status) for r in results).count("filled") == 1
    assert RiskEvaluation.objects.filter(order=order).count() == 1
    commitment = Commitment.objects.get(pool=pool)
    assert commitment.units == order.quantity
    pool.refresh_from_db()
    order.refresh_from_db()
    assert pool.cash == Decimal("100000") - order.quantity * order.fill_value
