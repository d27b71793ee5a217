"""Shared cases for the backend parity tests: every option on a backend against NumPy."""

from __future__ import annotations

import numpy as np

DIMS = {"text": 6, "image": 4, "audio": 3}

#: Options whose drivers must give the NumPy backend's results on every engine.
PARITY = {
    "auto-ensemble": {"n_clusters": "auto", "completion": "auto", "k_grid": (2, 4, 8),
                      "n_ensemble": 3, "random_state": 7},
    "minibatch": {"n_clusters": 4, "algorithm": "minibatch", "batch_size": 64,
                  "random_state": 3},
    "explicit-init": {"n_clusters": 3, "init": {
        "text": [[0.0] * 6, [5.0] * 6, [-5.0] * 6], "image": [[0.0] * 4, [np.nan] * 4, [2.0] * 4],
        "audio": [[1.0] * 3, [1.0] * 3, [-1.0] * 3]}},
    "n_init": {"n_clusters": 4, "n_init": 3, "random_state": 2},
}


def parity_data(n: int, seed: int) -> dict[str, np.ndarray]:
    """Four float64 blobs; every sample misses some modalities, never all."""
    rng = np.random.default_rng(seed)
    group = rng.integers(4, size=n)
    X = {}
    for name, d in DIMS.items():
        X[name] = rng.normal(scale=5.0, size=(4, d))[group] + rng.normal(size=(n, d))
    observed = rng.random((n, len(DIMS))) < 0.6
    observed[~observed.any(axis=1), 0] = True
    for m, name in enumerate(DIMS):
        X[name][~observed[:, m]] = np.nan
    return X


def assert_parity(ours, reference, got: dict, want: dict, tol: float) -> None:
    """Same k, selection, labels and n_iter; outputs ``got`` equal to ``want`` to ``tol``."""
    assert ours.n_clusters_ == reference.n_clusters_ and ours.n_iter_ == reference.n_iter_
    assert ours.completion_ == reference.completion_
    assert ours.temperature_ == reference.temperature_
    assert ours.shrinkage_ == reference.shrinkage_
    np.testing.assert_array_equal(np.asarray(ours.labels_), reference.labels_)
    for name, values in want.items():
        np.testing.assert_allclose(np.asarray(got[name]), values, rtol=tol, atol=tol)
