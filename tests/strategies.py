"""Hypothesis strategies for multimodal data with missing modalities."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def multimodal(
    draw, max_modalities=5, min_n=2, max_n=24, max_dim=4, max_k=6, integers=None
):
    """(X, mask, k): NaN-row data, its availability mask, and a valid n_clusters.

    Values are small integers half of the time (``integers=None``), so duplicate
    points and exact ties between distances are common.
    """
    n_mod = draw(st.integers(1, max_modalities))
    n = draw(st.integers(min_n, max_n))
    dims = draw(st.lists(st.integers(1, max_dim), min_size=n_mod, max_size=n_mod))
    if integers is None:
        integers = draw(st.booleans())
    if integers:
        elements = st.integers(-2, 2).map(float)
    else:
        elements = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
    arrays = [draw(hnp.arrays(np.float64, (n, d), elements=elements)) for d in dims]
    mask = draw(hnp.arrays(np.bool_, (n, n_mod)))
    for i in np.flatnonzero(~mask.any(axis=1)):
        mask[i, draw(st.integers(0, n_mod - 1))] = True
    for m in range(n_mod):
        if mask[:, m].sum() < 2:
            mask[:2, m] = True
    for m, a in enumerate(arrays):
        a[~mask[:, m]] = np.nan
    k = draw(st.integers(1, min(n, max_k)))
    return {f"m{m}": a for m, a in enumerate(arrays)}, mask, k
