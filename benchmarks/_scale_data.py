"""The data of ``bench_scale.py`` and ``_bench_dask.py``: clustered float32, half the slots missing.

n samples, three modalities of 512, 512 and 768 dims (float32), drawn from 64 Gaussian
clusters in a 32-d latent space projected linearly to each modality, with 50% of the
modality slots missing (each modality present independently with probability
(3 - sqrt 5) / 2, conditioned on at least one present, which makes the expected missing
share exactly 1/2). Both scripts import it from here, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ul4m4.missingness import independent_mask

__all__ = ["DIMS", "LATENT_DIM", "N_LATENT_CLUSTERS", "PRESENCE", "Dataset", "initial_rows",
           "make_dataset"]

DIMS = {"text": 512, "image": 512, "audio": 768}
LATENT_DIM = 32
N_LATENT_CLUSTERS = 64
#: Presence rate giving an expected missing share of exactly 1/2 over 3 modalities.
PRESENCE = (3 - 5**0.5) / 2


@dataclass
class Dataset:
    """Complete data, the same data with half the modality slots missing, and a test set."""

    full: dict[str, np.ndarray]
    incomplete: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return next(iter(self.full.values())).shape[0]

    def concatenated(self) -> np.ndarray:
        return np.ascontiguousarray(np.hstack(list(self.full.values())))


def make_dataset(n: int, n_test: int, seed: int) -> Dataset:
    """Clustered float32 data of the module docstring; the test set is masked too."""
    rng = np.random.default_rng(seed)
    # Overlapping clusters, so no runner reaches a fixed point within its budget.
    centres = rng.normal(scale=1.0, size=(N_LATENT_CLUSTERS, LATENT_DIM))
    projections = {m: rng.normal(size=(LATENT_DIM, d)) / LATENT_DIM**0.5 for m, d in DIMS.items()}

    def draw(rows: int) -> dict[str, np.ndarray]:
        latent = centres[rng.integers(0, N_LATENT_CLUSTERS, rows)]
        latent += rng.normal(size=latent.shape)
        return {m: (latent @ p + 0.3 * rng.normal(size=(rows, p.shape[1]))).astype(np.float32)
                for m, p in projections.items()}

    full = draw(n)
    test = _masked(draw(n_test), seed + 1)
    return Dataset(full, _masked(full, seed + 2), test)


def _masked(X: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    n = next(iter(X.values())).shape[0]
    mask = independent_mask(n, [PRESENCE] * len(X), random_state=seed)
    out = {}
    for m, (name, a) in enumerate(X.items()):
        out[name] = a.copy()
        out[name][~mask[:, m]] = np.nan
    return out


def initial_rows(data: Dataset, k: int, seed: int) -> np.ndarray:
    """k rows observing every modality (so every runner starts from the same points)."""
    complete = np.flatnonzero(
        np.all([~np.isnan(a[:, 0]) for a in data.incomplete.values()], axis=0))
    return np.sort(np.random.default_rng(seed).choice(complete, size=k, replace=False))
