"""Dask backend: fit and transform on ``dask.array`` inputs chunked by rows.

``UL4M4Imputer(backend="dask")`` runs the NumPy engine of :mod:`ul4m4.cluster`
and :mod:`ul4m4.complete` on every row chunk of a ``dask.array`` data set, on
whatever scheduler dask is using: a ``dask.distributed`` cluster when a
``Client`` is active, otherwise the local threaded scheduler (or
``dask.config.set(scheduler="synchronous")`` for debugging). The same functions
can be called directly: :func:`fit_dask`, :func:`transform_dask` and
:func:`predict_dask`.

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
arrays are used as they are, anything else is wrapped with ``da.from_array`` in
chunks of the imputer's ``batch_size`` rows (automatic when ``None``; such arrays
travel to the workers inside the task graph, once per fit, so load large data
with dask itself, e.g. ``da.from_zarr``, ``da.from_npy_stack``). Row chunks
must be aligned across modalities: when they are not, every modality is
rechunked to the row chunks of the first one and a ``UserWarning`` says so.
Column chunks are always merged (one chunk spans all the columns of a
modality), silently. Chunk sizes must be known (call ``compute_chunk_sizes()``
after boolean indexing).

By default :func:`fit_dask` reads the input twice (the statistics), then keeps
the z-scored training samples, in the working dtype, in the workers' memory for
the rest of the fit (the NumPy engine keeps the same copy in memory below 512
MiB), so seeding and the ~``max_iter`` Lloyd passes neither re-read the source
nor z-score again. Pass ``persist=False`` when that copy does not fit the
cluster: every pass then re-reads and re-standardises the source.

Design
------
* **Statistics** (mean and unbiased std per modality over the rows that have it)
  come from two distributed passes, as in the NumPy engine: float64 per-chunk
  sums and counts are tree-reduced on the workers, the means go back to the
  workers, then the squared deviations are reduced the same way. The same first
  pass validates every row (NaN/inf) and returns the (n, M) availability mask.
* **Seeding** gathers z-scored seed rows to the client and runs the NumPy
  seeding there:
  ``init="k-means++"`` runs the NumPy k-means++ (same partial distance, same
  random draws) on a uniform sample of the training samples, drawn without
  replacement with the imputer's ``random_state``. The sample holds
  ``init_sample_rows`` rows (default: as many as fit in 256 MiB of float64, and
  at least 64 per centre); when all the (non-empty) training samples fit, the
  sample *is* the data, no random draw is spent on it, and the seeds are those
  of the NumPy backend. With ``n_init > 1`` every run seeds on the same
  sample. ``init="random"`` gathers the same k rows as the NumPy backend;
  explicit centres are used as given.
* **Lloyd**: each iteration sends the k centres to the workers once (one
  key), maps the NumPy E-step (exact nearest-centre labels, float64 member sums
  and counts) over the row chunks, keeps the labels on the workers (to count
  label changes against the previous iteration there) and tree-reduces the
  (k, d_m) sums, the (k, M) counts and the k member counts; only those, plus
  two numbers per chunk (inertia, label changes), reach the client. The new
  centres, convergence test (no label change), ``tol`` test and empty-cluster
  policy are the NumPy engine's: an empty cluster receives the training
  sample farthest (exact distance) from its centre, ties to the lowest row,
  never one within rounding noise of its centre; the candidates are the
  per-chunk farthest rows, merged on the client in that order.
* **Transform / predict** map the fitted NumPy model over the row chunks: one
  task per chunk calls the NumPy ``transform`` (or ``predict``) on the chunk's
  rows and the per-modality outputs are dask arrays with the input's row
  chunks (tasks rather than one ``map_blocks`` per output array, which would
  complete every chunk once per array). Rows never interact, so the output
  equals the NumPy backend's on the same rows, bit for bit (observed rows are
  copied unchanged).
* Not supported: ``n_clusters="auto"``, ``completion="auto"`` (the model
  selection refits on masked copies), ``algorithm="minibatch"``, a ``device``,
  ``transform(out_dir=...)`` (store the lazy outputs with dask instead).
  ``reference_one_step``, ``n_init``, ``tol``, ``empty="mean"`` and every
  completion setting behave as with the NumPy backend.

What "same result as the NumPy backend" means
---------------------------------------------
* **One row chunk**: everything is bit-identical to the NumPy backend with the
  same parameters and ``random_state``: statistics, seeds, labels, centres,
  inertia history, ``n_iter_``.
* **Several row chunks** with the same seeds (explicit ``init``, ``"random"``,
  or ``"k-means++"`` when the data fit in the seeding sample): statistics and
  member sums are added chunk by chunk instead of row by row, so they differ
  from the NumPy backend by float64 summation-order rounding (relative 1e-15);
  the float32 centres then usually coincide bit for bit, and the labels are
  equal unless a sample sits within that rounding of a tie between two centres.
  Labels are always the exact argmin to the centres they were assigned to.
  The inertia is a sum of GEMM-based distances whose float32 rounding depends
  on where the row blocks start, so it agrees to about 1e-9 relative (float32)
  or 1e-15 (float64). Measured (6,000 samples, 1,152 dims, k=16, chunks of
  777 rows): labels and ``n_iter_`` equal; float32 centres bit-identical;
  float64 centres within 2.1e-15 of the modality's std; std within 2.8e-15
  relative; inertia within 5.5e-10 (float32) and equal (float64).
* **Sampled k-means++** (more training samples than ``init_sample_rows``): the
  seeds differ from the NumPy backend's; the result is still a Lloyd fixed point
  (every label the exact nearest centre, every centre its members' mean), but a
  different local optimum, whose inertia differs like that of another seed.
"""

