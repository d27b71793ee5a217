"""ul4m4.selection: label-free model selection (completion="auto", n_clusters="auto")."""

from __future__ import annotations

import numpy as np
import pytest
from _data import clustered, independent

from ul4m4 import UL4M4Imputer
from ul4m4.selection import hide_blocks


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
    X = independent()
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 4, 8)).fit(X)
    assert set(imp.completion_.values()) == {"mean"}, imp.selection_.to_markdown()
    assert imp.n_clusters_ in (2, 4, 8)


def test_auto_picks_a_clustered_completion_for_shared_clusters():
    X, _ = clustered()
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 5, 10)).fit(X)
    assert "mean" not in imp.completion_.values(), imp.selection_.to_markdown()
    # the ensembles draw on models with k >= 5 (the data have five clusters)
    assert all(key.k >= 5 for key in imp.selection_.models), imp.selection_.models
    rows = imp.selection_.table
    # every registered rule that lists candidates is scored, and the mean
    assert {r["method"] for r in rows} == {"greedy", "soft", "mixture", "mean"}
    scored = {r["n_clusters"] for r in rows if r["method"] != "mean"}
    assert scored == {1, 2, 5, 10}  # the mixture adds k = 1 (probabilistic PCA)


def test_selection_is_deterministic_and_ignores_labels():
    X, labels = clustered(seed=5)
    a = UL4M4Imputer("auto", completion="auto", random_state=3, k_grid=(2, 5)).fit(X, labels)
    b = UL4M4Imputer("auto", completion="auto", random_state=3, k_grid=(2, 5)).fit(
        X, np.zeros_like(labels))
    assert a.selection_.table == b.selection_.table
    assert a.completion_ == b.completion_ and a.n_clusters_ == b.n_clusters_
    for name in X:
        np.testing.assert_array_equal(a.transform(X)[name], b.transform(X)[name])


def test_auto_beats_mean_on_hidden_blocks_of_clustered_data():
    X, _ = clustered(n=600, seed=7)
    truth, _ = clustered(n=600, seed=7, rate=0.0)
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
    X, _ = clustered(seed=9)
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
    X, _ = clustered(n=50)
    with pytest.raises(ValueError, match=match):
        UL4M4Imputer(**params).fit(X)


def test_auto_model_round_trips(tmp_path):
    X, _ = clustered(n=200, seed=11)
    imp = UL4M4Imputer("auto", completion="auto", random_state=0, k_grid=(2, 5)).fit(X)
    imp.save(tmp_path / "auto.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "auto.ul4m4")
    assert loaded.completion_ == imp.completion_ and loaded.n_clusters_ == imp.n_clusters_
    assert loaded.selection_.to_markdown() == imp.selection_.to_markdown()
    for name in X:
        np.testing.assert_array_equal(loaded.transform(X)[name], imp.transform(X)[name])


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_shrinkage_pulls_filled_values_toward_the_mean(completion):
    X, _ = clustered(n=120, seed=13)
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
