"""``decisions.replay`` and ``manage.py replay``: the engine re-run over a past window in a
throwaway pool, beside reality.

Reality is built once for the module the way the demo builds it (sample data imported through
the import code, a paper pool, ``run_engine_pass`` at the demo's pass times over three sessions
around Thanksgiving 2025: a holiday and an early close), inside a transaction rolled back when
the module ends. Each test runs in its own transaction on top of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F

from decisions.engine import DEDUPE_KEY, run_engine_pass
from decisions.imports import import_recommendations
from decisions.models import DecisionRecord, Recommendation
from decisions.replay import (
    ReplayError,
    Window,
    deciding_step,
    replay_moments,
    replay_pool,
    session_moments,
    starting_state,
)
from decisions.tooling.demo import DEMO_POOL_SETTINGS, pass_times
from decisions.tooling.sample_data import SampleDataSpec, generate_sample_data
from portfolio.actions import change_engine_config, create_pool
from portfolio.config_overrides import parse_overrides
from portfolio.imports import import_entities, import_reports, import_snapshots
from portfolio.market_calendar import get_market_calendar
from portfolio.models import (
    Commitment,
    CommitmentStatus,
    MarketSnapshot,
    Pool,
    RiskTierConfig,
)

FIRST, LAST = date(2025, 11, 25), date(2025, 11, 28)
#: When the pool was created and configured: after the simulated sessions, as in the demo.
CREATED = datetime(2026, 1, 5, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Reality:
    pool: Pool
    sessions: tuple[date, ...]
    passes: tuple[datetime, ...]
    #: (cash, reserve, tier, {symbol: units}) after the last pass of each session.
    closing_state: dict[date, tuple[Decimal, Decimal, str, dict[str, Decimal]]]


@pytest.fixture(scope="module")
def reality(django_db_setup, django_db_blocker, tmp_path_factory) -> Reality:
    with django_db_blocker.unblock():
        # Dedupe keys left in a shared cache by an earlier run under the same pool id would
        # turn reality's candidates into duplicates: start empty, as conftest does per test.
        cache.clear()
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield _build_reality(tmp_path_factory.mktemp("replay-sample"))
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def _build_reality(directory: Path) -> Reality:
    files = generate_sample_data(
        SampleDataSpec(
            seed=7,
            entities=12,
            sectors=4,
            history_sessions=40,
            simulated_sessions=3,
            recommendations=60,
            end=LAST,
        ),
        directory,
    )
    import_entities(files.entities)
    import_snapshots(files.snapshots)
    import_reports(files.reports)
    import_recommendations(files.recommendations)
    pool = create_pool(
        "desk",
        mode="simulation",
        cash=Decimal("100000"),
        tier="moderate",
        now=CREATED,
        actor="tests",
        reason="the replayed pool",
    )
    change_engine_config(pool, DEMO_POOL_SETTINGS, actor="tests", reason="demo cap", now=CREATED)
    passes = []
    closing = {}
    for session in files.simulated_sessions:
        for at in pass_times(session):
            run_engine_pass(pool.pk, at)
            passes.append(at)
        pool.refresh_from_db()
        held = dict(
            Commitment.objects.filter(pool=pool, status=CommitmentStatus.OPEN).values_list(
                "entity_id", "units"
            )
        )
        closing[session] = (pool.cash, pool.reserve_balance, pool.risk_tier, held)
    return Reality(pool, files.simulated_sessions, tuple(passes), closing)


@pytest.fixture
def real(reality, db) -> Reality:
    return reality


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def _next_pool_id() -> int:
    """The id the next pool will get (the sequence is not moved back by a rollback)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence('pools', 'id'))")
            return cursor.fetchone()[0] + 1
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pools'")
        row = cursor.fetchone()
        return (row[0] if row else 0) + 1


# --- moments and traces (no replay) -----------------------------------------------------------


