"""The torch backend against the NumPy engine: same labels, centres and completions.

The parity tests fit both backends with the same seed on random shapes and
missing patterns (small-integer data half of the time, so duplicate points and
exact distance ties are common) and require equality: labels, modality sets,
convergence, greedy sources and filled values exactly, centres bit for bit.
Only inertia (the sum of unrechecked GEMM distances, whose summation order
differs between BLAS libraries) and soft completion (a smooth function of those
distances) are compared with a tolerance. CUDA tests skip without a GPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import multimodal

torch = pytest.importorskip("torch")

from _parity import PARITY, assert_parity, parity_data  # noqa: E402

import ul4m4.threads  # noqa: E402
from ul4m4 import UL4M4Imputer  # noqa: E402
from ul4m4.backends import NumpyEngine, engine_for_input, get_engine  # noqa: E402
from ul4m4.backends import _torch as tb  # noqa: E402
from ul4m4.cluster import Centers  # noqa: E402
from ul4m4.distance import error_factor, exact_partial_sq_dists  # noqa: E402
from ul4m4.rowsums import sequential_sums  # noqa: E402
from ul4m4.statistics import modality_statistics  # noqa: E402
from ul4m4.validation import check_multimodal  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")


def _fit_both(X, k, seed, dtype, device=None, **kwargs):
    params = {"random_state": seed, "dtype": dtype, "max_iter": 30, "n_jobs": 1, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = UL4M4Imputer(k, **params).fit(X)
        got = UL4M4Imputer(k, backend="torch", device=device, **params).fit(X)
    return ref, got


def _assert_same_model(ref, got, dtype):
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_array_equal(got.center_modalities_, ref.center_modalities_)
    for name in ref.modalities_:
        # Bit for bit: same members, summed in the same order in float64.
        assert got.cluster_centers_[name].tobytes() == ref.cluster_centers_[name].tobytes()
    for a, b in zip(ref.model_.members[0].centers.blocks, got.model_.members[0].centers.blocks,
                    strict=True):
        assert a.tobytes() == b.tobytes()
    assert (got.n_iter_, got.converged_) == (ref.n_iter_, ref.converged_)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got.history_, ref.history_, rtol=rtol, atol=rtol)


def _as_host(value):
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else value


def _assert_same_completion(ref, got, X):
    want, want_src = ref.transform(X, return_sources=True)
    out, src = got.transform(X, return_sources=True)
    for name in want:
        np.testing.assert_array_equal(_as_host(src[name]), want_src[name])
        np.testing.assert_array_equal(_as_host(out[name]), want[name])
    np.testing.assert_array_equal(_as_host(got.predict(X)), ref.predict(X))


# ------------------------------------------------------------------ parity
@given(multimodal(max_n=30, max_dim=5), st.integers(0, 2**31 - 1),
       st.sampled_from([np.float64, np.float32]), st.sampled_from(["k-means++", "random"]))
def test_fit_and_transform_equal_numpy(case, seed, dtype, init):
    X, _, k = case
    ref, got = _fit_both(X, k, seed, dtype, init=init)
    _assert_same_model(ref, got, dtype)
    _assert_same_completion(ref, got, X)


@given(multimodal(max_n=30, max_dim=5), st.integers(0, 2**31 - 1))
def test_soft_completion_close_to_numpy(case, seed):
    X, _, k = case
    ref, got = _fit_both(X, k, seed, np.float64, completion="soft", temperature=0.1)
    _assert_same_model(ref, got, np.float64)
    want, want_w = ref.transform(X, return_weights=True)
    out, w = got.transform(X, return_weights=True)
    for name in want:
        np.testing.assert_allclose(out[name], want[name], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(w[name], want_w[name], rtol=1e-9, atol=1e-9)


def test_general_completion_path_equals_numpy(monkeypatch):
    """Partial centres force the (B, k, k) candidate tensor; chunks of 7 rows on 2 workers."""
    monkeypatch.setattr(ul4m4.threads, "INLINE_BYTES", 0)  # small data, yet the pool
    rng = np.random.default_rng(3)
    n = 300
    X = {"a": rng.normal(size=(n, 5)), "b": rng.integers(-2, 3, size=(n, 3)).astype(float),
         "c": rng.normal(size=(n, 2))}
    X["a"][:150] += 20.0  # far from the rest, and without b: their centres lack b
    X["b"][:150] = np.nan
    X["c"][100:] = np.nan
    ref, got = _fit_both(X, 12, 0, np.float32, batch_size=7, n_jobs=2)
    assert not ref.center_modalities_.all()
    _assert_same_model(ref, got, np.float32)
    _assert_same_completion(ref, got, X)


# ----------------------------------------------------------------- kernels
def _chunk(seed=0, n=64, dims=(5, 3), k=6):
    rng = np.random.default_rng(seed)
    blocks = [rng.normal(size=(n, d)) for d in dims]
    mask = rng.random((n, len(dims))) < 0.7
    mask[:, 0] |= ~mask.any(axis=1)
    for m, b in enumerate(blocks):
        b[~mask[:, m]] = 0
    c_mask = rng.random((k, len(dims))) < 0.8
    centers = Centers([rng.normal(size=(k, d)) for d in dims], c_mask)
    return blocks, mask, centers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_partial_sq_dists_within_bound_of_exact(dtype):
    blocks, mask, centers = _chunk()
    blocks = [b.astype(dtype) for b in blocks]
    centers = Centers([b.astype(dtype) for b in centers.blocks], centers.mask)
    rounding = error_factor([b.shape[1] for b in blocks], dtype)
    sq, err = tb.partial_sq_dists([torch.from_numpy(b) for b in blocks], mask,
                                  tb.DeviceCenters.of(centers, torch.device("cpu")), rounding)
    exact = exact_partial_sq_dists(blocks, mask, centers.blocks, centers.mask)
    sq, err = sq.numpy(), err.numpy()
    np.testing.assert_array_equal(np.isinf(sq), np.isinf(exact))
    finite = np.isfinite(exact)
    assert np.all(np.abs(sq[finite] - exact[finite]) <= err[finite])


def _literal_row_order_sums(k, labels, block, running):
    """``running[j] + x_a + x_b + ...`` over rows labelled j, one addition at a time."""
    out = running.copy()
    for i, j in enumerate(labels):
        out[j] = out[j] + block[i]
    return out


def test_member_sums_are_row_order_float64():
    """The NumPy engine's sums and the scatter path (used off the CPU, run here on CPU
    tensors) both add rows one by one onto the running total."""
    rng = np.random.default_rng(1)
    k, d = 5, 9
    running = np.zeros((k, d))
    for _ in range(3):  # three chunks: the running total carries over
        labels = rng.integers(0, k, size=40)
        block = (rng.normal(size=(40, d)) * 10.0 ** rng.integers(-8, 8, size=(40, 1))).astype(
            np.float32)
        want = sequential_sums(running, labels, block)
        assert want.tobytes() == _literal_row_order_sums(k, labels, block, running).tobytes()
        sums = tb.DeviceSums(k, [d], torch.device("cpu"))
        sums.device_sums[0] = torch.from_numpy(running.copy())
        chunk = (labels, [torch.from_numpy(block)], np.ones((40, 1), dtype=bool))
        sums.compute_and_add(slice(0, 40), lambda chunk=chunk: (None, chunk))
        assert sums.sums[0].tobytes() == want.tobytes()
        running = want


def test_device_rows_equal_numpy_rows():
    """The device z-scoring path gives the NumPy engine's values bit for bit."""
    rng = np.random.default_rng(2)
    X = {"a": rng.normal(size=(50, 4)) * 1e3 + 7, "b": rng.integers(-9, 9, size=(50, 3))}
    X["a"][::3] = np.nan
    data = check_multimodal(X)
    means, scales = modality_statistics(data, 16)
    for dtype in (np.float32, np.float64):
        view = tb.TorchView(data, means, scales, np.dtype(dtype), 16,
                            device=torch.device("cpu"))
        rows = np.array([0, 4, 9, 31, 49])
        want = view.rows(rows)[0]
        got = tb.standardize_on_device(view, rows)  # the off-CPU path, run on the CPU
        for w, g in zip(want, got, strict=True):
            assert g.numpy().tobytes() == w.tobytes()


