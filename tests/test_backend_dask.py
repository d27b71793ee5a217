"""The dask backend against the NumPy backend, on a local distributed cluster and synchronously."""

from __future__ import annotations

import copy
import os
import signal
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from _parity import PARITY, assert_parity, parity_data  # noqa: E402

import ul4m4.backends.dask as dask_backend  # noqa: E402
import ul4m4.backends.dask.placement as dask_placement  # noqa: E402
import ul4m4.backends.dask.store as dask_store  # noqa: E402
import ul4m4.backends.dask.tasks as dask_tasks  # noqa: E402
import ul4m4.backends.dask.tree as dask_tree  # noqa: E402
import ul4m4.cluster  # noqa: E402
from ul4m4 import UL4M4Imputer  # noqa: E402
from ul4m4.backends import check_input  # noqa: E402
from ul4m4.distance import error_factor  # noqa: E402
from ul4m4.engine import host_labels  # noqa: E402
from ul4m4.statistics import modality_moments  # noqa: E402


def fit_dask(imputer, X):
    """Fit with the dask engine (what ``backend="dask"`` runs)."""
    return imputer.set_params(backend="dask").fit(X)


def transform_dask(imputer, X, **kwargs):
    return imputer.set_params(backend="dask").transform(X, **kwargs)


def predict_dask(imputer, X):
    return imputer.set_params(backend="dask").predict(X)

