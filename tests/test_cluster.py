"""The Lloyd driver: cycles between label assignments are detected, stopped and reported."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4.backends import NumpyEngine
from ul4m4.centers import Centers
from ul4m4.cluster import assign, kmeans_plusplus, lloyd, state_key
from ul4m4.data import check_multimodal, modality_statistics
from ul4m4.distance import error_factor


def cycling_data() -> dict[str, np.ndarray]:
    """53 samples, two 1-d modalities, 30 % observed each: k=7 seeded by 364 cycles.

    Found by a seeded search over small random partial data sets: Lloyd under the
    partial distance alternates between two label assignments from these seeds.
    """
    rng = np.random.default_rng(364)
    n, M, d = int(rng.integers(20, 80)), int(rng.integers(2, 5)), int(rng.integers(1, 3))
    p = rng.uniform(0.3, 0.8)
    X = {f"m{j}": rng.normal(size=(n, d)) for j in range(M)}
    mask = rng.random((n, M)) < p
    mask[~mask.any(1), 0] = True
    for j in range(M):
        X[f"m{j}"][~mask[:, j]] = np.nan
    assert (n, M, d, int(rng.integers(3, 10))) == (53, 2, 1, 7)
    return X


def _view(X, dtype=np.float64):
    data = check_multimodal(X)
    means, scales = modality_statistics(data, 64)
    engine = NumpyEngine()
    return engine.view(data, means, scales, np.dtype(dtype), 64), engine, error_factor(
        data.dims, np.dtype(dtype))


def _seeds(view, engine, gamma, k=7, seed=364):
    return kmeans_plusplus(view, k, np.random.RandomState(seed), gamma, engine)[0]


def test_a_cycle_stops_the_run_and_is_reported():
    view, engine, gamma = _view(cycling_data())
    result = lloyd(view, _seeds(view, engine, gamma), engine, max_iter=300, tol=0.0,
                   gamma=gamma)
    assert result.stopped_by == "cycle" and not result.converged
    assert result.cycle_period == 2 and result.n_iter < 20
    h = result.history
    assert len(h) == result.n_iter
    # The inertia repeats with the cycle's period (the last iteration repeats the
    # one a period earlier: it started from the same centres).
    assert h[-1] == h[-1 - result.cycle_period]
    # The returned labels are the exact argmin to the returned centres, and the
    # inertia their sum.
    labels, best = assign(view, result.centers, gamma, engine)
    np.testing.assert_array_equal(labels, result.labels)
    assert best.sum() == pytest.approx(result.inertia, rel=1e-12)


def test_a_cycle_gives_the_same_result_whatever_max_iter():
    """Without detection the result depended on the parity of max_iter (period 2)."""
    view, engine, gamma = _view(cycling_data())
    results = [lloyd(view, _seeds(view, engine, gamma), engine, max_iter=m, tol=0.0,
                     gamma=gamma) for m in (300, 301, 3000)]
    for other in results[1:]:
        assert other.n_iter == results[0].n_iter
        np.testing.assert_array_equal(other.labels, results[0].labels)
        for a, b in zip(other.centers.blocks, results[0].centers.blocks, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_budget_shorter_than_the_cycle_detection_is_max_iter():
    view, engine, gamma = _view(cycling_data())
    full = lloyd(view, _seeds(view, engine, gamma), engine, max_iter=300, tol=0.0,
                 gamma=gamma)
    short = lloyd(view, _seeds(view, engine, gamma), engine, max_iter=full.n_iter - 1,
                  tol=0.0, gamma=gamma)
    assert short.stopped_by == "max_iter" and short.cycle_period == 0
    assert short.history == full.history[: full.n_iter - 1]


def test_runs_that_do_not_cycle_are_unchanged():
    rng = np.random.RandomState(0)
    X = {"a": np.r_[rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))],
         "b": rng.normal(size=(200, 3))}
    X["b"][::3] = np.nan
    view, engine, gamma = _view(X)
    result = lloyd(view, _seeds(view, engine, gamma, k=3, seed=0), engine, max_iter=300,
                   tol=0.0, gamma=gamma)
    assert result.stopped_by == "fixed_point" and result.converged
    assert result.cycle_period == 0


def test_state_key_sees_every_bit_of_the_centres():
    centers = Centers([np.array([[1.0, 2.0], [3.0, 4.0]])], np.array([[True], [True]]))
    key = state_key(centers)
    assert state_key(Centers([b.copy() for b in centers.blocks], centers.mask.copy())) == key
    nudged = centers.blocks[0].copy()
    nudged[1, 1] = np.nextafter(nudged[1, 1], np.inf)
    assert state_key(Centers([nudged], centers.mask.copy())) != key
    assert state_key(Centers([centers.blocks[0].copy()], np.array([[True], [False]]))) != key
