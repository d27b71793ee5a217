"""Serving: a row's completion does not depend on its batch, small calls run inline.

- transform of each row alone equals that row in the batch, bit for bit, for the
  greedy and the soft completion, in float32 and float64, NumPy and torch; soft
  fills of the two backends are the same bits;
- calls over at most ``INLINE_BYTES`` of data start no thread pool and leave
  PyTorch's thread setting alone, larger ones use the pool, and both give the
  same bits;
- concurrent calls from several threads give the sequential results, small ones
  taking turns (one process-wide lock) and larger ones not;
- the resolved parameters are reused between calls, and a new parameter is seen.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

import ul4m4.imputer
import ul4m4.threads
import ul4m4.view
from ul4m4 import UL4M4Imputer
from ul4m4.distance import exact_partial_sq_dists, fixed_order_partial_sq_dists
from ul4m4.threads import INLINE_BYTES

BACKENDS = ["numpy"]
try:
    import torch

    BACKENDS.append("torch")
except ImportError:  # the torch cases are skipped without it
    torch = None


def _data(seed: int, n: int, dims: list[int], presence: float = 0.6):
    """Gaussian clusters with whole modality rows missing (every row keeps one)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, sum(dims))) * 3
    full = centres[rng.integers(0, 4, n)] + rng.normal(size=(n, sum(dims)))
    mask = rng.random((n, len(dims))) < presence
    mask[np.arange(n), rng.integers(0, len(dims), n)] = True
    X, start = {}, 0
    for m, d in enumerate(dims):
        block = full[:, start:start + d].copy()
        block[~mask[:, m]] = np.nan
        X[f"m{m}"] = block
        start += d
    return X


def _fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return UL4M4Imputer(**params).fit(X)


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 70),
       dims=st.lists(st.integers(1, 48), min_size=2, max_size=4),
       k=st.integers(1, 8), completion=st.sampled_from(["greedy", "soft"]),
       dtype=st.sampled_from(["float32", "float64"]),
       temperature=st.sampled_from([0.02, 0.1, 1.0]))
def test_a_row_alone_is_completed_as_in_its_batch_bit_for_bit(backend, seed, n, dims, k,
                                                              completion, dtype, temperature):
    X = _data(seed, max(n, 2 * k, 8), dims)
    imp = _fit(X, n_clusters=k, completion=completion, dtype=dtype, temperature=temperature,
               random_state=seed % 1000, max_iter=20, backend=backend)
    new = _data(seed + 1, n, dims)
    batch, sources, weights = imp.transform(new, return_sources=True, return_weights=True)
    for i in range(n):
        one, one_sources, one_weights = imp.transform(
            {name: a[i:i + 1] for name, a in new.items()}, return_sources=True,
            return_weights=True)
        for name in new:
            assert _bits(one[name][0]) == _bits(batch[name][i]), (name, i)
            assert one_sources[name][0] == sources[name][i]
            assert _bits(one_weights[name][0]) == _bits(weights[name][i])


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_soft_fills_of_numpy_and_torch_are_the_same_bits(dtype):
    X = _data(6, 300, [20, 33, 7])
    imp = _fit(X, n_clusters=6, completion="soft", random_state=0, dtype=dtype)
    numpy_out = imp.transform(X)
    torch_out = imp.set_params(backend="torch").transform(X)
    for name in X:
        assert _bits(torch_out[name]) == _bits(numpy_out[name]), name


@pytest.fixture
def pools(monkeypatch):
    """The thread pools started by ``ul4m4.threads`` (scans, statistics) and
    ``ul4m4.view`` (chunk passes)."""
    started = []

    class Counting(ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ul4m4.threads, "ThreadPoolExecutor", Counting)
    monkeypatch.setattr(ul4m4.view, "ThreadPoolExecutor", Counting)
    return started


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_small_calls_start_no_pool_and_give_the_threaded_bits(pools, monkeypatch, completion):
    dims = [24, 40, 8]
    X = _data(0, 400, dims)
    imp = _fit(X, n_clusters=6, completion=completion, random_state=0, n_jobs=1)
    threaded = _fit(X, n_clusters=6, completion=completion, random_state=0, n_jobs=3)
    new = {name: a.astype(np.float32) for name, a in _data(1, 600, dims).items()}
    row_bytes = sum(dims) * 4  # float32 input and working dtype
    # Lower the threshold so that chunked passes (256-row chunks) cross it in a test.
    monkeypatch.setattr(ul4m4.threads, "INLINE_BYTES", 300 * row_bytes)
    expected = imp.transform(new)
    for n_rows in (1, 64, 299, 300, 301, 600):
        part = {name: a[:n_rows] for name, a in new.items()}
        pools.clear()
        got = threaded.transform(part)
        assert bool(pools) == (n_rows > 300), n_rows
        for name in new:
            assert _bits(got[name]) == _bits(expected[name][:n_rows]), (name, n_rows)


