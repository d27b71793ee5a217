"""ul4m4.cluster: seeding and Lloyd against the literal method in ``_reference``; cycles are detected, stopped and reported."""

from __future__ import annotations

import warnings

import _reference as ref
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from strategies import multimodal

from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.centers import Centers
from ul4m4.cluster import assign, kmeans_plusplus, lloyd, state_key
from ul4m4.distance import error_factor
from ul4m4.inference import transform_view
from ul4m4.settings import resolve_settings
from ul4m4.statistics import modality_statistics
from ul4m4.validation import check_multimodal


def cycling_data() -> dict[str, np.ndarray]:
    """53 samples, two 1-d modalities, 30 % observed each: k=7 seeded by 364 cycles.

    Found by a seeded search over small random partial data sets: Lloyd under the
    partial distance alternates between two label assignments from these seeds.
    """
    rng = np.random.default_rng(364)
    n, M, d = int(rng.integers(20, 80)), int(rng.integers(2, 5)), int(rng.integers(1, 3))
    p = rng.uniform(0.3, 0.8)
    X = {f"m{j}": rng.normal(size=(n, d)) for j in range(M)}
    mask = rng.random((n, M)) < p
    mask[~mask.any(1), 0] = True
    for j in range(M):
        X[f"m{j}"][~mask[:, j]] = np.nan
    assert (n, M, d, int(rng.integers(3, 10))) == (53, 2, 1, 7)
    return X


def _view(X, dtype=np.float64):
    data = check_multimodal(X)
    means, scales = modality_statistics(data, 64)
    engine = NumpyEngine()
    return engine.view(data, means, scales, np.dtype(dtype), 64), engine, error_factor(
        data.dims, np.dtype(dtype))


def _seeds(view, engine, rounding, k=7, seed=364):
    return kmeans_plusplus(view, k, np.random.RandomState(seed), rounding, engine)[0]


def test_a_cycle_stops_the_run_and_is_reported():
    view, engine, rounding = _view(cycling_data())
    result = lloyd(view, _seeds(view, engine, rounding), engine, max_iter=300, tol=0.0,
                   rounding=rounding)
    assert result.stopped_by == "cycle" and not result.converged
    assert result.cycle_period == 2 and result.n_iter < 20
    h = result.history
    assert len(h) == result.n_iter
    # The inertia repeats with the cycle's period (the last iteration repeats the
    # one a period earlier: it started from the same centres).
    assert h[-1] == h[-1 - result.cycle_period]
    # The returned labels are the exact argmin to the returned centres, and the
    # inertia their sum.
    labels, best = assign(view, result.centers, rounding, engine)
    np.testing.assert_array_equal(labels, result.labels)
    assert best.sum() == pytest.approx(result.inertia, rel=1e-12)


def test_a_cycle_gives_the_same_result_whatever_max_iter():
    """Without detection the result depended on the parity of max_iter (period 2)."""
    view, engine, rounding = _view(cycling_data())
    results = [lloyd(view, _seeds(view, engine, rounding), engine, max_iter=m, tol=0.0,
                     rounding=rounding) for m in (300, 301, 3000)]
    for other in results[1:]:
        assert other.n_iter == results[0].n_iter
        np.testing.assert_array_equal(other.labels, results[0].labels)
        for a, b in zip(other.centers.blocks, results[0].centers.blocks, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_budget_shorter_than_the_cycle_detection_is_max_iter():
    view, engine, rounding = _view(cycling_data())
    full = lloyd(view, _seeds(view, engine, rounding), engine, max_iter=300, tol=0.0,
                 rounding=rounding)
    short = lloyd(view, _seeds(view, engine, rounding), engine, max_iter=full.n_iter - 1,
                  tol=0.0, rounding=rounding)
    assert short.stopped_by == "max_iter" and short.cycle_period == 0
    assert short.history == full.history[: full.n_iter - 1]


def test_runs_that_do_not_cycle_are_unchanged():
    rng = np.random.RandomState(0)
    X = {"a": np.r_[rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))],
         "b": rng.normal(size=(200, 3))}
    X["b"][::3] = np.nan
    view, engine, rounding = _view(X)
    result = lloyd(view, _seeds(view, engine, rounding, k=3, seed=0), engine, max_iter=300,
                   tol=0.0, rounding=rounding)
    assert result.stopped_by == "fixed_point" and result.converged
    assert result.cycle_period == 0


