"""completion="auto": candidates from the registry, forward ensemble selection on a
subsample, the 2-SE rule, the model budget, and calibrated predicted errors."""

from __future__ import annotations

import numpy as np
import pytest

import ul4m4.auto as auto
from ul4m4 import UL4M4Imputer
from ul4m4.auto import MAX_MODELS, Candidate, registered_candidates
from ul4m4.rules import COMPLETION_RULES, Greedy


def shared(n=800, seed=0, rate=0.35, noise=0.2):
    """Three modalities of one 3-d factor plus four clusters (one fixed distribution;
    ``seed`` draws its rows); a ``rate`` of the blocks missing (never a whole row).
    Returns the data and the complete truth."""
    law = np.random.default_rng(12345)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    c = rng.integers(0, 4, n)
    truth = {}
    for name, d in (("a", 9), ("b", 6), ("c", 5)):
        offsets, loadings = law.normal(scale=2.0, size=(4, d)), law.normal(size=(3, d))
        truth[name] = z @ loadings + offsets[c] + noise * rng.normal(size=(n, d))
    X = {name: v.copy() for name, v in truth.items()}
    drop = rng.random((n, 3)) < rate
    drop[drop.all(axis=1), 0] = False
    for j, name in enumerate(X):
        X[name][drop[:, j]] = np.nan
    return X, truth


def block_mse(imp, X, truth, filled):
    """Mean z-space MSE of the filled blocks."""
    errors = []
    for name in X:
        rows = np.isnan(X[name]).all(axis=1)
        errors.append(np.mean(((filled[name][rows] - truth[name][rows]) / imp.scale_[name]) ** 2))
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def fitted():
    X, truth = shared()
    return UL4M4Imputer("auto", completion="auto", k_grid=(2, 4, 8), random_state=0).fit(X)


def test_candidates_come_from_the_registry():
    cands = registered_candidates((2, 4), n_dims=50, n_rows=100)
    rules = {c.rule for c in cands}
    assert rules == {name for name, rule in COMPLETION_RULES.items()
                     if getattr(rule, "candidates", None) and rule.candidates((2,), 20)}
    assert Candidate("greedy", 2) in cands and Candidate("mixture", 1, rank=40) in cands
    assert Candidate("soft", 4, temperature=0.05) in cands
    # k above the rows the selection sees is dropped; the rank stays below the width
    assert all(c.k <= 3 for c in registered_candidates((2, 4), n_dims=20, n_rows=3))
    assert all(c.rank < 5 for c in registered_candidates((2,), n_dims=5, n_rows=100)
               if c.rank is not None)


def test_a_registered_rule_with_candidates_is_scored_by_auto(monkeypatch):
    class Copy(Greedy):
        def candidates(self, ks, n_dims):
            return tuple({"k": k} for k in ks if k == max(ks))

    monkeypatch.setitem(COMPLETION_RULES, "copy", Copy())  # the one registry line
    X, _ = shared(n=300)
    imp = UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), random_state=0).fit(X)
    rows = [r for r in imp.selection_.table if r["method"] == "copy"]
    greedy = [r for r in imp.selection_.table if r["method"] == "greedy" and r["n_clusters"] == 4]
    assert len(rows) == 1 and rows[0]["n_clusters"] == 4
    # the same fill as greedy at that k, so the same scores
    assert all(rows[0][n] == greedy[0][n] for n in X)


def test_auto_fills_better_than_mean_and_one_k_means(fitted):
    X, truth = shared(seed=1)  # new rows of the same distribution
    got = block_mse(fitted, X, truth, fitted.transform(X))
    greedy = UL4M4Imputer(8, random_state=0).fit(shared()[0])
    mean = UL4M4Imputer(1, random_state=0).fit(shared()[0])
    assert got < 0.8 * block_mse(greedy, X, truth, greedy.transform(X))
    assert got < 0.3 * block_mse(mean, X, truth, mean.transform(X))


def test_ensembles_respect_the_budget_and_weights_sum_to_one_minus_shrinkage(fitted):
    sel, model = fitted.selection_, fitted.model_
    assert 1 <= len(sel.models) <= MAX_MODELS
    assert len({(m.centers.k, None if m.state is None else m.state.rank)
                for m in model.members}) <= MAX_MODELS
    for m, name in enumerate(fitted.modalities_):
        assert model.weights[:, m].sum() == pytest.approx(1 - sel.shrinkage[name])
        assert model.completion[m] == "ensemble"
    assert all(member.rule in COMPLETION_RULES for member in model.members)


def test_observed_blocks_are_untouched_and_std_is_nan_exactly_there(fitted):
    X, _ = shared(seed=2)
    filled, std = fitted.transform(X, return_std=True)
    for name in X:
        observed = ~np.isnan(X[name]).all(axis=1)
        np.testing.assert_array_equal(filled[name][observed], X[name][observed])
        assert np.isnan(std[name][observed]).all()
        assert np.isfinite(std[name][~observed]).all() and (std[name][~observed] > 0).all()


