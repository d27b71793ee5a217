"""Synthetic multimodal data for the tests: shared clusters, or independent modalities."""

from __future__ import annotations

import numpy as np


def clustered(n=400, n_clusters=5, dims=(6, 4, 5), noise=0.15, rate=0.35, seed=0):
    """Modalities generated from shared clusters: one modality predicts the others."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_clusters, n)
    X = {}
    for m, d in enumerate(dims):
        centres = rng.normal(scale=3.0, size=(n_clusters, d))
        X[f"m{m}"] = centres[labels] + noise * rng.normal(size=(n, d))
    return mask_blocks(X, rate, rng), labels


def independent(n=400, dims=(6, 4, 5), rate=0.35, seed=0):
    """Modalities of independent clustered noise: nothing to learn across modalities."""
    rng = np.random.default_rng(seed)
    X = {}
    for m, d in enumerate(dims):
        labels = rng.integers(0, 5, n)
        X[f"m{m}"] = rng.normal(scale=3.0, size=(5, d))[labels] + rng.normal(size=(n, d))
    return mask_blocks(X, rate, rng)


def mask_blocks(X, rate, rng):
    n, n_mod = next(iter(X.values())).shape[0], len(X)
    mask = rng.random((n, n_mod)) > rate
    mask[np.arange(n), rng.integers(0, n_mod, n)] = True
    return {name: np.where(mask[:, m][:, None], a, np.nan) for m, (name, a) in enumerate(X.items())}