def test_the_session_cadence_is_the_demos_pass_times():
    calendar = get_market_calendar(datetime(2025, 11, 28, 12, tzinfo=UTC))
    for day in (date(2025, 11, 26), date(2025, 11, 28)):  # a full session and an early close
        assert session_moments(calendar, day, timedelta(minutes=30)) == pass_times(day)


def test_the_moments_are_every_pass_reality_ran(real):
    moments, recorded = replay_moments(real.pool, Window(FIRST, LAST))
    assert moments == list(real.passes)
    assert 0 < recorded <= len(moments)


def test_with_every_zero_only_recorded_times_the_first_pass_and_the_close_remain(real):
    moments, recorded = replay_moments(real.pool, Window(FIRST, LAST), every_minutes=0)
    assert set(moments) <= set(real.passes)
    assert recorded <= len(moments) < len(real.passes)
    calendar = get_market_calendar(real.passes[0])
    for day in real.sessions:
        assert calendar.session_close(day) in moments
        assert calendar.session_open(day) + timedelta(minutes=15) in moments


@pytest.mark.parametrize(
    ("trace", "step"),
    [
        (
            {"checks": [{"check": "confidence", "passed": False, "detail": "0.5 < 0.55"}]},
            "confidence: 0.5 < 0.55",
        ),
        (
            {
                "checks": [{"check": "confidence", "passed": True}],
                "sizing": {
                    "rejected": True,
                    "reason": "zero_units",
                    "waterfall": [{"note": "buys no whole unit"}],
                },
            },
            "sizing: zero_units (buys no whole unit)",
        ),
        (
            {"checks": [], "sizing": {"rejected": False, "units": "10", "dollar_amount": "500"}},
            "sizing: 10 units, $500",
        ),
        (
            {"checks": [{"check": "open_commitment", "passed": True}], "exit_units": "7"},
            "exit: 7 units",
        ),
    ],
)
def test_the_deciding_step_is_read_from_the_trace(trace, step):
    assert deciding_step(trace) == step


def test_the_starting_state_is_the_books_at_the_start(real):
    # The second session starts from the books as the first session's last pass left them.
    first, second = real.sessions[0], real.sessions[1]
    cash, reserve, tier, held = real.closing_state[first]
    state = starting_state(real.pool, Window(second, LAST), max_age_minutes=120, lookback_days=30)
    assert (state.cash, state.reserve_balance, state.tier) == (cash, reserve, tier)
    assert {symbol: units for symbol, (units, _) in state.positions.items()} == held
    assert held, "the first session opened commitments"
    # Before the first session: the pool as it was created.
    state = starting_state(real.pool, Window(FIRST, LAST), max_age_minutes=120, lookback_days=30)
    assert (state.cash, state.reserve_balance, state.tier, state.positions) == (
        Decimal("100000"),
        Decimal("0"),
        "moderate",
        {},
    )


# --- replays ----------------------------------------------------------------------------------


def test_a_replay_without_change_reproduces_every_decision_and_leaves_nothing(real, settings):
    settings.DEDUPE_CACHE = True
    # Dedupe keys waiting under the id the replay's pool will get: read, they would turn every
    # candidate into a duplicate.
    planted = {
        DEDUPE_KEY.format(pool=_next_pool_id(), recommendation=rec): 1
        for rec in Recommendation.objects.values_list("id", flat=True)
    }
    cache.set_many(planted, timeout=3600)
    counts = _row_counts()
    pool_row = Pool.objects.filter(pk=real.pool.pk).values().get()
    tiers = list(RiskTierConfig.objects.values())

    result = replay_pool("desk", FIRST, LAST)

    assert result.differences == 0
    assert result.resized == 0
    assert result.clock == "simulated"
    assert result.moments == len(real.passes)
    assert result.replay.decision_rows == result.reality.decision_rows
    assert result.replay.order_rows == result.reality.order_rows
    assert result.replay.decisions == result.reality.decisions
    assert result.replay.realized_gain == result.reality.realized_gain
    assert result.replay.equity == result.reality.equity
    assert result.reality.decisions.get("act", 0) > 0
    assert result.reality.order_rows
    # Nothing written survives: every table has its rows, the real pool its values, the
    # planted keys are still there and nothing else of the replay's pool reached the cache.
    assert _row_counts() == counts
    assert Pool.objects.filter(pk=real.pool.pk).values().get() == pool_row
    assert list(RiskTierConfig.objects.values()) == tiers
    assert not Pool.objects.filter(name__startswith="replay-").exists()
    assert cache.get_many(list(planted)) == planted


