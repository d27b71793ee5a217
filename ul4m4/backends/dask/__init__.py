"""Dask backend: fit and transform on ``dask.array`` inputs chunked by rows.

``UL4M4Imputer(backend="dask")`` runs the drivers of :mod:`ul4m4.model` (the
same as every backend) on :class:`DaskEngine`, which implements the engine
protocol of :mod:`ul4m4.engine` over a row-chunked ``dask.array`` data set: each
pass maps the NumPy engine's pass over the row blocks and adds the results
along one fixed pairwise tree, on whatever scheduler dask is using (a ``dask.distributed`` cluster
when a ``Client`` is active, otherwise the local threaded scheduler). Every
option runs: ``n_clusters="auto"``, ``completion="auto"``, ``algorithm=
"minibatch"``, ``n_ensemble``, ``n_init``, explicit ``init``.

Running on a cluster
--------------------
Start a client before fitting; every computation below then runs on its workers::

    from dask.distributed import Client
    import dask.array as da
    from ul4m4 import UL4M4Imputer

    client = Client("tcp://scheduler:8786")          # or Client() for a local cluster
    X = {"text": da.from_zarr("text.zarr"),          # (n, 384), chunks (100_000, 384)
         "image": da.from_zarr("image.zarr")}        # (n, 1280), same row chunks
    imp = UL4M4Imputer(n_clusters=64, random_state=0, backend="dask").fit(X)
    filled = imp.transform(X)                        # dict of lazy dask arrays
    filled = dask.compute(filled)[0]                 # or write them with da.to_zarr
    imp.save("model.ul4m4")                          # fitted attributes are NumPy

Compute the outputs of one ``transform`` together (one ``dask.compute`` or
``da.store`` call): every row chunk is completed once for all modalities, and
computing them one at a time repeats that work.

Input
-----
``X`` is a mapping (or list) of 2-D arrays with the same number of rows; dask
arrays are used as they are, anything else is wrapped with ``da.from_array``
in chunks of about 64 MiB. Row chunks must be aligned across modalities: when
they are not, every modality is rechunked to the row chunks of the first one
and a ``UserWarning`` says so. Column chunks are always merged. Chunk sizes
must be known (call ``compute_chunk_sizes()`` after boolean indexing).

Design
------
* The input check is one pass (the NaN/inf scan of :func:`ul4m4.validation.scan_block`
  on every block; the (n, M) availability mask comes back to the client).
* Statistics, the overflow check and every Lloyd E-step map the NumPy code over
  the blocks; float64 partial sums are added along the pairwise tree over the
  blocks (aligned power-of-two runs, :func:`fold`), wherever its nodes are
  computed, so sums depend on the row chunks only, never on the workers.
* Each block is z-scored once and kept on a worker for the whole fit, in the
  working dtype, as one packed copy (each modality's observed rows only; passes
  read it in place). Each worker gets one run of consecutive blocks with its
  share of the rows by threads, the run it already holds most of: data sitting
  in runs (as dask places the chunks it computes) moves little, the rest moves
  once, when they are first z-scored.
* Under a ``dask.distributed`` client each worker then starts a block store (a
  dask actor, :class:`BlockStore`) over its blocks. A Lloyd E-step is one call
  per store, sent straight to the worker with the centres (no task, no
  scheduler round trip): the store runs the NumPy pass on its blocks (on its
  threads), keeps the labels (the labels handle names the pass; stores keep
  the latest two), adds the member sums of each complete tree node it holds
  (one or a few per run of blocks), and sends back those summaries
  (``k * (D + M + 1)`` float64 each) and two scalars per block; the client adds
  the nodes. Every other use of the held blocks (reseeding, the final
  labels, gathering rows, distances to a seed) is a store call too. When a
  worker is lost during a pass, the blocks are z-scored and held again on the workers
  left (dask recomputes lost input from its graph) and the pass is repeated,
  with a warning; that pass cannot count changed labels, so Lloyd runs on.
  Labels are lost only if a worker goes between a pass and their use in the
  same iteration (reseeding, the final labels): that call fails.
* Without a client a pass is one task per block and one per tree node, run as
  one ``dask.compute`` (``optimize_graph=False``) on the local scheduler.
* Reseeding: every block proposes its farthest samples; the client picks.
* k-means++ runs on a uniform sample gathered to the client (the whole data
  when it fits in 256 MiB as float64, and then the seeds are those of the NumPy
  backend); mini-batch steps gather their batch rows.
* ``transform``/``predict`` map the NumPy completion over the row blocks and
  return lazy dask arrays with the input's row chunks (the first block is
  computed at once, to learn the output's structure).

Results: one row chunk gives the NumPy backend's results bit for bit; several
row chunks add statistics and member sums block by block (along the pairwise
tree) instead of row by row, the same bits on any cluster and on the local
scheduler, which differs from the NumPy backend by float64 rounding (about 1e-15
relative), so labels, selections and outputs agree unless a sample sits within
that rounding of a tie.
"""

from __future__ import annotations

from .engine import DaskEngine, DaskView
from .input import as_row_chunks

__all__ = ["DaskEngine", "DaskView", "as_row_chunks"]
