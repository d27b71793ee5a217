"""Baselines: the common interface, and each method against an independent computation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.impute import KNNImputer

from ul4m4 import UL4M4Imputer
from ul4m4.baselines import (
    MeanImputer,
    NearestSampleImputer,
    SoftImputeBaseline,
    UL4M4Method,
    ZeroImputer,
    available_methods,
    make_method,
    method_parameters,
)
from ul4m4.baselines.softimpute import SHRINKAGE_GRID
from ul4m4.metrics import block_mse, hidden_mask
from ul4m4.missingness import apply_mask, independent_mask, mask_from_data

HAS_IMML = importlib.util.find_spec("imml") is not None

FAST_PARAMS = {
    "ul4m4": {"n_clusters": 3, "random_state": 0},
    "ul4m4-onestep": {"n_clusters": 3, "random_state": 0},
    "iterative": {"max_iter": 2, "n_nearest_features": 4, "random_state": 0},
    "knn": {"n_neighbors": 3},
    "mofa": {"n_components": 2, "max_iter": 50, "random_state": 0},
}


def _data(n: int, seed: int, rates=(0.6, 0.7, 0.5)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    X = {
        "text": latent @ rng.normal(size=(2, 4)) * 3.0 + 10.0 + 0.1 * rng.normal(size=(n, 4)),
        "image": latent @ rng.normal(size=(2, 3)) - 5.0 + 0.1 * rng.normal(size=(n, 3)),
        "audio": latent @ rng.normal(size=(2, 5)) * 0.01 + 0.001 * rng.normal(size=(n, 5)),
    }
    return apply_mask(X, independent_mask(n, list(rates), random_state=seed))


@pytest.fixture(scope="module")
def train() -> dict[str, np.ndarray]:
    return _data(40, 0)


@pytest.fixture(scope="module")
def test() -> dict[str, np.ndarray]:
    return _data(17, 1)


def _methods() -> list[str]:
    return [m for m in available_methods() if m != "mofa" or HAS_IMML]


@pytest.mark.parametrize("name", _methods())
def test_interface_fills_everything_and_keeps_observed_rows(name, train, test):
    method = make_method(name, **FAST_PARAMS.get(name, {}))
    assert method.fit(train) is method
    assert isinstance(method.name, str) and method.name == name
    assert isinstance(method.transductive, bool)
    for X in (train, test):
        mask = mask_from_data(X)
        filled = method.transform(X)
        assert list(filled) == list(X)
        for m, key in enumerate(X):
            assert filled[key].shape == X[key].shape
            assert filled[key].dtype == X[key].dtype
            assert not np.isnan(filled[key]).any()
            # bit-identical, not merely close
            assert filled[key][mask[:, m]].tobytes() == X[key][mask[:, m]].tobytes()
        # the input is never modified
        assert np.isnan(X["text"][~mask[:, 0]]).all()


@pytest.mark.parametrize("name", [m for m in _methods() if m != "iterative"])
def test_float32_input_and_reordered_keys(name, train, test):
    method = make_method(name, **FAST_PARAMS.get(name, {})).fit(train)
    X32 = {k: test[k].astype(np.float32) for k in reversed(list(test))}
    filled = method.transform(X32)
    assert list(filled) == list(X32)
    for key, value in filled.items():
        assert value.dtype == np.float32
        observed = ~np.isnan(X32[key]).all(axis=1)
        np.testing.assert_array_equal(value[observed], X32[key][observed])


def test_only_transductive_method_is_mofa():
    for name in available_methods():
        assert make_method(name).transductive == (name == "mofa")


def test_zero_and_mean(train, test):
    zero = ZeroImputer().fit(train).transform(test)
    mean = MeanImputer().fit(train).transform(test)
    mask = mask_from_data(test)
    for m, key in enumerate(test):
        missing = ~mask[:, m]
        assert (zero[key][missing] == 0).all()
        expected = np.nanmean(train[key], axis=0)
        np.testing.assert_allclose(
            mean[key][missing],
            np.broadcast_to(expected, (missing.sum(), expected.size)),
            rtol=1e-12,
        )


def test_statistics_match_numpy(train):
    method = MeanImputer().fit(train)
    for key, value in train.items():
        np.testing.assert_allclose(method.mean_[key], np.nanmean(value, axis=0), rtol=1e-12)
        np.testing.assert_allclose(method.scale_[key], np.nanstd(value, axis=0, ddof=1), rtol=1e-10)


def test_knn_is_sklearn_on_zscored_blocks(train, test):
    method = make_method("knn", n_neighbors=3).fit(train)
    mu = {k: np.nanmean(v, 0) for k, v in train.items()}
    sd = {k: np.nanstd(v, 0, ddof=1) for k, v in train.items()}
    z = lambda X: np.hstack([(X[k] - mu[k]) / sd[k] for k in X])  # noqa: E731
    reference = KNNImputer(n_neighbors=3).fit(z(train)).transform(z(test))
    filled = method.transform(test)
    start = 0
    for key in test:
        d = test[key].shape[1]
        expected = reference[:, start : start + d] * sd[key] + mu[key]
        np.testing.assert_allclose(filled[key], expected, rtol=1e-9, atol=1e-12)
        start += d


def test_iterative_records_convergence(train):
    method = make_method("iterative", max_iter=1, n_nearest_features=3, random_state=0)
    method.fit(train)
    assert method.converged_ in (True, False)


def _literal_nearest(train, X):
    """Per-sample, per-modality loop over the training set: the definition, in float64."""
    names = list(train)
    mu = {k: np.nanmean(v, 0) for k, v in train.items()}
    sd = {k: np.nanstd(v, 0, ddof=1) for k, v in train.items()}
    tmask, xmask = mask_from_data(train), mask_from_data(X)
    out = {k: np.array(v, copy=True) for k, v in X.items()}
    for i in range(xmask.shape[0]):
        for m, key in enumerate(names):
            if xmask[i, m]:
                continue
            best, best_j = np.inf, -1
            for j in range(tmask.shape[0]):
                if not tmask[j, m]:
                    continue
                total, count = 0.0, 0
                for o, other in enumerate(names):
                    if xmask[i, o] and tmask[j, o]:
                        zi = (X[other][i] - mu[other]) / sd[other]
                        zj = (train[other][j] - mu[other]) / sd[other]
                        total += np.sum((zi - zj) ** 2) / zi.size
                        count += 1
                if count and total / count < best:
                    best, best_j = total / count, j
            out[key][i] = train[key][best_j] if best_j >= 0 else mu[key]
    return out


@pytest.mark.parametrize("batch_size", [None, 3])
def test_nearest_matches_literal_loop(batch_size):
    train, X = _data(15, 3, rates=(0.5, 0.6, 0.7)), _data(9, 4, rates=(0.5, 0.6, 0.7))
    method = NearestSampleImputer(batch_size=batch_size).fit(train)
    expected = _literal_nearest(train, X)
    got = method.transform(X)
    for key in X:
        np.testing.assert_array_equal(got[key], expected[key])
    # on the training set itself a sample never donates to itself
    expected_train = _literal_nearest(train, train)
    got_train = method.transform(train)
    for key in train:
        np.testing.assert_array_equal(got_train[key], expected_train[key])
    donors = method.donors_
    assert not (donors == np.arange(len(donors))[:, None]).any()


def test_nearest_falls_back_to_mean_without_a_shared_modality():
    nan = np.nan
    train = {
        "a": np.array([[1.0], [3.0], [nan], [nan]]),
        "b": np.array([[nan], [nan], [5.0], [7.0]]),
    }
    X = {"a": np.array([[nan]]), "b": np.array([[6.0]])}
    method = NearestSampleImputer().fit(train)
    filled = method.transform(X)
    assert filled["a"][0, 0] == 2.0
    assert method.n_from_mean_ == 1


def test_nearest_tie_goes_to_lowest_index():
    nan = np.nan
    train = {
        "a": np.array([[0.0], [2.0], [0.0], [2.0]]),
        "b": np.array([[10.0], [20.0], [30.0], [40.0]]),
    }
    X = {"a": np.array([[1.0]]), "b": np.array([[nan]])}
    assert NearestSampleImputer().fit(train).transform(X)["b"][0, 0] == 10.0


def test_ul4m4_method_is_the_imputer(train, test):
    method = make_method("ul4m4", n_clusters=3, random_state=0).fit(train)
    direct = UL4M4Imputer(n_clusters=3, random_state=0, empty="mean").fit(train)
    for key, value in direct.transform(test).items():
        np.testing.assert_array_equal(method.transform(test)[key], value)
    np.testing.assert_array_equal(method.predict(test), direct.predict(test))
    np.testing.assert_array_equal(method.labels_, direct.labels_)


def test_onestep_variant(train):
    method = make_method("ul4m4-onestep", n_clusters=3, random_state=0).fit(train)
    assert method.name == "ul4m4-onestep"
    assert method.imputer_.reference_one_step is True
    assert UL4M4Method(reference_one_step=True).name == "ul4m4-onestep"


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_method("nope")
    with pytest.raises(TypeError):
        make_method("knn", n_clusters=3)
    with pytest.raises(TypeError, match="reference_one_step"):
        make_method("ul4m4-onestep", reference_one_step=False)
    assert "n_neighbors" in method_parameters("knn")
    assert "random_state" in method_parameters("ul4m4")
    assert "reference_one_step" not in method_parameters("ul4m4-onestep")
    assert "random_state" not in method_parameters("mean")


def test_not_fitted_and_scarce_modality(train):
    with pytest.raises(NotFittedError):
        MeanImputer().transform(train)
    scarce = {k: v.copy() for k, v in train.items()}
    scarce["audio"][1:] = np.nan
    with pytest.raises(ValueError, match="at least 2"):
        MeanImputer().fit(scarce)


def test_wrong_modalities_rejected(train):
    method = MeanImputer().fit(train)
    with pytest.raises(ValueError, match="missing modalities"):
        method.transform({"text": train["text"]})


@pytest.mark.skipif(HAS_IMML, reason="imml is installed")
def test_mofa_without_imml_says_how_to_install(train):
    with pytest.raises(ImportError, match="pip install imml"):
        make_method("mofa").fit(train)


def test_imputer_params_are_forwarded(train):
    method = make_method(
        "ul4m4", n_clusters=3, random_state=0, imputer_params={"completion": "soft"}
    ).fit(train)
    assert method.imputer_.completion == "soft"
    assert method.imputer_.empty == "mean"


def _low_rank(n: int, seed: int, rank: int = 3) -> dict[str, np.ndarray]:
    """Exactly rank-``rank`` data (plus per-modality offsets and scales), no noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, rank))
    world = np.random.default_rng(100)
    return {
        name: (latent @ world.normal(size=(rank, d))) * world.uniform(0.5, 3.0, size=d)
        + world.normal(scale=4.0, size=d)
        for name, d in (("a", 6), ("b", 8), ("c", 5))
    }


