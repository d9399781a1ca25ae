"""The market data API: the client against a real HTTP server on 127.0.0.1, the decision cycle's
fallback to it, and the daily-bar refresh into ``market_snapshots``."""

from __future__ import annotations

import io
import logging
import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule

from decisions import tasks
from decisions.engine import run_decision_cycle
from decisions.market_data import (
    MAX_SOURCE_FAILURES,
    last_complete_session,
    refresh_daily_bars,
    refresh_universe,
)
from decisions.models import DecisionRecord
from decisions.schedules import SCHEDULES, setup_schedules
from execution.adapters import AlpacaDataClient
from portfolio.config import parse_engine_config_values, validate_engine_config
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Commitment, EngineConfig, MarketSnapshot, SnapshotSource
from tests import factories
from tests.data_server import FakeDataApi

TRADE = "/trades/latest"


@pytest.fixture
def api():
    with FakeDataApi() as server:
        yield server


@pytest.fixture
def client(api):
    return AlpacaDataClient(api.url, api.key_id, api.secret_key, timeout=2)


@pytest.fixture
def configured(api, settings):
    settings.MARKET_DATA_API_URL = api.url
    settings.MARKET_DATA_API_KEY_ID = api.key_id
    settings.MARKET_DATA_API_SECRET_KEY = api.secret_key
    settings.MARKET_DATA_API_TIMEOUT = 2
    return api


def daily(day: str, o, h, l, c, v=1000) -> dict:  # noqa: E741 - the API's own key
    return {"t": f"{day}T05:00:00Z", "o": o, "h": h, "l": l, "c": c, "v": v, "n": 10, "vw": c}


# --- the client ------------------------------------------------------------------------------


def test_latest_trade_reads_price_and_time_and_sends_the_keys(api, client):
    api.set_trade("AAPL", 187.12, "2026-11-18T15:59:59.123456789Z")

    price, at = client.latest_trade("AAPL")

    assert price == Decimal("187.12") and isinstance(price, Decimal)
    assert at == datetime(2026, 11, 18, 15, 59, 59, 123456, tzinfo=UTC)
    (request,) = api.received
    assert request.path == "/v2/stocks/AAPL/trades/latest"
    assert request.headers["apca-api-key-id"] == api.key_id
    assert request.headers["apca-api-secret-key"] == api.secret_key


def test_daily_bars_pages_through_every_page_oldest_first(api, client):
    days = ["2026-11-12", "2026-11-13", "2026-11-16", "2026-11-17", "2026-11-18"]
    api.set_bars("AAPL", [daily(d, 10, 12, 9, 11 + i) for i, d in enumerate(days)])

    bars = client.daily_bars("AAPL", date(2026, 11, 12), date(2026, 11, 18))

    assert [bar.close for bar in bars] == [Decimal(11 + i) for i in range(5)]
    assert bars[0].at == datetime(2026, 11, 12, 5, tzinfo=UTC) and bars[0].volume == 1000
    requests = api.received
    assert len(requests) == 3  # two bars per page
    assert [r.query.get("page_token") for r in requests] == [None, "2", "4"]
    assert requests[0].query["timeframe"] == "1Day"
    assert (requests[0].query["start"], requests[0].query["end"]) == ("2026-11-12", "2026-11-18")


@pytest.mark.parametrize(
    "inject",
    [
        {"status": 503},
        {"status": 429},
        {"status": 200, "body": "<html>bad gateway</html>"},
        {"status": 200, "body": {"symbol": "AAPL"}},
        {"status": 200, "body": {"symbol": "AAPL", "trade": {"t": "2026-11-18T15:00:00Z"}}},
        {"status": 200, "body": {"trade": {"t": "2026-11-18T15:00:00Z", "p": -1}}},
        {"status": 200, "body": {"trade": {"t": "yesterday", "p": 10}}},
        {"status": 200, "body": {"trade": {"t": "2026-11-18T15:00:00", "p": 10}}},
    ],
    ids=["5xx", "429", "not-json", "no-trade", "no-price", "negative", "bad-time", "naive"],
)
def test_latest_trade_without_a_usable_answer_is_none_and_logged(api, client, caplog, inject):
    api.set_trade("AAPL", 187.12, "2026-11-18T15:59:59Z")
    api.inject(**inject)

    with caplog.at_level(logging.WARNING, logger="execution.adapters.market_data"):
        assert client.latest_trade("AAPL") is None

    assert caplog.records and "AAPL" in caplog.text
    assert api.secret_key not in caplog.text


