"""One vocabulary for outcomes and reasons: the rules return its members, never literals, and
the database choices, the admin filters and the execution gate use the same values."""

from __future__ import annotations

import ast
import inspect
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

import decisions.rules
import decisions.sizing
from decisions import models as decision_models
from decisions import vocabulary
from decisions.rules import Candidate, CheckConfig, PoolView, evaluate_act, evaluate_defer
from decisions.sizing import SizingConfig, SizingInput, size_commitment
from decisions.vocabulary import DecisionOutcome, SkipReason
from execution.risk import GateReason
from tests.test_sizing import AGGRESSIVE, CONSERVATIVE, MODERATE

TIERS = (CONSERVATIVE, MODERATE, AGGRESSIVE)

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)

# --- no string literal as a reason ------------------------------------------------------------

#: Keyword arguments and assigned names that carry an outcome or a reason.
REASON_NAMES = frozenset({"reason", "skip_reason", "outcome"})
#: Positional arguments that carry one: callee name → argument indexes.
REASON_POSITIONS = {"CheckResult": (2,), "_skip": (0,), "Evaluation": (0, 1)}


def _literals(node: ast.AST) -> list[str]:
    """The non-empty string literals in an expression (``""`` means "no reason"); an f-string
    counts as one literal."""
    if isinstance(node, ast.JoinedStr):
        return [ast.unparse(node)]
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) and node.value else []
    return [text for child in ast.iter_child_nodes(node) for text in _literals(child)]


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def literal_reasons(source: str) -> list[tuple[int, str]]:
    """(line, literal) for every string literal passed, assigned or returned as a reason."""
    found: list[tuple[int, ast.AST]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            found += [(node.lineno, kw.value) for kw in node.keywords if kw.arg in REASON_NAMES]
            for index in REASON_POSITIONS.get(_callee(node), ()):
                if index < len(node.args):
                    found.append((node.lineno, node.args[index]))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            names |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
            if names & REASON_NAMES and node.value is not None:
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Constant | ast.IfExp):
            # A bare literal returned (formatting helpers return f-strings: not reasons).
            found.append((node.lineno, node.value))
    return [(line, text) for line, expr in found for text in _literals(expr)]


def vocabulary_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) for every string literal anywhere that spells a skip reason's value."""
    values = {member.value for member in SkipReason}
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and node.value in values
    ]


def test_the_literal_finder_finds_literals_in_every_reason_position():
    source = """
def f(w, passed, cash):
    CheckResult("window", False, "closed")
    CheckResult("window", passed, "" if passed else "closed_too")
    _skip("stale", [], processed=True)
    Evaluation("skip", SkipReason.ZERO_UNITS, True, ())
    w.result(rejected=True, reason="no_cash" if cash else SkipReason.ZERO_UNITS)
    reason = "too_big"
    w.reason = f"{cash}_reason"
    return "fallback" if cash else SkipReason.ZERO_UNITS
"""
    assert sorted(text for _, text in literal_reasons(source)) == sorted(
        [
            "closed",
            "closed_too",
            "stale",
            "skip",
            "no_cash",
            "too_big",
            "f'{cash}_reason'",
            "fallback",
        ]
    )
    assert literal_reasons('CheckResult("window", True, "")\nreason = SkipReason.ZERO_UNITS') == []
    assert vocabulary_literals('x = {"zero_units": 1}') == [(1, "zero_units")]


@pytest.mark.parametrize("module", [decisions.rules, decisions.sizing], ids=lambda m: m.__name__)
def test_rules_pass_no_string_literal_as_a_reason(module):
    source = inspect.getsource(module)

    assert literal_reasons(source) == []
    assert vocabulary_literals(source) == []


# --- every reason the rules return is a member ------------------------------------------------

D = Decimal
money = st.decimals(min_value=0, max_value=200000, places=2)
fraction = st.decimals(min_value=0, max_value=1, places=3)
sectors = st.sampled_from(["tech", "energy", "health", "utilities"])


