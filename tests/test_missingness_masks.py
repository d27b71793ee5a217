"""Tests for ul4m4.missingness.masks: masks to NaN rows and back."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4.missingness import apply_mask, independent_mask, mask_from_data
from ul4m4.validation import check_multimodal


def test_apply_mask_nan_rows_exactly_where_false_and_no_mutation():
    rs = np.random.RandomState(0)
    X = {
        "text": rs.normal(size=(50, 4)),
        "image": rs.randint(0, 10, size=(50, 3)),
        "audio": rs.normal(size=(50, 2)).astype(np.float32),
    }
    before = {k: v.copy() for k, v in X.items()}
    mask = independent_mask(50, [0.5, 0.5, 0.5], random_state=0)
    out = apply_mask(X, mask)
    assert list(out) == list(X)
    assert out["image"].dtype == np.float64 and out["audio"].dtype == np.float32
    for j, k in enumerate(X):
        np.testing.assert_array_equal(X[k], before[k])
        assert out[k] is not X[k]
        assert np.isnan(out[k][~mask[:, j]]).all()
        assert not np.isnan(out[k][mask[:, j]]).any()
        np.testing.assert_array_equal(out[k][mask[:, j]], X[k][mask[:, j]])
    np.testing.assert_array_equal(mask_from_data(out), mask)


def test_apply_mask_accepts_01_integers():
    X = {"a": np.ones((2, 2)), "b": np.ones((2, 1))}
    out = apply_mask(X, np.array([[1, 0], [0, 1]]))
    np.testing.assert_array_equal(mask_from_data(out), [[True, False], [False, True]])


@pytest.mark.parametrize(
    ("X", "mask", "match"),
    [
        ({"a": np.ones((3, 2)), "b": np.ones((3, 1))}, np.ones((3, 3), bool),
         r"mask has 3 columns but X has 2 modalities \['a', 'b'\]"),
        ({"a": np.ones((3, 2)), "b": np.ones((3, 1))}, np.ones((4, 2), bool),
         "mask has 4 rows but modality 'a' has 3"),
        ({"a": np.ones((3, 2)), "b": np.ones((2, 1))}, np.ones((3, 2), bool),
         "modality 'b' has 2 rows but modality 'a' has 3"),
        ({"a": np.ones((3, 2)), "b": np.ones(3)}, np.ones((3, 2), bool),
         r"modality 'b' must be a 2-D \(n, d\) array"),
        ({"a": np.ones((3, 2))}, np.ones(3, bool), "mask must be a 2-D"),
        ({"a": np.ones((3, 2))}, np.full((3, 1), 2), "mask must be boolean"),
        ({}, np.ones((0, 0), bool), "at least one modality"),
    ],
)  # fmt: skip
def test_apply_mask_validation(X, mask, match):
    with pytest.raises(ValueError, match=match):
        apply_mask(X, mask)


def test_mask_from_data_partial_nan_rows_are_present():
    X = {
        "text": np.array([[1.0, np.nan], [np.nan, np.nan], [0.0, 0.0]]),
        "image": np.array([[1], [2], [3]]),
    }
    np.testing.assert_array_equal(mask_from_data(X), [[True, True], [False, True], [True, True]])


def test_mask_from_data_reads_rows_as_the_estimators_do():
    # One scan decides what "missing" means: mask_from_data and the estimators' validation
    # agree on every row, including rows with inf, overflowing sums and float32 data.
    big = np.finfo(np.float32).max
    text = np.array(
        [[1.0, 2.0], [np.nan, np.nan], [big, big], [np.inf, 1.0], [np.nan, np.inf], [0.0, -0.0]],
        dtype=np.float32,
    )
    X = {"text": text, "image": np.arange(6, dtype=np.int64).reshape(6, 1)}
    expected = [[True, True], [False, True], [True, True], [True, True], [True, True],
                [True, True]]  # fmt: skip
    np.testing.assert_array_equal(mask_from_data(X), expected)
    finite = {"text": text[[0, 1, 2, 5]], "image": X["image"][[0, 1, 2, 5]]}
    np.testing.assert_array_equal(mask_from_data(finite), check_multimodal(finite).mask)


def test_mask_from_data_complex_rows():
    X = {"z": np.array([[1 + 1j, np.nan], [complex(np.nan, np.nan), np.nan]])}
    np.testing.assert_array_equal(mask_from_data(X), [[True], [False]])


def test_mask_from_data_rejects_a_modality_without_columns():
    with pytest.raises(ValueError, match="modality 'a' has no columns"):
        mask_from_data({"a": np.ones((3, 0))})
