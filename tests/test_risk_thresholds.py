"""Tests of portfolio.risk_thresholds: re-evaluation, trailing, tightening and crossings."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.risk_levels import compute_initial_levels
from portfolio.risk_thresholds import (
    CommitmentLevels,
    Crossing,
    ThresholdConfig,
    check_crossing,
    update_levels,
)

D = Decimal
MULTIPLIER = D("2")
RATIO = D("1.5")

# Entry 100, ATR 2, multiplier 2, ratio 1.5: stop 100 − 4 = 96, target 100 + 4 × 1.5 = 106.
BASE = CommitmentLevels(
    symbol="AAPL",
    entry_value=D("100"),
    risk_threshold=D("96.0000"),
    gain_target=D("106.0000"),
    atr=D("2"),
    highest_value=D("100"),
    trailing_active=False,
)


def _update(
    levels: CommitmentLevels = BASE,
    value: str = "100",
    atr: str | None = None,
    heat: str = "0",
    config: ThresholdConfig | None = None,
):
    return update_levels(
        levels,
        D(value),
        D(atr) if atr is not None else None,
        MULTIPLIER,
        RATIO,
        D(heat),
        config,
    )


def test_defaults_are_the_source_thresholds() -> None:
    config = ThresholdConfig()

    assert config.atr_change_pct == D("0.10")
    assert config.trailing_activation_pct == D("0.50")
    assert config.heat_tighten_pct == D("0.80")
    assert config.tighten_factor == D("0.5")


def test_levels_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        BASE.risk_threshold = D("1")  # type: ignore[misc]


def test_nothing_to_do_leaves_levels_unchanged() -> None:
    result = _update(value="100", atr="2", heat="0.5")

    assert result.levels == BASE
    assert result.changed is False
    assert result.notes == ()


def test_new_high_is_recorded_without_moving_the_levels() -> None:
    result = _update(value="102")

    assert result.levels == replace(BASE, highest_value=D("102"))
    assert result.changed is True


def test_highest_value_never_falls() -> None:
    levels = replace(BASE, highest_value=D("102"))

    assert _update(levels, value="99").levels.highest_value == D("102")


# ATR re-evaluation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atr", "expected_stop", "expected_target", "expected_atr"),
    [
        # |1.8 − 2| / 2 = 10 % exactly: not "> 10 %", nothing moves, the reference ATR stays.
        pytest.param("1.8", "96.0000", "106.0000", "2", id="down-exactly-10pct"),
        pytest.param("2.2", "96.0000", "106.0000", "2", id="up-exactly-10pct"),
        # 1.7998 is 10.01 % down: stop 100 − 3.5996 = 96.4004, target 100 + 3.5996 × 1.5 = 105.3994.
        pytest.param("1.7998", "96.4004", "105.3994", "1.7998", id="down-10.01pct"),
        # 2.2002 is 10.01 % up: the new stop 95.5996 would loosen, so 96 stays; the target follows
        # to 100 + 4.4004 × 1.5 = 106.6006.
        pytest.param("2.2002", "96.0000", "106.6006", "2.2002", id="up-10.01pct-stop-kept"),
        pytest.param("2.1", "96.0000", "106.0000", "2", id="small-move"),
    ],
)
def test_atr_re_evaluation_at_its_boundary(
    atr: str, expected_stop: str, expected_target: str, expected_atr: str
) -> None:
    levels = _update(atr=atr).levels

    assert levels.risk_threshold == D(expected_stop)
    assert levels.gain_target == D(expected_target)
    assert levels.atr == D(expected_atr)


def test_atr_re_evaluation_note_is_readable() -> None:
    levels = replace(BASE, atr=D("2.10"))

    notes = _update(levels, atr="2.40").notes

    assert notes[0] == "ATR 2.10 → 2.40 (+14.3 %): levels re-evaluated"


def test_re_evaluated_lower_stop_keeps_the_old_one() -> None:
    levels = replace(BASE, risk_threshold=D("97.5000"))

    result = _update(levels, atr="3")  # would give 100 − 6 = 94

    assert result.levels.risk_threshold == D("97.5000")
    assert result.levels.gain_target == D("109.0000")  # 100 + 6 × 1.5
    assert "stop kept at 97.50: the re-evaluated 94.00 would loosen it" in result.notes


def test_no_atr_given_keeps_the_stored_atr() -> None:
    assert _update(atr=None).levels.atr == D("2")


def test_stored_atr_of_zero_counts_any_positive_atr_as_material() -> None:
    levels = replace(BASE, atr=D("0"), risk_threshold=D("90"), gain_target=D("115"))

    result = _update(levels, atr="2").levels

    assert (result.risk_threshold, result.gain_target, result.atr) == (D("96"), D("106"), D("2"))


# Trailing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_active", "expected_stop"),
    [
        # (103 − 100) / (106 − 100) = 50 % exactly: not "more than 50 %".
        pytest.param("103", False, "96.0000", id="exactly-50pct"),
        pytest.param("102.9999", False, "96.0000", id="just-below-50pct"),
        # Just above: trailing, stop = 103.0001 − 2 × 2 = 99.0001.
        pytest.param("103.0001", True, "99.0001", id="just-above-50pct"),
        pytest.param("105", True, "101.0000", id="well-above"),
    ],
)
def test_trailing_activation_at_its_boundary(
    value: str, expected_active: bool, expected_stop: str
) -> None:
    levels = _update(value=value).levels

    assert levels.trailing_active is expected_active
    assert levels.risk_threshold == D(expected_stop)


def test_trailing_activation_note_states_the_progress() -> None:
    notes = _update(value="103.3").notes  # 3.3 / 6 = 55 %

    assert "trailing activated at 55 % of the way to the target" in notes


def test_trailing_uses_the_highest_value_not_the_current_one() -> None:
    levels = replace(BASE, highest_value=D("104"), trailing_active=True)

    result = _update(levels, value="102").levels

    assert result.risk_threshold == D("100.0000")  # 104 − 2 × 2


def test_trailing_stays_active_when_the_value_falls_back() -> None:
    levels = replace(
        BASE, highest_value=D("104"), trailing_active=True, risk_threshold=D("100.0000")
    )

    result = _update(levels, value="101").levels

    assert result.trailing_active is True
    assert result.risk_threshold == D("100.0000")


def test_trailing_uses_the_current_atr() -> None:
    levels = replace(BASE, highest_value=D("104"), trailing_active=True)

    # ATR 2.1 is a 5 % move: no re-evaluation, but the trail is 104 − 2.1 × 2 = 99.8.
    result = _update(levels, value="104", atr="2.1").levels

    assert result.risk_threshold == D("99.8000")
    assert result.atr == D("2")


def test_trailing_stop_is_quantized_down_to_4_places() -> None:
    levels = replace(BASE, atr=D("1.23456"), highest_value=D("105"), trailing_active=True)

    stop = _update(levels, value="105").levels.risk_threshold

    # 105 − 1.23456 × 2 = 102.53088 → 102.5308.
    assert stop == D("102.5308")
    assert stop.as_tuple().exponent == -4


# Tightening --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heat", "expected_stop"),
    [
        pytest.param("0.80", "96.0000", id="exactly-80pct"),
        pytest.param("0.7999", "96.0000", id="just-below"),
        # Just above: 100 − 2 × 2 × 0.5 = 98.
        pytest.param("0.8001", "98.0000", id="just-above"),
        pytest.param("1.5", "98.0000", id="far-above"),
    ],
)
def test_tightening_at_its_boundary(heat: str, expected_stop: str) -> None:
    assert _update(heat=heat).levels.risk_threshold == D(expected_stop)


def test_tightening_note_states_the_exposure() -> None:
    notes = _update(heat="0.85").notes

    assert notes == ("stop tightened: pool exposure 85 % of its maximum (96.00 → 98.00)",)


def test_tightening_never_lowers_a_higher_stop() -> None:
    levels = replace(BASE, risk_threshold=D("99.0000"))

    result = _update(levels, heat="0.9")  # the tightened candidate 98 is below 99

    assert result.levels.risk_threshold == D("99.0000")
    assert result.notes == ()


def test_tightening_never_sets_the_stop_above_the_current_value() -> None:
    config = ThresholdConfig(tighten_factor=D("0"))

    assert _update(value="99", heat="0.9", config=config).levels.risk_threshold == D("99.0000")


def test_tightening_floors_the_stop_at_zero() -> None:
    levels = replace(
        BASE, entry_value=D("3"), risk_threshold=D("0"), gain_target=D("9"), highest_value=D("3")
    )

    stop = _update(levels, value="1", heat="0.9").levels.risk_threshold  # 1 − 2 = −1

    assert stop == D("0")


# All rules together ------------------------------------------------------------------------------


def test_rules_apply_in_order_against_a_hand_computation() -> None:
    # (a) highest 104. (b) ATR 2 → 1.5 is −25 %: stop 100 − 3 = 97, target 100 + 3 × 1.5 = 104.5.
    # (c) (104 − 100) / (104.5 − 100) = 88.9 % > 50 %: trailing, stop max(97, 104 − 3) = 101.
    # (d) heat 90 % > 80 %: stop max(101, 104 − 1.5 × 2 × 0.5) = 102.5.
    result = _update(value="104", atr="1.5", heat="0.9")

    assert result.levels == CommitmentLevels(
        symbol="AAPL",
        entry_value=D("100"),
        risk_threshold=D("102.5000"),
        gain_target=D("104.5000"),
        atr=D("1.5"),
        highest_value=D("104"),
        trailing_active=True,
    )
    assert result.changed is True
    assert result.notes == (
        "ATR 2.00 → 1.50 (−25 %): levels re-evaluated",
        "stop raised 96.00 → 97.00",
        "gain target 106.00 → 104.50",
        "trailing activated at 88.9 % of the way to the target",
        "trailing stop raised 97.00 → 101.00",
        "stop tightened: pool exposure 90 % of its maximum (101.00 → 102.50)",
    )
    assert check_crossing(result.levels, D("104")) is None


@pytest.mark.parametrize(
    ("value", "atr", "multiplier", "ratio", "heat", "message"),
    [
        pytest.param("-1", "2", "2", "1.5", "0", "current_value", id="negative-value"),
        pytest.param("100", "-1", "2", "1.5", "0", "atr", id="negative-atr"),
        pytest.param("100", "2", "0", "1.5", "0", "stop_loss_atr_multiplier", id="zero-mult"),
        pytest.param("100", "2", "2", "0", "0", "reward_risk_ratio", id="zero-ratio"),
        pytest.param("100", "2", "2", "1.5", "-0.1", "heat_ratio", id="negative-heat"),
    ],
)
def test_invalid_inputs_raise(
    value: str, atr: str, multiplier: str, ratio: str, heat: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        update_levels(BASE, D(value), D(atr), D(multiplier), D(ratio), D(heat))


# Crossings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("96", Crossing.RISK_THRESHOLD, id="at-the-stop"),
        pytest.param("95.99", Crossing.RISK_THRESHOLD, id="a-cent-below-the-stop"),
        pytest.param("96.01", None, id="a-cent-above-the-stop"),
        pytest.param("105.99", None, id="a-cent-below-the-target"),
        pytest.param("106", Crossing.GAIN_TARGET, id="at-the-target"),
        pytest.param("106.01", Crossing.GAIN_TARGET, id="a-cent-above-the-target"),
        pytest.param("0", Crossing.RISK_THRESHOLD, id="zero"),
    ],
)
def test_check_crossing(value: str, expected: Crossing | None) -> None:
    assert check_crossing(BASE, D(value)) is expected


def test_trailing_commitment_at_its_target_exits() -> None:
    levels = replace(BASE, trailing_active=True, risk_threshold=D("102"))

    assert check_crossing(levels, D("106")) is Crossing.GAIN_TARGET


def test_stop_at_or_above_the_target_reports_the_risk_threshold() -> None:
    levels = replace(BASE, risk_threshold=D("106"))

    assert check_crossing(levels, D("106")) is Crossing.RISK_THRESHOLD


def test_crossing_values_are_the_exit_reasons() -> None:
    assert [c.value for c in Crossing] == ["risk_threshold", "gain_target"]


# Properties --------------------------------------------------------------------------------------

prices = st.decimals(min_value="0.01", max_value="1000", places=2)
atrs = st.decimals(min_value="0", max_value="60", places=4)
observations = st.tuples(
    st.decimals(min_value="0", max_value="2000", places=2),
    st.none() | atrs,
    st.decimals(min_value="0", max_value="1.5", places=2),
)


@settings(max_examples=300, deadline=None)
@given(
    entry=prices,
    initial_atr=st.decimals(min_value="0.01", max_value="50", places=4),
    tier=st.sampled_from([(D("1.5"), D("2.0")), (D("2.0"), D("1.5")), (D("2.5"), D("1.2"))]),
    steps=st.lists(observations, min_size=1, max_size=25),
)
def test_stop_never_loosens_over_any_sequence_of_updates(
    entry: Decimal,
    initial_atr: Decimal,
    tier: tuple[Decimal, Decimal],
    steps: list[tuple[Decimal, Decimal | None, Decimal]],
) -> None:
    multiplier, ratio = tier
    initial = compute_initial_levels(entry, initial_atr, multiplier, ratio)
    levels = CommitmentLevels(
        symbol="X",
        entry_value=entry,
        risk_threshold=initial.risk_threshold,
        gain_target=initial.gain_target,
        atr=initial_atr,
        highest_value=entry,
        trailing_active=False,
    )

    for value, atr, heat in steps:
        updated = update_levels(levels, value, atr, multiplier, ratio, heat).levels

        assert updated.risk_threshold >= levels.risk_threshold
        assert D(0) <= updated.risk_threshold <= max(entry, updated.highest_value)
        assert updated.risk_threshold.as_tuple().exponent >= -4
        assert updated.highest_value == max(levels.highest_value, value)
        assert updated.trailing_active >= levels.trailing_active
        levels = updated