def test_unknown_symbol_and_wrong_keys_are_none(api):
    good = AlpacaDataClient(api.url, api.key_id, api.secret_key, timeout=2)
    wrong = AlpacaDataClient(api.url, api.key_id, "not-the-secret", timeout=2)
    api.set_trade("AAPL", 1, "2026-11-18T15:59:59Z")

    assert good.latest_trade("NOPE") is None
    assert wrong.latest_trade("AAPL") is None
    assert good.failures == wrong.failures == 0  # the symbol's or the keys' fault, not the source's


def test_a_timeout_is_none_and_counts_as_a_source_failure(api, caplog):
    client = AlpacaDataClient(api.url, api.key_id, api.secret_key, timeout=0.2)
    api.set_trade("AAPL", 1, "2026-11-18T15:59:59Z")
    api.inject(delay=1.0)

    with caplog.at_level(logging.WARNING, logger="execution.adapters.market_data"):
        assert client.latest_trade("AAPL") is None

    assert client.failures == 1 and "no answer" in caplog.text


def test_a_refused_connection_is_none():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AlpacaDataClient(f"http://127.0.0.1:{port}", "k", "s", timeout=1)

    assert client.latest_trade("AAPL") is None
    assert client.daily_bars("AAPL", date(2026, 11, 1), date(2026, 11, 18)) == []
    assert client.failures == 2


@pytest.mark.parametrize(
    "inject",
    [
        {"status": 503},
        {"status": 200, "body": "garbage"},
        {"status": 200, "body": {"bars": [{"t": "2026-11-16T05:00:00Z", "o": "x"}]}},
        {"status": 200, "body": {"bars": {}, "next_page_token": None}},
    ],
    ids=["5xx", "not-json", "bad-bar", "bars-not-a-list"],
)
def test_a_bad_page_gives_no_bars_at_all(api, client, caplog, inject):
    days = ["2026-11-12", "2026-11-13", "2026-11-16"]
    api.set_bars("AAPL", [daily(d, 10, 12, 9, 11) for d in days])
    api.inject()  # the first page is answered normally
    api.inject(**inject)  # the second is not

    with caplog.at_level(logging.WARNING, logger="execution.adapters.market_data"):
        assert client.daily_bars("AAPL", date(2026, 11, 12), date(2026, 11, 16)) == []

    assert caplog.records


def test_client_refuses_a_bad_configuration():
    with pytest.raises(ValueError):
        AlpacaDataClient("ftp://example", "k", "s")
    with pytest.raises(ValueError):
        AlpacaDataClient("http://127.0.0.1:1", "", "s")
    with pytest.raises(ValueError):
        AlpacaDataClient("http://127.0.0.1:1", "k", "s", timeout=0)


# --- the decision cycle's fallback -----------------------------------------------------------


def stale_entity(symbol: str, now: datetime) -> None:
    """An entity with enough history for its ATR but no bar recent enough to be current."""
    factories.add_bars(symbol, now - timedelta(days=10), sessions=40)


def decision(rec) -> DecisionRecord:
    return DecisionRecord.objects.get(recommendation=rec)


def fallback_on(pool) -> None:
    EngineConfig.objects.filter(pool=pool).update(market_data_fallback=True)


def test_fallback_off_makes_no_call_and_skips_as_before(pool, session_now, configured):
    stale_entity("STALE", session_now)
    configured.set_trade("STALE", 101.25, "2026-11-18T15:59:30Z")
    rec = factories.make_recommendation("STALE", session_now)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert configured.received == []
    assert decision(rec).skip_reason == "no_current_value"
    assert not MarketSnapshot.objects.filter(source=SnapshotSource.DATA_API).exists()


