"""Soft completion and label-free selection (completion="soft"/"auto", n_clusters="auto")."""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import multimodal

from ul4m4 import UL4M4Imputer
from ul4m4.complete import soft_weights
from ul4m4.selection import hide_blocks


def _clustered(n=400, n_clusters=5, dims=(6, 4, 5), noise=0.15, rate=0.35, seed=0):
    """Modalities generated from shared clusters: one modality predicts the others."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_clusters, n)
    X = {}
    for m, d in enumerate(dims):
        centres = rng.normal(scale=3.0, size=(n_clusters, d))
        X[f"m{m}"] = centres[labels] + noise * rng.normal(size=(n, d))
    return _mask(X, rate, rng), labels


def _independent(n=400, dims=(6, 4, 5), rate=0.35, seed=0):
    """Modalities of independent clustered noise: nothing to learn across modalities."""
    rng = np.random.default_rng(seed)
    X = {}
    for m, d in enumerate(dims):
        labels = rng.integers(0, 5, n)
        X[f"m{m}"] = rng.normal(scale=3.0, size=(5, d))[labels] + rng.normal(size=(n, d))
    return _mask(X, rate, rng)


def _mask(X, rate, rng):
    n, n_mod = next(iter(X.values())).shape[0], len(X)
    mask = rng.random((n, n_mod)) > rate
    mask[np.arange(n), rng.integers(0, n_mod, n)] = True
    return {name: np.where(mask[:, m][:, None], a, np.nan) for m, (name, a) in enumerate(X.items())}


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
    X, _ = _clustered(seed=3)
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


def test_hide_blocks_never_empties_a_sample():
    rng = np.random.RandomState(0)
    mask = rng.random_sample((500, 4)) > 0.5
    mask[np.arange(500), rng.randint(0, 4, 500)] = True
    hidden = hide_blocks(mask, 0.3, np.random.RandomState(1))
    assert not (hidden & ~mask).any()
    assert (hidden.sum(axis=1) <= 1).all()
    assert ((mask & ~hidden).sum(axis=1) >= 1).all()
    eligible = (mask.sum(axis=1) >= 2).sum()
    assert hidden.sum() == round(0.3 * eligible)
    np.testing.assert_array_equal(hidden, hide_blocks(mask, 0.3, np.random.RandomState(1)))


def test_auto_picks_mean_imputation_for_independent_modalities():
    X = _independent()
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 4, 8)).fit(X)
    assert set(imp.completion_.values()) == {"mean"}, imp.selection_.to_markdown()
    assert imp.n_clusters_ in (2, 4, 8)


def test_auto_picks_a_clustered_completion_for_shared_clusters():
    X, _ = _clustered()
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 5, 10)).fit(X)
    assert "mean" not in imp.completion_.values(), imp.selection_.to_markdown()
    assert imp.n_clusters_ >= 5
    rows = imp.selection_.table
    assert {r["method"] for r in rows} == {"greedy", "soft", "mean"}
    assert {r["n_clusters"] for r in rows} == {2, 5, 10}


def test_selection_is_deterministic_and_ignores_labels():
    X, labels = _clustered(seed=5)
    a = UL4M4Imputer("auto", completion="auto", random_state=3, k_grid=(2, 5)).fit(X, labels)
    b = UL4M4Imputer("auto", completion="auto", random_state=3, k_grid=(2, 5)).fit(
        X, np.zeros_like(labels))
    assert a.selection_.table == b.selection_.table
    assert a.completion_ == b.completion_ and a.n_clusters_ == b.n_clusters_
    for name in X:
        np.testing.assert_array_equal(a.transform(X)[name], b.transform(X)[name])


def test_auto_beats_mean_on_hidden_blocks_of_clustered_data():
    X, _ = _clustered(n=600, seed=7)
    truth, _ = _clustered(n=600, seed=7, rate=0.0)
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 5, 10)).fit(X)
    mean = UL4M4Imputer(1, random_state=0).fit(X)
    got, base = imp.transform(X), mean.transform(X)

    def mse(out):
        errs = []
        for name in X:
            hidden = np.isnan(X[name]).all(axis=1)
            z = (out[name][hidden] - truth[name][hidden]) / imp.scale_[name]
            errs.append(np.mean(z**2))
        return np.mean(errs)

    assert mse(got) < 0.5 * mse(base)


def test_n_init_keeps_the_lowest_inertia():
    X, _ = _clustered(seed=9)
    runs = [UL4M4Imputer(8, random_state=s).fit(X).inertia_ for s in range(3)]
    best = UL4M4Imputer(8, random_state=0, n_init=5).fit(X)
    assert best.inertia_ <= min(runs[:1]) + 1e-9


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"completion": "fuzzy"}, "completion must be one of"),
        ({"temperature": 0.0}, "temperature must be a finite real > 0"),
        ({"selection_fraction": 1.5}, r"selection_fraction must be a real in \(0, 1\]"),
        ({"k_grid": ()}, "k_grid must be a non-empty"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"n_clusters": "many"}, "n_clusters must be an integer"),
        ({"shrinkage": 1.0}, "shrinkage must be a real in"),
    ],
)
def test_bad_selection_parameters(params, match):
    X, _ = _clustered(n=50)
    with pytest.raises(ValueError, match=match):
        UL4M4Imputer(**params).fit(X)


def test_auto_model_round_trips(tmp_path):
    X, _ = _clustered(n=200, seed=11)
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 5)).fit(X)
    imp.save(tmp_path / "auto.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "auto.ul4m4")
    assert loaded.completion_ == imp.completion_ and loaded.n_clusters_ == imp.n_clusters_
    assert loaded.selection_.to_markdown() == imp.selection_.to_markdown()
    for name in X:
        np.testing.assert_array_equal(loaded.transform(X)[name], imp.transform(X)[name])


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_shrinkage_pulls_filled_values_toward_the_mean(completion):
    X, _ = _clustered(n=120, seed=13)
    plain = UL4M4Imputer(5, random_state=0, dtype=np.float64, completion=completion).fit(X)
    shrunk = UL4M4Imputer(5, random_state=0, dtype=np.float64, completion=completion,
                          shrinkage=0.5).fit(X)
    a, b = plain.transform(X), shrunk.transform(X)
    for name in X:
        missing = np.isnan(X[name]).all(axis=1)
        mean = plain.mean_[name]
        np.testing.assert_allclose(b[name][missing], mean + 0.5 * (a[name][missing] - mean),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(b[name][~missing], X[name][~missing])
