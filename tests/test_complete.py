"""ul4m4.complete: greedy and soft completion against the literal method in ``_reference``."""

from __future__ import annotations

import _reference as ref
import numpy as np
from _data import clustered
from hypothesis import given
from hypothesis import strategies as st
from strategies import multimodal

from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.complete import complete_sources, soft_weights
from ul4m4.inference import transform_view
from ul4m4.settings import resolve_settings


@given(multimodal(), st.integers(0, 2**31 - 1), st.data())
def test_completion_matches_literal_greedy(case, seed, data):
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    C, S = ref.fitted_centres(imp)
    # New data: the training rows with a fresh missing pattern.
    new_mask = data.draw(st.lists(st.lists(st.booleans(), min_size=mask.shape[1],
                                           max_size=mask.shape[1]),
                                  min_size=mask.shape[0], max_size=mask.shape[0]))
    new_mask = np.array(new_mask, dtype=bool).reshape(mask.shape)
    new_mask[~new_mask.any(axis=1), 0] = True
    full = {n: np.nan_to_num(a, nan=1.0) for n, a in X.items()}
    X_new = {n: np.where(new_mask[:, m][:, None], a, np.nan) for m, (n, a) in
             enumerate(full.items())}
    for data_set in (X, X_new):
        filled, sources = imp.transform(data_set, return_sources=True)
        Z = ref.fitted_zscore(imp, data_set)
        for i in range(Z[0].shape[0]):
            expected = ref.greedy_complete(ref.point(Z, i), ref.has(Z, i), C, S)
            for m, name in enumerate(imp.modalities_):
                got = int(sources[name][i])
                if ref.has(Z, i)[m]:
                    assert got == -1
                    np.testing.assert_array_equal(filled[name][i], data_set[name][i])
                else:
                    assert got == expected[m], (i, m, got, expected)
                    np.testing.assert_array_equal(
                        filled[name][i], imp.cluster_centers_[name][got]
                    )


@given(multimodal(max_k=4), st.integers(0, 2**31 - 1))
def test_fast_path_equals_general_path(case, seed):
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    engine = NumpyEngine()
    view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    rounding = 1e-12
    plan = imp.model_.members[0].plan
    fast = complete_sources(view, plan, rounding)
    general = complete_sources(view, plan, rounding, force_general=True)
    np.testing.assert_array_equal(fast, general)


