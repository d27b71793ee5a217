"""ul4m4.mixture: the conditional low-rank mixture against literal Gaussian conditioning."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from _data import clustered
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import ul4m4.mixture as mixture_module
from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.complete import soft_complete
from ul4m4.distance import error_factor
from ul4m4.inference import transform_view
from ul4m4.mixture import Mixture, conditional_fill, fit_mixture, log_likelihood
from ul4m4.settings import resolve_settings


# ------------------------------------------------------------------ helpers
def random_mixture(rng, k, r, dims) -> Mixture:
    w = rng.random(k) + 0.2
    return Mixture(np.log(w / w.sum()), [rng.normal(scale=1.5, size=(k, d)) for d in dims],
                   [rng.normal(scale=0.7, size=(d, r)) for d in dims],
                   [rng.uniform(0.2, 1.5, d) for d in dims])


def random_rows(rng, n, dims):
    mask = rng.random((n, len(dims))) > 0.45
    mask[np.arange(n), rng.integers(0, len(dims), n)] = True
    blocks = [np.where(mask[:, [m]], rng.normal(scale=2.0, size=(n, d)), 0.0)
              for m, d in enumerate(dims)]
    return blocks, mask


def literal_conditioning(mix: Mixture, blocks, mask, i, temperature):
    """Row i: fills, variances and log density by the textbook Gaussian formulas."""
    dims = [mu.shape[1] for mu in mix.means]
    owner = np.repeat(np.arange(len(dims)), dims)
    mu = np.hstack(mix.means)
    w = np.vstack(mix.loadings)
    cov = w @ w.T + np.diag(np.concatenate(mix.noise))
    z = np.concatenate([b[i] for b in blocks])
    o, h = mask[i][owner], ~mask[i][owner]
    gain = cov[np.ix_(h, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
    cond_cov = cov[np.ix_(h, h)] - gain @ cov[np.ix_(o, h)]
    cond_mean = mu[:, h] + (z[o] - mu[:, o]) @ gain.T  # (K, |h|)
    diff = z[o] - mu[:, o]
    delta = np.einsum("kd,de,ke->k", diff, np.linalg.inv(cov[np.ix_(o, o)]), diff)
    pi = np.exp(mix.log_weights)
    if temperature is None:
        gamma = pi * np.exp(-(delta - delta.min()) / 2)
    else:
        gamma = np.exp(-(delta - delta.min()) / (temperature * np.median(delta))) * pi
    gamma /= gamma.sum()
    fill = gamma @ cond_mean
    fills, variances = {}, {}
    for m in np.flatnonzero(~mask[i]):
        cols = owner[h] == m
        spread = gamma @ np.sum((cond_mean[:, cols] - fill[cols]) ** 2, axis=1)
        fills[m] = fill[cols]
        variances[m] = (spread + np.trace(cond_cov[np.ix_(cols, cols)])) / dims[m]
    dens = [multivariate_normal(mu[c, o], cov[np.ix_(o, o)]).logpdf(z[o])
            for c in range(mix.k)]
    return fills, variances, logsumexp(np.array(dens) + mix.log_weights)


def fitted(X, k, dtype=np.float64):
    imp = UL4M4Imputer(k, random_state=0, dtype=dtype).fit(X)
    engine = NumpyEngine()
    view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    return imp, engine, view


def low_rank_clusters(n, seed, rate=0.35, noise=0.3, dims=(6, 5, 4)):
    """Two clusters that share a rank-2 subspace: within a cluster modalities co-vary."""
    rng = np.random.default_rng(seed)
    params = np.random.default_rng(99)  # the same model for every seed
    centres = params.normal(scale=2.0, size=(2, sum(dims)))
    load = params.normal(size=(sum(dims), 2))
    labels = rng.integers(0, 2, n)
    full = centres[labels] + rng.normal(size=(n, 2)) @ load.T + noise * rng.normal(
        size=(n, sum(dims)))
    parts = np.split(full, np.cumsum(dims)[:-1], axis=1)
    mask = rng.random((n, len(dims))) > rate
    mask[np.arange(n), rng.integers(0, len(dims), n)] = True
    X = {f"m{m}": np.where(mask[:, [m]], p, np.nan) for m, p in enumerate(parts)}
    return X, {f"m{m}": p for m, p in enumerate(parts)}, mask


# -------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("temperature", [None, 0.3])
def test_fill_is_the_gaussian_conditional_of_every_row(seed, temperature):
    rng = np.random.default_rng(seed)
    dims = list(rng.integers(1, 5, rng.integers(2, 5)))
    mix = random_mixture(rng, int(rng.integers(1, 5)), int(rng.integers(0, 4)), dims)
    blocks, mask = random_rows(rng, 15, dims)
    fills, variance = conditional_fill(mix, blocks, mask, temperature)
    loglik = log_likelihood(mix, blocks, mask)
    for i in range(mask.shape[0]):
        want, want_var, want_ll = literal_conditioning(mix, blocks, mask, i, temperature)
        for m in range(len(dims)):
            if mask[i, m]:
                assert np.isnan(variance[i, m])
                np.testing.assert_array_equal(fills[m][i], blocks[m][i])
            else:
                np.testing.assert_allclose(fills[m][i], want[m], rtol=1e-9, atol=1e-10)
                np.testing.assert_allclose(variance[i, m], want_var[m], rtol=1e-9)
        np.testing.assert_allclose(loglik[i], want_ll, rtol=1e-10)


def test_rows_with_nothing_observed_get_the_prior_mean_and_variance():
    rng = np.random.default_rng(1)
    mix = random_mixture(rng, 3, 2, [3, 2])
    fills, variance = conditional_fill(mix, [np.zeros((1, 3)), np.zeros((1, 2))],
                                       np.zeros((1, 2), dtype=bool))
    pi = np.exp(mix.log_weights)
    for m in range(2):
        np.testing.assert_allclose(fills[m][0], pi @ mix.means[m])
        cov = mix.loadings[m] @ mix.loadings[m].T + np.diag(mix.noise[m])
        spread = pi @ np.sum((mix.means[m] - pi @ mix.means[m]) ** 2, axis=1)
        np.testing.assert_allclose(variance[0, m], (np.trace(cov) + spread) / cov.shape[0])


def literal_factor_analysis(z, mu, w, psi, n_iter):
    """EM for z = mu + W t + e, t ~ N(0, I), e ~ N(0, diag psi), row by row."""
    n, r = z.shape[0], w.shape[1]
    for _ in range(n_iter):
        exx, exz, rows = np.zeros((r + 1, r + 1)), np.zeros((r + 1, z.shape[1])), []
        s = np.linalg.inv(np.eye(r) + w.T @ (w / psi[:, None]))
        for zi in z:
            e = s @ w.T @ ((zi - mu) / psi)
            x = np.concatenate([[1.0], e])
            second = np.outer(x, x)
            second[1:, 1:] += s
            exx += second
            exz += np.outer(x, zi)
            rows.append(e)
        theta = np.linalg.solve(exx, exz)
        mu, w = theta[0], theta[1:].T
        resid = sum((zi - mu - w @ e) ** 2 + np.diag(w @ s @ w.T) for zi, e in zip(z, rows, strict=True))
        psi = resid / n
    return mu, w, psi


def test_one_cluster_is_factor_analysis_em():
    X, _, _ = low_rank_clusters(250, seed=3, rate=0.0)
    imp, engine, view = fitted(X, 1)
    start = fit_mixture(view, engine, imp.model_.members[0].centers, imp.model_.labels, rank=2,
                        prior_count=0.0, ridge=0.0, n_iter=0, rng=np.random.RandomState(0))
    mix = fit_mixture(view, engine, imp.model_.members[0].centers, imp.model_.labels, rank=2,
                      prior_count=0.0, ridge=0.0, n_iter=6, rng=np.random.RandomState(0))
    z = np.hstack(engine.take(view, np.arange(view.n_samples))[0]).astype(np.float64)
    mu, w, psi = literal_factor_analysis(z, np.hstack(start.means)[0], np.vstack(start.loadings),
                                         np.concatenate(start.noise), 6)
    got_w = np.vstack(mix.loadings)
    np.testing.assert_allclose(got_w @ got_w.T + np.diag(np.concatenate(mix.noise)),
                               w @ w.T + np.diag(psi), atol=1e-8)
    np.testing.assert_allclose(np.hstack(mix.means)[0], mu, atol=1e-8)
    np.testing.assert_array_equal(mix.log_weights, [0.0])
    # its fill is the Gaussian conditional mean
    mask = np.array([[True, False, True], [False, True, False]])
    rows = [b[:2] * mask[:, [m]] for m, b in enumerate(engine.take(view, np.arange(2))[0])]
    fills, _ = conditional_fill(mix, rows, mask)
    cov = got_w @ got_w.T + np.diag(np.concatenate(mix.noise))
    owner = np.repeat(np.arange(3), [6, 5, 4])
    full = np.hstack(mix.means)[0]
    for i in range(2):
        o, h = mask[i][owner], ~mask[i][owner]
        want = full[h] + cov[np.ix_(h, o)] @ np.linalg.solve(cov[np.ix_(o, o)],
                                                              z[i, o] - full[o])
        got = np.concatenate([fills[m][i] for m in np.flatnonzero(~mask[i])])
        np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_rank_zero_with_equal_noise_per_dimension_is_the_soft_rule(temperature):
    X, _ = clustered(seed=2)
    imp, engine, view = fitted(X, 5)
    centers, plan = imp.model_.members[0].centers, imp.model_.members[0].plan
    assert centers.mask.all()
    dims = imp.model_.dims
    mix = Mixture(np.full(5, -np.log(5)), [b.astype(np.float64) for b in centers.blocks],
                  [np.zeros((d, 0)) for d in dims], [np.full(d, 0.7 * d) for d in dims])
    blocks, mask = engine.take(view, np.arange(view.n_samples))
    fills, _ = conditional_fill(mix, blocks, mask, temperature)
    out = [b.astype(np.float64) for b in blocks]
    soft_complete(view, plan, plan.exact_blocks, [temperature] * len(dims), out,
                  error_factor(dims, view.dtype))
    for m in range(len(dims)):
        missing = ~mask[:, m]
        assert missing.sum() > 50
        np.testing.assert_allclose(fills[m][missing], out[m][missing], rtol=0, atol=1e-12)


@pytest.mark.parametrize("temperature", [None, 0.3])
def test_a_rows_fill_does_not_depend_on_its_batch(temperature):
    rng = np.random.default_rng(4)
    dims = [7, 3, 5, 2]
    mix = random_mixture(rng, 11, 3, dims)  # K > 8: NumPy sums the weights pairwise
    blocks, mask = random_rows(rng, 60, dims)
    mask[5] = False  # a row with nothing observed, too
    fills, variance = conditional_fill(mix, blocks, mask, temperature)
    for i in range(60):
        one, var = conditional_fill(mix, [b[i : i + 1] for b in blocks], mask[i : i + 1],
                                    temperature)
        for m in range(len(dims)):
            assert np.array_equal(one[m][0], fills[m][i])
        assert np.array_equal(var[0], variance[i], equal_nan=True)
    part = np.arange(7, 40, 3)
    sub, sub_var = conditional_fill(mix, [b[part] for b in blocks], mask[part], temperature,
                                    modalities=[0, 2])
    assert sub[1] is None and sub[3] is None
    assert np.array_equal(sub[2], fills[2][part])
    assert np.array_equal(sub_var[:, [0, 2]], variance[np.ix_(part, [0, 2])], equal_nan=True)
    assert np.isnan(sub_var[:, [1, 3]]).all()


def test_em_raises_the_likelihood_and_beats_the_soft_fill():
    X, _, _ = low_rank_clusters(600, seed=5)
    imp, engine, view = fitted(X, 2)
    blocks, mask = engine.take(view, np.arange(view.n_samples))
    args = (view, engine, imp.model_.members[0].centers, imp.model_.labels)
    history = []
    for n_iter in range(9):
        mix = fit_mixture(*args, rank=2, prior_count=0.0, ridge=0.0, n_iter=n_iter,
                          rng=np.random.RandomState(0))
        history.append(float(log_likelihood(mix, blocks, mask).sum()))
    steps = np.diff(history)
    assert (steps >= -1e-9 * np.abs(history[:-1])).all(), history
    assert history[-1] > history[0] + 100

    # hidden blocks of new rows: the mixture's regression beats blending centres
    X_test, truth, test_mask = low_rank_clusters(300, seed=6)
    settings = resolve_settings(imp.get_params())
    test_view = transform_view(X_test, imp.model_, settings, engine)
    test_blocks, _ = engine.take(test_view, np.arange(300))
    z_true = [(truth[n] - imp.model_.means[m]) / imp.model_.scales[m]
              for m, n in enumerate(imp.model_.names)]

    def error(filled):
        errs = [np.mean((filled[m] - z_true[m])[~test_mask[:, m]] ** 2, axis=1)
                for m in range(3)]
        return float(np.mean(np.concatenate(errs)))

    mixture_fill, _ = conditional_fill(mix, test_blocks, test_mask)
    plan = imp.model_.members[0].plan
    soft = []
    for t in (0.05, 0.2, 1.0):
        out = [b.astype(np.float64) for b in test_blocks]
        soft_complete(test_view, plan, plan.exact_blocks, [t] * 3, out,
                      error_factor(imp.model_.dims, np.float64))
        soft.append(error(out))
    assert error(mixture_fill) < 0.3 * min(soft), (error(mixture_fill), soft)


def test_fit_is_deterministic_and_samples_rows_by_rng():
    X, _ = clustered(seed=3)
    imp, engine, view = fitted(X, 4, dtype=np.float32)
    args = (view, engine, imp.model_.members[0].centers, imp.model_.labels)
    a = fit_mixture(*args, rank=2, rng=np.random.RandomState(1))
    b = fit_mixture(*args, rank=2, rng=np.random.RandomState(1))
    c = fit_mixture(*args, rank=2, max_rows=150, rng=np.random.RandomState(1))
    d = fit_mixture(*args, rank=2, max_rows=150, rng=np.random.RandomState(1))
    e = fit_mixture(*args, rank=2, max_rows=150, rng=np.random.RandomState(2))
    for x, y in ((a, b), (c, d)):
        np.testing.assert_array_equal(x.log_weights, y.log_weights)
        for name in ("means", "loadings", "noise"):
            for p, q in zip(getattr(x, name), getattr(y, name), strict=True):
                np.testing.assert_array_equal(p, q)
    assert not np.array_equal(c.means[0], e.means[0])
    assert all((n > 0).all() for n in a.noise)
    assert a.k == 4 and a.rank == 2


def test_bad_parameters_raise_naming_them():
    X, _ = clustered(n=60, seed=1)
    imp, engine, view = fitted(X, 2)
    args = (view, engine, imp.model_.members[0].centers, imp.model_.labels)
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match="rank"):
        fit_mixture(*args, rank=-1, rng=rng)
    with pytest.raises(ValueError, match="rank"):
        fit_mixture(*args, rank=16, rng=rng)  # more than the 15 dimensions
    with pytest.raises(ValueError, match="prior_count"):
        fit_mixture(*args, rank=1, prior_count=-1.0, rng=rng)
    with pytest.raises(ValueError, match="ridge"):
        fit_mixture(*args, rank=1, ridge=-0.5, rng=rng)
    with pytest.raises(ValueError, match="labels"):
        fit_mixture(view, engine, imp.model_.members[0].centers, imp.model_.labels[:-1],
                    rank=1, rng=rng)
    mix = fit_mixture(*args, rank=1, n_iter=1, rng=rng)
    with pytest.raises(ValueError, match="temperature"):
        conditional_fill(mix, engine.take(view, np.arange(3))[0], view.mask[:3], 0.0)


def test_docstring_examples():
    result = doctest.testmod(mixture_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
