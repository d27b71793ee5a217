"""Per-modality statistics: literal float64 two-pass moments, the constant-dimension rule."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4.statistics import constant_dimensions, modality_statistics
from ul4m4.validation import check_multimodal


def test_modality_statistics_match_literal_float64_two_pass():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((50, 5)) * 1e3 + 7).astype(np.float32)
    a[[3, 10, 11]] = np.nan
    b = rng.integers(-4, 5, (50, 2))
    data = check_multimodal([a, b])
    means, scales = modality_statistics(data, 7)
    obs = ~np.isnan(a).all(axis=1)
    total = np.zeros(5)
    for row in a[obs]:
        total = total + row.astype(np.float64)
    mean = total / obs.sum()
    sq = np.zeros(5)
    for row in a[obs]:
        dev = row.astype(np.float64) - mean
        sq = sq + dev * dev
    np.testing.assert_array_equal(means[0], mean)
    np.testing.assert_array_equal(scales[0], np.sqrt(sq / (obs.sum() - 1)))


# ------------------------------------------------------------ constant dimensions
def test_constant_dimensions_are_relative_to_the_modalitys_magnitude():
    rng = np.random.default_rng(3)
    a = np.column_stack([rng.normal(size=40), np.full(40, 0.1), 1e-12 * rng.normal(size=40)])
    for factor in (1.0, 1e-9, 1e-30, 1e9):
        data = check_multimodal({"a": a * factor})
        means, scales = modality_statistics(data, 16)
        # The same dimensions are constant at every scale (a constant column's float64
        # mean leaves rounding deviations; a 1e-12 spread next to unit values is none)...
        np.testing.assert_array_equal(
            constant_dimensions(means[0], (a * factor).std(axis=0, ddof=1)), [False, True, True])
        # ...and the others are scaled by their own spread (data x 1e-9 was left at 1).
        np.testing.assert_allclose(scales[0][0], a[:, 0].std(ddof=1) * factor, rtol=1e-12)
        np.testing.assert_array_equal(scales[0][1:], 1.0)


def test_constant_dimensions_floor_and_non_finite_spreads():
    # Spreads below float32's smallest normal are none (a scale must stay normal in
    # float32); an overflowing std is never constant, so it is still reported.
    np.testing.assert_array_equal(
        constant_dimensions(np.array([1e-310, 0.0, 0.0]), np.array([1e-310, 1e-37, 0.0])),
        [True, False, True])
    np.testing.assert_array_equal(
        constant_dimensions(np.array([1e200, 0.0]), np.array([np.inf, 0.0])), [False, True])
    with pytest.raises(ValueError, match=r"modality 'a': values are too large"):
        UL4M4Imputer(2).fit({"a": np.array([[1e300], [-1e300], [0.0]])})