K = 4
DIMS = {"text": 6, "image": 4, "audio": 3}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def blobs(n: int, seed: int, *, empty_rows: int = 0) -> dict[str, np.ndarray]:
    """K well separated blobs; each sample misses some modalities (never all, unless asked)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(K, size=n)
    X = {}
    for m, (name, d) in enumerate(DIMS.items()):
        centre = rng.normal(scale=6.0, size=(K, d))
        X[name] = centre[group] + rng.normal(size=(n, d))
        if m == 0:
            X[name] = X[name].astype(np.float32)
    observed = rng.random((n, len(DIMS))) < 0.6
    observed[~observed.any(axis=1), 0] = True
    observed[rng.choice(n, size=empty_rows, replace=False)] = False
    for m, name in enumerate(DIMS):
        X[name][~observed[:, m]] = np.nan
    return X


def chunked(X: dict[str, np.ndarray], rows: int) -> dict[str, da.Array]:
    return {n: da.from_array(a, chunks=(rows, -1)) for n, a in X.items()}


def assert_same_model(a: UL4M4Imputer, b: UL4M4Imputer) -> None:
    """Bit-identical fitted models."""
    assert np.array_equal(a.labels_, b.labels_)
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
    assert a.inertia_ == b.inertia_ and a.history_ == b.history_
    assert np.array_equal(a.center_modalities_, b.center_modalities_)
    for n in DIMS:
        assert np.array_equal(a.cluster_centers_[n], b.cluster_centers_[n], equal_nan=True)
        assert np.array_equal(a.mean_[n], b.mean_[n])
        assert np.array_equal(a.scale_[n], b.scale_[n])


def literal_z(imp: UL4M4Imputer, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: (X[n].astype(np.float64) - imp.mean_[n]) / imp.scale_[n] for n in DIMS}


def literal_partial_sq(z: dict[str, np.ndarray], centres: dict[str, np.ndarray]) -> np.ndarray:
    """(n, k) squared partial distances by the definition: mean over shared modalities."""
    n, k = len(next(iter(z.values()))), len(next(iter(centres.values())))
    total, count = np.zeros((n, k)), np.zeros((n, k))
    for name in DIMS:
        d = ((z[name][:, None, :] - centres[name][None, :, :]) ** 2).sum(axis=2) / z[name].shape[1]
        shared = ~np.isnan(d)
        total += np.where(shared, d, 0.0)
        count += shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.inf)


# ------------------------------------------------------------------ fitting
def test_one_chunk_is_bit_identical_to_numpy(client):
    X = blobs(300, 0)
    reference = UL4M4Imputer(n_clusters=K, random_state=3).fit(X)
    fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=3), chunked(X, 300))
    assert_same_model(fitted, reference)
    assert fitted.converged_ and fitted.n_clusters_ == K and fitted.selection_ is None
    assert isinstance(fitted.labels_, np.ndarray)


def test_row_chunks_match_numpy_within_summation_rounding(client):
    X = blobs(400, 1, empty_rows=5)
    params = {"n_clusters": K, "random_state": 1, "empty": "mean"}
    reference = UL4M4Imputer(**params).fit(X)
    fitted = fit_dask(UL4M4Imputer(**params), chunked(X, 110))
    assert np.array_equal(fitted.labels_, reference.labels_)
    assert (fitted.labels_ == -1).sum() == 5
    assert fitted.n_iter_ == reference.n_iter_
    for n in DIMS:
        observed = X[n][~np.isnan(X[n]).all(axis=1)].astype(np.float64)
        np.testing.assert_allclose(fitted.mean_[n], observed.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(fitted.scale_[n], observed.std(axis=0, ddof=1), rtol=1e-12)
        np.testing.assert_allclose(fitted.cluster_centers_[n], reference.cluster_centers_[n],
                                   rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fitted.inertia_, reference.inertia_, rtol=1e-10)
    # The reduction tree is fixed by the chunks, so every scheduler gives the same bits.
    # and so does re-reading the input on every pass instead of holding it z-scored.
    with dask.config.set(scheduler="synchronous"):
        again = fit_dask(UL4M4Imputer(**params), chunked(X, 110))
    assert_same_model(again, fitted)


def test_sampled_seeding_reaches_a_lloyd_fixed_point(synchronous, monkeypatch):
    X = blobs(400, 2)
    # A seeding sample of 10 rows per centre (40 of 400 rows).
    monkeypatch.setattr(ul4m4.cluster, "SEED_ROWS_PER_CLUSTER", 10)
    monkeypatch.setattr(ul4m4.cluster, "SEED_SAMPLE_BYTES", 0)
    fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=1, dtype=np.float64),
                      chunked(X, 90))
    assert fitted.converged_
    z = literal_z(fitted, X)
    centres = {n: (fitted.cluster_centers_[n] - fitted.mean_[n]) / fitted.scale_[n]
               for n in DIMS}
    sq = literal_partial_sq(z, centres)
    assert np.array_equal(fitted.labels_, np.argmin(sq, axis=1))
    np.testing.assert_allclose(fitted.inertia_, sq.min(axis=1).sum(), rtol=1e-9)
    for n in DIMS:
        for j in range(K):
            members = z[n][(fitted.labels_ == j) & ~np.isnan(z[n]).all(axis=1)]
            if members.size:
                np.testing.assert_allclose(centres[n][j], members.mean(axis=0), atol=1e-9)
            else:
                assert np.isnan(centres[n][j]).all()


def test_random_and_explicit_init_match_numpy_with_empty_cluster_reseeding(
    synchronous, monkeypatch
):
    reseeded = []
    original = ul4m4.cluster.reseed_empty

    def spy(*args):
        reseeded.append(original(*args))
        return reseeded[-1]

    monkeypatch.setattr(ul4m4.cluster, "reseed_empty", spy)
    X = blobs(400, 3)
    for init in ("random", "far"):
        if init == "far":
            # One centre far from everything: it is empty after the first assignment
            # and must be reseeded the way the NumPy engine does.
            rng = np.random.default_rng(0)
            init = {n: np.vstack([rng.normal(size=(K - 1, d)), np.full((1, d), 500.0)])
                    for n, d in DIMS.items()}
        params = {"n_clusters": K, "random_state": 5, "init": init}
        reference = UL4M4Imputer(**params).fit(X)
        fitted = fit_dask(UL4M4Imputer(**params), chunked(X, 64))
        assert np.array_equal(fitted.labels_, reference.labels_)
        assert fitted.n_iter_ == reference.n_iter_
        assert np.bincount(fitted.labels_, minlength=K).min() > 0
        for n in DIMS:
            np.testing.assert_allclose(fitted.cluster_centers_[n], reference.cluster_centers_[n],
                                       rtol=1e-6, atol=1e-6)
    assert (1, 0) in reseeded  # the far centre was emptied and reseeded


def test_n_init_and_one_step_follow_numpy(synchronous):
    X = blobs(200, 4)
    for params in ({"n_init": 3}, {"reference_one_step": True}):
        reference = UL4M4Imputer(n_clusters=K, random_state=2, **params).fit(X)
        fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=2, **params), chunked(X, 200))
        assert_same_model(fitted, reference)


# ---------------------------------------------------------------- transform
def test_transform_and_predict_equal_numpy(client):
    X_train, X_new = blobs(300, 5), blobs(250, 6)
    for completion in ("greedy", "soft"):
        model = UL4M4Imputer(n_clusters=K, random_state=0, completion=completion).fit(X_train)
        lazy = chunked(X_new, 90)
        filled, sources, weights = transform_dask(model, lazy, return_sources=True,
                                                  return_weights=True)
        assert all(isinstance(a, da.Array) for a in filled.values())
        assert filled["text"].chunks[0] == lazy["text"].chunks[0]
        filled, sources, weights = dask.compute(filled, sources, weights)
        expected, exp_sources, exp_weights = model.transform(X_new, return_sources=True,
                                                             return_weights=True)
        assert list(filled) == list(X_new)
        for n in DIMS:
            assert filled[n].dtype == X_new[n].dtype
            assert np.array_equal(filled[n], expected[n])
            assert np.array_equal(sources[n], exp_sources[n])
            assert np.array_equal(weights[n], exp_weights[n], equal_nan=True)
            observed = ~np.isnan(X_new[n]).all(axis=1)
            assert np.array_equal(filled[n][observed], X_new[n][observed])
            assert not np.isnan(filled[n]).any()
    labels = predict_dask(model, chunked(X_new, 90)).compute()
    assert np.array_equal(labels, model.predict(X_new))


def test_dask_model_saves_and_loads(synchronous, tmp_path):
    X = blobs(200, 7)
    fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0), chunked(X, 50))
    fitted.save(tmp_path / "model.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "model.ul4m4")
    (lazy,) = dask.compute(transform_dask(fitted, chunked(X, 50)))
    for n, a in loaded.transform(X).items():
        assert np.array_equal(a, lazy[n])
    assert np.array_equal(loaded.labels_, fitted.labels_)


# -------------------------------------------------------------- bad inputs
def test_misaligned_row_chunks_are_rechunked_with_a_warning(synchronous):
    X = blobs(240, 8)
    aligned = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0), chunked(X, 80))
    lazy = chunked(X, 80)
    lazy["image"] = da.from_array(X["image"], chunks=(50, 2))  # rows and columns differ
    with pytest.warns(UserWarning, match=r"\['image'\].*rechunking them to the row chunks"):
        misaligned = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0), lazy)
    assert_same_model(misaligned, aligned)
    with pytest.warns(UserWarning, match="rechunking"):
        out = transform_dask(aligned, lazy)
    assert out["image"].chunks[0] == (80, 80, 80)


def test_bad_inputs_name_the_modality_and_rows(synchronous):
    X = blobs(200, 9)
    imp = UL4M4Imputer(n_clusters=K, random_state=0)
    short = chunked(X, 50)
    short["audio"] = short["audio"][:150]
    with pytest.raises(ValueError, match="different numbers of rows"):
        fit_dask(imp, short)
    partial = {n: a.copy() for n, a in X.items()}
    partial["image"][[57, 163], 0] = np.nan
    partial["image"][[57, 163], 1:] = 1.0
    with pytest.raises(ValueError, match=r"modality 'image': rows \[57, 163\] have some but"):
        fit_dask(imp, chunked(partial, 50))
    partial["image"][120, 2] = np.inf
    with pytest.raises(ValueError, match=r"modality 'image': rows \[120\] contain infinite"):
        fit_dask(imp, chunked(partial, 50))
    empty = {n: a.copy() for n, a in X.items()}
    for a in empty.values():
        a[[3, 151]] = np.nan
    with pytest.raises(ValueError, match=r"samples \[3, 151\] have no observed modality"):
        fit_dask(imp, chunked(empty, 50))
    unknown = chunked(X, 50)
    unknown["text"] = unknown["text"][unknown["text"][:, 0] == unknown["text"][:, 0]]
    with pytest.raises(ValueError, match="'text': unknown row chunk sizes"):
        fit_dask(imp, unknown)
    # A non-dask value gets the checks of every backend before it is wrapped.
    with pytest.raises(ValueError, match=r"modality 'text': expected a 2-D array .* got shape "
                                         r"\(200,\); for a single sample"):
        fit_dask(imp, {**X, "text": X["text"][:, 0]})
    with pytest.raises(TypeError, match="modality 'audio': expected a real numeric dtype"):
        fit_dask(imp, {**X, "audio": X["audio"].astype(str)})


def test_transform_errors_locate_the_chunk(synchronous):
    X = blobs(200, 10)
    model = UL4M4Imputer(n_clusters=K, random_state=0).fit(X)
    with pytest.raises(ValueError, match="missing modalities"):
        transform_dask(model, {"text": chunked(X, 50)["text"]})
    with pytest.raises(ValueError, match="'image': expected 4 features, got 3"):
        transform_dask(model, {**chunked(X, 50), "image": da.zeros((200, 3), chunks=50)})
    empty = {n: a.copy() for n, a in X.items()}
    for a in empty.values():
        a[130] = np.nan
    with pytest.raises(ValueError, match=r"samples \[130\] have no observed modality.*"
                                         r"empty='mean'"):
        transform_dask(model, chunked(empty, 50))
    with pytest.raises(ValueError, match=r"'text': .* got shape \(6,\); for a single sample "
                                         r"pass x\.reshape\(1, -1\)"):
        transform_dask(model, {**chunked(X, 50), "text": da.zeros(6, chunks=6)})


def test_non_dask_inputs_are_wrapped(synchronous):
    X = blobs(200, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0, batch_size=200), X)
    assert_same_model(fitted, UL4M4Imputer(n_clusters=K, random_state=0).fit(X))


def test_estimator_with_backend_dask(client, tmp_path):
    X = blobs(300, 12)
    lazy = chunked(X, 100)
    imp = UL4M4Imputer(n_clusters=K, random_state=1, backend="dask").fit(lazy)
    reference = UL4M4Imputer(n_clusters=K, random_state=1).fit(X)
    assert np.array_equal(imp.labels_, reference.labels_)
    as_numpy = copy.copy(imp).set_params(backend="numpy")
    filled, labels = imp.transform(lazy), imp.predict(lazy)
    assert isinstance(filled["audio"], da.Array) and isinstance(labels, da.Array)
    filled, labels = dask.compute(filled, labels)
    for n, a in as_numpy.transform(X).items():
        assert np.array_equal(filled[n], a)
    assert np.array_equal(labels, as_numpy.predict(X))
    on_disk, mask = imp.transform(lazy, out_dir=tmp_path / "out", return_mask=True)
    for n in DIMS:
        assert np.array_equal(on_disk[n], filled[n])
    # The mask was computed by the input check: a NumPy array, not a lazy one.
    assert isinstance(mask, np.ndarray)
    assert np.array_equal(mask, np.column_stack([~np.isnan(X[n]).all(axis=1) for n in DIMS]))
    assert not mask.all()
    imp.save(tmp_path / "model.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "model.ul4m4")
    assert loaded.backend == "dask"
    (again,) = dask.compute(loaded.transform(lazy))
    for n in DIMS:
        assert np.array_equal(again[n], filled[n])


def test_tiny_and_constant_dimensions_follow_the_numpy_rule(synchronous):
    # One rule for every engine: a modality of values ~1e-9 is scaled by its own
    # spread, a constant column gets scale 1 and the same warning.
    X = blobs(300, 21)
    X["image"] = X["image"] * 1e-9
    X["audio"][~np.isnan(X["audio"]).all(axis=1), 0] = 0.1
    with pytest.warns(UserWarning, match=r"modality 'audio': 1 of 3 dimensions are constant"):
        reference = UL4M4Imputer(n_clusters=K, random_state=0).fit(X)
    with pytest.warns(UserWarning, match=r"modality 'audio': 1 of 3 dimensions are constant"):
        fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0), chunked(X, 300))
    assert_same_model(fitted, reference)
    assert (reference.scale_["image"] < 1e-8).all() and reference.scale_["audio"][0] == 1.0


def test_integer_modality_is_always_observed_and_comes_back_unchanged(synchronous):
    X = blobs(200, 13)
    X["audio"] = np.round(np.nan_to_num(X["audio"]) * 10).astype(np.int64)
    reference = UL4M4Imputer(n_clusters=K, random_state=0).fit(X)
    fitted = fit_dask(UL4M4Imputer(n_clusters=K, random_state=0), chunked(X, 200))
    assert_same_model(fitted, reference)
    (filled,) = dask.compute(transform_dask(fitted, chunked(X, 70)))
    assert filled["audio"].dtype == np.int64
    assert np.array_equal(filled["audio"], X["audio"])
    for n, a in reference.transform(X).items():
        assert np.array_equal(filled[n], a)


@pytest.mark.parametrize("case", sorted(PARITY))
def test_every_option_runs_on_a_two_process_cluster_with_numpy_results(client, case):
    X, new = parity_data(240, 0), parity_data(60, 1)
    params = {**PARITY[case], "dtype": np.float64}
    reference = UL4M4Imputer(**params).fit(X)
    ours = UL4M4Imputer(**params, backend="dask").fit(chunked(X, 70))
    (got,) = dask.compute(ours.transform(chunked(new, 25)))
    assert_parity(ours, reference, got, reference.transform(new), tol=1e-6)


# ------------------------------------------------------- rounds on a client
def _engine_view(X, rows, persist=False, chunk_rows=64):
    engine = dask_backend.DaskEngine()
    lazy = chunked(X, rows)
    if persist:
        lazy = dict(zip(lazy, dask.persist(*lazy.values()), strict=True))
        distributed.wait(list(lazy.values()))
    data = check_input("dask", engine, lazy)
    means, scales = modality_moments(data, 64, 1, engine.reduce_blocks)
    view = engine.view(data, means, scales, np.dtype(np.float64), chunk_rows)
    return engine, view


def _counter():
    """A function that makes the block stores of its process count their passes and the
    node summaries they send (``BlockStore.totals``): the stores keep no counters.

    Made here (not at module level) so that ``client.run`` ships it by value.
    """
    def count() -> None:
        store = dask_store.BlockStore
        if hasattr(store, "totals"):
            return
        totals = {"passes": 0, "summaries": 0}
        e_step = store.e_step

        def counted(self, *args, **kwargs):
            scalars, nodes, rows = e_step(self, *args, **kwargs)
            totals["passes"] += 1
            totals["summaries"] += len(nodes)
            return scalars, nodes, rows

        store.e_step, store.totals = counted, totals

    return count


def _store_totals(client) -> dict[str, dict[str, int]]:
    """Per worker, a copy of the block stores' totals in its process (counting from now)."""
    client.run(_counter())
    return client.run(lambda: dict(dask_store.BlockStore.totals))


