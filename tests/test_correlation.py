"""Tests of portfolio.correlation: pairwise return correlations and their weighted average."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from portfolio.correlation import compute_return_correlations, weighted_average_correlation


def random_closes(seed: int, n_entities: int, n_days: int) -> np.ndarray:
    """Random-walk closes around 100 (price units), oldest → newest."""
    rng = np.random.default_rng(seed)
    daily = rng.normal(0.0005, 0.02, size=(n_entities, n_days - 1))
    start = rng.uniform(20, 200, size=(n_entities, 1))
    return np.hstack([start, start * np.cumprod(1 + daily, axis=1)])


def simple_returns(closes: np.ndarray) -> np.ndarray:
    return closes[..., 1:] / closes[..., :-1] - 1


def test_full_data_matches_numpy_corrcoef_of_the_last_30_returns() -> None:
    closes = random_closes(seed=7, n_entities=6, n_days=45)

    result = compute_return_correlations(closes, window=30)

    expected = np.corrcoef(simple_returns(closes[:, -31:]))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_missing_closes_use_the_pairwise_overlap() -> None:
    closes = random_closes(seed=11, n_entities=2, n_days=31)
    closes[1, [3, 4, 17]] = np.nan  # kills returns 2, 3, 4, 16 and 17 of entity 1
    closes[0, 25] = np.nan  # kills returns 24 and 25 of entity 0

    result = compute_return_correlations(closes, window=30)

    first, second = simple_returns(closes[0]), simple_returns(closes[1])
    both = ~np.isnan(first) & ~np.isnan(second)
    assert both.sum() == 30 - 7
    expected = np.corrcoef(first[both], second[both])[0, 1]
    assert result[0, 1] == pytest.approx(expected, abs=1e-12)
    assert result[1, 0] == result[0, 1]
    assert result[0, 0] == result[1, 1] == 1.0


def test_missing_closes_match_pandas_pairwise_complete_correlation() -> None:
    closes = random_closes(seed=3, n_entities=8, n_days=31)
    rng = np.random.default_rng(5)
    closes[rng.random(closes.shape) < 0.15] = np.nan

    result = compute_return_correlations(closes, window=30, min_overlap=10)

    returns = pd.DataFrame(simple_returns(closes).T)
    expected = returns.corr(min_periods=10).to_numpy()
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("return_multiplier", "expected"),
    [
        pytest.param(1.0, 1.0, id="same-returns"),
        pytest.param(2.5, 1.0, id="scaled-returns"),
        pytest.param(-1.0, -1.0, id="mirrored-returns"),
        pytest.param(-0.5, -1.0, id="scaled-mirrored-returns"),
    ],
)
def test_perfectly_related_returns(return_multiplier: float, expected: float) -> None:
    base = random_closes(seed=1, n_entities=1, n_days=31)[0]
    other_returns = return_multiplier * simple_returns(base)
    other = np.concatenate([[50.0], 50.0 * np.cumprod(1 + other_returns)])

    result = compute_return_correlations(np.vstack([base, other]))

    assert result[0, 1] == pytest.approx(expected, abs=1e-12)
    assert -1.0 <= result[0, 1] <= 1.0


@pytest.mark.parametrize(
    "flat_series",
    [
        pytest.param(np.full(31, 42.0), id="constant-price"),
        pytest.param(100.0 * 1.01 ** np.arange(31), id="constant-return"),
    ],
)
def test_zero_variance_series_is_nan(flat_series: np.ndarray) -> None:
    moving = random_closes(seed=2, n_entities=2, n_days=31)

    result = compute_return_correlations(np.vstack([flat_series, moving]))

    assert np.isnan(result[0]).all()
    assert np.isnan(result[:, 0]).all()
    assert result[1, 1] == result[2, 2] == 1.0
    assert not math.isnan(result[1, 2])


@pytest.mark.parametrize(
    ("common_returns", "min_overlap", "usable"),
    [
        pytest.param(9, 10, False, id="one-below-min-overlap"),
        pytest.param(10, 10, True, id="equal-to-min-overlap"),
        pytest.param(11, 10, True, id="one-above-min-overlap"),
        pytest.param(2, 2, True, id="two-points"),
    ],
)
def test_min_overlap_boundary(common_returns: int, min_overlap: int, usable: bool) -> None:
    closes = random_closes(seed=4, n_entities=2, n_days=31)
    # Entity 1 has only its last `common_returns` returns: every earlier close is missing.
    closes[1, : 30 - common_returns] = np.nan

    result = compute_return_correlations(closes, window=30, min_overlap=min_overlap)

    assert (not math.isnan(result[0, 1])) is usable
    assert (not math.isnan(result[1, 1])) is usable
    assert result[0, 0] == 1.0


def test_window_uses_only_the_last_30_returns() -> None:
    closes = random_closes(seed=9, n_entities=4, n_days=60)
    changed = closes.copy()
    changed[:, :29] = random_closes(seed=10, n_entities=4, n_days=29)  # closes before the last 31

    np.testing.assert_array_equal(
        compute_return_correlations(closes, window=30),
        compute_return_correlations(changed, window=30),
    )

    changed[0, -31] *= 1.5  # the base close of the oldest return in the window
    assert not np.array_equal(
        compute_return_correlations(closes, window=30),
        compute_return_correlations(changed, window=30),
    )


def test_fewer_days_than_the_window_uses_what_there_is() -> None:
    closes = random_closes(seed=12, n_entities=3, n_days=15)

    result = compute_return_correlations(closes, window=30)

    np.testing.assert_allclose(result, np.corrcoef(simple_returns(closes)), atol=1e-12)


@pytest.mark.parametrize(
    "closes",
    [
        pytest.param(np.empty((0, 31)), id="no-entities"),
        pytest.param(np.full((2, 1), 10.0), id="one-day"),
        pytest.param(np.full((2, 31), np.nan), id="all-missing"),
    ],
)
def test_degenerate_inputs_give_nan_of_the_right_shape(closes: np.ndarray) -> None:
    result = compute_return_correlations(closes)

    assert result.shape == (closes.shape[0], closes.shape[0])
    assert np.isnan(result).all()


@pytest.mark.parametrize("bad_close", [0.0, -3.0])
def test_non_positive_close_counts_as_missing(bad_close: float) -> None:
    closes = random_closes(seed=13, n_entities=2, n_days=31)
    clean = closes.copy()
    closes[1, 5] = bad_close

    result = compute_return_correlations(closes)

    first, second = simple_returns(clean[0]), simple_returns(clean[1])
    keep = np.ones(30, dtype=bool)
    keep[[4, 5]] = False  # the return into the zero close and the one out of it
    expected = np.corrcoef(first[keep], second[keep])[0, 1]
    assert result[0, 1] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"closes": np.ones(31)}, "2-D", id="one-dimensional"),
        pytest.param({"closes": np.ones((2, 31)), "window": 0}, "window", id="window-zero"),
        pytest.param({"closes": np.ones((2, 31)), "min_overlap": 1}, "min_overlap", id="overlap-1"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_return_correlations(**kwargs)


@pytest.mark.parametrize(
    ("correlations", "weights", "expected"),
    [
        pytest.param([0.9, 0.3, 1.0], [100, 300, 0], (0.45, 2), id="value-weighted"),
        pytest.param([0.9, np.nan, 0.3], [100, 500, 300], (0.45, 2), id="nan-ignored"),
        pytest.param([0.6], [250], (0.6, 1), id="one-holding"),
        pytest.param([-0.5, 0.5], [100, 100], (0.0, 2), id="cancelling"),
        pytest.param([1.0, 0.4], [0, 0], (None, 0), id="nothing-held"),
        pytest.param([np.nan, np.nan], [100, 200], (None, 0), id="held-but-all-nan"),
        pytest.param([], [], (None, 0), id="empty"),
    ],
)
def test_weighted_average_correlation(
    correlations: list[float], weights: list[float], expected: tuple[float | None, int]
) -> None:
    average, count = weighted_average_correlation(np.array(correlations), np.array(weights))

    expected_average, expected_count = expected
    assert count == expected_count
    if expected_average is None:
        assert average is None
    else:
        assert average == pytest.approx(expected_average, abs=1e-12)


@pytest.mark.parametrize(
    ("correlations", "weights"),
    [
        pytest.param([0.5, 0.2], [100], id="length-mismatch"),
        pytest.param([[0.5]], [[100]], id="two-dimensional"),
        pytest.param([0.5, 0.2], [100, -1], id="negative-weight"),
        pytest.param([0.5, 0.2], [100, np.nan], id="nan-weight"),
    ],
)
def test_weighted_average_correlation_rejects_bad_input(correlations, weights) -> None:
    with pytest.raises(ValueError):
        weighted_average_correlation(np.array(correlations), np.array(weights))


closes_arrays = st.tuples(st.integers(1, 6), st.integers(2, 40)).flatmap(
    lambda shape: hnp.arrays(
        dtype=np.float64,
        shape=shape,
        elements=st.one_of(
            st.floats(min_value=0.01, max_value=1e6, allow_nan=False),
            st.sampled_from([np.nan, 0.0, -1.0, 42.0]),
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(closes=closes_arrays, min_overlap=st.integers(2, 12))
def test_correlations_are_bounded_and_symmetric(closes: np.ndarray, min_overlap: int) -> None:
    result = compute_return_correlations(closes, window=30, min_overlap=min_overlap)

    finite = result[~np.isnan(result)]
    assert np.all((finite >= -1.0) & (finite <= 1.0))
    np.testing.assert_array_equal(result, result.T)  # NaN compares equal here
    diagonal = np.diag(result)
    assert np.all(np.isnan(diagonal) | (diagonal == 1.0))


@settings(max_examples=200, deadline=None)
@given(
    correlations=hnp.arrays(
        np.float64,
        8,
        elements=st.one_of(st.floats(-1.0, 1.0), st.just(np.nan)),
    ),
    weights=hnp.arrays(np.float64, 8, elements=st.floats(0.0, 1e7)),
)
def test_weighted_average_lies_between_the_contributing_correlations(
    correlations: np.ndarray, weights: np.ndarray
) -> None:
    average, count = weighted_average_correlation(correlations, weights)

    contributing = correlations[(weights > 0) & ~np.isnan(correlations)]
    assert count == contributing.size
    if count == 0:
        assert average is None
    else:
        assert contributing.min() - 1e-12 <= average <= contributing.max() + 1e-12
