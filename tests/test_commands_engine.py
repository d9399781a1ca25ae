"""run_engine, demo, bench and the settings' start-up checks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from decisions.models import DecisionRecord
from decisions.tooling.benchmarks import DecisionCycleSpec, bench_decision_cycle
from decisions.tooling.demo import run_demo
from execution.models import Order
from tests import factories

ROOT = Path(__file__).resolve().parent.parent


def test_run_engine_once_on_simulated_time(pool, session_now):
    factories.add_bars("RUN1", session_now)
    factories.make_recommendation("RUN1", session_now)
    out = io.StringIO()

    call_command("run_engine", pool=pool.name, once=True, now=session_now.isoformat(), stdout=out)

    assert "outcomes: act 1" in out.getvalue() and "orders: filled 1" in out.getvalue()
    assert Order.objects.get().status == "filled"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "nope", "once": True}, "No pool named 'nope'"),
        ({"once": True, "now": "yesterday"}, "not an ISO-8601 timestamp"),
        ({"once": True, "now": "2026-11-18T11:00:00"}, "has no UTC offset"),
        ({"now": "2026-11-18T11:00:00+00:00"}, "--now needs --once"),
    ],
)
def test_run_engine_refuses_bad_arguments(pool, options, message):
    options = {"pool": pool.name, **options}
    with pytest.raises(CommandError, match=message):
        call_command("run_engine", **options)
    assert not DecisionRecord.objects.exists()


def test_demo_runs_end_to_end_on_a_few_sessions(db, tmp_path):
    now = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
    lines: list[str] = []

    summary = run_demo(tmp_path, now=now, sessions=3, progress=lines.append)

    assert len(summary.sessions) == 3 and summary.sessions[-1].isoformat() == "2026-11-18"
    assert summary.recommendations_seen > 0
    for pool in (summary, summary.shadow):
        assert (
            sum(pool.decisions.values())
            == DecisionRecord.objects.filter(pool__name=pool.pool).count()
        )
        assert pool.orders == {
            status: Order.objects.filter(pool__name=pool.pool, status=status).count()
            for status in pool.orders
        }
        assert pool.total_value > 0
        assert pool.active_pool == pool.total_value - pool.reserve_balance
    assert any(" 3/3] 2026-11-18" in line and "shadow:" in line for line in lines)
    # The shadow follows the demo pool: the same recommendations, one setting changed.
    assert summary.shadow.pool == "demo-shadow" and summary.shadow.shadow_of == "demo"
    assert summary.shadow.changed_settings == ["changed `max_active_commitments` from 10 to 5"]
    assert summary.shadow.recommendations_seen == summary.recommendations_seen
    assert set(Order.objects.values_list("pool__adapter", flat=True)) == {"paper"}


def test_demo_command_refuses_to_run_twice(db, tmp_path):
    factories.make_pool(now=datetime(2026, 11, 18, 16, tzinfo=UTC), name="demo")
    with pytest.raises(CommandError, match="already exists"):
        call_command("demo", data_dir=str(tmp_path))


def test_bench_reports_figures_from_a_real_cycle(db):
    spec = DecisionCycleSpec(recommendations=60, entities=20, commitments=5, repeat=1)
    lines: list[str] = []

    figures = bench_decision_cycle(spec, lines.append)

    assert figures["decisions"] == 60
    assert figures["cycle_s"] > 0 and figures["bulk_insert_s"] > 0
    # 24 at most: the cycle's 20, plus the configuration version the first time it is seen
    # (the tiers' rows and the insert of the version; once known to the process, only the
    # tiers' rows), the reconciliation holds the read model reads (one query), and the insert
    # of the queued orders' events (one).
    assert figures["queries"] <= 24
    # The cycle's rows and the two baselines' copies.
    assert DecisionRecord.objects.count() == 180


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("Q_WORKERS", "two", "Q_WORKERS='two' is not an integer"),
        ("Q_WORKERS", "0", "Q_WORKERS='0' must be at least 1"),
        ("DATABASE_URL", "mysql://root:secret@db/engine", "DATABASE_URL must be a URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be a URL"),
    ],
)
def test_bad_environment_stops_start_up_naming_the_variable(variable, value, message):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env[variable] = value
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "secret" not in proc.stderr


def test_demo_shows_every_guardian_at_work(db, tmp_path):
    """The full demo (20 sessions ending 2026-11-24) exits at a stop and at a target, siphons
    into the reserve and trips a breaker or changes the tier. The demo pool alone: its shadow
    doubles the run and is followed by the few-session test above."""
    summary = run_demo(
        tmp_path, now=datetime(2026, 11, 25, 2, 0, tzinfo=UTC), progress=str, with_shadow=False
    )

    assert summary.exits["risk_threshold"] >= 1
    assert summary.exits["gain_target"] >= 1
    assert summary.siphons >= 1 and summary.reserve_balance == summary.siphoned
    assert summary.breakers or summary.tier_changes


def test_audit_admin_bench_times_every_page(db):
    from decisions.tooling.benchmarks import ADMIN_PAGES, AuditAdminSpec, bench_audit_admin

    figures = bench_audit_admin(AuditAdminSpec(rows=30, repeat=1), progress=str)

    assert figures["rows"] == 30 and DecisionRecord.objects.count() == 30
    assert all(figures[f"{name}_ms"] > 0 for name in ADMIN_PAGES)