def test_default_n_jobs_one_row_starts_no_pool(pools):
    X = _data(2, 300, [16, 16])
    imp = _fit(X, n_clusters=4, completion="soft", random_state=0)  # n_jobs=None: every CPU
    pools.clear()
    imp.transform({name: a[:1] for name, a in X.items()})
    imp.predict({name: a[:1] for name, a in X.items()})
    assert pools == []
    assert INLINE_BYTES >= 2**20  # a serving batch of a few hundred wide rows is inline


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_small_torch_calls_leave_torch_threads_alone(monkeypatch):
    X = _data(3, 300, [12, 20])
    imp = _fit(X, n_clusters=4, completion="soft", random_state=0, backend="torch")
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    imp.transform({name: torch.from_numpy(a[:1]) for name, a in X.items()})
    imp.transform({name: a[:64] for name, a in X.items()})
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_calls_give_the_sequential_results(backend):
    X = _data(4, 500, [32, 48, 16])
    imp = _fit(X, n_clusters=8, completion="soft", random_state=0, backend=backend)
    rows = [{name: a[i:i + 3] for name, a in X.items()} for i in range(0, 120, 3)]
    expected = [imp.transform(r) for r in rows]
    barrier = threading.Barrier(4)

    def serve(start):
        barrier.wait()
        return [imp.transform(rows[j]) for j in range(start, len(rows), 4)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(serve, range(4)))
    for start, outs in enumerate(results):
        for j, out in zip(range(start, len(rows), 4), outs, strict=True):
            for name in X:
                assert _bits(out[name]) == _bits(expected[j][name])


@pytest.mark.parametrize("method", ["transform", "predict"])
def test_small_calls_take_turns_and_larger_ones_do_not(monkeypatch, method):
    X = _data(4, 40, [3, 2])
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    row = {name: a[:1] for name, a in X.items()}
    expected = getattr(imp, method)(row)
    results, done = [], threading.Event()

    def call():
        results.append(getattr(imp, method)(row))
        done.set()

    with ul4m4.imputer._SMALL_CALLS:  # another thread's small call is running
        caller = threading.Thread(target=call)
        caller.start()
        assert not done.wait(0.3)  # waits for its turn
    caller.join(30)
    assert done.is_set()
    # A call above INLINE_BYTES does not wait: it can use the threads.
    monkeypatch.setattr(ul4m4.threads, "INLINE_BYTES", 8)
    done.clear()
    with ul4m4.imputer._SMALL_CALLS:
        caller = threading.Thread(target=call)
        caller.start()
        assert done.wait(30)
    caller.join()
    for got in results:
        if method == "transform":
            for name in X:
                np.testing.assert_array_equal(got[name], expected[name])
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_does_not_inherit_a_held_turn():
    X = _data(5, 40, [3, 2])
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    row = {name: a[:1] for name, a in X.items()}
    expected = imp.transform(row)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    holding, release = threading.Event(), threading.Event()

    def other_thread():  # its small call is under way at the fork
        with ul4m4.imputer._SMALL_CALLS:
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=other_thread)
    holder.start()
    holding.wait(60)
    try:
        child = context.Process(target=lambda: results.put(imp.transform(row)))
        child.start()
        got = results.get(timeout=30)  # a DataLoader worker would hang here
    finally:
        release.set()
        holder.join(60)
    child.join(60)
    if child.is_alive():  # pragma: no cover - only when the lock came along
        child.kill()
    assert child.exitcode == 0
    for name in X:
        np.testing.assert_array_equal(got[name], expected[name])


def test_parameters_are_resolved_once_and_new_ones_are_seen(monkeypatch):
    X = _data(5, 200, [8, 8])
    imp = _fit(X, n_clusters=3, random_state=0, n_jobs=1)
    resolved = []
    real = ul4m4.imputer.resolve_settings
    monkeypatch.setattr(ul4m4.imputer, "resolve_settings",
                        lambda params: resolved.append(params) or real(params))
    one = {name: a[:1] for name, a in X.items()}
    imp.transform(one)
    imp.transform(one)
    assert resolved == []
    imp.set_params(n_jobs=2)
    imp.transform(one)
    imp.transform(one)
    assert [p["n_jobs"] for p in resolved] == [2]
    imp.set_params(partial="missing")
    partly = {name: a[:1].copy() for name, a in X.items()}
    partly["m0"][0, 0] = np.nan
    out = imp.transform(partly)  # partly NaN rows count as missing now: no error
    assert not np.isnan(out["m0"]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_order_distances_are_the_definition_within_their_bound_row_by_row(dtype):
    rng = np.random.default_rng(7)
    dims, n, k = [33, 5, 70], 40, 9
    mask = rng.random((n, 3)) < 0.6
    mask[:, 0] |= ~mask.any(axis=1)
    center_mask = rng.random((k, 3)) < 0.7
    blocks = [np.where(mask[:, [m]], rng.normal(size=(n, d)), 0).astype(dtype)
              for m, d in enumerate(dims)]
    centers = [np.where(center_mask[:, [m]], rng.normal(size=(k, d)), 0).astype(dtype)
               for m, d in enumerate(dims)]
    sq, err = fixed_order_partial_sq_dists(blocks, mask, centers, center_mask)
    exact = exact_partial_sq_dists(blocks, mask, centers, center_mask)
    assert np.array_equal(np.isinf(sq), np.isinf(exact))
    finite = np.isfinite(exact)
    assert (np.abs(sq[finite] - exact[finite]) <= err[finite]).all()
    for i in (0, 17, n - 1):
        alone, _ = fixed_order_partial_sq_dists([b[i:i + 1] for b in blocks], mask[i:i + 1],
                                                centers, center_mask)
        assert _bits(alone[0]) == _bits(sq[i])