from __future__ import annotations

import copy
import logging
import math
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from sklearn.utils import check_random_state

from .._utils.text import format_rows
from ..cluster import (
    Centers,
    LloydResult,
    _assign_and_accumulate,
    _center_shift,
    _exact_sq_to_assigned,
    kmeans_plusplus,
)
from ..complete import OBSERVED
from ..data import (
    Multimodal,
    Standardized,
    _match_names,
    check_no_empty_samples,
    check_shapes,
    iter_row_chunks,
    named_values,
    sequential_sums,
    standardize_rows,
)
from ..distance import error_factor

if TYPE_CHECKING:
    from ..imputer import UL4M4Imputer

__all__ = ["fit_dask", "predict_dask", "transform_dask"]

logger = logging.getLogger("ul4m4")

#: Bytes (as float64) of the sample that ``init="k-means++"`` gathers to the client.
_SEED_SAMPLE_BYTES = 256 * 2**20
#: The seeding sample holds at least this many rows per centre.
_SEED_ROWS_PER_CLUSTER = 64
#: Partial results combined per task of a tree reduction.
_FAN_IN = 8
#: Same budget as the NumPy engine's z-scored cache, for the client-side seed sample.
_SEED_CACHE_BYTES = 512 * 2**20


# ------------------------------------------------------------------ input
@dataclass
class RowChunks:
    """A validated multimodal dask data set with row chunks aligned across modalities.

    Attributes
    ----------
    names : list of str
        Modality names (the fitted order when checked against a fitted model).
    input_order : list of str
        The caller's key order (the output order of ``transform``).
    arrays : list of dask.array.Array
        One (n_samples, d_m) array per modality, one column chunk each.
    """

    names: list[str]
    input_order: list[str]
    arrays: list[da.Array]

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.arrays[0].chunks[0])

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.row_chunks)]).astype(np.int64)

    @property
    def n_samples(self) -> int:
        return int(self.arrays[0].shape[0])

    @property
    def dims(self) -> list[int]:
        return [int(a.shape[1]) for a in self.arrays]

    def blocks(self) -> list[list[Delayed]]:
        """Per row chunk, the list of its per-modality blocks (delayed)."""
        per_modality = [a.to_delayed().ravel() for a in self.arrays]
        return [list(chunk) for chunk in zip(*per_modality, strict=True)]

    def persist(self) -> RowChunks:
        return RowChunks(self.names, self.input_order, list(dask.persist(*self.arrays)))


def as_row_chunks(
    X: Any,
    *,
    default_rows: int,
    names: list[str] | None = None,
    dims: Mapping[str, int] | None = None,
) -> RowChunks:
    """Validate the shape of a multimodal input and align its row chunks.

    Values are not read here (NaN checks run in the first pass over the data).

    Parameters
    ----------
    X : mapping of str to array-like, or list of array-likes
        Dask arrays, or arrays wrapped with ``da.from_array`` in chunks of
        ``default_rows`` rows.
    default_rows : int
        Rows per chunk for inputs that are not dask arrays.
    names, dims : optional
        Fitted modality names and widths to check against.

    Returns
    -------
    RowChunks
    """
    got, values = named_values(X)
    input_order = list(got)
    if names is not None:
        got, values = _match_names(got, values, list(names), isinstance(X, Mapping))
        if not isinstance(X, Mapping):
            input_order = list(got)
    arrays = [_as_dask(name, v, default_rows) for name, v in zip(got, values, strict=True)]
    check_shapes(got, arrays, dims)
    return RowChunks(got, input_order, _align_rows(got, arrays))


def _as_dask(name: str, value: Any, default_rows: int) -> da.Array:
    if not isinstance(value, da.Array):
        value = np.asarray(value) if not hasattr(value, "shape") else value
        value = da.from_array(value, chunks=(max(1, int(default_rows)), -1), name=False)
    if value.ndim != 2:
        raise ValueError(
            f"modality {name!r}: expected a 2-D array (n_samples, n_features), "
            f"got shape {tuple(value.shape)}"
        )
    if any(math.isnan(c) for c in value.chunks[0]) or math.isnan(value.shape[0]):
        raise ValueError(
            f"modality {name!r}: unknown row chunk sizes; call compute_chunk_sizes() first"
        )
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "fiu":
        raise TypeError(
            f"modality {name!r}: expected a real numeric dtype (float or int), got {dtype}"
        )
    if value.shape[1] < 1:
        raise ValueError(f"modality {name!r}: has zero features")
    if len(value.chunks[1]) > 1:
        # A task needs whole rows of every modality; merging columns is cheap.
        value = value.rechunk({1: -1})
    return value


