"""The import commands (entities, snapshots, reports, recommendations) and ``create_pool``.

Every import validates the whole file before writing: a bad line anywhere leaves the database
as it was, and the error names every bad line by number (line 1 is the CSV header).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from decisions.imports import RecommendationInvalid, import_recommendations, parse_recommendation
from decisions.models import Recommendation
from portfolio.imports import REPORT_HORIZON_DAYS, ImportFailed, import_snapshots, read_lines
from portfolio.models import Entity, MarketSnapshot, PerformanceReport, Pool, RiskTierHistory
from tests import factories

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def write(tmp_path: Path, name: str, *lines: str) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def command_error(command: str, *args: str) -> str:
    with pytest.raises(CommandError) as info:
        run(command, *args)
    return str(info.value)


def error_line(message: str, number: int) -> str:
    """The error reported for line ``number`` of the file ("" if none)."""
    prefix = f"line {number}: "
    lines = [line.strip() for line in message.splitlines()]
    return next((line[len(prefix) :] for line in lines if line.startswith(prefix)), "")


# ---------------------------------------------------------------------------------------------
# create_pool


@pytest.mark.django_db
def test_create_pool_creates_pool_with_configs_and_tier_history():
    output = run("create_pool", "alpha", "--mode", "simulation", "--cash", "2500.50")

    pool = Pool.objects.get(name="alpha")
    assert "Created pool alpha" in output
    assert pool.cash == Decimal("2500.50")
    assert pool.risk_tier == "conservative"
    assert pool.adapter == "paper"
    assert pool.engine_config.max_active_commitments == 10
    assert RiskTierHistory.objects.filter(pool=pool, new_tier="conservative").count() == 1


@pytest.mark.django_db
def test_create_pool_takes_tier_and_adapter():
    run("create_pool", "live", "--mode", "production", "--cash", "0", "--tier", "aggressive")
    run("create_pool", "http-pool", "--mode", "simulation", "--cash", "10", "--adapter", "http")

    assert Pool.objects.get(name="live").risk_tier == "aggressive"
    assert Pool.objects.get(name="http-pool").adapter == "http"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "paper", "--cash", "1"], "invalid choice: 'paper'"),
        (["--mode", "simulation", "--cash", "1", "--tier", "reckless"], "invalid choice"),
        (["--mode", "simulation", "--cash", "-5"], "negative"),
        (["--mode", "simulation", "--cash", "lots"], "not a number"),
        (["--mode", "simulation", "--cash", "1.00001"], "more than 4 decimal places"),
        (["--mode", "simulation"], "--cash"),
    ],
)
def test_create_pool_rejects_bad_arguments(args, expected):
    assert expected in command_error("create_pool", "beta", *args)
    assert not Pool.objects.exists()


@pytest.mark.django_db
def test_create_pool_rejects_invalid_slug_name():
    message = command_error("create_pool", "not a slug!", "--mode", "simulation", "--cash", "1")

    assert "name" in message and "slug" in message.lower()
    assert not Pool.objects.exists()


@pytest.mark.django_db
def test_create_pool_rejects_duplicate_name():
    run("create_pool", "alpha", "--mode", "simulation", "--cash", "1")

    message = command_error("create_pool", "alpha", "--mode", "production", "--cash", "2")

    assert "already exists" in message
    assert Pool.objects.count() == 1


# ---------------------------------------------------------------------------------------------
# import_entities


@pytest.mark.django_db
def test_import_entities_creates_then_updates_by_symbol(tmp_path):
    first = write(
        tmp_path,
        "e1.csv",
        "symbol,name,sector",
        "aapl,Apple,Technology",
        "MSFT,Microsoft,Technology",
        "BRK.B,Berkshire,Financials",
    )
    assert "3 rows read, 3 created, 0 updated, 0 unchanged" in run("import_entities", first)
    assert Entity.objects.get(symbol="AAPL").name == "Apple"

    second = write(
        tmp_path,
        "e2.csv",
        "sector,symbol,name",  # columns in any order
        "Technology,AAPL,Apple Inc.",
        "Technology,MSFT,Microsoft",
        "Energy,XOM,Exxon",
    )
    output = run("import_entities", second)

    assert "3 rows read, 1 created, 1 updated, 1 unchanged" in output
    assert Entity.objects.get(symbol="AAPL").name == "Apple Inc."
    assert Entity.objects.count() == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ABCDEFGHIJKLMNOPQ,Too long,Tech", "symbol 'ABCDEFGHIJKLMNOPQ' is not 1-16 letters"),
        ("AB$C,Dollar,Tech", "symbol 'AB$C' is not 1-16 letters"),
        (",Nameless,Tech", "symbol is empty"),
        ("ZZZ,No sector,", "sector is required"),
        ("AAPL,Again,Tech", "symbol AAPL repeats line 2"),
        ("ONE,TWO", "2 fields, expected 3"),
    ],
)
def test_import_entities_reports_bad_line_and_writes_nothing(tmp_path, line, expected):
    path = write(tmp_path, "e.csv", "symbol,name,sector", "AAPL,Apple,Tech", line, "MSFT,MS,Tech")

    message = command_error("import_entities", path)

    assert expected in error_line(message, 3)
    assert "nothing was imported" in message
    assert not Entity.objects.exists()


@pytest.mark.django_db
def test_import_entities_rejects_bad_header(tmp_path):
    path = write(tmp_path, "e.csv", "symbol,nam,sector", "AAPL,Apple,Tech")

    message = command_error("import_entities", path)

    assert "line 1: bad header: missing column(s) name; unknown column(s) nam" in message


@pytest.mark.django_db
def test_import_lists_every_bad_line_up_to_the_cap(tmp_path):
    bad = [f"BAD${i},x,Tech" for i in range(60)]
    path = write(tmp_path, "e.csv", "symbol,name,sector", "AAPL,Apple,Tech", *bad)

    message = command_error("import_entities", path)

    assert "60 invalid lines" in message
    assert "line 3:" in message and "line 52:" in message
    assert "line 53:" not in message
    assert "… and 10 more" in message


def test_import_of_missing_file_is_a_command_error(tmp_path):
    message = command_error("import_entities", str(tmp_path / "absent.csv"))

    assert "cannot read" in message


def test_import_of_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"symbol,name,sector\nAAPL,Apple,Tech\nSOC,Soci\xe9t\xe9,Tech\n")

    assert "line 3: not UTF-8" in command_error("import_entities", str(path))


# ---------------------------------------------------------------------------------------------
# import_snapshots

SNAPSHOT_HEADER = "symbol,as_of,open,high,low,close,volume"


@pytest.fixture
def entities(db):
    factories.make_entity("AAPL")
    factories.make_entity("MSFT")


def test_import_snapshots_reads_dates_as_session_closes(tmp_path, entities):
    path = write(
        tmp_path,
        "s.csv",
        SNAPSHOT_HEADER,
        "AAPL,2026-11-24,100,102,99,101.5,1200",
        "aapl,2026-11-27,,103,100,102,",  # early close; open and volume empty
        "MSFT,2026-11-24T15:30:00-05:00,50,51,49,50.25,10",
    )

    output = run("import_snapshots", path)

    assert "3 rows read, 3 created, 0 updated, 0 unchanged" in output
    bars = {
        (bar.entity_id, bar.as_of): bar
        for bar in MarketSnapshot.objects.all()  # three rows
    }
    regular = bars[("AAPL", datetime(2026, 11, 24, 21, 0, tzinfo=UTC))]
    early = bars[("AAPL", datetime(2026, 11, 27, 18, 0, tzinfo=UTC))]
    stamped = bars[("MSFT", datetime(2026, 11, 24, 20, 30, tzinfo=UTC))]
    assert (regular.close, regular.volume, regular.open) == (Decimal("101.5"), 1200, Decimal(100))
    assert (early.open, early.volume) == (None, 0)
    assert stamped.close == Decimal("50.25")


def test_import_snapshots_upserts_on_entity_and_as_of(tmp_path, entities):
    first = write(tmp_path, "s1.csv", SNAPSHOT_HEADER, "AAPL,2026-11-24,100,102,99,101,5")
    run("import_snapshots", first)
    second = write(
        tmp_path,
        "s2.csv",
        SNAPSHOT_HEADER,
        "AAPL,2026-11-24T16:00:00-05:00,100,102,99,101.75,5",  # the same session close
        "AAPL,2026-11-25,101,103,100,102,7",
    )

    output = run("import_snapshots", second)

    assert "2 rows read, 1 created, 1 updated, 0 unchanged" in output
    bar = MarketSnapshot.objects.get(as_of=datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    assert bar.close == Decimal("101.75")
    assert MarketSnapshot.objects.count() == 2
    assert "0 created, 0 updated, 2 unchanged" in run("import_snapshots", second)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("AAPL,2026-11-26,100,102,99,101,5", "as_of 2026-11-26 is not an NYSE session"),
        ("AAPL,2026-11-28,100,102,99,101,5", "is not an NYSE session"),
        ("AAPL,2026-11-24T16:00:00,100,102,99,101,5", "has no UTC offset"),
        ("AAPL,yesterday,100,102,99,101,5", "is not an ISO-8601 timestamp"),
        ("AAPL,2026-02-30,100,102,99,101,5", "is not a valid date"),
        ("AAPL,,100,102,99,101,5", "as_of is required"),
        ("NOPE,2026-11-23,100,102,99,101,5", "unknown symbol NOPE"),
        ("AAPL,2026-11-23,100,102,99,0,5", "close 0 must be > 0"),
        ("AAPL,2026-11-23,100,102,-1,101,5", "low -1 must be > 0"),
        ("AAPL,2026-11-23,100,98,99,98.5,5", "high 98 is below low 99"),
        ("AAPL,2026-11-23,100,102,99,103,5", "close 103 is above high 102"),
        ("AAPL,2026-11-23,100,102,99,98,5", "close 98 is below low 99"),
        ("AAPL,2026-11-23,100,102,99,,5", "close is required"),
        ("AAPL,2026-11-23,100,102,99,abc,5", "close 'abc' is not a number"),
        ("AAPL,2026-11-23,100,102,99,101.12345,5", "more than 4 decimal places"),
        ("AAPL,2026-11-23,100,102,99,101,-3", "volume '-3' is not a non-negative integer"),
        ("AAPL,2026-11-23,100,102,99,101,2.5", "volume '2.5' is not a non-negative integer"),
        ("AAPL,2026-11-24T21:00:00Z,100,102,99,101,5", "repeats line 2"),
    ],
)
def test_import_snapshots_reports_bad_line_and_writes_nothing(tmp_path, entities, line, expected):
    path = write(
        tmp_path,
        "s.csv",
        SNAPSHOT_HEADER,
        "AAPL,2026-11-24,100,102,99,101,5",
        line,
        "MSFT,2026-11-24,50,51,49,50,10",
    )

    message = command_error("import_snapshots", path)

    assert expected in error_line(message, 3)
    assert not MarketSnapshot.objects.exists()


def test_import_snapshots_bad_lines_leave_stored_bars_untouched(tmp_path, entities):
    run("import_snapshots", write(tmp_path, "a.csv", SNAPSHOT_HEADER, "AAPL,2026-11-24,1,2,1,2,5"))
    path = write(
        tmp_path,
        "b.csv",
        SNAPSHOT_HEADER,
        "AAPL,2026-11-24,1,2,1,1.5,5",
        "MSFT,2026-11-24,1,2,1,2,5",
        "MSFT,2026-11-26,1,2,1,2,5",
        "MSFT,2026-11-25,1,1,2,2,5",
    )

    message = command_error("import_snapshots", path)

    assert "2 invalid lines" in message
    assert "line 4:" in message and "line 5:" in message
    assert list(MarketSnapshot.objects.values_list("entity_id", "close")) == [
        ("AAPL", Decimal("2"))
    ]


def test_import_snapshots_is_a_few_queries_per_thousand_rows(
    tmp_path, entities, django_assert_max_num_queries
):
    calendar_days = factories.sessions_before(NOW, 1000)
    lines = [
        f"{symbol},{day.isoformat()},10,11,9,10.5,100"
        for day in calendar_days
        for symbol in ("AAPL", "MSFT")
    ]
    path = write(tmp_path, "big.csv", SNAPSHOT_HEADER, *lines)
    with django_assert_max_num_queries(40):
        result = import_snapshots(path, now=NOW)

    assert (result.rows, result.created) == (2000, 2000)
    assert MarketSnapshot.objects.count() == 2000


# ---------------------------------------------------------------------------------------------
# import_reports


def test_import_reports_adds_dates_and_ignores_duplicates(tmp_path, entities):
    path = write(
        tmp_path,
        "r.csv",
        "symbol,report_date",
        "AAPL,2026-12-03",
        "msft,2026-12-10",
        "AAPL,2026-12-03",
    )

    assert "3 rows read, 2 created, 0 updated, 1 unchanged" in run("import_reports", path)
    assert "3 rows read, 0 created, 0 updated, 3 unchanged" in run("import_reports", path)
    assert PerformanceReport.objects.count() == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOPE,2026-12-03", "unknown symbol NOPE"),
        ("AAPL,12/03/2026", "report_date '12/03/2026' is not a date YYYY-MM-DD"),
        ("AAPL,2026-13-01", "is not a valid date"),
    ],
)
def test_import_reports_reports_bad_line_and_writes_nothing(tmp_path, entities, line, expected):
    path = write(tmp_path, "r.csv", "symbol,report_date", "AAPL,2026-12-03", line)

    message = command_error("import_reports", path)

    assert expected in error_line(message, 3)
    assert not PerformanceReport.objects.exists()


# ---------------------------------------------------------------------------------------------
# import_recommendations


def recommendation(**overrides) -> dict:
    data = {
        "id": "rec-1",
        "entity": "AAPL",
        "action": "act",
        "mode": "simulation_eligible",
        "confidence": 0.72,
        "generated_at": "2026-11-18T15:55:00+00:00",
        "thesis": "breakout",
        "risk_classification": "medium",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def jsonl(tmp_path: Path, *items: dict | str) -> str:
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    return write(tmp_path, "r.jsonl", *lines)


def test_import_recommendations_inserts_every_line(tmp_path, entities):
    path = jsonl(
        tmp_path,
        recommendation(),
        "",
        recommendation(id="rec-2", entity="msft", action="defer", confidence=1),
        recommendation(id="rec-3", mode="production_eligible", thesis=..., risk_classification=...),
        "   ",
    )

    output = run("import_recommendations", path)

    assert "3 rows read, 3 created" in output
    first = Recommendation.objects.get(id="rec-1")
    assert first.confidence == Decimal("0.72")
    assert first.generated_at == datetime(2026, 11, 18, 15, 55, tzinfo=UTC)
    assert Recommendation.objects.get(id="rec-2").entity_id == "MSFT"
    third = Recommendation.objects.get(id="rec-3")
    assert (third.thesis, third.risk_classification) == ("", "")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ('{"id": "rec-9", "entity": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (recommendation(id="rec-9", entity=...), "missing field entity"),
        (recommendation(id="rec-9", confidence=None), "missing field confidence"),
        (recommendation(id="rec-9", entity="NOPE"), "unknown entity NOPE"),
        (recommendation(id="rec-9", confidence=1.7), "confidence 1.7 is not in [0, 1]"),
        (recommendation(id="rec-9", confidence="1.7"), "confidence '1.7' is not in [0, 1]"),
        (recommendation(id="rec-9", confidence=-0.1), "is not in [0, 1]"),
        (recommendation(id="rec-9", confidence="high"), "confidence 'high' is not a number"),
        (recommendation(id="rec-9", confidence=True), "confidence True is not a number"),
        (recommendation(id="rec-9", action="buy"), "action 'buy' is not one of act, defer"),
        (recommendation(id="rec-9", mode="live"), "mode 'live' is not one of"),
        (
            recommendation(id="rec-9", generated_at="2026-11-18T15:55:00"),
            "generated_at '2026-11-18T15:55:00' has no UTC offset",
        ),
        (recommendation(id="rec-9", generated_at="last tuesday"), "is not an ISO-8601 timestamp"),
        (recommendation(id="rec-9", generated_at=1763480100), "is not an ISO-8601 string"),
        (recommendation(id="x" * 65), "id is longer than 64 characters"),
        (recommendation(id=""), "id is empty"),
        (recommendation(id=7), "id 7 is not a string"),
        (recommendation(id="rec-1"), "id 'rec-1' repeats line 1"),
        (recommendation(id="stored"), "id 'stored' already exists"),
    ],
)
def test_import_recommendations_reports_bad_line_and_writes_nothing(
    tmp_path, entities, item, expected
):
    factories.make_recommendation("AAPL", NOW, rec_id="stored")
    path = jsonl(tmp_path, recommendation(), "", item, recommendation(id="rec-2"))

    message = command_error("import_recommendations", path)

    assert expected in error_line(message, 3)
    assert list(Recommendation.objects.values_list("id", flat=True)) == ["stored"]


def test_import_recommendations_lists_every_problem_of_a_line(tmp_path, entities):
    path = jsonl(tmp_path, recommendation(action="buy", mode="live", confidence=2))

    message = command_error("import_recommendations", path)

    assert "line 1: action 'buy'" in message
    assert "mode 'live'" in message and "confidence" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("confidence", 0.123456, Decimal("0.12346")),
        ("confidence", "0.5", Decimal("0.5")),
        ("confidence", 0, Decimal(0)),
        ("generated_at", "2026-11-18T10:55:00-05:00", datetime(2026, 11, 18, 15, 55, tzinfo=UTC)),
        ("generated_at", "2026-11-18T15:55:00Z", datetime(2026, 11, 18, 15, 55, tzinfo=UTC)),
        ("entity", " aapl ", "AAPL"),
    ],
)
def test_parse_recommendation_normalizes_values(field, value, expected):
    parsed = parse_recommendation(recommendation(**{field: value}))

    assert getattr(parsed, field) == expected


def test_parse_recommendation_reports_errors_by_field():
    with pytest.raises(RecommendationInvalid) as info:
        parse_recommendation(recommendation(action="sell", generated_at=...))

    assert set(info.value.errors) == {"action", "generated_at"}


def test_import_recommendations_is_a_few_queries_per_thousand_rows(
    tmp_path, entities, django_assert_max_num_queries
):
    path = jsonl(tmp_path, *(recommendation(id=f"bulk-{i}") for i in range(2000)))

    with django_assert_max_num_queries(40):
        result = import_recommendations(path)

    assert result.created == 2000
    assert Recommendation.objects.count() == 2000


# ---------------------------------------------------------------------------------------------
# Values dated in the future, file sizes, values shown plainly


def test_import_recommendations_shows_a_bad_confidence_plainly(tmp_path, entities):
    path = jsonl(tmp_path, recommendation(confidence=1.7))

    message = command_error("import_recommendations", path)

    assert "line 1: confidence 1.7 is not in [0, 1]" in message
    assert "Decimal(" not in message


def test_import_recommendations_refuses_a_recommendation_generated_in_2099(tmp_path, entities):
    path = jsonl(
        tmp_path, recommendation(), recommendation(id="r2", generated_at="2099-06-01T10:00Z")
    )

    message = command_error("import_recommendations", path)

    assert "line 2: generated_at 2099-06-01T10:00:00+00:00 is in the future" in message
    assert "--allow-future" in message
    assert not Recommendation.objects.exists()


def test_import_recommendations_allow_future_accepts_a_simulation(tmp_path, entities):
    path = jsonl(tmp_path, recommendation(generated_at="2099-06-01T10:00Z"))

    assert "1 created" in run("import_recommendations", path, "--allow-future")
    assert Recommendation.objects.get().generated_at.year == 2099


def test_import_recommendations_accepts_a_few_seconds_of_clock_skew(tmp_path, entities):
    soon = (timezone.now() + timedelta(seconds=60)).isoformat()
    path = jsonl(tmp_path, recommendation(generated_at=soon))

    assert "1 created" in run("import_recommendations", path)


def test_import_snapshots_refuses_a_bar_stamped_in_2099(tmp_path, entities):
    path = write(
        tmp_path,
        "s.csv",
        SNAPSHOT_HEADER,
        "AAPL,2026-11-24,100,102,99,101,5",
        "AAPL,2099-06-01T10:00:00-04:00,100,102,99,101,5",
    )

    message = command_error("import_snapshots", path)

    assert "as_of 2099-06-01T14:00:00+00:00 is in the future" in error_line(message, 3)
    assert "--allow-future" in message
    assert not MarketSnapshot.objects.exists()


def test_import_snapshots_allow_future_accepts_a_simulation(tmp_path, entities):
    path = write(tmp_path, "s.csv", SNAPSHOT_HEADER, "AAPL,2099-06-01T10:00:00-04:00,1,2,1,2,5")

    assert "1 created" in run("import_snapshots", path, "--allow-future")
    assert MarketSnapshot.objects.get().as_of.year == 2099


def test_import_reports_refuses_a_date_beyond_the_horizon(tmp_path, entities):
    today = timezone.now().astimezone(NEW_YORK).date()
    edge = today + timedelta(days=REPORT_HORIZON_DAYS)
    path = write(
        tmp_path,
        "r.csv",
        "symbol,report_date",
        f"AAPL,{edge.isoformat()}",
        "AAPL,2099-06-01",
        f"MSFT,{(edge + timedelta(days=1)).isoformat()}",
    )

    message = command_error("import_reports", path)

    assert error_line(message, 2) == ""  # the last day of the horizon is accepted
    assert "report_date 2099-06-01 is more than 730 days ahead" in error_line(message, 3)
    assert "days ahead" in error_line(message, 4)
    assert not PerformanceReport.objects.exists()


def test_import_reports_allow_future_accepts_a_simulation(tmp_path, entities):
    path = write(tmp_path, "r.csv", "symbol,report_date", "AAPL,2099-06-01")

    assert "1 created" in run("import_reports", path, "--allow-future")


@pytest.mark.parametrize(
    ("command", "header"),
    [
        ("import_entities", "symbol,name,sector"),
        ("import_snapshots", SNAPSHOT_HEADER),
        ("import_reports", "symbol,report_date"),
        ("import_recommendations", None),
    ],
)
def test_imports_refuse_a_file_larger_than_max_bytes(tmp_path, entities, command, header):
    lines = [json.dumps(recommendation(id=f"r{i}")) for i in range(50)]
    path = write(tmp_path, "big.txt", *([header] if header else []), *lines)

    message = command_error(command, path, "--max-bytes", "1024")

    assert "larger than the limit of 1,024 bytes" in message
    assert "--max-bytes" in message


def test_max_bytes_must_be_positive(tmp_path):
    path = write(tmp_path, "e.csv", "symbol,name,sector")

    with pytest.raises(CommandError, match="must be at least 1"):
        call_command("import_entities", path, "--max-bytes", "0")


def test_read_lines_streams_and_cuts_a_file_that_grows_past_the_limit(tmp_path):
    path = tmp_path / "grows.csv"
    path.write_text("symbol,name,sector\nAAPL,Apple,Tech\n", encoding="utf-8")
    lines = read_lines(str(path), max_bytes=64)  # checked against the size on disk: fits
    with path.open("a", encoding="utf-8") as handle:
        handle.write("MSFT,Microsoft,Tech\n" * 10)

    iterator = iter(lines)
    assert next(iterator) == "symbol,name,sector\n"  # read line by line, not whole
    with pytest.raises(ImportFailed, match="larger than the limit of 64 bytes"):
        list(iterator)


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+01:00"],
)
def test_parse_recommendation_refuses_an_instant_without_a_utc_equivalent(value):
    with pytest.raises(RecommendationInvalid, match="generated_at .* is out of range"):
        parse_recommendation(recommendation(generated_at=value))
