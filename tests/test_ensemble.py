"""The completion ensemble (``n_ensemble``): averaged fills of independently seeded fits."""

from __future__ import annotations

import copy
import dataclasses
import zipfile

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4.persistence import ModelFileError


def _clustered(n=240, seed=0, share=0.5):
    """Three modalities built from 6 shared clusters, about ``share`` of the slots missing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, n)
    X = {}
    for name, d in (("a", 5), ("b", 3), ("c", 4)):
        centres = rng.normal(scale=3.0, size=(6, d))
        X[name] = centres[labels] + rng.normal(size=(n, d))
    keep = rng.random((n, 3)) >= share
    keep[np.arange(n), rng.integers(0, 3, n)] = True  # no empty sample
    masked = {}
    for m, (name, a) in enumerate(X.items()):
        b = a.copy()
        b[~keep[:, m]] = np.nan
        masked[name] = b
    return X, masked, keep


def _member_imputer(imp: UL4M4Imputer, member) -> UL4M4Imputer:
    """A single-model imputer that holds one ensemble member as its model."""
    single = copy.deepcopy(imp)
    single.model_ = dataclasses.replace(imp.model_, members=[member])
    return single


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_ensemble_fill_is_the_mean_of_the_members_fills(completion):
    _, Xm, keep = _clustered()
    imp = UL4M4Imputer(n_clusters=5, completion=completion, n_ensemble=4, random_state=0,
                       dtype=np.float64).fit(Xm)
    assert imp.n_ensemble_ == 4 and len(imp.ensemble_centers_) == 3
    out = imp.transform(Xm)
    fills = [_member_imputer(imp, member).transform(Xm) for member in imp.model_.members]
    for m, name in enumerate(Xm):
        expected = np.mean([f[name] for f in fills], axis=0)
        np.testing.assert_allclose(out[name], expected, rtol=1e-12, atol=1e-12)
        # Observed rows are the caller's values, bit for bit.
        assert np.array_equal(out[name][keep[:, m]], Xm[name][keep[:, m]])
    # The members are distinct fits (different seeds), not copies of the first.
    first = imp.cluster_centers_["a"]
    assert any(not np.array_equal(first, other["a"], equal_nan=True)
               for other in imp.ensemble_centers_)


def test_ensemble_error_is_at_most_the_members_mean_error():
    # Convexity: the squared error of an average never exceeds the average squared error.
    X, Xm, keep = _clustered(seed=3)
    imp = UL4M4Imputer(n_clusters=8, completion="soft", n_ensemble=5, random_state=1).fit(Xm)
    out = imp.transform(Xm)
    members = [_member_imputer(imp, mem).transform(Xm) for mem in imp.model_.members]
    for m, name in enumerate(X):
        hidden = ~keep[:, m]
        err = np.sum((out[name][hidden] - X[name][hidden]) ** 2)
        member_err = np.mean([np.sum((f[name][hidden] - X[name][hidden]) ** 2) for f in members])
        assert err <= member_err * (1 + 1e-6)


def test_auto_completion_seeds_each_chosen_model_n_ensemble_times():
    _, Xm, _ = _clustered(n=200)
    kw = {"n_clusters": "auto", "completion": "auto", "k_grid": (2, 4), "random_state": 0}
    one = UL4M4Imputer(**kw).fit(Xm)
    # one member per chosen candidate, one seeding each by default
    chosen = {row for pairs in one.selection_.ensemble.values() for row, _ in pairs}
    assert one.n_ensemble_ == len(chosen) >= 1
    two = UL4M4Imputer(n_ensemble=2, **kw).fit(Xm)
    assert two.n_ensemble_ == 2 * one.n_ensemble_
    w1, w2 = one.model_.weights, two.model_.weights
    np.testing.assert_allclose(w2[: len(w1)] + w2[len(w1):], w1)  # each seeding half
    assert UL4M4Imputer(n_clusters=4, random_state=0).fit(Xm).n_ensemble_ == 1


def test_ensemble_is_deterministic_and_refit_resets_members():
    _, Xm, _ = _clustered()
    a = UL4M4Imputer(n_clusters=4, n_ensemble=3, random_state=7).fit(Xm).transform(Xm)
    b = UL4M4Imputer(n_clusters=4, n_ensemble=3, random_state=7).fit(Xm).transform(Xm)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    imp = UL4M4Imputer(n_clusters=4, n_ensemble=3, random_state=7).fit(Xm)
    imp.set_params(n_ensemble=1).fit(Xm)
    assert imp.n_ensemble_ == 1 and imp.ensemble_centers_ == []


def test_sources_are_refused_for_an_ensemble():
    _, Xm, _ = _clustered()
    imp = UL4M4Imputer(n_clusters=4, n_ensemble=2, random_state=0).fit(Xm)
    with pytest.raises(ValueError, match="n_ensemble=2"):
        imp.transform(Xm, return_sources=True)
    with pytest.raises(ValueError, match="n_ensemble=1"):
        imp.transform(Xm, return_weights=True)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
def test_bad_n_ensemble(bad):
    _, Xm, _ = _clustered(n=60)
    with pytest.raises((ValueError, TypeError), match="n_ensemble"):
        UL4M4Imputer(n_clusters=2, n_ensemble=bad).fit(Xm)


def test_ensemble_save_load_round_trip(tmp_path):
    _, Xm, _ = _clustered()
    imp = UL4M4Imputer(n_clusters=4, completion="soft", n_ensemble=3, random_state=0).fit(Xm)
    path = tmp_path / "model.ul4m4"
    imp.save(path)
    loaded = UL4M4Imputer.load(path)
    assert loaded.n_ensemble_ == 3
    a, b = imp.transform(Xm), loaded.transform(Xm)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    for mine, theirs in zip(imp.ensemble_centers_, loaded.ensemble_centers_, strict=True):
        assert all(np.array_equal(mine[n], theirs[n], equal_nan=True) for n in mine)


def test_a_model_file_missing_a_member_is_refused(tmp_path):
    _, Xm, _ = _clustered()
    imp = UL4M4Imputer(n_clusters=4, n_ensemble=2, random_state=0).fit(Xm)
    good = tmp_path / "good.ul4m4"
    imp.save(good)
    bad = tmp_path / "bad.ul4m4"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            if item.filename != "arrays/ensemble/1/centers_z/0.npy":
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ModelFileError, match="ensemble/1/centers_z/0"):
        UL4M4Imputer.load(bad)
