"""Parameter resolution: tol (relative, as in scikit-learn), verbose levels, n_jobs."""

from __future__ import annotations

import numpy as np
import pytest

import ul4m4.settings as settings_module
from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.centers import shift_tolerance
from ul4m4.cluster import kmeans_plusplus, lloyd
from ul4m4.distance import error_factor
from ul4m4.settings import available_cpus, resolve_n_jobs, resolve_settings
from ul4m4.statistics import modality_statistics
from ul4m4.validation import check_multimodal


def _params(**changes):
    return {**UL4M4Imputer().get_params(deep=False), **changes}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = {"a": np.r_[rng.normal(0, 1, (60, 3)), rng.normal(4, 1, (60, 3))],
         "b": rng.normal(size=(120, 5))}
    X["b"][::3] = np.nan
    return X


# ------------------------------------------------------------------------- tol
def test_shift_tolerance_is_tol_times_mean_z_variance():
    mask = np.zeros((10, 2), dtype=bool)
    mask[:, 0] = True        # n_0 = 10: variance 9/10 in each of 3 dims
    mask[:4, 1] = True       # n_1 = 4: variance 3/4 in each of 5 dims
    expected = 1e-3 * (3 * 0.9 + 5 * 0.75) / 8
    assert shift_tolerance(1e-3, mask, [3, 5]) == pytest.approx(expected, rel=1e-15)
    assert shift_tolerance(0.0, mask, [3, 5]) == 0.0


def test_shift_tolerance_matches_sklearn_on_complete_data():
    """On complete z-scored data it is scikit-learn's ``tol * mean(np.var(X, axis=0))``."""
    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(50, 4))
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    bound = shift_tolerance(1e-4, np.ones((50, 1), dtype=bool), [4])
    assert bound == pytest.approx(1e-4 * np.mean(np.var(Z, axis=0)), rel=1e-12)


def _first_shift(X, k, seed):
    """The centre shift of the first Lloyd iteration, as the estimator would run it."""
    data = check_multimodal(X)
    means, scales = modality_statistics(data, 64)
    engine = NumpyEngine()
    view = engine.view(data, means, scales, np.dtype(np.float64), 64)
    rounding = error_factor(data.dims, np.dtype(np.float64))
    seeds = kmeans_plusplus(view, k, np.random.RandomState(seed), rounding, engine)[0]
    shifts = []
    lloyd(view, seeds, engine, max_iter=1, tol=0.0, rounding=rounding,
          progress=lambda it, total, inertia, shift, elapsed, **_: shifts.append(shift))
    return shifts[0], shift_tolerance(1.0, data.mask, data.dims)


def test_tol_is_relative_to_the_z_space_variance():
    X = _data()
    shift, per_unit_tol = _first_shift(X, 2, seed=0)
    assert 0 < per_unit_tol < 1 and shift > 0
    relative = shift / per_unit_tol      # the tol at which iteration 1 is within bounds
    above = UL4M4Imputer(2, tol=relative * 1.001, random_state=0, dtype=np.float64).fit(X)
    assert above.runs_[0].stopped_by == "tol" and above.n_iter_ == 1 and above.converged_
    below = UL4M4Imputer(2, tol=relative * 0.999, random_state=0, dtype=np.float64).fit(X)
    assert below.n_iter_ > 1


def test_tol_zero_stops_only_at_a_fixed_point():
    imp = UL4M4Imputer(2, random_state=0).fit(_data())
    assert imp.runs_[0].stopped_by == "fixed_point"
    assert resolve_settings(_params()).tol == 0.0


def test_minibatch_tol_stop_is_reported():
    imp = UL4M4Imputer(2, tol=1e6, random_state=0, algorithm="minibatch",
                       batch_size=16).fit(_data())
    assert imp.runs_[0].stopped_by == "tol" and imp.n_iter_ == 1


# --------------------------------------------------------------------- verbose
@pytest.mark.parametrize(("value", "level"), [(False, 0), (True, 1), (0, 0), (1, 1), (2, 2),
                                              (np.int64(3), 3), (np.bool_(True), 1)])
def test_verbose_levels(value, level):
    settings = resolve_settings(_params(verbose=value))
    assert settings.verbose == level and type(settings.verbose) is int


@pytest.mark.parametrize("value", [-1, 1.0, "yes", None])
def test_bad_verbose(value):
    with pytest.raises((ValueError, TypeError),
                       match="verbose must be an integer >= 0 or a bool"):
        resolve_settings(_params(verbose=value))


# ---------------------------------------------------------------------- n_jobs
def test_resolve_n_jobs_as_in_sklearn():
    assert [resolve_n_jobs(n, cpus=4) for n in (None, 1, 2, 9, -1, -2, -4, -5, -100)] == [
        4, 1, 2, 9, 4, 3, 1, 1, 1]


def test_n_jobs_settings():
    cpus = available_cpus()
    assert resolve_settings(_params(n_jobs=-1)).n_threads == cpus
    assert resolve_settings(_params(n_jobs=None)).n_threads == cpus
    assert resolve_settings(_params(n_jobs=-2)).n_threads == max(1, cpus - 1)
    assert resolve_settings(_params(n_jobs=3)).n_threads == 3


@pytest.mark.parametrize("value", [0, 1.5, True, "all"])
def test_bad_n_jobs(value):
    with pytest.raises((ValueError, TypeError), match="n_jobs must be an integer >= 1 or an "
                       "integer <= -1 or one of"):
        resolve_settings(_params(n_jobs=value))


def test_negative_n_jobs_gives_the_same_model():
    X = _data()
    a = UL4M4Imputer(3, random_state=0, n_jobs=1).fit(X)
    b = UL4M4Imputer(3, random_state=0, n_jobs=-1).fit(X)
    for name in X:
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("n_jobs", [1, 2, 8])
@pytest.mark.parametrize("n_samples", [100, 20_000, 200_000, 5_000_000])
def test_automatic_chunks_fit_the_memory_budget_and_feed_every_thread(n_jobs, n_samples):
    dims = [512, 512, 768]
    settings = resolve_settings(UL4M4Imputer(64, n_jobs=n_jobs).get_params())
    rows = settings.chunk_rows(dims, n_samples)
    per_row = 4 * sum(dims) + 8 * 8 * 64
    assert 256 <= rows <= settings_module.MAX_CHUNK_ROWS
    if rows > 256:
        assert rows * per_row <= settings_module.WORKING_MEMORY
        chunks = -(-n_samples // rows)
        assert chunks >= min(settings_module.CHUNKS_PER_THREAD * n_jobs, n_samples // rows)
    fixed = resolve_settings(UL4M4Imputer(64, batch_size=100).get_params())
    assert fixed.chunk_rows(dims, n_samples) == 100