def test_predicted_errors_are_calibrated_and_rank_the_blocks(fitted):
    """On held-out rows: mean(std^2) matches the mean error within 35 %, and the std
    ranks the blocks by their true error (AUROC for the top quarter > 0.6)."""
    X, truth = shared(n=1500, seed=3)
    filled, std = fitted.transform(X, return_std=True)
    predicted, errors = [], []
    for name in X:
        rows = np.isnan(X[name]).all(axis=1)
        z = (filled[name][rows] - truth[name][rows]) / fitted.scale_[name]
        errors.append(np.mean(z**2, axis=1))
        predicted.append(std[name][rows])
    predicted, errors = np.concatenate(predicted), np.concatenate(errors)
    ratio = np.mean(predicted**2) / np.mean(errors)
    assert 0.65 < ratio < 1.35, ratio
    top = errors >= np.quantile(errors, 0.75)
    ranks = np.argsort(np.argsort(predicted)) + 1
    auroc = (ranks[top].sum() - top.sum() * (top.sum() + 1) / 2) / (top.sum() * (~top).sum())
    assert auroc > 0.6, auroc


def test_selection_runs_on_a_bounded_subsample(monkeypatch):
    monkeypatch.setattr(auto, "MAX_SELECTION_ROWS", 300)
    X, _ = shared(n=900)
    imp = UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), random_state=0).fit(X)
    assert imp.selection_.n_rows == 300
    assert 0 < imp.selection_.n_hidden <= 300
    assert imp.labels_.shape == (900,)  # the chosen models are fitted on all rows


def test_auto_is_deterministic():
    X, _ = shared(n=400)
    kw = {"completion": "auto", "k_grid": (2, 4), "random_state": 5}
    a = UL4M4Imputer("auto", **kw).fit(X)
    b = UL4M4Imputer("auto", **kw).fit(X)
    assert repr(a.selection_) == repr(b.selection_)
    fa, sa = a.transform(X, return_std=True)
    fb, sb = b.transform(X, return_std=True)
    for name in X:
        np.testing.assert_array_equal(fa[name], fb[name])
        np.testing.assert_array_equal(sa[name], sb[name])


def test_independent_modalities_keep_the_mean():
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(400, 4)), "b": rng.normal(size=(400, 3))}
    X["a"][::3] = np.nan
    X["b"][1::3] = np.nan
    imp = UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), random_state=0).fit(X)
    assert imp.completion_ == {"a": "mean", "b": "mean"}
    filled, std = imp.transform(X, return_std=True)
    for name in X:
        rows = np.isnan(X[name]).all(axis=1)
        np.testing.assert_allclose(filled[name][rows], np.broadcast_to(
            imp.mean_[name], filled[name][rows].shape), rtol=1e-6)
        np.testing.assert_allclose(std[name][rows], np.sqrt(imp.model_.calibration[
            imp.modalities_.index(name)]))


def test_one_row_alone_equals_the_batch(fitted):
    """Each rule's fill depends on its row only, so the blend does too."""
    X, _ = shared(n=50, seed=4)
    batch, batch_std = fitted.transform(X, return_std=True)
    for i in range(0, 50, 7):
        row = {name: X[name][i:i + 1] for name in X}
        one, one_std = fitted.transform(row, return_std=True)
        for name in X:
            np.testing.assert_array_equal(one[name][0], batch[name][i])
            np.testing.assert_array_equal(one_std[name][0], batch_std[name][i])


def test_engines_give_the_same_auto_model_and_fills():
    """The selection, the mixtures' EM and every fill run on host blocks read through the
    engine: torch gives the NumPy bits; Dask's statistics are sums over its row blocks,
    so its fills agree to rounding."""
    pytest.importorskip("torch")
    X, _ = shared(n=500)
    kw = {"completion": "auto", "k_grid": (2, 4), "random_state": 0}
    ref = UL4M4Imputer("auto", **kw).fit(X)
    fills, std = ref.transform(X, return_std=True)
    torch_imp = UL4M4Imputer("auto", backend="torch", **kw).fit(X)
    assert repr(torch_imp.selection_) == repr(ref.selection_)
    t_fills, t_std = torch_imp.transform(X, return_std=True)
    for name in X:
        np.testing.assert_array_equal(np.asarray(t_fills[name]), fills[name])
        np.testing.assert_array_equal(np.asarray(t_std[name]), std[name])
    da = pytest.importorskip("dask.array")
    Xd = {name: da.from_array(v, chunks=(150, -1)) for name, v in X.items()}
    dask_imp = UL4M4Imputer("auto", backend="dask", **kw).fit(Xd)
    assert repr(dask_imp.selection_) == repr(ref.selection_)
    d_fills, d_std = dask_imp.transform(Xd, return_std=True)
    for name in X:
        np.testing.assert_allclose(np.asarray(d_fills[name]), fills[name], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(d_std[name]), std[name], rtol=1e-10)


def test_explicit_initial_centres_limit_auto_to_their_k():
    X, _ = shared(n=300)
    init = {name: np.nan_to_num(values[:3]) for name, values in X.items()}
    imp = UL4M4Imputer(3, completion="auto", init=init, random_state=0).fit(X)
    assert {row["n_clusters"] for row in imp.selection_.table[1:]} == {3}
    assert all(member.centers.k == 3 for member in imp.model_.members)
