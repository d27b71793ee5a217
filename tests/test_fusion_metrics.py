"""Fusion task metrics against hand-computed values and sklearn.metrics (no torch needed)."""

from __future__ import annotations

import importlib
import math
import sys
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

import ul4m4
from ul4m4.fusion.metrics import (
    METRIC_NAMES,
    evaluate_task,
    legacy_flattened_f1,
    multiclass_scores,
    multilabel_scores,
    regression_scores,
)
from ul4m4.metrics import legacy_flattened_f1 as core_legacy_flattened_f1


# ------------------------------------------------------------------ multi-label
def test_multilabel_hand_computed():
    y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    p = np.array([[0.9, 0.6, 0.2], [0.1, 0.5, 0.0], [0.3, 0.2, 0.1], [0.2, 0.7, 0.8]])
    # predicted (p >= 0.5): [1,1,0], [0,1,0], [0,0,0], [0,1,1]
    # cells: TP = 1+1+0+1 = 3, FP = 1+0+0+1 = 2, FN = 1+0+0+1 = 2 -> micro = 6/10
    # samples: 2*1/(2+1+1)=0.5, 1, 0 (nothing true or predicted), 2*1/(2+1+1)=0.5
    # labels: l0 TP1 FN1 -> 2/3; l1 TP2 FP1 -> 4/5; l2 TP0 FP1 FN1 -> 0
    got = multilabel_scores(y, p)
    assert got["micro_f1"] == pytest.approx(0.6)
    assert got["samples_f1"] == pytest.approx((0.5 + 1 + 0 + 0.5) / 4)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 0) / 3)
    assert got["subset_accuracy"] == pytest.approx(2 / 4)
    assert got["legacy_flattened_f1"] == pytest.approx(8 / 12)


def test_multilabel_threshold_is_inclusive_and_configurable():
    y = np.array([[1, 0]])
    assert multilabel_scores(y, np.array([[0.5, 0.49]]))["micro_f1"] == 1.0
    assert multilabel_scores(y, np.array([[0.5, 0.49]]), threshold=0.6)["micro_f1"] == 0.0


def test_legacy_column_is_elementwise_accuracy_not_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 23)) < 0.1).astype(int)
    nothing = np.zeros(y.shape)
    got = multilabel_scores(y, nothing)
    assert got["micro_f1"] == 0.0 and got["macro_f1"] == 0.0
    assert got["legacy_flattened_f1"] == pytest.approx(1 - y.mean())
    assert got["legacy_flattened_f1"] > 0.85
    # the reference script's exact expression
    ref = f1_score(y.flatten(), nothing.astype(int).flatten(), average="micro")
    assert legacy_flattened_f1(y, nothing.astype(int)) == pytest.approx(ref)
    assert core_legacy_flattened_f1(y, nothing.astype(int)) == pytest.approx(ref)


@pytest.mark.parametrize("seed", range(6))
def test_multilabel_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    # two labels at least: sklearn reads an (n, 1) matrix as a binary column, not multi-label
    n, n_labels = rng.integers(1, 40), rng.integers(2, 8)
    y = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.6)).astype(int)
    p = rng.random((n, n_labels))
    pred = (p >= 0.5).astype(int)
    got = multilabel_scores(y, p)
    for avg in ("micro", "samples", "macro"):
        want = f1_score(y, pred, average=avg, zero_division=0)
        assert got[f"{avg}_f1"] == pytest.approx(want, abs=1e-12), avg
    assert got["subset_accuracy"] == pytest.approx(accuracy_score(y, pred))
    want_legacy = f1_score(y.flatten(), pred.flatten(), average="micro")
    assert got["legacy_flattened_f1"] == pytest.approx(want_legacy)


# ------------------------------------------------------------------ multi-class
def test_multiclass_hand_computed():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.8, 0.1],
            [0.1, 0.1, 0.8],
            [0.6, 0.2, 0.2],
            [0.0, 0.3, 0.7],
        ]
    )
    # predicted 0, 1, 1, 2, 0, 2 -> 4/6 correct
    # class 0: TP1 FP1 FN1 -> 1/2; class 1: TP1 FP1 -> 2/3; class 2: TP2 FN1 -> 4/5
    got = multiclass_scores(y, p)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


def test_multiclass_ties_go_to_lowest_class_and_labels_accepted():
    got = multiclass_scores([1, 0], np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert got["accuracy"] == 0.5
    assert multiclass_scores([0, 1, 2], [0, 1, 1]) == multiclass_scores(
        [0, 1, 2], np.eye(3)[[0, 1, 1]]
    )


@pytest.mark.parametrize("seed", range(6))
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = rng.integers(1, 50), rng.integers(2, 7)
    y = rng.integers(0, c, n)
    p = rng.random((n, c))
    pred = p.argmax(axis=1)
    got = evaluate_task("multiclass", y, p)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))