# ------------------------------------------------------------ input/output
def _small(seed=0, n=80):
    rng = np.random.default_rng(seed)
    X = {"a": rng.normal(size=(n, 4)).astype(np.float32),
         "b": rng.normal(size=(n, 3)).astype(np.float32)}
    X["b"][: n // 3] = np.nan
    return X


def test_tensors_in_tensors_out():
    X = _small()
    T = {k: torch.from_numpy(v.copy()) for k, v in X.items()}
    imp = UL4M4Imputer(4, random_state=0, backend="torch", n_jobs=1).fit(T)
    out, src, w = imp.transform(T, return_sources=True, return_weights=True)
    assert all(isinstance(v, torch.Tensor) for v in (*out.values(), *src.values(), *w.values()))
    assert out["a"].dtype == torch.float32 and src["b"].dtype == torch.int64
    assert torch.equal(out["a"], T["a"])  # observed rows unchanged
    assert not torch.isnan(out["b"]).any()
    listed = imp.transform(list(T.values()))
    assert list(listed) == ["a", "b"] and torch.equal(listed["b"], out["b"])
    labels = imp.predict(T)
    assert isinstance(labels, torch.Tensor)
    np.testing.assert_array_equal(labels.numpy(), imp.labels_)
    plain = imp.transform(X)  # NumPy in, NumPy out
    assert isinstance(plain["b"], np.ndarray)
    np.testing.assert_array_equal(plain["b"], out["b"].numpy())
    # The observed mask comes back as the sources do: a tensor for tensor input.
    mask = imp.transform(T, return_sources=True, return_mask=True)[2]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.numpy(), np.column_stack(
        [~np.isnan(a).all(axis=1) for a in X.values()]))


