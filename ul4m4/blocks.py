"""Row blocks of several modalities where each modality keeps only the rows that observe it.

The GEMMs of the partial distance and the member sums only need, for modality m,
the rows that observe m: with half the modality slots missing, half the
multiply-adds and half the memory traffic of zero-filled blocks.
:class:`PackedBlocks` holds one chunk that way ("packed"), or wraps zero-filled
blocks without copying them ("full" layout); the kernels read both through the
same row map, :attr:`PackedBlocks.at`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PackedBlocks"]


class PackedBlocks:
    """The rows of a chunk of a multimodal data set, one array per modality.

    Parameters
    ----------
    values : list of ndarray
        ``values[m]`` holds modality m of the rows listed in ``index[m]``, in
        that order, or of every row of the chunk when ``index[m]`` is None (then
        the rows that lack m are zeros, and are never read).
    index : list of (ndarray or None)
        Increasing int64 positions, within the chunk, of the rows in ``values[m]``;
        exactly the rows with ``mask[:, m]``.
    mask : ndarray of shape (B, M), bool
        Availability of each modality in each row of the chunk.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, False], [True, True]])
    >>> packed = PackedBlocks.pack([np.ones((2, 3)), np.full((2, 1), 7.0)], mask)
    >>> packed.values[1].tolist(), packed.index[1].tolist()
    ([[7.0]], [1])
    >>> packed.full()[1].tolist()
    [[0.0], [7.0]]
    """

    def __init__(self, values: Sequence[np.ndarray], index: Sequence[np.ndarray | None],
                 mask: np.ndarray) -> None:
        self.values = list(values)
        self.index = list(index)
        self.mask = mask
        self._at: np.ndarray | None = None

    @classmethod
    def of_full(cls, blocks: Sequence[np.ndarray], mask: np.ndarray) -> PackedBlocks:
        """Zero-filled (B, d_m) blocks as they are (no copy)."""
        return cls(list(blocks), [None] * len(blocks), mask)

    @classmethod
    def pack(cls, blocks: Sequence[np.ndarray], mask: np.ndarray) -> PackedBlocks:
        """Copies of the observed rows of zero-filled blocks (a modality every row has is kept)."""
        values, index = [], []
        for m, block in enumerate(blocks):
            observed = mask[:, m]
            if observed.all():
                values.append(block)
                index.append(None)
            else:
                rows = np.flatnonzero(observed)
                values.append(np.ascontiguousarray(block[rows]))
                index.append(rows)
        return cls(values, index, mask)

    @property
    def n_rows(self) -> int:
        return self.mask.shape[0]

    @property
    def dims(self) -> list[int]:
        return [v.shape[1] for v in self.values]

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.values) + sum(
            i.nbytes for i in self.index if i is not None)

    def labels_of(self, m: int, labels: np.ndarray) -> np.ndarray:
        """``labels`` (one per chunk row) of the rows in ``values[m]``."""
        index = self.index[m]
        return labels if index is None else labels[index]

    @property
    def at(self) -> np.ndarray:
        """(B, M) int64: the row of ``row_stack(values)`` holding (row i, modality m), or -1.

        -1 where row i lacks modality m. Made once per chunk.
        """
        if self._at is None:
            at = np.full(self.mask.shape, -1, dtype=np.int64)
            offset = 0
            for m, (value, index) in enumerate(zip(self.values, self.index, strict=True)):
                positions = np.flatnonzero(self.mask[:, m]) if index is None else index
                at[positions, m] = offset + (positions if index is None
                                             else np.arange(positions.size))
                offset += value.shape[0]
            self._at = at
        return self._at

    def full(self) -> list[np.ndarray]:
        """Zero-filled (B, d_m) blocks (the arrays themselves in the full layout)."""
        return self.take(None)

    def take(self, positions: np.ndarray | None) -> list[np.ndarray]:
        """Zero-filled blocks of the chunk rows at ``positions`` (all rows for None)."""
        out = []
        for m, (value, index) in enumerate(zip(self.values, self.index, strict=True)):
            if index is None:
                out.append(value if positions is None else value[positions])
                continue
            rows = np.arange(self.n_rows) if positions is None else np.asarray(positions)
            block = np.zeros((rows.size, value.shape[1]), dtype=value.dtype)
            observed = self.mask[rows, m]
            # Rank of each observed row among the chunk's observed rows.
            slot = np.cumsum(self.mask[:, m]) - 1
            block[observed] = value[slot[rows[observed]]]
            out.append(block)
        return out
