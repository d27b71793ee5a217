"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ul4m4.metrics import (
    block_cosine,
    block_mse,
    cluster_ami,
    downstream_scores,
    hidden_mask,
    legacy_flattened_f1,
    measure,
    task_type,
    training_statistics,
    zscore_concat,
)

nan = np.nan


@pytest.fixture
def blocks():
    true = {
        "a": np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]),
        "b": np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 0.0, 1.0]]),
    }
    filled = {
        "a": np.array([[1.0, 2.0], [5.0, 4.0], [1.0, 1.0]]),
        "b": np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 0.0], [0.0, 1.0, 0.0, 1.0]]),
    }
    hidden = np.array([[False, False], [True, True], [True, False]])
    scale = {"a": np.array([2.0, 1.0]), "b": np.array([1.0, 1.0, 1.0, 2.0])}
    return true, filled, hidden, scale


def test_block_mse_by_hand(blocks):
    true, filled, hidden, scale = blocks
    out = block_mse(true, filled, hidden, scale)
    # a, row 1: errors (2/2, 0) -> mean 0.5; row 2: (1/2, 1/1) -> (0.25 + 1) / 2 = 0.625
    assert out["a"] == pytest.approx((0.5 + 0.625) / 2)
    # b, row 1: last dim error 2/2 = 1 -> 1 / 4
    assert out["b"] == pytest.approx(0.25)
    # every hidden slot weighs the same: (0.5 + 0.625 + 0.25) / 3
    assert out["all"] == pytest.approx((0.5 + 0.625 + 0.25) / 3)


def test_block_mse_nothing_hidden(blocks):
    true, filled, _, scale = blocks
    out = block_mse(true, filled, np.zeros((3, 2), dtype=bool), scale)
    assert math.isnan(out["a"]) and math.isnan(out["all"])


def test_block_cosine_by_hand(blocks):
    true, filled, hidden, _ = blocks
    out = block_cosine(true, filled, hidden)
    row1_a = (3 * 5 + 4 * 4) / (5.0 * math.hypot(5, 4))
    row2_a = 0.0  # a zero true vector has cosine 0
    row1_b = (2 * 2 * 3) / (4.0 * math.sqrt(12))
    assert out["a"] == pytest.approx((row1_a + row2_a) / 2)
    assert out["b"] == pytest.approx(row1_b)
    assert out["all"] == pytest.approx((row1_a + row2_a + row1_b) / 3)


def test_block_cosine_in_zspace_mean_fill_is_zero(blocks):
    true, _, hidden, scale = blocks
    mean = {"a": np.array([1.0, 1.0]), "b": np.array([0.5, 0.5, 0.5, 0.5])}
    filled = {k: np.broadcast_to(mean[k], v.shape) for k, v in true.items()}
    out = block_cosine(true, filled, hidden, mean, scale)
    assert out["all"] == 0.0
    with pytest.raises(ValueError):
        block_cosine(true, filled, hidden, mean, None)


def test_hidden_mask():
    true = {"a": np.array([[1.0], [nan], [2.0]]), "b": np.ones((3, 2))}
    masked = {
        "a": np.array([[nan], [nan], [2.0]]),
        "b": np.array([[1.0, 1.0], [nan, nan], [1.0, 1.0]]),
    }
    np.testing.assert_array_equal(
        hidden_mask(true, masked), [[True, False], [False, True], [False, False]]
    )


def test_training_statistics_and_zscore():
    X = {"a": np.array([[1.0, 5.0], [3.0, 5.0], [nan, nan], [5.0, 5.0]])}
    mean, scale = training_statistics(X)
    np.testing.assert_allclose(mean["a"], [3.0, 5.0])
    np.testing.assert_allclose(scale["a"], [2.0, 1.0])  # constant dimension gets scale 1
    np.testing.assert_allclose(
        zscore_concat({"a": np.array([[5.0, 6.0]])}, mean, scale), [[1.0, 1.0]]
    )
    with pytest.raises(ValueError, match="at least 2"):
        training_statistics({"a": np.array([[1.0], [nan]])})


def test_legacy_flattened_f1_is_elementwise_accuracy():
    # 10 samples x 10 labels, one positive label per sample: predicting nothing gets every
    # negative cell right (90 of 100 cells) but no positive.
    L = np.zeros((10, 10), dtype=int)
    L[np.arange(10), np.arange(10)] = 1
    P = np.zeros_like(L)
    assert legacy_flattened_f1(L, P) == pytest.approx(0.9)
    assert f1_score(L, P, average="micro", zero_division=0) == 0.0
    rng = np.random.default_rng(0)
    L2, P2 = rng.integers(0, 2, (7, 5)), rng.integers(0, 2, (7, 5))
    assert legacy_flattened_f1(L2, P2) == pytest.approx(np.mean(L2 == P2))


def _separable(n: int, seed: int, multilabel: bool):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = {"a": rng.normal(size=(n, 2)) * 0.1, "b": rng.normal(size=(n, 3)) * 0.1}
    X["b"][np.arange(n), y] += 5.0  # each class is readable from its own feature
    if multilabel:
        Y = np.zeros((n, 3), dtype=int)
        Y[np.arange(n), y] = 1
        Y[:, 2] |= (y == 0).astype(int)  # a second label on class 0
        return X, Y
    return X, y


def test_downstream_multiclass():
    X, y = _separable(90, 0, multilabel=False)
    Xt, yt = _separable(30, 1, multilabel=False)
    mean, scale = training_statistics(X)
    scores = downstream_scores(X, y, Xt, yt, mean, scale)
    assert scores == {"accuracy": 1.0, "macro_f1": 1.0}


def test_downstream_multilabel_reports_true_f1_and_labelled_legacy():
    X, Y = _separable(90, 0, multilabel=True)
    Xt, Yt = _separable(30, 1, multilabel=True)
    mean, scale = training_statistics(X)
    scores = downstream_scores(X, Y, Xt, Yt, mean, scale)
    assert set(scores) == {
        "micro_f1",
        "samples_f1",
        "macro_f1",
        "subset_accuracy",
        "legacy_flattened_f1",
    }
    assert scores["micro_f1"] == 1.0 and scores["samples_f1"] == 1.0
    assert scores["legacy_flattened_f1"] == 1.0


def test_task_type():
    assert task_type([0, 1, 2]) == "multiclass"
    assert task_type([[0, 1], [1, 1]]) == "multilabel"
    with pytest.raises(ValueError):
        task_type([[0, 2], [1, 1]])


def test_cluster_ami():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_ami(y, np.array([5, 5, 3, 3, 1, 1])) == pytest.approx(1.0)
    # the -1 (no modality) sample is left out
    assert cluster_ami(y, np.array([5, 5, 3, 3, 1, -1])) == pytest.approx(
        cluster_ami(y[:5], np.array([5, 5, 3, 3, 1]))
    )
    assert math.isnan(cluster_ami(np.ones((6, 2)), np.zeros(6)))


@pytest.mark.parametrize("memory", ["tracemalloc", "rss"])
def test_measure_time_and_memory(memory):
    with measure(memory) as m:
        a = np.ones(2_000_000)
        a += 1
    assert m.seconds >= 0
    assert m.peak_bytes >= 0
    if memory == "tracemalloc":
        assert m.peak_bytes >= 16e6
        assert m.peak_mib == pytest.approx(m.peak_bytes / 2**20)


def test_measure_none_and_invalid():
    with measure("none") as m:
        pass
    assert m.seconds >= 0 and math.isnan(m.peak_bytes)
    with pytest.raises(ValueError):
        with measure("bogus"):
            pass
