"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ul4m4.metrics import (
    block_cosine,
    block_errors,
    block_mse,
    calibration_ratio,
    cluster_ami,
    downstream_scores,
    hidden_mask,
    legacy_flattened_f1,
    measure,
    task_type,
    training_statistics,
    uncertainty_auroc,
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


def test_block_errors_by_hand_and_their_mean_is_block_mse(blocks):
    true, filled, hidden, scale = _errors_case()
    errors = block_errors(true, filled, hidden, scale)
    # a: row 1 -> ((5-3)/2)^2, 0 over 2 dims = 0.5; b: row 0 -> (3/3)^2 = 1, row 2 -> (6/3)^2 = 4
    np.testing.assert_array_equal(errors, [[nan, 1.0], [0.5, nan], [nan, 4.0]])
    assert np.nanmean(errors) == pytest.approx(block_mse(true, filled, hidden, scale)["all"])


def _errors_case():
    true = {"a": np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]), "b": np.zeros((3, 1))}
    filled = {"a": np.array([[9.0, 9.0], [5.0, 4.0], [0.0, 0.0]]),
              "b": np.array([[3.0], [7.0], [6.0]])}
    hidden = np.array([[False, True], [True, False], [False, True]])
    return true, filled, hidden, {"a": np.array([2.0, 1.0]), "b": np.array([3.0])}


def test_uncertainty_auroc_literal_values():
    errors = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.8, 0.4, 0.6])
    # top quarter of 8 errors: 0.9 and 0.8 (above the 0.75 quantile, 0.65)
    std = np.array([0.2, 0.1, 0.3, 0.5, 0.6, 0.4, 0.1, 0.7])
    # positives' std 0.5, 0.4 against 6 negatives: 0.5 beats 0.2, 0.1, 0.3, 0.1 (4 of 6),
    # 0.4 beats 0.2, 0.1, 0.3, 0.1 (4 of 6) -> 8 / 12
    assert uncertainty_auroc(std, errors) == pytest.approx(8 / 12)
    labels = errors > 0.65
    assert uncertainty_auroc(std, errors) == pytest.approx(roc_auc_score(labels, std))
    assert uncertainty_auroc(errors, errors) == 1.0
    assert uncertainty_auroc(-errors, errors) == 0.0


def test_uncertainty_auroc_ties_count_half_and_nan_slots_are_left_out():
    errors = np.array([[1.0, nan], [2.0, 3.0], [4.0, nan], [5.0, 6.0]])
    std = np.array([[1.0, 9.0], [1.0, nan], [1.0, 7.0], [1.0, 1.0]])
    # kept slots: errors 1, 2, 5, 6 with std 1, 1, 1, 1; positive: 6 (above quantile 5.25)
    assert uncertainty_auroc(std, errors) == 0.5
    rng = np.random.default_rng(3)
    e = rng.random(200)
    s = np.round(e + rng.normal(scale=0.3, size=200), 1)  # many tied stds
    assert uncertainty_auroc(s, e, top=0.1) == pytest.approx(
        roc_auc_score(e > np.quantile(e, 0.9), s)
    )


def test_uncertainty_auroc_degenerate_and_invalid():
    assert math.isnan(uncertainty_auroc([1.0, 2.0], [3.0, 3.0]))  # no positive
    assert math.isnan(uncertainty_auroc([nan], [1.0]))
    with pytest.raises(ValueError, match="top"):
        uncertainty_auroc([1.0, 2.0], [1.0, 2.0], top=1.0)
    with pytest.raises(ValueError, match="shape"):
        uncertainty_auroc([1.0, 2.0], [1.0, 2.0, 3.0])


def test_calibration_ratio_literal():
    assert calibration_ratio([1.0, 3.0], [2.0, 3.0]) == 2.0  # (1 + 9) / 2 / 2.5
    assert calibration_ratio([[2.0, nan]], [[4.0, 100.0]]) == 1.0
    assert math.isnan(calibration_ratio([1.0], [0.0]))
    with pytest.raises(ValueError, match="shape"):
        calibration_ratio([1.0], [1.0, 2.0])