def test_soft_weights_sum_to_one_and_use_only_carriers():
    sq = np.array([[1.0, 2.0, np.inf, 0.5], [np.inf, np.inf, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    carries = np.array([True, True, True, False])
    w, stuck = soft_weights(sq, np.zeros_like(sq), carries, 0.1)
    np.testing.assert_allclose(w[~stuck].sum(axis=1), 1.0)
    assert not stuck.any()
    assert (w[:, 3] == 0).all()  # centre 3 lacks the modality
    assert w[0, 2] == 0 and w[1, 0] == 0 and w[1, 1] == 0  # infinitely far centres
    np.testing.assert_allclose(w[2, :3], 1 / 3)
    # Literal formula on row 0: eligible {0, 1}, min 1, median 1.5.
    logits = -(np.array([1.0, 2.0]) - 1.0) / (0.1 * 1.5)
    np.testing.assert_allclose(w[0, :2], np.exp(logits) / np.exp(logits).sum())
    _, stuck = soft_weights(np.array([[np.inf, 1.0]]), np.zeros((1, 2)), np.array([True, False]), 0.1)
    assert stuck.tolist() == [True]
    # Distances within their error bound of the smallest one count as tied with it.
    w, _ = soft_weights(np.array([[0.0, 1e-17, 1.0]]), np.array([[1e-16, 1e-16, 1e-16]]),
                         np.array([True, True, True]), 0.1)
    np.testing.assert_array_equal(w, [[0.5, 0.5, 0.0]])


@given(multimodal(max_n=20, integers=False), st.integers(0, 2**31 - 1),
       st.sampled_from([0.02, 0.1, 1.0]))
def test_soft_completion_matches_literal_weighted_mean(case, seed, temperature):
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64, completion="soft",
                       temperature=temperature).fit(X)
    filled = imp.transform(X)
    Z = ref.zscore([X[n] for n in imp.modalities_], [imp.mean_[n] for n in imp.modalities_],
                   [imp.scale_[n] for n in imp.modalities_], np.float64)
    centers = imp.model_.members[0].centers
    C = [[b[j] for b in centers.blocks] for j in range(k)]
    S = [list(map(bool, row)) for row in centers.mask]
    for i in range(mask.shape[0]):
        sq = np.array([ref.sq_dist(ref.point(Z, i), ref.has(Z, i), C[j], S[j]) for j in range(k)])
        for m, name in enumerate(imp.modalities_):
            if mask[i, m]:
                continue
            eligible = [j for j in range(k) if S[j][m] and np.isfinite(sq[j])]
            if not eligible:
                continue  # falls back to the greedy centre (covered elsewhere)
            s = sq[eligible]
            # Rounding-level differences (a mean of identical points need not equal
            # them bit for bit) are ties; the softmax is scale-free, so they matter
            # when the median distance is itself 0.
            s = np.where(s - s.min() <= 1e-12, s.min(), s)
            scale = temperature * max(np.median(s), np.finfo(float).tiny)
            w = np.exp(-(s - s.min()) / scale)
            w /= w.sum()
            expected = sum(wj * imp.cluster_centers_[name][j] for wj, j in zip(w, eligible, strict=True))
            np.testing.assert_allclose(filled[name][i], expected, rtol=1e-7, atol=1e-9)


def test_soft_with_tiny_temperature_equals_greedy_with_complete_centres():
    X, _ = clustered(seed=3)
    complete = {n: np.nan_to_num(a, nan=0.0) for n, a in X.items()}  # train complete
    greedy = UL4M4Imputer(6, random_state=0, dtype=np.float64).fit(complete)
    soft = UL4M4Imputer(6, random_state=0, dtype=np.float64, completion="soft",
                        temperature=1e-9).fit(complete)
    assert greedy.center_modalities_.all()
    a, src_a = greedy.transform(X, return_sources=True)
    b, src_b, w = soft.transform(X, return_sources=True, return_weights=True)
    for name in X:
        np.testing.assert_array_equal(src_a[name], src_b[name])
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12)
        missing = np.isnan(X[name]).all(axis=1)
        np.testing.assert_allclose(w[name][missing], 1.0)
        assert np.isnan(w[name][~missing]).all()


def test_rows_beyond_the_float32_range_of_the_candidate_kernel_get_the_exact_choice():
    # A float64 model completes rows whose squared distances exceed float32's range
    # (here about 1e44): the float32 candidate kernel cannot rank them, so they are
    # ranked exactly, as the literal greedy search does (it chose centre 0 before).
    rng = np.random.default_rng(3)
    X = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 2)),
         "c": rng.normal(size=(60, 2))}
    X["b"][:20] = np.nan
    X["c"][20:40] = np.nan
    imp = UL4M4Imputer(6, random_state=0, dtype=np.float64).fit(X)
    far = {"a": imp.mean_["a"] + imp.scale_["a"] * 1e22 * rng.normal(size=(8, 3)),
           "b": np.full((8, 2), np.nan), "c": np.full((8, 2), np.nan)}
    far["a"][4:, 1:] = 0.0
    engine = NumpyEngine()
    view = transform_view(far, imp.model_, resolve_settings(imp.get_params()), engine)
    plan = imp.model_.members[0].plan
    with np.errstate(over="raise"):
        got = complete_sources(view, plan, 1e-15, force_general=True)
    C, S = ref.fitted_centres(imp)
    Z = ref.fitted_zscore(imp, far)
    for i in range(8):
        expected = ref.greedy_complete(ref.point(Z, i), ref.has(Z, i), C, S)
        assert [got[i, m] for m in (1, 2)] == [expected[1], expected[2]], i