@st.composite
def pool_views(draw) -> PoolView:
    total = draw(money)
    sector_values = draw(st.dictionaries(sectors, money, max_size=4))
    return PoolView(
        tier=draw(st.sampled_from(TIERS)),
        total_value=total,
        reserve_balance=draw(st.decimals(min_value=0, max_value=total, places=2)),
        cash=draw(st.decimals(min_value=-1000, max_value=total + 1, places=2)),
        halted=draw(st.booleans()),
        active_breakers=tuple(draw(st.lists(st.sampled_from(["daily_loss", "volatility"])))),
        breaker_until=NOW + timedelta(hours=2),
        entity_cooldowns=draw(
            st.dictionaries(
                st.sampled_from(["AAPL", "XOM"]),
                st.sampled_from([NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=1)]),
            )
        ),
        in_execution_window=draw(st.booleans()),
        active_commitments=draw(st.integers(min_value=0, max_value=12)),
        declining_commitments=draw(st.integers(min_value=0, max_value=12)),
        sector_values=sector_values,
        pool_exposure=draw(money),
        commitment_values=draw(st.dictionaries(st.sampled_from(["AAPL", "XOM"]), money)),
    )


@st.composite
def candidates(draw) -> Candidate:
    return Candidate(
        recommendation_id="rec-1",
        symbol=draw(st.sampled_from(["AAPL", "XOM"])),
        sector=draw(sectors),
        action=draw(st.sampled_from(["act", "defer"])),
        confidence=draw(fraction),
        current_value=draw(st.none() | st.decimals(min_value=0, max_value=1000, places=2)),
        atr=draw(st.none() | st.decimals(min_value=0, max_value=50, places=2)),
        correlation=draw(st.none() | st.floats(min_value=-1, max_value=1)),
        report_sessions_away=draw(st.none() | st.integers(min_value=0, max_value=10)),
        already_processed=draw(st.booleans()),
        open_units=draw(st.decimals(min_value=0, max_value=100, places=0)),
        exit_pending=draw(st.booleans()),
    )


def _assert_in_vocabulary(evaluation) -> None:
    assert isinstance(evaluation.outcome, DecisionOutcome)
    if evaluation.outcome is DecisionOutcome.SKIP:
        assert isinstance(evaluation.skip_reason, SkipReason)
    else:
        assert evaluation.skip_reason == ""
    for check in evaluation.checks:
        if check.passed:
            assert check.reason == ""
        else:
            assert isinstance(check.reason, SkipReason)
    if evaluation.sizing is not None and evaluation.sizing.rejected:
        assert isinstance(evaluation.sizing.reason, SkipReason)


@settings(max_examples=400)
@given(candidate=candidates(), pool=pool_views(), cap=money)
def test_every_outcome_and_reason_of_the_checks_is_in_the_vocabulary(candidate, pool, cap):
    sizing = SizingConfig(absolute_commitment_cap=cap)

    _assert_in_vocabulary(evaluate_act(candidate, pool, CheckConfig(), sizing, NOW))
    _assert_in_vocabulary(evaluate_defer(candidate, pool))