# ------------------------------------------------------------------- regression
def test_regression_hand_computed_and_zero_convention():
    y = np.array([-2.0, 0.0, 1.0, 0.0, -0.5])
    s = np.array([-1.0, 0.0, 2.0, -0.5, 0.5])
    got = regression_scores(y, s)
    assert got["mae"] == pytest.approx((1 + 0 + 1 + 0.5 + 1) / 5)
    assert got["mse"] == pytest.approx((1 + 0 + 1 + 0.25 + 1) / 5)
    # classes (v >= 0): true  N P P P N ; pred N P P N P  -> 3 of 5 agree
    assert got["binary_accuracy"] == pytest.approx(3 / 5)
    # non-negative class: TP 2, FP 1, FN 1 -> 4/6; negative class: TP 1, FP 1, FN 1 -> 1/2
    assert got["binary_f1"] == pytest.approx(4 / 6)
    assert got["binary_f1_weighted"] == pytest.approx(3 / 5 * 4 / 6 + 2 / 5 * 1 / 2)
    dy, ds = y - y.mean(), s - s.mean()
    assert got["pearson_r"] == pytest.approx(dy @ ds / math.sqrt((dy @ dy) * (ds @ ds)))


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    y = np.round(rng.uniform(-3, 3, n) * 2) / 2  # many exact zeros, as in MOSI labels
    s = np.clip(y + rng.normal(0, 1, n), -3, 3)
    got = regression_scores(y, s)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, s))
    assert got["mse"] == pytest.approx(mean_squared_error(y, s))
    assert got["pearson_r"] == pytest.approx(pearsonr(y, s).statistic)
    assert got["binary_accuracy"] == pytest.approx(accuracy_score(y >= 0, s >= 0))
    assert got["binary_f1"] == pytest.approx(f1_score(y >= 0, s >= 0, zero_division=0))
    assert got["binary_f1_weighted"] == pytest.approx(
        f1_score(y >= 0, s >= 0, average="weighted", zero_division=0)
    )


def test_regression_constant_input_gives_nan_r_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = regression_scores([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert math.isnan(got["pearson_r"])
    assert regression_scores(np.array([[1.0], [2.0]]), [1.0, 2.0])["mae"] == 0.0


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("task", "y", "s", "match"),
    [
        ("multilabel", [[1, 0]], [[0.1, 0.2, 0.3]], "shape"),
        ("multilabel", [[2, 0]], [[0.1, 0.2]], "only 0 and 1"),
        ("multilabel", [1, 0], [0.1, 0.2], "2-D"),
        ("multiclass", [0, 1], [[0.1, 0.9]], "rows"),
        ("multiclass", [0.5, 1], [0, 1], "integer"),
        ("regression", [0.0, 1.0], [0.1], "rows"),
        ("regression", [0.0, np.nan], [0.1, 0.2], "non-finite"),
        ("ranking", [0], [0], "unknown task"),
    ],
)
def test_metric_errors(task, y, s, match):
    with pytest.raises(ValueError, match=match):
        evaluate_task(task, np.asarray(y), np.asarray(s))


class _NoTorch:
    """Import hook that makes torch look uninstalled."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return None


def test_metrics_and_config_import_without_torch(monkeypatch):
    # Re-import ul4m4.fusion with torch hidden (monkeypatch restores every module after).
    for name in list(sys.modules):
        if name.split(".")[0] == "torch" or name.startswith("ul4m4.fusion"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    monkeypatch.setattr(ul4m4, "fusion", None, raising=False)
    fusion = importlib.import_module("ul4m4.fusion")
    assert fusion.FusionConfig().d > 0
    scores = [[0.9, 0.1], [0.1, 0.9]]
    assert fusion.evaluate_task("multiclass", [0, 1], scores)["accuracy"] == 1.0
    with pytest.raises(ImportError, match=r"ul4m4\[torch\]"):
        fusion.fit_fusion  # noqa: B018 (the lazy attribute access is the test)
    assert "torch" not in sys.modules


@pytest.mark.parametrize(
    ("task", "y", "s"),
    [
        ("multilabel", [[1, 0], [0, 1]], [[0.9, 0.2], [0.4, 0.6]]),
        ("multiclass", [0, 1], [[0.9, 0.1], [0.4, 0.6]]),
        ("regression", [0.5, -1.0, 2.0], [0.1, -0.2, 1.0]),
    ],
)
def test_metric_names_are_what_evaluate_task_returns(task, y, s):
    assert tuple(evaluate_task(task, np.asarray(y), np.asarray(s))) == METRIC_NAMES[task]