def _align_rows(names: list[str], arrays: list[da.Array]) -> list[da.Array]:
    reference = arrays[0].chunks[0]
    misaligned = [n for n, a in zip(names, arrays, strict=True) if a.chunks[0] != reference]
    if not misaligned:
        return arrays
    warnings.warn(
        f"modalities {misaligned} have row chunks that differ from those of {names[0]!r}; "
        f"rechunking them to the row chunks of {names[0]!r} (chunk every modality the same "
        "way to avoid this copy)",
        UserWarning,
        stacklevel=3,
    )
    return [a if a.chunks[0] == reference else a.rechunk({0: reference}) for a in arrays]


# ------------------------------------------------------------- chunk tasks
@dataclass
class _Model:
    """Everything a worker needs to z-score a chunk; sent once per fit."""

    names: list[str]
    means: list[np.ndarray]
    scales: list[np.ndarray]
    dtype: np.dtype
    chunk_rows: int
    gamma: float


def _observed(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed rows, rows with some but not all NaN, rows with an infinite value."""
    if np.dtype(block.dtype).kind in "iu":
        none = np.zeros(0, dtype=np.int64)
        return np.ones(block.shape[0], dtype=bool), none, none
    nan = np.isnan(block)
    any_nan, all_nan = nan.any(axis=1), nan.all(axis=1)
    partial = np.flatnonzero(any_nan & ~all_nan)
    infinite = np.flatnonzero(np.isinf(block).any(axis=1))
    return ~all_nan, partial, infinite


def _chunk_mask(blocks: list[np.ndarray]) -> np.ndarray:
    return np.column_stack([_observed(b)[0] for b in blocks])


def _row_sum(block: np.ndarray, d: int) -> np.ndarray:
    """float64 (1, d) sum of the rows in row order, as the NumPy engine adds them."""
    return sequential_sums(np.zeros((1, d)), np.zeros(block.shape[0], dtype=np.int64), block)


def _first_pass_chunk(blocks: list[np.ndarray]):
    """Mask, bad rows and extremes, and per-modality sums and counts over the observed rows."""
    observed, partial, infinite, sums, extremes = [], [], [], [], []
    for block in blocks:
        rows, part, inf = _observed(block)
        observed.append(rows)
        partial.append(part)
        infinite.append(inf)
        sums.append(_row_sum(block[rows], block.shape[1]))
        values = block[rows].astype(np.float64)
        extremes.append(
            (values.max(axis=0), values.min(axis=0)) if values.size else None
        )
    mask = np.column_stack(observed)
    return mask, (partial, infinite, extremes), (sums, mask.sum(axis=0).astype(np.float64))


def _squares_chunk(blocks: list[np.ndarray], means: list[np.ndarray]) -> tuple:
    squares = []
    for block, mean in zip(blocks, means, strict=True):
        deviation = block[_observed(block)[0]].astype(np.float64) - mean
        squares.append(_row_sum(deviation * deviation, block.shape[1]))
    return (squares,)


@dataclass
class _Prepared:
    """A chunk z-scored once, held by a worker: the samples with a modality, in working dtype.

    ``view`` reads ``blocks`` through identity statistics (mean 0, scale 1, which
    leave every value unchanged), with its chunk cache pointing at slices of them,
    so every pass (seeding, Lloyd, reseeding) reuses the same z-scored values
    the NumPy engine computes, without the raw input.
    """

    n_rows: int
    kept: np.ndarray  # local indices of the rows with a modality
    view: Standardized

    def z_rows(self, local: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """z-scored blocks and mask of the given local rows (all with a modality)."""
        return self.view.rows(np.searchsorted(self.kept, local))


def _prepare_chunk(blocks: list[np.ndarray], model: _Model) -> _Prepared:
    mask = _chunk_mask(blocks)
    kept = np.flatnonzero(mask.any(axis=1))
    data = Multimodal(list(model.names), list(blocks), mask)
    z, z_mask = standardize_rows(data, kept, model.means, model.scales, model.dtype)
    identity = [np.zeros(b.shape[1]) for b in z], [np.ones(b.shape[1]) for b in z]
    view = Standardized(Multimodal(list(model.names), z, z_mask), *identity, model.dtype,
                        model.chunk_rows, 1, 0)
    view._cache = [
        (rows, [b[rows] for b in z], z_mask[rows])
        for rows in iter_row_chunks(kept.size, model.chunk_rows)
    ]
    return _Prepared(len(mask), kept, view)


def _lloyd_chunk(prepared: _Prepared, previous, centers: Centers, gamma: float):
    """One E-step on a chunk: labels (-1 for empty rows), reducible sums, scalars."""
    labels = np.full(prepared.n_rows, OBSERVED, dtype=np.int64)
    summary = (
        [np.zeros((centers.k, b.shape[1])) for b in centers.blocks],
        np.zeros((centers.k, len(centers.blocks))),
        np.zeros(centers.k),
    )
    inertia = 0.0
    if prepared.kept.size:
        own, best, sums, counts = _assign_and_accumulate(prepared.view, centers, gamma)
        labels[prepared.kept] = own
        summary = (sums, counts, np.bincount(own, minlength=centers.k).astype(np.float64))
        inertia = float(best.sum())
    changed = -1 if previous is None else int(np.count_nonzero(labels != previous))
    return labels, summary, np.array([inertia, changed])


def _farthest_chunk(prepared: _Prepared, labels, offset: int, centers: Centers, n: int):
    """The chunk's (at most n) samples farthest from their centres, as _reseed_empty ranks them.

    Returns their global rows, exact squared distances, and z-scored rows and mask.
    """
    kept = prepared.kept
    if not kept.size:
        chosen = np.zeros(0, dtype=np.int64)
        return chosen, np.zeros(0), *prepared.z_rows(chosen)
    best, scale = _exact_sq_to_assigned(prepared.view, centers, labels[kept])
    noise = np.sqrt(np.finfo(prepared.view.dtype).eps) * scale
    order = np.argsort(-best, kind="stable")
    chosen = order[best[order] > noise[order]][:n]
    return offset + kept[chosen], best[chosen], *prepared.z_rows(kept[chosen])


def _z_rows_chunk(prepared: _Prepared, local: np.ndarray):
    return prepared.z_rows(local)


def _add(*parts):
    """Element-wise sum of equally shaped nested tuples/lists of arrays, left to right."""
    first = parts[0]
    if isinstance(first, tuple | list):
        return type(first)(_add(*items) for items in zip(*parts, strict=True))
    total = first.copy()
    for part in parts[1:]:
        total += part
    return total


def _tree_sum(parts: list[Delayed]) -> Delayed:
    """Reduce per-chunk partial results on the workers, ``_FAN_IN`` at a time."""
    while len(parts) > 1:
        parts = [delayed(_add)(*parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0] if isinstance(parts[0], Delayed) else delayed(parts[0])


def _broadcast(value: Any, label: str) -> Delayed:
    """One graph key holding ``value``: a worker fetches it once, not once per task."""
    return delayed(value, name=f"ul4m4-{label}-{uuid.uuid4().hex}", traverse=False)


# ---------------------------------------------------------------- fitting
def fit_dask(
    imputer: UL4M4Imputer,
    X: Any,
    *,
    persist: bool = True,
    init_sample_rows: int | None = None,
) -> UL4M4Imputer:
    """Fit ``imputer`` on a row-chunked dask data set (what ``backend="dask"`` runs).

    Sets the same fitted attributes as the NumPy backend, as NumPy arrays, so the
    model transforms, saves and loads like any other.

    Parameters
    ----------
    imputer : UL4M4Imputer
        The estimator; its parameters are used as for the NumPy backend, except
        that ``n_clusters="auto"`` and ``completion="auto"`` are not supported.
    X : mapping of str to dask.array.Array (or array-like), or list of them
        Training data chunked by rows; an all-NaN row means the modality is missing.
    persist : bool, default=True
        Keep the z-scored training samples in the workers' memory during the
        fit (``False``: re-read and re-standardise the input on every pass).
    init_sample_rows : int or None, default=None
        Rows gathered to the client for k-means++ seeding; ``None``: as many as
        fit in 256 MiB as float64, and at least 64 per centre.

    Returns
    -------
    imputer : UL4M4Imputer
        The fitted estimator.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from ul4m4 import UL4M4Imputer
    >>> from ul4m4.backends.dask import fit_dask, transform_dask
    >>> rng = np.random.default_rng(0)
    >>> text = rng.normal(size=(200, 4)); text[:50] = np.nan
    >>> X = {"text": da.from_array(text, chunks=(50, 4)),
    ...      "image": da.from_array(rng.normal(size=(200, 3)), chunks=(50, 3))}
    >>> imp = fit_dask(UL4M4Imputer(n_clusters=3, random_state=0), X)
    >>> filled = transform_dask(imp, X)["text"].compute()
    >>> bool(np.isnan(filled).any())
    False
    """
    from ..imputer import _verbosity

    imputer._validate_params()
    _reject_auto(imputer)
    if init_sample_rows is not None and (not isinstance(init_sample_rows, int | np.integer)
                                         or init_sample_rows < 1):
        raise ValueError(f"init_sample_rows must be an integer >= 1, got {init_sample_rows!r}")
    k = int(imputer.n_clusters)
    with _verbosity(imputer.verbose):
        chunks = as_row_chunks(X, default_rows=imputer._chunk_rows(_input_dims(X)))
        if persist:
            chunks = chunks.persist()
        mask, means, scales = _statistics(chunks, imputer.empty == "raise", imputer._dtype)
        kept_rows = np.flatnonzero(mask.any(axis=1))
        imputer._check_training_data(
            Multimodal(chunks.names, chunks.arrays, mask[kept_rows])
        )
        model = _Model(
            chunks.names, means, scales, imputer._dtype,
            imputer._chunk_rows(chunks.dims), error_factor(chunks.dims, imputer._dtype),
        )
        # Names and widths only: holding the input here would keep it in cluster memory.
        data = Multimodal(chunks.names, [np.zeros((0, d)) for d in chunks.dims], mask)
        offsets = chunks.offsets
        prepared = _prepare(chunks, _broadcast(model, "model"), persist)
        del chunks  # from here on only the z-scored chunks are read (and held, if persist)
        result = _fit_runs(imputer, prepared, offsets, model, mask, kept_rows, k,
                           init_sample_rows)
    if not imputer.reference_one_step:
        result.warn(int(imputer.max_iter), stacklevel=2)
    imputer._set_fitted(data, means, scales, result.centers)
    imputer._set_members([])
    imputer.labels_ = result.labels
    imputer.n_iter_ = result.n_iter
    imputer.inertia_ = result.inertia
    imputer.converged_ = result.converged
    imputer.history_ = result.history
    imputer.n_clusters_ = k
    imputer.selection_ = None
    imputer._set_completion(None)
    return imputer


def _input_dims(X: Any) -> list[int]:
    # Only to size the chunks of non-dask inputs; malformed shapes are reported later.
    shapes = [tuple(getattr(v, "shape", None) or np.shape(v)) for v in named_values(X)[1]]
    return [int(s[1]) if len(s) == 2 else 1 for s in shapes]


def _reject_auto(imputer: UL4M4Imputer) -> None:
    device = getattr(imputer, "device", None)
    if device is not None and str(device) != "cpu":
        raise ValueError(
            f"device={str(device)!r} needs backend='torch'; backend='dask' runs the NumPy "
            "engine on the workers' CPUs"
        )
    algorithm = getattr(imputer, "algorithm", "lloyd")
    if algorithm != "lloyd":
        raise ValueError(
            f"backend='dask' runs full Lloyd iterations only, got algorithm={algorithm!r}"
        )
    if getattr(imputer, "n_ensemble", None) not in (None, 1):
        raise ValueError(
            f"backend='dask' fits a single model, got n_ensemble={imputer.n_ensemble!r}; "
            "use n_ensemble=1 (or the NumPy/torch backend for an ensemble)"
        )
    for name in ("n_clusters", "completion"):
        if getattr(imputer, name) == "auto":
            raise ValueError(
                f"backend='dask' does not support {name}='auto' (its model selection refits "
                "on masked copies of the data); choose it with the NumPy backend on a sample "
                "and pass the chosen value"
            )


def _statistics(chunks: RowChunks, require_observed: bool, dtype: np.dtype):
    """Availability mask (on the client) and per-modality mean and std, by two reductions."""
    parts = [delayed(_first_pass_chunk, nout=3)(blocks) for blocks in chunks.blocks()]
    masks, problems, totals = dask.compute(
        [p[0] for p in parts], [p[1] for p in parts], _tree_sum([p[2] for p in parts])
    )
    mask = np.concatenate(masks)
    _raise_bad_rows(chunks.names, problems, chunks.offsets)
    if require_observed:
        check_no_empty_samples(mask)
    sums, counts = totals
    means = [s[0] / c for s, c in zip(sums, counts, strict=True)]
    if not all(np.isfinite(m).all() for m in means):
        _raise_overflow(chunks.names, means)
    shared_means = _broadcast(means, "means")
    squares = [delayed(_squares_chunk)(blocks, shared_means) for blocks in chunks.blocks()]
    (total,) = dask.compute(_tree_sum(squares))[0]
    scales = []
    for sq, c in zip(total, counts, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt(sq[0] / (c - 1))
        scales.append(np.where(std <= 1e-8, 1.0, std))
    _check_magnitudes(chunks, means, scales, dtype, [p[2] for p in problems])
    return mask, means, scales


def _raise_overflow(names: list[str], values: list[np.ndarray]) -> None:
    for name, value in zip(names, values, strict=True):
        if not np.isfinite(value).all():
            raise ValueError(
                f"modality {name!r}: values are too large (their mean or standard deviation "
                "overflows float64, which happens beyond about 1e154); rescale the data"
            )


def _check_magnitudes(chunks: RowChunks, means, scales, dtype, extremes) -> None:
    """The NumPy backend's overflow checks, from the per-chunk extremes of the first pass."""
    _raise_overflow(chunks.names, scales)
    if np.dtype(dtype) != np.float32:
        return
    limit = float(np.finfo(np.float32).max)
    for m, (name, array) in enumerate(zip(chunks.names, chunks.arrays, strict=True)):
        kind, size = np.dtype(array.dtype).kind, np.dtype(array.dtype).itemsize
        found = [e[m] for e in extremes if e[m] is not None]
        if kind != "f" or size < 4 or not found:
            continue
        high = np.max([f[0] for f in found], axis=0)
        low = np.min([f[1] for f in found], axis=0)
        largest = float(np.max(np.maximum(np.maximum(np.abs(high), np.abs(low)),
                                          np.maximum(high - means[m], means[m] - low))))
        if largest > limit:
            raise ValueError(
                f"modality {name!r}: values up to {largest:.3g} away from the mean do not fit "
                f"the working dtype float32 (max {limit:.3g}); use dtype=numpy.float64 or "
                "rescale the data"
            )


def _raise_bad_rows(names: list[str], problems, offsets: np.ndarray) -> None:
    """Raise like the NumPy validation, with row numbers of the whole data set."""
    for m, name in enumerate(names):
        for kind in (1, 0):  # infinite values first, as the NumPy validation reports them
            rows = np.concatenate(
                [p[kind][m] + offsets[c] for c, p in enumerate(problems)]
            ).astype(np.int64)
            if not rows.size:
                continue
            if kind == 1:
                raise ValueError(
                    f"modality {name!r}: rows {format_rows(rows)} contain infinite values"
                )
            raise ValueError(
                f"modality {name!r}: rows {format_rows(rows)} have some but not all values "
                "NaN; a missing modality must be an entire row of NaN, and observed rows must "
                "be finite"
            )


def _prepare(chunks: RowChunks, model_key: Delayed, persist: bool) -> list[Delayed]:
    """Per chunk, the z-scored samples with a modality; held on the workers if ``persist``."""
    prepared = [delayed(_prepare_chunk)(blocks, model_key) for blocks in chunks.blocks()]
    return list(dask.persist(*prepared)) if persist else prepared


def _fit_runs(imputer, prepared, offsets, model, mask, kept_rows, k, init_sample_rows):
    """Seeding and distributed Lloyd, ``n_init`` times; the run of lowest inertia."""
    rng = check_random_state(imputer.random_state)
    sample = None
    if imputer.init == "k-means++":
        sample = _seed_sample(prepared, offsets, model, kept_rows, k, rng, init_sample_rows)
    best = None
    for run in range(int(imputer.n_init)):
        centers = _initial_centers(imputer, prepared, offsets, model, kept_rows, k, rng, sample)
        result = _lloyd(prepared, offsets, model, centers, imputer)
        logger.info("init %d: inertia %.6g after %d iterations", run, result.inertia,
                    result.n_iter)
        if best is None or result.inertia < best.inertia:
            best = result
    return best


def _gather(prepared, offsets: np.ndarray, model: _Model, rows: np.ndarray) -> Standardized:
    """z-scored training rows (sorted, all with a modality), fetched to the client.

    Returned as a NumPy view with identity statistics, so its values are exactly
    those the NumPy engine computes for these rows.
    """
    chunk_of = np.searchsorted(offsets, rows, side="right") - 1
    parts = [
        delayed(_z_rows_chunk)(prepared[c], rows[chunk_of == c] - offsets[c])
        for c in np.unique(chunk_of)
    ]
    fetched = dask.compute(*parts)
    blocks = [np.concatenate([f[0][m] for f in fetched]) for m in range(len(model.names))]
    mask = np.concatenate([f[1] for f in fetched])
    identity = [np.zeros(b.shape[1]) for b in blocks], [np.ones(b.shape[1]) for b in blocks]
    return Standardized(Multimodal(list(model.names), blocks, mask), *identity, model.dtype,
                        model.chunk_rows, 1, _SEED_CACHE_BYTES)


def _seed_sample(prepared, offsets, model, kept_rows, k, rng, init_sample_rows):
    limit = init_sample_rows
    if limit is None:
        dims = sum(len(m) for m in model.means)
        limit = max(_SEED_ROWS_PER_CLUSTER * k, _SEED_SAMPLE_BYTES // (8 * dims))
    limit = max(int(limit), k)
    if kept_rows.size <= limit:
        rows = kept_rows  # the whole data: the NumPy backend's seeds, same random draws
    else:
        rows = kept_rows[np.sort(rng.choice(kept_rows.size, size=limit, replace=False))]
        logger.info("k-means++ seeding on a sample of %d of %d samples", limit, kept_rows.size)
    return _gather(prepared, offsets, model, rows)


def _initial_centers(imputer, prepared, offsets, model, kept_rows, k, rng, sample) -> Centers:
    if sample is not None:
        return kmeans_plusplus(sample, k, rng, model.gamma)[0]
    if imputer.init == "random":
        rows = kept_rows[np.sort(rng.choice(kept_rows.size, size=k, replace=False))]
        blocks, seed_mask = _gather(prepared, offsets, model, rows).rows(slice(0, k))
        return Centers(blocks, seed_mask.copy())
    # Explicit centres: only the statistics and the modality names/widths are needed.
    empty = [np.zeros((0, len(m))) for m in model.means]
    data = Multimodal(list(model.names), empty, np.zeros((0, len(empty)), dtype=bool))
    view = Standardized(data, model.means, model.scales, model.dtype, model.chunk_rows)
    return imputer._initial_centers(view, data, k, rng, model.gamma)


@dataclass
class _Step:
    """The reduced result of one distributed E-step."""

    labels: list[Delayed]  # per chunk, held on the workers
    sums: list[np.ndarray]
    counts: np.ndarray
    members: np.ndarray
    inertia: float
    changed: int


def _e_step(prepared: list[Delayed], centers: Centers, gamma: float, previous) -> _Step:
    shared = _broadcast(centers, "centers")
    previous = previous or [None] * len(prepared)
    parts = [
        delayed(_lloyd_chunk, nout=3)(chunk, labels, shared, gamma)
        for chunk, labels in zip(prepared, previous, strict=True)
    ]
    labels = [p[0] for p in parts]
    labels, total, scalars = dask.persist(labels, _tree_sum([p[1] for p in parts]),
                                          [p[2] for p in parts])
    (sums, counts, members), scalars = dask.compute(total, scalars)
    scalars = np.asarray(scalars).reshape(-1, 2)
    return _Step(labels, sums, counts, members, float(np.sum(scalars[:, 0])),
                 int(scalars[:, 1].sum()))


def _lloyd(prepared, offsets, model: _Model, centers: Centers, imputer) -> LloydResult:
    """The NumPy engine's :func:`~ul4m4.cluster.lloyd`, with the E-step mapped over chunks."""
    max_iter, tol = int(imputer.max_iter), float(imputer.tol)
    history: list[float] = []
    previous = None
    for iteration in range(1, max_iter + 1):
        step = _e_step(prepared, centers, model.gamma, previous)
        history.append(step.inertia)
        logger.info("iteration %d: inertia %.6g", iteration, step.inertia)
        updated = Centers.from_sums(step.sums, step.counts, centers.blocks[0].dtype)
        if imputer.reference_one_step:
            return _result(updated, step, 1, False, history, 0)
        unchanged = previous is not None and step.changed == 0
        reseeded, dead = _reseed_empty(prepared, offsets, centers, updated, step)
        if unchanged and not reseeded:
            return _result(centers, step, iteration, True, history, dead)
        if tol > 0 and not reseeded and _center_shift(centers, updated) <= tol:
            return _result(centers, step, iteration, True, history, dead)
        previous = step.labels
        if iteration < max_iter:
            centers = updated
    return _result(centers, step, max_iter, False, history, 0)


def _result(centers, step: _Step, n_iter, converged, history, dead) -> LloydResult:
    labels = np.concatenate(dask.compute(*step.labels))
    return LloydResult(centers, step.sums, step.counts, labels.astype(np.int64), step.inertia,
                       n_iter, converged, history, dead)


def _reseed_empty(prepared, offsets, old: Centers, new: Centers, step: _Step):
    """:func:`ul4m4.cluster._reseed_empty` over chunks: same candidates, same order."""
    empty = np.flatnonzero(step.members == 0)
    if not empty.size:
        return 0, 0
    shared = _broadcast(old, "centers")
    parts = [
        delayed(_farthest_chunk, nout=4)(chunk, labels, int(offsets[c]), shared, int(empty.size))
        for c, (chunk, labels) in enumerate(zip(prepared, step.labels, strict=True))
    ]
    found = dask.compute(*parts)
    distances = np.concatenate([f[1] for f in found])
    blocks = [np.concatenate([f[2][m] for f in found]) for m in range(len(old.blocks))]
    mask = np.concatenate([f[3] for f in found])
    # Rows come in increasing order within equal distances, so a stable sort keeps
    # the NumPy engine's tie-break (lowest sample first).
    chosen = np.argsort(-distances, kind="stable")[: empty.size]
    if chosen.size:
        targets = empty[: chosen.size]
        for m, block in enumerate(blocks):
            new.blocks[m][targets] = block[chosen]
        new.mask[targets] = mask[chosen]
        new.refresh()
    return int(chosen.size), int(empty.size - chosen.size)


# -------------------------------------------------------------- transform
def _numpy_twin(imputer: UL4M4Imputer) -> UL4M4Imputer:
    """A shallow copy that runs the NumPy engine, without the O(n) training labels.

    The copy is what each worker receives (once per call), so it carries only
    what ``transform`` and ``predict`` read.
    """
    twin = copy.copy(imputer)
    twin.backend, twin.device = "numpy", None
    for attribute in ("labels_", "history_", "_fit_engine"):
        twin.__dict__.pop(attribute, None)
    return twin


def _numpy_chunk(twin, method: str, names: list[str], blocks, start: int, kwargs: dict):
    stop = start + blocks[0].shape[0]
    try:
        return getattr(twin, method)(dict(zip(names, blocks, strict=True)), **kwargs)
    except ValueError as exc:
        raise ValueError(f"rows {start}..{stop - 1} of X (row numbers below count from row "
                         f"{start}): {exc}") from exc


def _chunk_map(imputer, X, method: str, kwargs: dict):
    imputer._check_fitted()
    chunks = as_row_chunks(
        X, default_rows=imputer._chunk_rows([imputer.n_features_[n] for n in imputer.modalities_]),
        names=imputer.modalities_, dims=imputer.n_features_,
    )
    twin = _broadcast(_numpy_twin(imputer), "model")
    order = chunks.input_order
    index = [chunks.names.index(n) for n in order]
    parts = [
        delayed(_numpy_chunk)(twin, method, order, [b[i] for i in index], int(start), kwargs)
        for b, start in zip(chunks.blocks(), chunks.offsets[:-1], strict=True)
    ]
    return chunks, parts


def transform_dask(
    imputer: UL4M4Imputer,
    X: Any,
    *,
    return_sources: bool = False,
    return_weights: bool = False,
    out_dir: Any = None,
) -> Any:
    """Lazily complete a row-chunked data set with a fitted imputer.

    Each row chunk is completed by the NumPy ``transform`` of the fitted model,
    so the values equal the NumPy backend's bit for bit.

    Parameters
    ----------
    imputer : UL4M4Imputer
        A fitted estimator (by any backend).
    X : mapping of str to dask.array.Array (or array-like), or list of them
        Data with the fitted modalities.
    return_sources, return_weights : bool, default=False
        As for :meth:`UL4M4Imputer.transform`; 1-D int64 / float64 dask arrays.
    out_dir : None
        Not supported: write the returned arrays with ``da.to_npy_stack``,
        ``da.to_zarr`` or ``da.store`` instead.

    Returns
    -------
    X_filled : dict of str to dask.array.Array
        One array per modality, in the order of ``X``, with the input's row chunks;
        floating input keeps its dtype, integer input becomes float64.
    sources, weights : dict of str to dask.array.Array, optional

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from ul4m4 import UL4M4Imputer
    >>> from ul4m4.backends.dask import transform_dask
    >>> rng = np.random.default_rng(0)
    >>> X = {"a": rng.normal(size=(60, 2)), "b": rng.normal(size=(60, 3))}
    >>> X["b"][:20] = np.nan
    >>> imp = UL4M4Imputer(n_clusters=2, random_state=0).fit(X)
    >>> lazy = {n: da.from_array(a, chunks=(25, -1)) for n, a in X.items()}
    >>> out = transform_dask(imp, lazy)
    >>> bool(np.array_equal(out["b"].compute(), imp.transform(X)["b"]))
    True
    """
    if out_dir is not None:
        raise ValueError(
            "out_dir is not supported with backend='dask': the outputs are lazy dask arrays; "
            "write them with dask.array.to_npy_stack, to_zarr or store"
        )
    kwargs = {"return_sources": True, "return_weights": True}
    chunks, parts = _chunk_map(imputer, X, "transform", kwargs)
    order = chunks.input_order
    rows = chunks.row_chunks
    dtypes = {n: _output_dtype(a.dtype) for n, a in zip(chunks.names, chunks.arrays,
                                                        strict=True)}

    def stitch(position: int, name: str, width: int | None, dtype) -> da.Array:
        pieces = [
            da.from_delayed(part[position][name], shape=(r,) if width is None else (r, width),
                            dtype=dtype)
            for part, r in zip(parts, rows, strict=True)
        ]
        return da.concatenate(pieces, axis=0)

    filled = {n: stitch(0, n, imputer.n_features_[n], dtypes[n]) for n in order}
    extras = []
    if return_sources:
        extras.append({n: stitch(1, n, None, np.int64) for n in order})
    if return_weights:
        extras.append({n: stitch(2, n, None, np.float64) for n in order})
    return (filled, *extras) if extras else filled


def predict_dask(imputer: UL4M4Imputer, X: Any) -> da.Array:
    """Lazy nearest-centre labels (int64, -1 for empty samples) of a row-chunked data set.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from ul4m4 import UL4M4Imputer
    >>> from ul4m4.backends.dask import predict_dask
    >>> X = {"a": np.arange(20.0).reshape(10, 2)}
    >>> imp = UL4M4Imputer(n_clusters=2, random_state=0).fit(X)
    >>> lazy = {"a": da.from_array(X["a"], chunks=(4, 2))}
    >>> bool(np.array_equal(predict_dask(imp, lazy).compute(), imp.predict(X)))
    True
    """
    chunks, parts = _chunk_map(imputer, X, "predict", {})
    pieces = [da.from_delayed(p, shape=(r,), dtype=np.int64)
              for p, r in zip(parts, chunks.row_chunks, strict=True)]
    return da.concatenate(pieces, axis=0)


def _output_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)