def test_softimpute_recovers_exactly_low_rank_blocks():
    X_train, X_new = _low_rank(300, 0), _low_rank(80, 1)
    train = apply_mask(X_train, independent_mask(300, [0.6, 0.6, 0.6], random_state=0))
    new = apply_mask(X_new, independent_mask(80, [0.6, 0.6, 0.6], random_state=1))
    method = make_method("softimpute").fit(train)
    filled = method.transform(new)
    scores = block_mse(X_new, filled, hidden_mask(X_new, new), method.scale_)
    assert scores["all"] < 0.01  # the mean fill scores about 1
    mean_fill = MeanImputer().fit(train).transform(new)
    assert block_mse(X_new, mean_fill, hidden_mask(X_new, new), method.scale_)["all"] > 0.5


def test_softimpute_fills_from_the_training_fit_only():
    train = apply_mask(_low_rank(200, 0), independent_mask(200, [0.5, 0.5, 0.5], random_state=0))
    new = apply_mask(_low_rank(60, 2), independent_mask(60, [0.5, 0.5, 0.5], random_state=2))
    method = SoftImputeBaseline(rank=5).fit(train)
    loadings, noise = method.loadings_.copy(), method.noise_
    whole = method.transform(new)
    # Same model afterwards, and a row's fill does not depend on the rows sent with it.
    np.testing.assert_array_equal(method.loadings_, loadings)
    assert method.noise_ == noise
    half = method.transform({k: v[30:] for k, v in new.items()})
    for name in new:
        np.testing.assert_allclose(half[name], whole[name][30:], rtol=1e-12, atol=1e-12)
    # The fill of a row is the ridge code on its observed z-coordinates, literally.
    row = int(np.flatnonzero(np.isnan(new["a"][:, 0]) & ~np.isnan(new["b"][:, 0]))[0])
    z = {k: (new[k][row] - method.mean_[k]) / method.scale_[k] for k in new}
    dims = {"a": slice(0, 6), "b": slice(6, 14), "c": slice(14, 19)}
    observed = [k for k in new if not np.isnan(z[k][0])]
    L_obs = np.vstack([method.loadings_[dims[k]] for k in observed])
    z_obs = np.concatenate([z[k] for k in observed])
    code = np.linalg.solve(L_obs.T @ L_obs + noise * np.eye(L_obs.shape[1]), L_obs.T @ z_obs)
    expected = method.loadings_[dims["a"]] @ code * method.scale_["a"] + method.mean_["a"]
    np.testing.assert_allclose(whole["a"][row], expected, rtol=1e-9, atol=1e-9)