def test_fallback_gives_the_candidate_the_fetched_value_and_stores_it(
    pool, session_now, configured
):
    fallback_on(pool)
    stale_entity("STALE", session_now)
    factories.add_bars("FRESH", session_now, sector="Energy")
    configured.set_trade("STALE", 101.25, "2026-11-18T15:59:30.5Z")
    rec = factories.make_recommendation("STALE", session_now)
    fresh = factories.make_recommendation("FRESH", session_now)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    # Only the entity without a current value was asked for.
    assert [r.path for r in configured.received] == ["/v2/stocks/STALE/trades/latest"]
    stored = MarketSnapshot.objects.get(entity_id="STALE", source=SnapshotSource.DATA_API)
    assert stored.as_of == datetime(2026, 11, 18, 15, 59, 30, 500000, tzinfo=UTC)
    assert stored.open == stored.high == stored.low == stored.close == Decimal("101.25")
    record = decision(rec)
    assert record.skip_reason != "no_current_value"
    assert record.current_value == Decimal("101.25")
    assert record.decision_trace["recommendation"]["current_value"] == "101.25"
    assert decision(fresh).current_value is not None


def test_a_trade_stamped_just_after_now_is_stored_as_of_now(pool, session_now, configured):
    fallback_on(pool)
    stale_entity("STALE", session_now)
    configured.set_trade("STALE", 99.5, "2026-11-18T16:00:00.040Z")
    rec = factories.make_recommendation("STALE", session_now)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    stored = MarketSnapshot.objects.get(entity_id="STALE", source=SnapshotSource.DATA_API)
    assert stored.as_of == session_now
    assert decision(rec).current_value == Decimal("99.5")


@pytest.mark.parametrize(
    "at",
    ["2026-11-10T15:00:00Z", "2026-11-18T17:00:00Z"],
    ids=["stale-trade", "trade-after-now"],
)
def test_a_trade_that_is_not_current_as_of_now_is_not_used(pool, session_now, configured, at):
    fallback_on(pool)
    stale_entity("STALE", session_now)
    configured.set_trade("STALE", 101, at)
    rec = factories.make_recommendation("STALE", session_now)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert configured.count(TRADE) == 1
    assert decision(rec).skip_reason == "no_current_value"
    assert not MarketSnapshot.objects.filter(source=SnapshotSource.DATA_API).exists()


def test_a_price_the_import_would_refuse_is_not_stored(pool, session_now, configured):
    fallback_on(pool)
    stale_entity("STALE", session_now)
    configured.set_trade("STALE", 101.123456, "2026-11-18T15:59:30Z")
    rec = factories.make_recommendation("STALE", session_now)

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert decision(rec).skip_reason == "no_current_value"
    assert not MarketSnapshot.objects.filter(source=SnapshotSource.DATA_API).exists()


def test_a_dead_data_api_costs_a_few_calls_and_the_cycle_still_runs(pool, session_now, configured):
    fallback_on(pool)
    recs = []
    for i in range(6):
        symbol = f"ST{i}"
        stale_entity(symbol, session_now)
        recs.append(factories.make_recommendation(symbol, session_now))
    for _ in range(10):
        configured.inject(status=503)

    result = run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert configured.count(TRADE) == MAX_SOURCE_FAILURES
    assert result.skip_reasons == {"no_current_value": 6}


def test_no_call_outside_the_execution_window(pool, configured):
    saturday = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    fallback_on(pool)
    stale_entity("STALE", saturday)
    configured.set_trade("STALE", 101, "2026-11-20T20:59:00Z")
    rec = factories.make_recommendation("STALE", saturday)

    run_decision_cycle(pool.pk, saturday, dispatch=False)

    assert configured.received == []
    assert decision(rec).skip_reason == "outside_execution_window"


