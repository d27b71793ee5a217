"""Mini-batch k-means under the partial distance (``algorithm="minibatch"``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from ul4m4 import UL4M4Imputer
from ul4m4.distance import exact_partial_sq_dists
from ul4m4.minibatch import MAX_NO_IMPROVEMENT, _apply_batch, _Progress


def _blobs(n_per=80, seed=0, rate=0.3):
    """Four well-separated groups seen through two modalities, some slots missing."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [12, 0], [0, 12], [12, 12]], dtype=float)
    truth = np.repeat(np.arange(4), n_per)
    latent = centres[truth] + rng.normal(size=(truth.size, 2))
    X = {"a": np.c_[latent, latent[:, :1] * 0.5] + 0.1 * rng.normal(size=(truth.size, 3)),
         "b": latent @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(truth.size, 4))}
    mask = rng.random((truth.size, 2)) > rate
    mask[~mask.any(axis=1), 0] = True
    for m, name in enumerate(X):
        X[name][~mask[:, m]] = np.nan
    return X, truth


def _fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return UL4M4Imputer(**params).fit(X)


def test_batch_update_is_sculleys_sequential_rule():
    """The batched update equals the per-sample update c += (x - c) / count, in row order."""
    rng = np.random.default_rng(1)
    k, dims = 3, (2, 3)
    estimates = [rng.normal(size=(k, d)) for d in dims]
    carried = np.array([[True, True], [True, False], [False, True]])
    for m, e in enumerate(estimates):
        e[~carried[:, m]] = 0.0
    counts = np.array([[2.0, 1.0], [0.0, 0.0], [0.0, 5.0]])
    expected = [e.copy() for e in estimates]
    expected_counts = counts.copy()
    expected_carried = carried.copy()
    for _ in range(3):  # three batches, so counts carry over
        blocks = [rng.normal(size=(7, d)) for d in dims]
        mask = rng.random((7, 2)) > 0.3
        labels = rng.integers(0, k, size=7)
        for i in range(7):  # the literal rule
            for m in range(2):
                if mask[i, m]:
                    j = labels[i]
                    expected_counts[j, m] += 1
                    expected[m][j] += (blocks[m][i] - expected[m][j]) / expected_counts[j, m]
                    expected_carried[j, m] = True
        _apply_batch(estimates, carried, counts, blocks, mask, labels)
        for m in range(2):
            np.testing.assert_allclose(estimates[m], expected[m], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(counts, expected_counts)
        np.testing.assert_array_equal(carried, expected_carried)


def test_first_members_replace_the_seed_and_add_modalities():
    estimates = [np.array([[5.0]]), np.array([[0.0, 0.0]])]
    carried = np.array([[True, False]])
    counts = np.zeros((1, 2))
    blocks = [np.array([[1.0], [3.0]]), np.array([[2.0, 4.0], [0.0, 0.0]])]
    mask = np.array([[True, True], [True, False]])
    _apply_batch(estimates, carried, counts, blocks, mask, np.array([0, 0]))
    np.testing.assert_array_equal(estimates[0], [[2.0]])  # mean of 1 and 3, seed forgotten
    np.testing.assert_array_equal(estimates[1], [[2.0, 4.0]])  # only the observing member
    assert carried.tolist() == [[True, True]]
    np.testing.assert_array_equal(counts, [[2.0, 1.0]])


def test_stop_rule_counts_steps_without_a_new_minimum():
    progress = _Progress(alpha=0.5)
    assert not progress.update(4.0)
    assert not progress.update(2.0)  # smoothed 3.0: new minimum
    stops = [progress.update(100.0) for _ in range(MAX_NO_IMPROVEMENT)]
    assert stops == [False] * (MAX_NO_IMPROVEMENT - 1) + [True]
    assert progress.smoothed == pytest.approx(100.0 - 97.0 * 0.5 ** MAX_NO_IMPROVEMENT)


def test_final_pass_gives_exact_labels_and_inertia():
    X, _ = _blobs(seed=2)
    imp = _fit(X, n_clusters=4, random_state=0, algorithm="minibatch", batch_size=32)
    z = [(X[n] - imp.mean_[n]) / imp.scale_[n] for n in imp.modalities_]
    mask = np.column_stack([~np.isnan(a).all(axis=1) for a in z])
    z = [np.nan_to_num(a) for a in z]
    centres = [np.nan_to_num((imp.cluster_centers_[n].astype(np.float64) - imp.mean_[n])
                             / imp.scale_[n]) for n in imp.modalities_]
    d2 = exact_partial_sq_dists(z, mask, centres, imp.center_modalities_)
    np.testing.assert_array_equal(imp.labels_, imp.predict(X))
    np.testing.assert_array_equal(imp.labels_, np.argmin(d2, axis=1))
    assert imp.inertia_ == pytest.approx(d2.min(axis=1).sum(), rel=1e-4)


def test_recovers_separated_groups_close_to_lloyd():
    X, truth = _blobs(seed=3)
    lloyd = _fit(X, n_clusters=4, random_state=0)
    mini = _fit(X, n_clusters=4, random_state=0, algorithm="minibatch", batch_size=64)
    assert adjusted_rand_score(truth, mini.labels_) == 1.0
    assert mini.inertia_ <= 1.05 * lloyd.inertia_
    assert mini.converged_ and len(mini.history_) == mini.n_iter_
    assert not np.isnan(mini.transform(X)["b"]).any()


def test_step_budget_is_max_iter_epochs():
    X, _ = _blobs(n_per=50, seed=4)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        imp = UL4M4Imputer(4, random_state=0, algorithm="minibatch", batch_size=30,
                           max_iter=1).fit(X)
    assert imp.n_iter_ == math.ceil(200 / 30) and not imp.converged_


def test_same_seed_same_result_other_seed_other_batches():
    X, _ = _blobs(seed=5)
    a = _fit(X, n_clusters=4, random_state=7, algorithm="minibatch", batch_size=16)
    b = _fit(X, n_clusters=4, random_state=7, algorithm="minibatch", batch_size=16)
    c = _fit(X, n_clusters=4, random_state=8, algorithm="minibatch", batch_size=16)
    assert a.history_ == b.history_
    for n in X:
        np.testing.assert_array_equal(a.cluster_centers_[n], b.cluster_centers_[n])
    assert a.history_ != c.history_


def test_minibatch_on_memory_map_is_bit_identical(tmp_path):
    X, _ = _blobs(seed=6)
    maps = {}
    for name, a in X.items():
        np.save(tmp_path / f"{name}.npy", a)
        maps[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    params = dict(n_clusters=4, random_state=0, algorithm="minibatch", batch_size=40)
    a, b = _fit(X, **params), _fit(maps, **params)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_
    for n in X:
        np.testing.assert_array_equal(a.cluster_centers_[n], b.cluster_centers_[n])


def test_algorithm_is_saved_and_loaded(tmp_path):
    X, _ = _blobs(seed=7)
    imp = _fit(X, n_clusters=4, random_state=0, algorithm="minibatch", batch_size=50)
    imp.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4")
    assert loaded.algorithm == "minibatch" and loaded.batch_size == 50
    for n in X:
        np.testing.assert_array_equal(loaded.transform(X)[n], imp.transform(X)[n])


def test_auto_selection_and_explicit_init_run_with_minibatch():
    X, truth = _blobs(seed=8)
    auto = _fit(X, n_clusters="auto", k_grid=(2, 4), completion="auto", random_state=0,
                algorithm="minibatch", batch_size=64)
    assert auto.n_clusters_ in (2, 4) and auto.selection_ is not None
    rows = [0, 80, 160, 240]
    init = {n: np.where(np.isnan(a[rows]), np.nan, a[rows]) for n, a in X.items()}
    init["a"][:] = np.nan_to_num(init["a"])  # every seed carries "a"
    seeded = _fit(X, n_clusters=4, init=init, algorithm="minibatch", random_state=0,
                  batch_size=64)
    assert adjusted_rand_score(truth, seeded.labels_) == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [({"algorithm": "elkan"}, "algorithm must be one of"),
     ({"algorithm": "minibatch", "reference_one_step": True}, "cannot be combined")],
)
def test_bad_algorithm_parameters(params, message):
    X, _ = _blobs(n_per=10)
    with pytest.raises(ValueError, match=message):
        UL4M4Imputer(2, **params).fit(X)