def test_softimpute_auto_shrinkage_is_the_best_held_out_share_and_seeded():
    train = apply_mask(_low_rank(200, 0), independent_mask(200, [0.5, 0.5, 0.5], random_state=0))
    rng = np.random.default_rng(5)
    noisy = {k: v + rng.normal(scale=2.0, size=v.shape) for k, v in train.items()}
    method = SoftImputeBaseline(random_state=0).fit(noisy)
    scores = method.shrinkage_scores_
    assert list(scores) == list(SHRINKAGE_GRID)
    assert method.shrinkage_ == min(scores, key=scores.get)
    assert method.lambda_ > 0
    again = SoftImputeBaseline(random_state=0).fit(noisy)
    assert again.shrinkage_scores_ == scores
    np.testing.assert_array_equal(again.loadings_, method.loadings_)
    fixed = SoftImputeBaseline(shrinkage=0.05).fit(noisy)
    assert fixed.shrinkage_ == 0.05 and fixed.shrinkage_scores_ == {}


def test_softimpute_rejects_bad_parameters_and_input(train):
    for params, word in (({"rank": 0}, "rank"), ({"shrinkage": -0.1}, "shrinkage"),
                         ({"shrinkage": "big"}, "shrinkage"),
                         ({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol")):
        with pytest.raises(ValueError, match=word):
            SoftImputeBaseline(**params).fit(train)
    with pytest.raises(NotFittedError):
        SoftImputeBaseline().transform(train)
    scarce = {k: v.copy() for k, v in train.items()}
    scarce["audio"][1:] = np.nan
    with pytest.raises(ValueError, match="at least 2"):
        SoftImputeBaseline().fit(scarce)
    with pytest.raises(ValueError, match="missing modalities"):
        SoftImputeBaseline().fit(train).transform({"text": train["text"]})
