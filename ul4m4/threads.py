"""When a pass over the data is shared out over threads, and how (one modality per task).

Small passes run inline on the calling thread: :data:`INLINE_BYTES` is the one
threshold for the scans, the statistics, the chunked passes of
:mod:`ul4m4.view` and the serving check of :func:`ul4m4.inputs.is_small_input`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["INLINE_BYTES", "fits_inline", "map_modalities"]

#: Passes over at most this many bytes of data run inline on the calling thread,
#: whatever ``n_threads``: no thread pool and no BLAS thread limit (threadpoolctl
#: inspects every loaded library on each call). Starting a pool and limiting BLAS
#: costs about 0.2-0.5 ms, about what one thread takes to scan 4 MiB
#: (``benchmarks/bench_serving.py``: a 1-row greedy transform took 1.1-1.6 ms with
#: the pools against 0.4-0.5 ms inline). The results are the same either way.
INLINE_BYTES = 4 * 2**20


def fits_inline(nbytes: int) -> bool:
    """Whether a pass over ``nbytes`` bytes runs inline (at most :data:`INLINE_BYTES`).

    Read at call time, so that the threshold is this module's one variable.
    """
    return nbytes <= INLINE_BYTES


def map_modalities(fn: Callable[[int], Any], arrays: Sequence[Any], n_threads: int = 1) -> list:
    """``[fn(0), ..., fn(len(arrays) - 1)]``, one modality per task on ``n_threads`` threads.

    Passes over the data that treat each modality on its own (scans, statistics)
    run side by side this way when every modality is held in memory: their kernels
    release the GIL. Streamed modalities (memory maps, row readers) are read one
    after the other, so a pass keeps one chunk in memory and reads the disk in
    order. Results come back in modality order, and so does the first error, as if
    the calls ran in turn. Data of at most :data:`INLINE_BYTES` are treated inline,
    on the calling thread.
    """
    in_memory = all(isinstance(a, np.ndarray) and not isinstance(a, np.memmap) for a in arrays)
    if (n_threads <= 1 or len(arrays) <= 1 or not in_memory
            or sum(a.nbytes for a in arrays) <= INLINE_BYTES):
        return [fn(m) for m in range(len(arrays))]
    with ThreadPoolExecutor(min(n_threads, len(arrays))) as pool:
        futures = [pool.submit(fn, m) for m in range(len(arrays))]
        return [future.result() for future in futures]