def test_fallback_on_without_a_data_api_url_skips_as_before(pool, session_now, settings, caplog):
    settings.MARKET_DATA_API_URL = None
    fallback_on(pool)
    stale_entity("STALE", session_now)
    rec = factories.make_recommendation("STALE", session_now)

    with caplog.at_level(logging.WARNING, logger="decisions.engine"):
        run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert decision(rec).skip_reason == "no_current_value"
    assert "MARKET_DATA_API_URL is not set" in caplog.text


# --- the setting -----------------------------------------------------------------------------


def test_market_data_fallback_is_off_by_default_and_set_by_the_audited_command(pool):
    assert EngineConfig.objects.get(pool=pool).market_data_fallback is False

    out = io.StringIO()
    call_command(
        "engine_config",
        "--pool",
        pool.name,
        "--set",
        "market_data_fallback=on",
        "--reason",
        "new listings have no bars yet",
        "--actor",
        "tests",
        stdout=out,
    )

    assert EngineConfig.objects.get(pool=pool).market_data_fallback is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("OFF", False), ("1", True), (False, False)],
)
def test_market_data_fallback_parses_on_off_words(raw, expected):
    values, errors = parse_engine_config_values({"market_data_fallback": raw})
    assert errors == {} and values == {"market_data_fallback": expected}


@pytest.mark.parametrize("raw", ["maybe", "2", None])
def test_market_data_fallback_refuses_anything_else(raw):
    _, errors = parse_engine_config_values({"market_data_fallback": raw})
    assert "market_data_fallback" in errors


def test_validate_engine_config_wants_a_boolean_fallback():
    assert validate_engine_config({"market_data_fallback": True}) == {}
    assert "market_data_fallback" in validate_engine_config({"market_data_fallback": 1})


# --- the daily-bar refresh -------------------------------------------------------------------

AFTER_CLOSE = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)  # 16:30 New York


def close_of(day: date) -> datetime:
    return get_market_calendar(AFTER_CLOSE).session_close(day)


def test_refresh_upserts_the_last_sessions_idempotently(db, client, api):
    factories.make_entity("AAA")
    api.set_bars(
        "AAA",
        [
            daily("2026-11-16", 10, 11, 9, 10.5),
            daily("2026-11-17", 10.5, 12, 10, 11.5),
            daily("2026-11-18", 11.5, 13, 11, 12.5),
        ],
    )

    first = refresh_daily_bars(AFTER_CLOSE, symbols=["aaa"], sessions=2, client=client)
    second = refresh_daily_bars(AFTER_CLOSE, symbols=["AAA"], sessions=2, client=client)

    assert first.sessions == (date(2026, 11, 17), date(2026, 11, 18))
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2)
    rows = list(MarketSnapshot.objects.filter(entity_id="AAA").order_by("as_of"))
    assert [(r.as_of, r.close, r.source) for r in rows] == [
        (close_of(date(2026, 11, 17)), Decimal("11.5"), "data_api"),
        (close_of(date(2026, 11, 18)), Decimal("12.5"), "data_api"),
    ]
    assert (rows[1].open, rows[1].high, rows[1].low, rows[1].volume) == (
        Decimal("11.5"),
        Decimal("13"),
        Decimal("11"),
        1000,
    )


def test_refresh_updates_an_imported_bar_that_differs(db, client, api):
    factories.make_entity("AAA")
    MarketSnapshot.objects.create(
        entity_id="AAA",
        as_of=close_of(date(2026, 11, 18)),
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("1"),
        close=Decimal("2"),
    )
    api.set_bars("AAA", [daily("2026-11-18", 11.5, 13, 11, 12.5)])

    result = refresh_daily_bars(AFTER_CLOSE, symbols=["AAA"], client=client)

    assert (result.created, result.updated) == (0, 1)
    row = MarketSnapshot.objects.get(entity_id="AAA")
    assert (row.close, row.source) == (Decimal("12.5"), "data_api")


