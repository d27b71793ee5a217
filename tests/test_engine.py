"""The engine protocol: every driver on a reference engine written against it alone.

``_reference_engine.ReferenceEngine`` computes every distance by the float64
definition and adds member sums one row at a time; the NumPy engine uses GEMMs with
a rounding bound, exact rechecks and compiled row-order sums. The drivers (k-means++,
Lloyd with reseeding, mini-batch, n_init, the ensemble, label-free selection, greedy,
soft and mean completion) must give the same models and fills on both.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from _reference_engine import ReferenceEngine
from sklearn.utils import check_random_state

from ul4m4 import UL4M4Imputer
from ul4m4.backends import ENGINES, NumpyEngine, check_input
from ul4m4.engine import ChunkedEngine, Engine, HostView, View
from ul4m4.inference import complete, predict, transform_view
from ul4m4.model import fit_model
from ul4m4.settings import resolve_init, resolve_settings
from ul4m4.statistics import modality_moments, unit_scales


def _data(seed: int = 0, n: int = 150, empty: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, size=n)
    dims = {"text": 5, "image": 3, "audio": 4}
    latent = rng.normal(scale=3.0, size=(4, sum(dims.values())))[group] + rng.normal(
        size=(n, sum(dims.values())))
    observed = rng.random((n, 3)) < 0.65
    observed[~observed.any(axis=1), 0] = True
    observed[:empty] = False
    X, start = {}, 0
    for m, (name, d) in enumerate(dims.items()):
        X[name] = latent[:, start:start + d].copy()
        X[name][~observed[:, m]] = np.nan
        start += d
    return X


def _check_input(engine, X, **options):
    """``X`` read as ``engine``'s backend reads it (the reference engine's: as given)."""
    return check_input(engine.name if engine.name in ENGINES else "numpy", engine, X, **options)


def _fit(engine, X, **params):
    settings = resolve_settings(UL4M4Imputer(**{"dtype": np.float64, **params}).get_params())
    data = _check_input(engine, X, require_observed=settings.empty == "raise")
    settings = resolve_init(settings, data)
    return fit_model(data, settings, engine, check_random_state(settings.random_state)), settings


def _fill(engine, model, settings, X):
    view = transform_view(X, model, settings, engine)
    single = len(model.members) == 1
    out = engine.apply(view, lambda v, e: complete(v, model, e, list(X), return_sources=single))
    filled, sources = out if single else (out, None)
    return filled, sources, engine.apply(view, lambda v, e: predict(v, model, e))


_EXPLICIT = {"text": np.zeros((4, 5)), "image": np.ones((4, 3)), "audio": np.full((4, 4), 2.0)}
_EXPLICIT["text"][1:] = [[3.0] * 5, [-3.0] * 5, [0.5] * 5]
_EXPLICIT["image"][2] = np.nan  # a centre lacking a modality


@pytest.mark.parametrize("params", [
    {"n_clusters": 4, "random_state": 0},
    {"n_clusters": 4, "random_state": 1, "init": "random"},
    {"n_clusters": 4, "init": _EXPLICIT},
    {"n_clusters": 3, "random_state": 2, "n_init": 3},
    {"n_clusters": 4, "random_state": 3, "algorithm": "minibatch", "batch_size": 32},
    {"n_clusters": 4, "random_state": 4, "reference_one_step": True},
    {"n_clusters": 12, "random_state": 5},  # more centres than blobs: reseeding
    {"n_clusters": 4, "random_state": 6, "completion": "soft"},
    {"n_clusters": "auto", "completion": "auto", "k_grid": (2, 4), "n_ensemble": 3,
     "random_state": 7},
    {"n_clusters": 4, "random_state": 8, "empty": "mean", "shrinkage": 0.25},
], ids=["k-means++", "random", "explicit", "n_init", "minibatch", "one-step", "reseed", "soft",
        "auto-ensemble", "empty-shrink"])
def test_every_driver_gives_the_numpy_engines_results_on_the_reference_engine(params):
    X = _data(empty=5 if params.get("empty") == "mean" else 0)
    ours, settings = _fit(NumpyEngine(), X, **params)
    ref, _ = _fit(ReferenceEngine(), X, **params)
    assert ours.n_clusters == ref.n_clusters and ours.n_iter == ref.n_iter
    assert ours.converged == ref.converged
    np.testing.assert_array_equal(ours.labels, ref.labels)
    assert (ours.completion, ours.temperature, ours.shrinkage) == (
        ref.completion, ref.temperature, ref.shrinkage)
    assert len(ours.members) == len(ref.members)
    for a, b in zip(ours.members, ref.members, strict=True):
        np.testing.assert_array_equal(a.centers.mask, b.centers.mask)
        for x, y in zip(a.centers.blocks, b.centers.blocks, strict=True):
            assert x.tobytes() == y.tobytes()  # row-order sums: the same bits
    np.testing.assert_allclose(ours.inertia, ref.inertia, rtol=1e-12)
    new = _data(seed=1, n=40)
    filled, sources, labels = _fill(NumpyEngine(), ours, settings, new)
    ref_filled, ref_sources, ref_labels = _fill(ReferenceEngine(), ref, settings, new)
    np.testing.assert_array_equal(labels, ref_labels)
    if sources is not None:
        for name in new:
            np.testing.assert_array_equal(sources[name], ref_sources[name])
    for name in new:
        # Soft weights are smooth in the distances, which differ by GEMM rounding.
        np.testing.assert_allclose(filled[name], ref_filled[name], rtol=1e-9, atol=1e-12)
        observed = ~np.isnan(new[name]).any(axis=1)
        assert filled[name][observed].tobytes() == new[name][observed].tobytes()


# ------------------------------------------------------------------ the protocol
#: What a backend supplies: the passes over all rows, gathering rows, the map over row
#: blocks (over the view and over the raw data) and the view. Reading the input is the
#: backend's registry entry's (its reader), not its engine's.
KERNELS = {"view", "take", "apply", "reduce_blocks", "e_step", "seed_distances", "farthest"}
#: Attributes an engine may add (see ul4m4.engine.local_engine and rounding_factor).
OPTIONAL = {"local_engine", "rounding_factor"}


def _public_methods(cls) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def _engine_classes():
    classes = [NumpyEngine, ReferenceEngine]
    for module, name in (("ul4m4.backends._torch", "TorchEngine"),
                         ("ul4m4.backends.dask", "DaskEngine")):
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except ImportError:  # optional backends
            pass
    return classes


def test_the_protocol_is_kernels_and_every_engine_implements_exactly_it():
    protocol = {n for n in vars(Engine) if not n.startswith("_")}
    assert protocol == KERNELS
    assert len(protocol) <= 8
    # ChunkedEngine's per-chunk kernels are its subclasses' business, not the protocol's.
    hooks = _public_methods(ChunkedEngine) - protocol
    for cls in _engine_classes():
        extra = (_public_methods(cls) - protocol - OPTIONAL
                 - (hooks if issubclass(cls, ChunkedEngine) else set()))
        assert not protocol - _public_methods(cls), cls
        assert not extra, (cls, extra)


#: The fields of an engine's view the drivers may read (ul4m4.engine.View).
VIEW_FIELDS = {"data", "mean", "scale", "dtype", "chunk_rows", "n_threads", "n_samples", "mask"}


def test_every_engines_view_has_the_fields_the_drivers_read():
    assert set(View.__annotations__) | {n for n in vars(View) if not n.startswith("_")} \
        == VIEW_FIELDS
    assert {n for n in vars(HostView) if not n.startswith("_")} == {
        "rows", "packed_rows", "map_chunks"}
    X = _data(n=30)
    for cls in _engine_classes():
        engine = cls()
        data = _check_input(engine, X)
        means, stds = modality_moments(data, 16, 1, engine.reduce_blocks)
        view = engine.view(data, means, unit_scales(means, stds), np.dtype(np.float64), 16)
        assert {f for f in VIEW_FIELDS if hasattr(view, f)} == VIEW_FIELDS, cls
        assert view.n_samples == 30 and view.mask.shape == (30, 3) and view.chunk_rows == 16
        rows = np.array([1, 4, 29])
        blocks, mask = engine.take(view, rows)
        if cls.name == "dask":  # rows on the workers: a View, not a HostView
            continue
        here, here_mask = view.rows(rows)
        assert np.array_equal(mask, here_mask) and all(
            a.tobytes() == b.tobytes() for a, b in zip(blocks, here, strict=True))
        packed = view.packed_rows(rows)
        assert all(a.tobytes() == b.tobytes()
                   for a, b in zip(packed.full(), here, strict=True))
        chunks = list(view.map_chunks(lambda r, b, m: m.shape[0]))
        assert sum(n for _, n in chunks) == 30