@settings(max_examples=400)
@given(
    tier=st.sampled_from(TIERS),
    confidence=st.decimals(min_value=D("0.01"), max_value=1, places=3),
    value=st.decimals(min_value=D("0.01"), max_value=5000, places=2),
    atr=st.none() | st.decimals(min_value=0, max_value=100, places=2),
    correlation=st.none() | st.floats(min_value=-1, max_value=1),
    sector=sectors,
    sector_value=money,
    held=st.frozensets(sectors),
    report=st.none() | st.integers(min_value=0, max_value=10),
    active_pool=st.decimals(min_value=-100, max_value=200000, places=2),
    cash=st.decimals(min_value=-100, max_value=200000, places=2),
    exposure=money,
    existing=money,
    cap=money,
)
def test_every_reason_of_the_sizer_is_in_the_vocabulary(
    tier,
    confidence,
    value,
    atr,
    correlation,
    sector,
    sector_value,
    held,
    report,
    active_pool,
    cash,
    exposure,
    existing,
    cap,
):
    result = size_commitment(
        SizingInput(
            confidence=confidence,
            current_value=value,
            atr=atr,
            correlation=correlation,
            sector=sector,
            sector_value=sector_value,
            held_sectors=held,
            report_sessions_away=report,
            active_pool=active_pool,
            available_cash=cash,
            pool_exposure=exposure,
            existing_value=existing,
        ),
        tier,
        SizingConfig(absolute_commitment_cap=cap),
    )

    if result.rejected:
        assert isinstance(result.reason, SkipReason)
    else:
        assert result.reason == "" and result.units > 0


def test_trace_of_a_skip_serialises_to_the_plain_values():
    pool = PoolView(
        tier=TIERS[0],
        total_value=D("1000"),
        reserve_balance=D("0"),
        cash=D("1000"),
        halted=True,
        active_breakers=(),
        breaker_until=None,
        entity_cooldowns={},
        in_execution_window=True,
        active_commitments=0,
        declining_commitments=0,
        sector_values={},
        pool_exposure=D("0"),
    )
    candidate = Candidate("rec-1", "AAPL", "tech", "act", D("0.9"), D("10"), atr=D("1"))
    evaluation = evaluate_act(candidate, pool, CheckConfig(), SizingConfig(), NOW)

    trace = json.loads(json.dumps(evaluation.trace(candidate, pool), cls=DjangoJSONEncoder))

    assert evaluation.skip_reason is SkipReason.POOL_HALTED
    assert (trace["outcome"], trace["skip_reason"]) == ("skip", "pool_halted")
    assert trace["checks"][0]["reason"] == "pool_halted"


# --- the database, the admin and the gate use the same list -----------------------------------


def _members(enum) -> list[tuple[str, str, str]]:
    return [(member.name, member.value, member.label) for member in enum]


@pytest.mark.parametrize(
    ("model_choices", "pure", "field"),
    [
        (decision_models.SkipReason, vocabulary.SkipReason, "skip_reason"),
        (decision_models.DecisionOutcome, vocabulary.DecisionOutcome, "outcome"),
    ],
)
def test_model_choices_are_the_vocabulary(model_choices, pure, field):
    assert _members(model_choices) == _members(pure)
    assert model_choices.choices == pure.choices()
    assert decision_models.DecisionRecord._meta.get_field(field).choices == pure.choices()
    assert all(model_choices[m.name] == m for m in pure)


@pytest.mark.parametrize(
    ("field", "pure"),
    [("skip_reason", vocabulary.SkipReason), ("outcome", vocabulary.DecisionOutcome)],
)
def test_admin_list_filter_offers_the_vocabulary(admin_client, field, pure):
    response = admin_client.get(reverse("admin:decisions_decisionrecord_changelist"))

    changelist = response.context["cl"]
    (spec,) = [s for s in changelist.filter_specs if getattr(s, "field_path", None) == field]
    offered = [
        (parse_qs(choice["query_string"].lstrip("?"))[f"{field}__exact"][0], choice["display"])
        for choice in spec.choices(changelist)
        if f"{field}__exact" in parse_qs(choice["query_string"].lstrip("?"))
    ]
    assert offered == pure.choices()


def test_gate_trading_state_reasons_are_the_engine_skip_reasons():
    for name in ("POOL_HALTED", "CIRCUIT_BREAKER_ACTIVE", "ENTITY_COOLDOWN_ACTIVE"):
        assert GateReason[name].value == SkipReason[name].value


def test_vocabulary_is_pure():
    tree = ast.parse(inspect.getsource(vocabulary))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "enum"}