def test_e_step_on_a_client_is_one_store_call_per_worker(client):
    X = blobs(900, 14)
    engine, view = _engine_view(X, 50)  # 18 blocks: runs of 9 on the two workers
    view.held_blocks(dask_placement.current_client())
    centres = ul4m4.cluster.seed_rows(view, np.arange(0, 900, 900 // K)[:K], engine)
    rounding = error_factor([len(m) for m in view.mean], view.dtype)
    before = _store_totals(client)
    with distributed.get_task_stream(client) as stream:
        step = engine.e_step(view, centres, rounding, update_centers=True)
        again = engine.e_step(view, centres, rounding, update_centers=True, previous=step.labels)
    after = _store_totals(client)
    # No task runs: each worker's store makes the pass over its blocks in one call,
    # and sends one summary per complete node of the pairwise tree it holds.
    assert stream.data == []
    assert {w: after[w]["passes"] - before[w]["passes"] for w in after} == dict.fromkeys(after, 2)
    sent = sum(after[w]["summaries"] - before[w]["summaries"] for w in after)
    assert sent == 2 * (len(dask_tree.owned_nodes(range(9), 18))
                        + len(dask_tree.owned_nodes(range(9, 18), 18))) == 2 * 6
    assert again.changed == 0 and again.inertia == step.inertia
    labels = host_labels(step.labels)
    with dask.config.set(scheduler="synchronous"):
        sync_engine, sync_view = _engine_view(X, 50)
        sync = sync_engine.e_step(sync_view, centres, rounding, update_centers=True)
    assert np.array_equal(labels, host_labels(sync.labels))
    assert sync.inertia == step.inertia and np.array_equal(sync.members, step.members)
    for a, b in zip(sync.sums, step.sums, strict=True):
        assert a.tobytes() == b.tobytes()
    assert step.counts.tobytes() == sync.counts.tobytes()
    assigned, best = ul4m4.cluster.assign(view, centres, rounding, engine)  # labels come back
    assert np.array_equal(assigned, labels) and best.shape == (900,)


def _placement(client, view) -> list[str]:
    """Per block, the worker holding its prepared copy (and running its passes)."""
    prepared = view.held_blocks(dask_placement.current_client())
    held = client.who_has(prepared)
    keys = {future.key for future, _, _ in view.stores(dask_placement.current_client())}
    indices = client.run(lambda dask_worker: [i for key, store in dask_worker.state.actors.items()
                                              if key in keys for i in store.indices])
    stores = {i: worker for worker, held in indices.items() for i in held}
    places = [sorted(held[f.key])[0] for f in prepared]
    assert places == [stores[i] for i in range(len(prepared))]
    return places


def test_blocks_of_one_worker_are_held_in_two_runs(client):
    X = blobs(800, 16)
    first, second = sorted(client.scheduler_info()["workers"])
    lazy = {n: client.persist(a, workers=[first]) for n, a in chunked(X, 100).items()}
    distributed.wait(list(lazy.values()))
    assert {w for held in client.who_has(list(lazy.values())).values() for w in held} == {first}
    engine = dask_backend.DaskEngine()
    data = check_input("dask", engine, lazy)
    means, scales = modality_moments(data, 64, 1, engine.reduce_blocks)
    view = engine.view(data, means, scales, np.dtype(np.float64), 64)
    # 8 blocks of 100 rows over 2 single-threaded workers: a run of 4 each, the
    # first run where the blocks are.
    assert _placement(client, view) == [first] * 4 + [second] * 4


def test_blocks_persisted_in_runs_are_held_where_they_are(client):
    X = blobs(800, 16)
    first, second = sorted(client.scheduler_info()["workers"])
    lazy = chunked(X, 100)
    places = [second] * 4 + [first] * 4
    persisted = {}
    for name, array in lazy.items():
        blocks = [client.persist(b, workers=[w])
                  for b, w in zip(array.to_delayed().ravel(), places, strict=True)]
        persisted[name] = client.persist(da.concatenate(
            [da.from_delayed(b, shape=(100, array.shape[1]), dtype=array.dtype)
             for b in blocks]))
    distributed.wait(list(persisted.values()))
    for array in persisted.values():  # each block is computed where its part was put
        held = client.who_has(array)
        assert [sorted(held[b.key]) for b in array.to_delayed().ravel()] == [[w] for w in places]
    engine = dask_backend.DaskEngine()
    data = check_input("dask", engine, persisted)
    means, scales = modality_moments(data, 64, 1, engine.reduce_blocks)
    view = engine.view(data, means, scales, np.dtype(np.float64), 64)
    assert _placement(client, view) == places


def test_reseeding_on_a_client_equals_the_local_scheduler(client):
    X = blobs(700, 15)
    rng = np.random.default_rng(0)
    far = {n: np.vstack([rng.normal(size=(K - 1, d)), np.full((1, d), 500.0)])
           for n, d in DIMS.items()}
    params = {"n_clusters": K, "random_state": 5, "init": far}
    fitted = fit_dask(UL4M4Imputer(**params), chunked(X, 40))  # 18 blocks
    reference = UL4M4Imputer(**params).fit(X)
    assert np.array_equal(fitted.labels_, reference.labels_)
    assert fitted.n_iter_ == reference.n_iter_
    with dask.config.set(scheduler="synchronous"):
        again = fit_dask(UL4M4Imputer(**params), chunked(X, 40))
    assert_same_model(again, fitted)


# ---------------------------------------------------------- pairwise tree
def literal_pairwise(values: list[np.ndarray]) -> np.ndarray:
    """Adjacent values summed level by level; an odd last value goes up alone."""
    level = list(values)
    while len(level) > 1:
        level = [level[i] + level[i + 1] if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def leaves(values: list[np.ndarray]):
    return lambda lo, size: values[lo] if size == 1 else None


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), workers=st.integers(1, 5), data=st.data())
def test_pairwise_sums_do_not_depend_on_where_the_blocks_sit(n, workers, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # Magnitudes 1e-8..1e8: any other association gives other bits.
    values = [np.array([x]) for x in rng.normal(size=n) * 10.0 ** rng.integers(-8, 9, size=n)]
    owner = data.draw(st.lists(st.integers(0, workers - 1), min_size=n, max_size=n))
    nodes = {}
    for w in range(workers):
        for node in dask_tree.owned_nodes([i for i in range(n) if owner[i] == w], n):
            assert node not in nodes
            nodes[node] = dask_tree.fold(*node, n, leaves(values), dask_tree.add)
    lo_size = sorted(nodes)
    assert [i for lo, size in lo_size for i in range(lo, min(lo + size, n))] == list(range(n))
    total = dask_tree.fold(0, dask_tree.root_size(n), n,
                               lambda lo, size: nodes.get((lo, size)), dask_tree.add)
    expected = literal_pairwise(values)
    assert total.tobytes() == expected.tobytes()
    assert dask_tree.pairwise_sum(values).tobytes() == expected.tobytes()


@pytest.mark.parametrize("start, stop, n", [(0, 9, 18), (9, 18, 18), (0, 500, 1000),
                                            (137, 911, 1000), (0, 1, 1)])
def test_a_run_of_blocks_is_a_few_nodes(start, stop, n):
    nodes = dask_tree.owned_nodes(range(start, stop), n)
    assert [i for lo, size in nodes for i in range(lo, min(lo + size, n))] == list(
        range(start, stop))
    assert len(nodes) <= 2 * max(1, (stop - start).bit_length())


def test_a_store_runs_its_blocks_passes_with_any_threads_and_keeps_two_passes(synchronous):
    X = blobs(500, 21)
    engine, view = _engine_view(X, 60, chunk_rows=16)  # 9 blocks of 4 chunks
    prepared = dask.compute(*view.held_blocks(None))
    centres = ul4m4.cluster.seed_rows(view, np.arange(0, 500, 500 // K)[:K], engine)
    rounding = error_factor([len(m) for m in view.mean], view.dtype)
    held = [2, 3, 4, 5, 7]
    single, threaded = (dask_store.BlockStore(held, 9, t, *[prepared[i] for i in held])
                        for t in (1, 3))
    one = dask_tasks.e_step_task
    first = single.e_step(1, None, centres, rounding, True)
    assert sorted(first[1]) == [(2, 2), (4, 2), (7, 1)]
    summaries = {i: one(prepared[i], None, centres, rounding, True).summary for i in held}
    for (lo, size), value in first[1].items():
        parts = [summaries[i] for i in range(lo, lo + size)]
        expected = literal_pairwise_tuple(parts)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(
            _flat(value), _flat(expected), strict=True))
    again = threaded.e_step(1, None, centres, rounding, True)
    assert sorted(again[0]) == held
    assert all(again[0][i].tobytes() == first[0][i].tobytes() for i in held)
    assert all(a.tobytes() == b.tobytes() for node in first[1]
               for a, b in zip(_flat(first[1][node]), _flat(again[1][node]), strict=True))
    alone = dask_store.BlockStore([4], 9, 1, prepared[4]).e_step(1, None, centres, rounding,
                                                                     True)
    shared = dask_store.BlockStore([4], 9, 4, prepared[4])
    assert prepared[4].view.n_threads == 4  # one block: its chunks use the threads
    for a, b in zip(_flat(alone[1][4, 1]),
                    _flat(shared.e_step(1, None, centres, rounding, True)[1][4, 1]), strict=True):
        assert a.tobytes() == b.tobytes()
    second = single.e_step(2, 1, centres, rounding, True)
    assert all(second[0][i][1] == 0 for i in held)  # no label changed
    single.e_step(3, 2, centres, rounding, True)
    with pytest.raises(LookupError, match="pass 1 are no longer kept"):
        single.labels(1)
    assert sorted(single.passes) == [2, 3]
    far = single.farthest(3, centres, 2)
    for i in held:
        expected = dask_tasks.farthest_task(prepared[i], single.labels(3)[i], centres, 2)
        assert np.array_equal(far[i].distances, expected.distances)


def _flat(value) -> list[np.ndarray]:
    if isinstance(value, tuple | list):
        return [a for item in value for a in _flat(item)]
    return [value]


def literal_pairwise_tuple(parts: list[tuple]) -> tuple:
    """:func:`literal_pairwise` on (sums, counts, members) summaries, leaf by leaf."""
    flat = [_flat(p) for p in parts]
    return tuple(literal_pairwise([f[j] for f in flat]) for j in range(len(flat[0])))


def test_a_pass_survives_a_lost_worker(caplog):
    X = blobs(600, 22)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        engine, view = _engine_view(X, 75)
        centres = ul4m4.cluster.seed_rows(view, np.arange(0, 600, 600 // K)[:K], engine)
        rounding = error_factor([len(m) for m in view.mean], view.dtype)
        first = engine.e_step(view, centres, rounding, update_centers=True)
        victim = sorted(c.scheduler_info()["workers"])[0]
        os.kill(c.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)  # a nanny restarts it
        with caplog.at_level("WARNING", logger="ul4m4"):
            again = engine.e_step(view, centres, rounding, update_centers=True,
                                  previous=first.labels)
        assert "was lost" in caplog.text
        assert again.changed is None  # the labels compared with were lost with the worker
        assert again.inertia == first.inertia and np.array_equal(again.members, first.members)
        for a, b in zip(again.sums, first.sums, strict=True):
            assert a.tobytes() == b.tobytes()
        labels = host_labels(again.labels)
        assert victim not in {w for held in c.who_has(view.held_blocks(c)).values() for w in held}
        third = engine.e_step(view, centres, rounding, update_centers=True, previous=again.labels)
        assert third.changed == 0 and np.array_equal(host_labels(third.labels), labels)


def test_threaded_workers_in_process_give_the_local_schedulers_bits(synchronous):
    X = blobs(900, 3)
    params = {"n_clusters": K, "random_state": 0, "init": "random"}
    local = fit_dask(UL4M4Imputer(**params), chunked(X, 100))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster):
        # 9 blocks in runs of 4 and 5: each store's pass maps its blocks over 2 threads.
        _counter()()  # the workers run in this process
        passes = dask_store.BlockStore.totals["passes"]
        clustered = fit_dask(UL4M4Imputer(**params), chunked(X, 100))
        assert dask_store.BlockStore.totals["passes"] >= passes + 2 * clustered.n_iter_
    assert_same_model(clustered, local)


def test_seed_distances_and_take_on_a_client_equal_the_local_scheduler(client):
    X = blobs(700, 23)
    engine, view = _engine_view(X, 90)  # 8 blocks
    seed = ul4m4.cluster.seed_rows(view, np.array([5]), engine)
    rounding = error_factor([len(m) for m in view.mean], view.dtype)
    distances = engine.seed_distances(view, seed, rounding)
    rows = np.array([3, 95, 96, 400, 699])
    blocks, mask = engine.take(view, rows)
    with dask.config.set(scheduler="synchronous"):
        local_engine, local_view = _engine_view(X, 90)
        assert distances.tobytes() == local_engine.seed_distances(local_view, seed,
                                                                  rounding).tobytes()
        local_blocks, local_mask = local_engine.take(local_view, rows)
    assert np.array_equal(mask, local_mask) and np.array_equal(mask, ~np.isnan(
        np.column_stack([X[n][rows, 0] for n in DIMS])))
    for a, b in zip(blocks, local_blocks, strict=True):
        assert a.tobytes() == b.tobytes()
    # The definition: the mean over shared modalities of the squared z-differences / d_m.
    z, observed = engine.take(view, np.arange(700))
    total, count = np.zeros(700), np.zeros(700)
    for m, block in enumerate(z):
        shared = observed[:, m] & seed.mask[0, m]
        total += np.where(shared, ((block - seed.blocks[m][0]) ** 2).sum(axis=1) / block.shape[1],
                          0.0)
        count += shared
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(count > 0, total / count, np.inf)
    assert distances[5] == 0.0
    assert np.array_equal(np.isinf(distances), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(distances[finite], expected[finite], rtol=1e-9, atol=1e-9)