def test_a_higher_minimum_confidence_acts_less_and_never_below_it(real):
    counts = _row_counts()
    tiers = list(RiskTierConfig.objects.values())
    overrides = parse_overrides(
        [f"{tier}.min_confidence=0.9" for tier in ("conservative", "moderate", "aggressive")]
    )

    result = replay_pool("desk", FIRST, LAST, overrides)

    assert result.differences > 0
    assert result.replay.decisions.get("act", 0) < result.reality.decisions["act"]
    assert result.replay.skip_reasons.get("insufficient_confidence", 0) > (
        result.reality.skip_reasons.get("insufficient_confidence", 0)
    )
    acted = [o.recommendation for o in result.replay.outcomes.values() if o.outcome == "act"]
    confidences = Recommendation.objects.filter(id__in=acted).values_list("confidence", flat=True)
    assert all(c >= Decimal("0.9") for c in confidences)
    listed = result.listed[0]
    assert listed.reality.key != listed.replay.key
    assert any("confidence" in d.replay.deciding_step for d in result.listed if d.replay)
    # The shared tier rows were changed inside the replay only.
    assert list(RiskTierConfig.objects.values()) == tiers
    assert _row_counts() == counts


def test_a_replay_from_a_later_day_starts_from_the_books_then_and_reproduces_them(real):
    result = replay_pool("desk", real.sessions[1], LAST)
    assert result.differences == 0
    assert result.replay.decision_rows == result.reality.decision_rows
    assert result.replay.order_rows == result.reality.order_rows
    assert any("open at the start" in note for note in result.notes)


def test_nothing_known_after_a_moment_is_used_at_it(real):
    """On a wall clock a recommendation counts from its arrival; data dated after the window
    (a later session's bars and signals) is never seen."""
    # Reality on a wall clock: the pool existed before the window and every recommendation
    # arrived when it was generated.
    Recommendation.objects.update(received_at=F("generated_at"))
    Pool.objects.filter(pk=real.pool.pk).update(created_at=datetime(2025, 11, 1, tzinfo=UTC))
    calendar = get_market_calendar(real.passes[0])
    second = real.sessions[1]
    decided = DecisionRecord.objects.filter(pool=real.pool, outcome="act").values_list(
        "entity_id", flat=True
    )
    symbol = decided[0]
    # Generated in the middle of the second session, confident, for an entity the pool buys:
    # but received only now, after the window. Reality never had it; the replay must not.
    late = Recommendation.objects.create(
        id="late-1",
        entity_id=symbol,
        action="act",
        mode="production_eligible",
        confidence=Decimal("0.99"),
        generated_at=calendar.session_open(second) + timedelta(hours=2),
    )
    assert late.received_at > datetime.combine(LAST, datetime.min.time(), tzinfo=UTC)
    # After the window: a crash in every entity's bars and confident signals.
    after = calendar.next_session(LAST)
    close = calendar.session_close(after)
    symbols = set(MarketSnapshot.objects.values_list("entity_id", flat=True))
    MarketSnapshot.objects.bulk_create(
        MarketSnapshot(
            entity_id=s, as_of=close, open=1, high=1, low=Decimal("0.5"), close=Decimal("0.5")
        )
        for s in symbols
    )
    Recommendation.objects.bulk_create(
        Recommendation(
            id=f"future-{i}",
            entity_id=s,
            action="act",
            mode="production_eligible",
            confidence=Decimal("0.99"),
            generated_at=calendar.session_open(after) + timedelta(minutes=30),
            received_at=calendar.session_open(after) + timedelta(minutes=30),
        )
        for i, s in enumerate(sorted(symbols))
    )

    result = replay_pool("desk", FIRST, LAST)

    assert result.clock == "wall"
    assert "late-1" not in result.replay.outcomes
    assert result.differences == 0
    assert result.replay.decision_rows == result.reality.decision_rows
    assert result.replay.order_rows == result.reality.order_rows
    # The same late recommendation counts once the clock says it was known.
    simulated = replay_pool("desk", FIRST, LAST, clock="simulated")
    assert "late-1" in simulated.replay.outcomes
    assert simulated.differences >= 1