@pytest.mark.parametrize(
    "bad",
    [
        daily("2026-11-18", 11, 10, 12, 11),  # high below low
        daily("2026-11-18", 11, 12, 10, 13),  # close above high
        daily("2026-11-18", 11, 12, 10, 11.123456),  # more decimals than stored
        daily("2026-11-18", 11, 12, 10, 11, v=-5),  # negative volume
    ],
    ids=["high-below-low", "close-above-high", "decimals", "volume"],
)
def test_refresh_refuses_bad_bars_as_the_import_does(db, client, api, bad):
    factories.make_entity("BAD")
    factories.make_entity("GOOD")
    api.set_bars("BAD", [daily("2026-11-17", 10, 11, 9, 10), bad])
    api.set_bars("GOOD", [daily("2026-11-17", 10, 11, 9, 10), daily("2026-11-18", 10, 11, 9, 10)])

    result = refresh_daily_bars(AFTER_CLOSE, symbols=["BAD", "GOOD"], sessions=2, client=client)

    assert list(result.refused) == ["BAD"]
    assert not MarketSnapshot.objects.filter(entity_id="BAD").exists()
    assert MarketSnapshot.objects.filter(entity_id="GOOD").count() == 2


def test_refresh_refuses_an_unknown_entity(db, client, api):
    api.set_bars("ZZZ", [daily("2026-11-18", 10, 11, 9, 10)])

    result = refresh_daily_bars(AFTER_CLOSE, symbols=["ZZZ"], client=client)

    assert "unknown symbol" in result.refused["ZZZ"][0]
    assert not MarketSnapshot.objects.exists()


def test_refresh_during_a_session_asks_only_for_complete_sessions(db, client, api, session_now):
    factories.make_entity("AAA")
    api.set_bars("AAA", [daily("2026-11-17", 10, 11, 9, 10), daily("2026-11-18", 10, 11, 9, 10.5)])

    result = refresh_daily_bars(session_now, symbols=["AAA"], client=client)

    assert result.sessions == (date(2026, 11, 17),)
    assert api.received[0].query["end"] == "2026-11-17"
    assert MarketSnapshot.objects.get().as_of == close_of(date(2026, 11, 17))


def test_refresh_universe_is_held_and_recently_recommended(pool, session_now):
    for symbol in ("HELD", "RECENT", "OLD"):
        factories.make_entity(symbol)
    Commitment.objects.create(
        pool=pool,
        entity_id="HELD",
        units=Decimal("1"),
        entry_value=Decimal("10"),
        entry_cost=Decimal("10"),
        risk_tier="moderate",
        opened_at=session_now - timedelta(days=30),
    )
    factories.make_recommendation("RECENT", session_now)
    factories.make_recommendation("OLD", session_now, age_minutes=60 * 24 * 8)

    assert refresh_universe(session_now) == ["HELD", "RECENT"]


def test_refresh_task_and_command_need_the_data_api(db, settings):
    settings.MARKET_DATA_API_URL = None

    assert "not set" in tasks.refresh_daily_bars()
    with pytest.raises(CommandError, match="MARKET_DATA_API_URL"):
        call_command("refresh_bars", stdout=io.StringIO())


def test_refresh_bars_command_fetches_the_last_sessions(db, configured):
    factories.make_entity("AAA")
    now = timezone.now()
    calendar = get_market_calendar(now)
    last = last_complete_session(calendar, now)
    days = calendar.last_sessions(last, 2)
    configured.set_bars("AAA", [daily(d.isoformat(), 10, 11, 9, 10) for d in days])
    out = io.StringIO()

    call_command("refresh_bars", "--symbols", "AAA", "--days", "2", stdout=out)

    assert "2 created" in out.getvalue()
    assert MarketSnapshot.objects.filter(entity_id="AAA", source="data_api").count() == 2
    with pytest.raises(CommandError, match="without bars"):
        call_command("refresh_bars", "--symbols", "NOBARS", stdout=io.StringIO())


def test_the_daily_refresh_is_scheduled_after_the_close(db):
    (spec,) = [s for s in SCHEDULES if s.func == "decisions.tasks.refresh_daily_bars"]
    assert spec.schedule_type == Schedule.CRON and spec.cron == "20 16 * * 1-5"

    setup_schedules()

    assert Schedule.objects.get(name=spec.name).func == "decisions.tasks.refresh_daily_bars"
