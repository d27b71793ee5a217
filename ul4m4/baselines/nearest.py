"""Copy each missing modality from the nearest training sample that has it."""

from __future__ import annotations

import numpy as np

from ..distance import nearest_donors
from ..validation import Multimodal
from .base import BaseImputer

__all__ = ["NearestSampleImputer"]

#: Budget (bytes) of the per-chunk (rows x training samples) float64 matrices.
_WORKING_MEMORY = 64 * 2**20


class NearestSampleImputer(BaseImputer):
    """Fill modality ``m`` of a sample from the nearest training sample that observes ``m``.

    Distances are the UL4M4 partial-modality distance in training z-space (the
    modalities both samples observe, each term a per-dimension mean squared
    error), so this is UL4M4's completion with every training sample as its own
    centre and no clustering: a 1-nearest-neighbour donor per missing modality.
    Different missing modalities of a sample may come from different donors.

    Parameters
    ----------
    batch_size : int or None, default=None
        Rows compared with the whole training set at once; ``None`` picks it from
        a 64 MiB budget.

    Attributes
    ----------
    n_from_mean_ : int
        Entries of the last :meth:`transform` that had no donor (the sample shares
        no observed modality with any training sample having ``m``) and were
        filled with the training mean.

    Notes
    -----
    The donors come from :func:`ul4m4.distance.nearest_donors`: each chunk of rows
    costs one GEMM per modality against all training samples; near-ties that float64
    rounding could swap are recomputed exactly, so the donor is the exact argmin with
    ties to the lowest training index. Time is
    O(n_rows * n_train * sum d_m), memory O(n_train * sum d_m) for the stored
    training set. A training sample is never its own donor for a modality it
    lacks, so filling the training set itself does not leak.
    """

    name = "nearest"

    def __init__(self, *, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    def _fit(self, data: Multimodal) -> None:
        blocks, mask = self._zscored(data)
        self.train_blocks_ = blocks
        self.train_mask_ = mask.copy()
        self._train_raw = [np.asarray(a, dtype=np.float64) for a in data.arrays]

    def _chunk_rows(self, n_train: int) -> int:
        if self.batch_size is not None:
            return max(1, int(self.batch_size))
        # Three (rows, n_train) float64 matrices live at once (distances, bound, work).
        return int(np.clip(_WORKING_MEMORY // (24 * max(n_train, 1)), 16, 1 << 14))

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        blocks, mask = self._zscored(data)
        n_train = self.train_mask_.shape[0]
        donors = nearest_donors(
            blocks, mask, self.train_blocks_, self.train_mask_, self._chunk_rows(n_train)
        )
        fills = {}
        n_from_mean = 0
        for m, name in enumerate(data.names):
            source = donors[~mask[:, m], m]
            values = np.empty((source.size, data.dims[m]))
            found = source >= 0
            values[found] = self._train_raw[m][source[found]]
            values[~found] = self.mean_[name]
            n_from_mean += int((~found).sum())
            fills[name] = values
        self.donors_ = donors
        self.n_from_mean_ = n_from_mean
        return fills