def test_fit_does_not_modify_tensors_and_accepts_grad():
    X = _small()
    T = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in X.items()}
    UL4M4Imputer(3, random_state=0, backend="torch", n_jobs=1).fit(T)
    for k in X:
        np.testing.assert_array_equal(T[k].detach().numpy(), X[k])


def test_threads_restored():
    before = torch.get_num_threads()
    UL4M4Imputer(3, random_state=0, backend="torch", n_jobs=1).fit(_small())
    assert torch.get_num_threads() == before


def test_bad_backend_and_device_errors():
    X = _small()
    with pytest.raises(ValueError, match=r"backend must be one of .*'jax'"):
        UL4M4Imputer(backend="jax").fit(X)
    with pytest.raises(ValueError, match="needs backend='torch'"):
        UL4M4Imputer(backend="numpy", device="cuda").fit(X)
    with pytest.raises(ValueError, match="device must name a torch device"):
        UL4M4Imputer(backend="torch", device="nonsense").fit(X)
    with pytest.raises(TypeError, match="device must be"):
        UL4M4Imputer(backend="torch", device=3).fit(X)
    bad = {"a": torch.zeros(5, 2, dtype=torch.bool), "b": torch.zeros(5, 2)}
    with pytest.raises(TypeError, match="modality 'a'.*integer tensor, got torch.bool"):
        UL4M4Imputer(backend="torch").fit(bad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_come_back_in_their_dtype(dtype):
    # bfloat16 (which NumPy lacks) is computed as float32 and handed back as
    # bfloat16; observed rows are the caller's bits, filled rows the float32
    # fill rounded once.
    T = {k: torch.from_numpy(v).to(dtype) for k, v in _small().items()}
    wide = {k: v.float() for k, v in T.items()}
    imp = UL4M4Imputer(4, random_state=0, backend="torch", n_jobs=1).fit(T)
    ref = UL4M4Imputer(4, random_state=0, backend="torch", n_jobs=1).fit(wide)
    np.testing.assert_array_equal(imp.labels_, ref.labels_)
    out, src, w = imp.transform(T, return_sources=True, return_weights=True)
    want = ref.transform(wide)
    for k in T:
        assert out[k].dtype == dtype
        observed = ~torch.isnan(T[k]).all(dim=1)
        assert torch.equal(out[k][observed], T[k][observed])
        assert torch.equal(out[k], want[k].to(dtype))
    assert src["b"].dtype == torch.int64 and w["b"].dtype == torch.float64
    listed = imp.transform([T["a"].float(), T["b"]])  # per position
    assert listed["a"].dtype == torch.float32 and listed["b"].dtype == dtype
    assert torch.equal(listed["b"], out["b"])


def test_engines_resolve():
    assert isinstance(get_engine("numpy"), NumpyEngine)
    assert get_engine("torch", "cpu").device == torch.device("cpu")
    # The input adapter moves a device-less engine to the tensors' device.
    engine, X, output = engine_for_input("torch", None, {"a": torch.zeros(2, 3)})
    assert engine.device.type == "cpu" and isinstance(X["a"], np.ndarray)
    assert isinstance(output.wrap({"a": X["a"]})["a"], torch.Tensor)
    with pytest.raises(ValueError, match="backend must be one of"):
        get_engine("jax")


def test_tf32_widens_the_error_bound(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    engine = tb.TorchEngine("cuda")
    base = engine.rounding_factor([8, 4], np.float32)
    monkeypatch.setattr(tb, "_tf32_possible", lambda device: True)
    widened = engine.rounding_factor([8, 4], np.float32)
    assert widened == pytest.approx(base * 2.0**-10 / np.finfo(np.float32).eps)
    assert engine.rounding_factor([8, 4], np.float64) == error_factor([8, 4], np.float64)


def test_save_load_keeps_backend(tmp_path):
    X = _small()
    imp = UL4M4Imputer(3, random_state=0, backend="torch", device="cpu", n_jobs=1).fit(X)
    imp.save(tmp_path / "m.ul4m4")
    back = UL4M4Imputer.load(tmp_path / "m.ul4m4")
    assert (back.backend, back.device) == ("torch", "cpu")
    a, b = imp.transform(X), back.transform(X)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()


# -------------------------------------------------------------------- CUDA
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_equals_numpy(dtype):
    rng = np.random.default_rng(5)
    n = 2000
    X = {"a": rng.normal(size=(n, 24)), "b": rng.normal(size=(n, 16)),
         "c": rng.integers(-2, 3, size=(n, 8)).astype(float)}
    for v in X.values():
        v[rng.random(n) < 0.4] = np.nan
    X["a"][np.isnan(X["b"][:, 0]) & np.isnan(X["c"][:, 0])] = 0.5
    ref, got = _fit_both(X, 16, 0, dtype, device="cuda")
    _assert_same_model(ref, got, dtype)
    _assert_same_completion(ref, got, X)
    T = {k: torch.from_numpy(v).to("cuda") for k, v in X.items()}
    out = got.transform(T)
    assert all(v.device.type == "cuda" for v in out.values())


@needs_cuda
def test_cuda_scatter_sums_bitwise():
    rng = np.random.default_rng(6)
    running = rng.normal(size=(7, 33))
    labels = rng.integers(0, 7, size=5000)
    block = rng.normal(size=(5000, 33)).astype(np.float32)
    want = sequential_sums(running, labels, block)
    got = tb._scatter_member_sums(torch.from_numpy(running).cuda(), labels,
                                  torch.from_numpy(block).cuda())
    assert got.cpu().numpy().tobytes() == want.tobytes()


@pytest.mark.parametrize("case", sorted(PARITY))
def test_every_option_runs_on_torch_with_numpy_results(case):
    """Tensors in, torch engine throughout (no NumPy fallback): the NumPy backend's model."""
    X, new = parity_data(240, 0), parity_data(60, 1)
    params = {**PARITY[case], "dtype": np.float64}
    reference = UL4M4Imputer(**params).fit(X)
    ours = UL4M4Imputer(**params, backend="torch").fit(
        {n: torch.from_numpy(a) for n, a in X.items()})
    got = ours.transform({n: torch.from_numpy(a) for n, a in new.items()})
    assert all(isinstance(v, torch.Tensor) for v in got.values())
    assert_parity(ours, reference, got, reference.transform(new), tol=1e-9)
