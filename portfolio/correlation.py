"""Correlation of daily returns between entities, for the commitment sizer's diversification step.

Implements "Correlation-Aware Diversification" of "Commitment Sizing" in the source document: the
pairwise correlation matrix refreshed from 30 days of daily closes, and the value-weighted average
correlation of a candidate entity with the existing commitments. The design ("Commitment sizer")
fixes the input as the daily returns of the last 30 sessions of closes. The thresholds (> 0.8
reject, 0.5–0.8 scale down) belong to the sizer, not to this module.

Everything is vectorized with numpy: the pairwise-complete sums are matrix products of the masked
returns, so the cost does not grow with Python-level loops over pairs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compute_return_correlations", "weighted_average_correlation"]

# A variance below this fraction of n × (largest absolute return)² is treated as zero: it is
# rounding noise (a return series that is constant over the overlap leaves about 1e-15 of it),
# while any real price series sits many orders of magnitude above it.
_RELATIVE_VARIANCE_TOLERANCE = 1e-12


def compute_return_correlations(
    closes: np.ndarray, window: int = 30, min_overlap: int = 10
) -> np.ndarray:
    """Pairwise Pearson correlation of simple daily returns, as an (n × n) float array.

    ``closes`` is an (n_entities × n_days) array of daily closes (price units; only ratios matter),
    oldest → newest, NaN where a close is missing. The last ``window`` returns are used, i.e. the
    last ``window + 1`` closes (fewer if fewer days are given). A return exists where both its close
    and the previous close are present and positive (a close <= 0 is treated as missing).

    Each pair uses its pairwise-complete returns (days where both entities have a return), with the
    means taken over that overlap, as ``pandas.DataFrame.corr`` does. A pair with fewer than
    ``min_overlap`` common returns, or zero variance on either side over the overlap, is NaN. The
    diagonal is 1.0 where the entity has at least ``min_overlap`` returns with nonzero variance, NaN
    otherwise. The result is symmetric, values are correlation coefficients (unitless, −1 … 1).

    Raises ``ValueError`` if ``closes`` is not 2-D, ``window`` < 1 or ``min_overlap`` < 2.
    """
    closes = np.asarray(closes, dtype=float)
    if closes.ndim != 2:
        raise ValueError(f"closes must be 2-D (entities × days), got shape {closes.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if min_overlap < 2:
        raise ValueError(f"min_overlap must be >= 2 (a correlation needs 2), got {min_overlap}")

    n_entities = closes.shape[0]
    recent = closes[:, -(window + 1) :]
    previous, current = recent[:, :-1], recent[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = current / previous - 1.0
    # A close <= 0 is bad data (a price is positive), so it counts as missing like a NaN.
    present = np.isfinite(returns) & (previous > 0) & (current > 0)

    mask = present.astype(float)
    raw = np.where(present, returns, 0.0)
    # Centring each entity on its own mean changes no covariance but keeps the raw-moment formulas
    # below away from cancellation.
    counts = mask.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        own_means = np.where(counts > 0, raw.sum(axis=1) / counts, 0.0)
    values = np.where(present, raw - own_means[:, None], 0.0)
    scale = np.abs(raw).max(axis=1, initial=0.0)

    overlap = mask @ mask.T  # n_ij: days where both i and j have a return
    sum_x = values @ mask.T  # Σ x_i over the overlap with j (row i, column j)
    sum_xx = (values * values) @ mask.T  # Σ x_i² over the overlap with j
    sum_xy = values @ values.T  # Σ x_i·x_j over the overlap (zeros elsewhere)

    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = sum_xy - sum_x * sum_x.T / overlap
        variance_x = sum_xx - sum_x * sum_x / overlap  # variance of i over the overlap with j
        variance_y = variance_x.T  # variance of j over the overlap with i
        tolerance_x = overlap * _RELATIVE_VARIANCE_TOLERANCE * (scale[:, None] ** 2)
        tolerance_y = tolerance_x.T
        usable = (overlap >= min_overlap) & (variance_x > tolerance_x) & (variance_y > tolerance_y)
        correlations = np.where(
            usable, covariance / np.sqrt(np.abs(variance_x * variance_y)), np.nan
        )

    correlations = np.clip(correlations, -1.0, 1.0)
    upper = np.triu_indices(n_entities, k=1)
    correlations[upper[1], upper[0]] = correlations[upper]
    diagonal = np.diag(usable).copy()
    correlations[np.diag_indices(n_entities)] = np.where(diagonal, 1.0, np.nan)
    return correlations


def weighted_average_correlation(
    correlations: np.ndarray, weights: np.ndarray
) -> tuple[float | None, int]:
    """The value-weighted average correlation of a candidate with the held entities.

    ``correlations`` is the candidate's row of the correlation matrix (1-D, length n, unitless);
    ``weights`` the commitment value of each entity (1-D, length n, dollars, ≥ 0; 0 where the entity
    is not held, and callers set the candidate's own index to 0). NaN correlations are ignored
    together with their weights.

    Returns (average correlation, number of holdings that contributed), or (None, 0) when no held
    entity has a usable correlation. Raises ``ValueError`` on mismatched shapes or a negative or
    non-finite weight.
    """
    correlations = np.asarray(correlations, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if correlations.ndim != 1 or correlations.shape != weights.shape:
        raise ValueError(
            "correlations and weights must be 1-D of the same length, "
            f"got {correlations.shape} and {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be finite and >= 0")

    contributing = (weights > 0) & np.isfinite(correlations)
    count = int(contributing.sum())
    if count == 0:
        return None, 0
    # Scaled by the largest weight first, so tiny (subnormal) weights cannot underflow to a
    # zero product and drag the average outside the correlations it averages.
    used_weights = weights[contributing] / weights[contributing].max()
    average = float(np.dot(used_weights, correlations[contributing]) / used_weights.sum())
    return float(np.clip(average, -1.0, 1.0)), count
