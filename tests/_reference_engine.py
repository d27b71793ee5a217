"""A plain reference engine written against the protocol of ``ul4m4/engine.py`` only.

Every distance is the float64 definition (no GEMM, no rounding bound: nothing to
recheck), member sums are added one row at a time in row order, and the whole data
set is one chunk. It uses only the bottom layer (validation, statistics, the
float64 distance definition); it shares no code with the NumPy engine's kernels.
That the drivers give the NumPy engine's results on it is the proof that a new
backend needs the protocol and nothing else (its input is read as given, as the
NumPy backend's is: a backend that reads it its own way names a reader in its
registry line, :attr:`ul4m4.parameters.Backend.reader`). Its view is a host view
(:class:`ul4m4.engine.HostView`), which the completion rules read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ul4m4.blocks import PackedBlocks
from ul4m4.distance import exact_partial_sq_dists, exact_sq_to_assigned
from ul4m4.engine import Candidates, EStep
from ul4m4.validation import Multimodal
from ul4m4.view import standardize_rows


@dataclass
class View:
    data: Multimodal
    mean: list
    scale: list
    dtype: np.dtype
    chunk_rows: int
    n_threads: int
    blocks: list
    mask: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.mask.shape[0]

    def rows(self, rows):
        return [b[rows] for b in self.blocks], self.mask[rows]

    def packed_rows(self, rows):
        return PackedBlocks.of_full(*self.rows(rows))

    def map_chunks(self, fn):
        rows = slice(0, self.n_samples)
        yield rows, fn(rows, PackedBlocks.of_full(self.blocks, self.mask), self.mask)


class ReferenceEngine:
    name = "reference"

    def reduce_blocks(self, arrays, fn, combine, *aligned, n_threads=1):
        return fn(list(arrays), *aligned, n_threads=n_threads)  # one block

    def view(self, data, mean, scale, dtype, chunk_rows, n_threads=1, cache_bytes=0):
        blocks, mask = standardize_rows(data, slice(0, data.n_samples), mean, scale, dtype)
        return View(data, list(mean), list(scale), np.dtype(dtype), chunk_rows, n_threads,
                    blocks, mask)

    def apply(self, view, fn):
        return fn(view, self)

    def take(self, view, rows):
        return view.rows(np.asarray(rows, dtype=np.int64))

    def _exact(self, blocks, mask, centers):
        sq = exact_partial_sq_dists(blocks, mask, centers.blocks, centers.mask)
        labels = np.argmin(sq, axis=1)  # ties to the lowest index
        return labels, sq[np.arange(sq.shape[0]), labels], sq

    def e_step(self, view, centers, rounding, *, update_centers, previous=None):
        labels, best, _ = self._exact(view.blocks, view.mask, centers)
        changed = None if previous is None else int(np.count_nonzero(labels != previous))
        step = EStep(labels, float(best.sum()), changed, best)
        if update_centers:
            k = centers.k
            step.sums = [np.zeros((k, b.shape[1])) for b in view.blocks]
            step.counts = np.zeros((k, len(view.blocks)))
            for i, j in enumerate(labels):  # one row at a time, in row order
                for m, block in enumerate(view.blocks):
                    if view.mask[i, m]:
                        step.sums[m][j] = step.sums[m][j] + block[i].astype(np.float64)
                        step.counts[j, m] += 1
            step.members = np.bincount(labels, minlength=k)
        return step

    def seed_distances(self, view, seed, rounding):
        return self._exact(view.blocks, view.mask, seed)[2][:, 0]

    def farthest(self, view, centers, labels, n):
        best, scale = exact_sq_to_assigned(view.blocks, view.mask, centers.blocks,
                                           centers.mask, np.asarray(labels))
        far = best > np.sqrt(np.finfo(view.dtype).eps) * scale
        rows = sorted(np.flatnonzero(far), key=lambda i: (-best[i], i))[:n]
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        blocks, mask = self.take(view, rows)
        return Candidates(best[rows], blocks, mask)