def test_state_key_sees_every_bit_of_the_centres():
    centers = Centers([np.array([[1.0, 2.0], [3.0, 4.0]])], np.array([[True], [True]]))
    key = state_key(centers)
    assert state_key(Centers([b.copy() for b in centers.blocks], centers.mask.copy())) == key
    nudged = centers.blocks[0].copy()
    nudged[1, 1] = np.nextafter(nudged[1, 1], np.inf)
    assert state_key(Centers([nudged], centers.mask.copy())) != key
    assert state_key(Centers([centers.blocks[0].copy()], np.array([[True], [False]]))) != key


_MAX_ITER = 30


def _reference_fit(imp, X, k, seed):
    """The literal method from the same seed; as many iterations as the fit ran when it
    stopped on a cycle (the literal loop does not look for cycles: it would go round
    to ``_MAX_ITER`` and stop at another point of the cycle)."""
    Z = ref.fitted_zscore(imp, X)
    seeds = ref.kmeans_plusplus(Z, k, np.random.RandomState(seed))
    C0 = [[Z[m][s].copy() for m in range(len(Z))] for s in seeds]
    S0 = [ref.has(Z, s) for s in seeds]
    cycled = imp.runs_[0].stopped_by == "cycle"
    return seeds, ref.lloyd(Z, C0, S0, imp.n_iter_ if cycled else _MAX_ITER, np.float64)


def _assert_same_centres(imp, C, S, rtol, labels=None):
    """Same modality sets; same centres (bit for bit when ``rtol`` is 0).

    A cluster left without members (``labels`` given) is emptied by the imputer
    (no modality, never nearest) where the literal loop keeps its stale centre.
    """
    S = np.array(S, dtype=bool)
    if labels is not None:
        dead = np.bincount(labels, minlength=len(S)) == 0
        assert not imp.center_modalities_[dead].any()
        S[dead] = False
    np.testing.assert_array_equal(imp.center_modalities_, S)
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
    _assert_same_centres(imp, C, S, 0, labels if imp.runs_[0].n_dead else None)


@given(multimodal(), st.integers(0, 2**31 - 1))
def test_seeding_matches_literal_kmeans_plusplus(case, seed):
    """Same draws as the literal k-means++, also with duplicates and unreachable samples."""
    X, mask, k = case
    imp = UL4M4Imputer(k, random_state=seed, dtype=np.float64).fit(X)
    engine = NumpyEngine()
    view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    _, indices = kmeans_plusplus(view, k, np.random.RandomState(seed), 1e-12, engine)
    expected = ref.kmeans_plusplus(ref.fitted_zscore(imp, X), k, np.random.RandomState(seed))
    assert indices.tolist() == expected


@given(multimodal(), st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_one_lloyd_step_matches_literal(case, seed, dtype):
    """From the same centres, with exact ties everywhere: the assignment equals the
    literal argmin (ties to the lowest index) and the update equals the literal means."""
    X, mask, k = case
    rows = np.random.RandomState(seed).choice(mask.shape[0], k, replace=False)
    init = {n: a[rows] for n, a in X.items()}
    imp = UL4M4Imputer(k, init=init, reference_one_step=True, dtype=dtype).fit(X)
    Z = ref.fitted_zscore(imp, X, dtype)
    Zi = ref.fitted_zscore(imp, init, dtype)
    C0 = [[Zi[m][j] for m in range(len(Zi))] for j in range(k)]
    S0 = [ref.has(Zi, j) for j in range(k)]
    labels, C, S, _ = ref.lloyd(Z, C0, S0, 1, dtype, one_step=True)
    np.testing.assert_array_equal(imp.labels_, labels)
    _assert_same_centres(imp, C, S, 1e-6 if dtype == np.float32 else 0)


@given(multimodal(), st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_lloyd_fixed_point(case, seed, dtype):
    X, mask, k = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        imp = UL4M4Imputer(k, random_state=seed, dtype=dtype).fit(X)
    # Lloyd under the partial distance can cycle (it is not a metric, and a centre's
    # modality set changes); the fixed point is checked whenever it is reached.
    assume(imp.converged_)
    Z = ref.fitted_zscore(imp, X, dtype)
    C, S = ref.fitted_centres(imp)
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