def test_on_a_wall_clock_nothing_is_replayed_before_the_pool_existed(real):
    Recommendation.objects.update(received_at=F("generated_at"))
    with pytest.raises(ReplayError, match="was created on .* after 2025-11-28"):
        replay_pool("desk", FIRST, LAST)


# --- the command ------------------------------------------------------------------------------


def test_the_command_prints_json_on_the_last_line_and_writes_the_report(real, tmp_path):
    out = StringIO()
    report = tmp_path / "replay.html"
    call_command(
        "replay",
        "--pool=desk",
        f"--from={FIRST}",
        f"--to={LAST}",
        "--set",
        "max_active_commitments=2",
        "--json",
        f"--report={report}",
        stdout=out,
    )
    last = out.getvalue().strip().splitlines()[-1]
    payload = json.loads(last)
    assert payload["differences"] > 0
    assert payload["settings"] == ["max_active_commitments=2"]
    assert set(payload) >= {"differences", "reality", "replay", "elapsed_s", "differing"}
    assert payload["replay"]["decisions"]["act"] < payload["reality"]["decisions"]["act"]
    assert payload["replay"]["skip_reasons"]["max_commitments_reached"] > 0
    page = report.read_text()
    assert len(re.findall(r"<polyline[^>]*data-series=\"(reality|replay)\"", page)) == 2
    assert "<link" not in page and "<script" not in page and "src=" not in page
    assert "max_commitments_reached" in page


def test_the_command_prints_the_table(real):
    out = StringIO()
    call_command("replay", "--pool=desk", f"--from={FIRST}", f"--to={LAST}", stdout=out)
    text = out.getvalue()
    assert "Recommendations with another outcome: 0" in text
    assert re.search(r"decisions\s+(\d+)\s+\1", text)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "max_active=3"], "did you mean max_active_commitments"),
        (["--set", "daily_loss_pct=2"], "not in (0, 1]"),
        (["--set", "min_confidence=0.8"], "tier.min_confidence"),
        (["--tier", "bold", "min_confidence=0.8"], "unknown tier 'bold'"),
        (["--set", "market_data_fallback=true"], "never asks the market data API"),
        (["--set", "correlation_reduce_threshold=0.9"], "correlation_reduce_threshold"),
    ],
)
def test_a_bad_setting_is_a_command_error_listing_the_valid_keys(real, arguments, message):
    counts = _row_counts()
    with pytest.raises(CommandError) as caught:
        call_command("replay", "--pool=desk", f"--from={FIRST}", f"--to={LAST}", *arguments)
    assert message in str(caught.value)
    if "did you mean" in message:
        assert "Valid keys" in str(caught.value) and "absolute_commitment_cap" in str(caught.value)
    assert _row_counts() == counts


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pool=nope", f"--from={FIRST}", f"--to={LAST}"], "no pool named 'nope'"),
        (["--pool=desk", f"--from={LAST}", f"--to={FIRST}"], "is after --to"),
        (["--pool=desk", "--from=2099-01-02", "--to=2099-01-03"], "in the future"),
    ],
)
def test_a_bad_window_or_pool_is_a_command_error(real, arguments, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("replay", *arguments)
