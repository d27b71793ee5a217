"""The vectorised engine against the literal implementation in ``_reference``."""

from __future__ import annotations

import warnings

import _reference as ref
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from strategies import multimodal

from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.cluster import kmeans_plusplus
from ul4m4.complete import complete_sources
from ul4m4.model import transform_view
from ul4m4.settings import resolve_settings


def _z(imp, X, dtype=np.float64):
    names = imp.modalities_
    return ref.zscore(
        [np.asarray(X[n]) for n in names],
        [imp.mean_[n] for n in names],
        [imp.scale_[n] for n in names],
        dtype,
    )


def _centres(imp):
    centers = imp.model_.members[0].centers
    C = [[b[j] for b in centers.blocks] for j in range(centers.k)]
    S = [list(map(bool, row)) for row in centers.mask]
    return C, S


_MAX_ITER = 30


def _reference_fit(imp, X, k, seed):
    Z = _z(imp, X)
    seeds = ref.kmeans_plusplus(Z, k, np.random.RandomState(seed))
    C0 = [[Z[m][s].copy() for m in range(len(Z))] for s in seeds]
    S0 = [ref.has(Z, s) for s in seeds]
    return seeds, ref.lloyd(Z, C0, S0, _MAX_ITER, np.float64)


def _assert_same_centres(imp, C, S, rtol):
    """Same modality sets; same centres (bit for bit when ``rtol`` is 0)."""
    np.testing.assert_array_equal(imp.center_modalities_, np.array(S, dtype=bool))
    for m, block in enumerate(imp.model_.members[0].centers.blocks):
        for j in range(len(S)):
            if S[j][m]:
                np.testing.assert_allclose(block[j], C[j][m], rtol=rtol, atol=0)


@given(multimodal(), st.integers(0, 2**31 - 1))
def test_fit_matches_literal_kmeans(case, seed):
    """End to end (seeding + Lloyd), ties and duplicates included: same labels, and
    centres equal bit for bit (both sum members sequentially in row order in float64)."""
    X, mask, k = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64, max_iter=_MAX_ITER).fit(X)
    _, (labels, C, S, converged) = _reference_fit(imp, X, k, seed)
    assert imp.converged_ == converged
    np.testing.assert_array_equal(imp.labels_, labels)
    _assert_same_centres(imp, C, S, 0)


@given(multimodal(), st.integers(0, 2**31 - 1))
def test_seeding_matches_literal_kmeans_plusplus(case, seed):
    """Same draws as the literal k-means++, also with duplicates and unreachable samples."""
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    engine = NumpyEngine()
    view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    _, indices = kmeans_plusplus(view, k, np.random.RandomState(seed), 1e-12, engine)
    expected = ref.kmeans_plusplus(_z(imp, X), k, np.random.RandomState(seed))
    assert indices.tolist() == expected


@given(multimodal(), st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_one_lloyd_step_matches_literal(case, seed, dtype):
    """From the same centres, with exact ties everywhere: the assignment equals the
    literal argmin (ties to the lowest index) and the update equals the literal means."""
    X, mask, k = case
    rows = np.random.RandomState(seed).choice(mask.shape[0], k, replace=False)
    init = {n: a[rows] for n, a in X.items()}
    imp = UL4M4Imputer(k, init=init, reference_one_step=True, dtype=dtype).fit(X)
    Z = _z(imp, X, dtype)
    Zi = _z(imp, init, dtype)
    C0 = [[Zi[m][j] for m in range(len(Zi))] for j in range(k)]
    S0 = [ref.has(Zi, j) for j in range(k)]
    labels, C, S, _ = ref.lloyd(Z, C0, S0, 1, dtype, one_step=True)
    np.testing.assert_array_equal(imp.labels_, labels)
    _assert_same_centres(imp, C, S, 1e-6 if dtype == np.float32 else 0)


@given(multimodal(), st.integers(0, 2**31 - 1), st.data())
def test_completion_matches_literal_greedy(case, seed, data):
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    C, S = _centres(imp)
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
        Z = _z(imp, data_set)
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


@given(multimodal(), st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_lloyd_fixed_point(case, seed, dtype):
    X, mask, k = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        imp = UL4M4Imputer(k, random_state=seed, dtype=dtype).fit(X)
    # Lloyd under the partial distance can cycle (it is not a metric, and a centre's
    # modality set changes); the fixed point is checked whenever it is reached.
    assume(imp.converged_)
    Z = _z(imp, X, dtype)
    C, S = _centres(imp)
    for i in range(Z[0].shape[0]):
        assert imp.labels_[i] == ref.nearest(Z, i, C, S)[0]
    for j in range(k):
        members = imp.labels_ == j
        for m, name in enumerate(imp.modalities_):
            rows = members & mask[:, m]
            assert S[j][m] == bool(rows.any())
            if rows.any():
                expected = np.asarray(X[name])[rows].mean(axis=0)
                np.testing.assert_allclose(
                    imp.cluster_centers_[name][j], expected,
                    rtol=1e-4 if dtype == np.float32 else 1e-9, atol=1e-4 if dtype == np.float32
                    else 1e-9,
                )


@given(multimodal(max_k=4), st.integers(0, 2**31 - 1))
def test_fast_path_equals_general_path(case, seed):
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    engine = NumpyEngine()
    view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    gamma = 1e-12
    plan = imp.model_.members[0].plan
    fast = complete_sources(view, plan, gamma, engine)
    general = complete_sources(view, plan, gamma, engine, force_general=True)
    np.testing.assert_array_equal(fast, general)
