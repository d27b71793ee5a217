"""Rate checks shared by the missingness tests (protocols and configuration names)."""

from __future__ import annotations

import math

import numpy as np

N_BIG = 20_000
# Statistical checks allow this many binomial standard errors; with a few dozen such checks per
# run the chance of a spurious failure stays far below 1e-6, and seeds are fixed anyway.
K_SE = 5.0


def assert_rate(observed: float, expected: float, n: int = N_BIG) -> None:
    se = math.sqrt(max(expected * (1.0 - expected), 1e-12) / n)
    assert abs(observed - expected) <= K_SE * se + 1e-12, (observed, expected, se)


def pattern_freqs(mask: np.ndarray) -> dict[tuple[bool, ...], float]:
    rows, counts = np.unique(mask, axis=0, return_counts=True)
    return {tuple(bool(v) for v in r): c / mask.shape[0] for r, c in zip(rows, counts, strict=True)}

