"""ul4m4.uncertainty and the variances the centre-based rules write (``FillTask.variance``).

Each piece is checked against its formula written out literally (per centre, per
row, per member), the soft variance also for batch independence, and the whole
on a synthetic set whose clusters have different spreads: the predicted
variance must rank the filled blocks by their true error better than chance.
"""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
from _data import mask_blocks
from sklearn.metrics import roc_auc_score

from ul4m4 import UL4M4Imputer
from ul4m4.backends import NumpyEngine
from ul4m4.centers import Centers
from ul4m4.complete import FROM_MEAN, soft_complete, soft_variance
from ul4m4.distance import error_factor
from ul4m4.inference import transform_view
from ul4m4.inputs import output_copy
from ul4m4.rules import COMPLETION_RULES, FillTask
from ul4m4.settings import resolve_settings
from ul4m4.uncertainty import (
    calibration_factor,
    centre_spread,
    ensemble_variance,
    sample_spread,
)


# ------------------------------------------------------------ helpers
def _view(imp, X):
    engine = NumpyEngine()
    return transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine), engine


def _fill(imp, X, rule, spread):
    """Run one rule on every modality of ``X`` for the first member; the task after it."""
    view, engine = _view(imp, X)
    model, member = imp.model_, imp.model_.members[0]
    task = FillTask(
        view, error_factor(model.dims, model.dtype), member.plan, member.raw,
        model.temperature, [output_copy(a) for a in view.data.arrays],
        np.full(view.mask.shape, -1, dtype=np.int64), np.full(view.mask.shape, np.nan),
        spread, [np.full(view.mask.shape[0], np.nan) for _ in model.names],
    )
    COMPLETION_RULES[rule].fill(task, list(range(len(model.names))))
    return task, view


def _data(seed=0, n=120, spreads=(0.1, 0.3, 1.0), dims=(5, 3, 4), rate=0.35):
    """Shared clusters whose noise differs per cluster."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(spreads), n)
    noise = np.asarray(spreads)[labels][:, None]
    full = {}
    for m, d in enumerate(dims):
        centres = rng.normal(scale=3.0, size=(len(spreads), d))
        full[f"m{m}"] = centres[labels] + noise * rng.normal(size=(n, d))
    return full, mask_blocks(full, rate, rng)


def _literal_soft(imp, X, spread, temperature):
    """Per row and missing modality, the soft variance written out (the weights as in
    tests/test_complete.py); None where no centre is eligible (the greedy fallback)."""
    names = imp.modalities_
    Z = ref.zscore([X[n] for n in names], [imp.mean_[n] for n in names],
                   [imp.scale_[n] for n in names], np.float64)
    centers = imp.model_.members[0].centers
    k = centers.k
    C = [[b[j].astype(np.float64) for b in centers.blocks] for j in range(k)]
    S = [list(map(bool, row)) for row in centers.mask]
    out = {}
    for i in range(Z[0].shape[0]):
        sq = np.array([ref.sq_dist(ref.point(Z, i), ref.has(Z, i), C[j], S[j]) for j in range(k)])
        for m in range(len(names)):
            if ref.has(Z, i)[m]:
                continue
            eligible = [j for j in range(k) if S[j][m] and np.isfinite(sq[j])]
            if not eligible:
                out[i, m] = None
                continue
            s = sq[eligible]
            s = np.where(s - s.min() <= 1e-12, s.min(), s)
            w = np.exp(-(s - s.min()) / (temperature * max(np.median(s), np.finfo(float).tiny)))
            w /= w.sum()
            f = sum(wj * C[j][m] for wj, j in zip(w, eligible, strict=True))
            d = C[0][m].size
            out[i, m] = sum(wj * (spread[j, m] + np.sum((C[j][m] - f) ** 2) / d)
                            for wj, j in zip(w, eligible, strict=True))
    return out


# ------------------------------------------------------------ centre_spread
def test_centre_spread_equals_literal_loop():
    rng = np.random.default_rng(4)
    n, dims, k = 60, (3, 5, 2), 5
    blocks = [rng.normal(size=(n, d)).astype(np.float32) for d in dims]
    mask = rng.random((n, 3)) > 0.3
    mask[:, 2] = False  # modality 2 observed nowhere: falls back to 1
    carries = np.ones((k, 3), dtype=bool)
    carries[1, 0] = False  # centre 1 lacks modality 0: pooled value
    centers = Centers([rng.normal(size=(k, d)) for d in dims], carries)
    labels = rng.integers(0, 3, n)  # centre 4 has no member: pooled value
    labels[:3] = -1  # rows with no observed modality are ignored
    labels[3] = 3  # centre 3 has one member: pooled value
    mask[3, 0] = True
    got = centre_spread(blocks, mask, centers, labels)

    expected = np.empty((k, 3))
    for m, d in enumerate(dims):
        per_row = {}
        for i in range(n):
            j = labels[i]
            if j >= 0 and mask[i, m] and carries[j, m]:
                diff = blocks[m][i].astype(np.float64) - centers.blocks[m][j]
                per_row[i] = float(diff @ diff) / d
        pooled = np.mean(list(per_row.values())) if per_row else 1.0
        for j in range(k):
            own = [v for i, v in per_row.items() if labels[i] == j]
            expected[j, m] = np.mean(own) if carries[j, m] and len(own) >= 2 else pooled
    assert got.dtype == np.float64 and got.shape == (k, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert (got[:, 2] == 1.0).all()
    assert got[1, 0] == got[3, 0] == got[4, 0]  # the pooled value
    assert got[0, 0] != got[1, 0]


def test_sample_spread_is_centre_spread_on_a_seeded_sorted_sample():
    full, X = _data(seed=1, n=300)
    imp = UL4M4Imputer(3, random_state=0, dtype=np.float64, batch_size=16).fit(X)
    view, engine = _view(imp, X)
    centers, labels = imp.model_.members[0].centers, imp.model_.labels
    (got,) = sample_spread(view, engine, [(centers, labels)], np.random.RandomState(7),
                           max_rows=50)
    (again,) = sample_spread(view, engine, [(centers, labels)], np.random.RandomState(7),
                             max_rows=50)
    np.testing.assert_array_equal(got, again)
    rows = np.sort(np.random.RandomState(7).choice(300, size=50, replace=False))
    blocks, mask = view.rows(rows)
    np.testing.assert_array_equal(got, centre_spread(blocks, mask, centers, labels[rows]))
    # Several fits share the one sample: each equals its own centre_spread on those rows.
    other = UL4M4Imputer(5, random_state=1, dtype=np.float64).fit(X).model_
    both = sample_spread(view, engine, [(centers, labels),
                                        (other.members[0].centers, other.labels)],
                         np.random.RandomState(7), max_rows=50)
    np.testing.assert_array_equal(both[0], got)
    np.testing.assert_array_equal(both[1], centre_spread(blocks, mask, other.members[0].centers,
                                                         other.labels[rows]))
    # At most max_rows rows: all of them, whatever the generator.
    (whole,) = sample_spread(view, engine, [(centers, labels)], np.random.RandomState(1))
    blocks, mask = view.rows(np.arange(300))
    np.testing.assert_array_equal(whole, centre_spread(blocks, mask, centers, labels))
    # The clusters' noise 0.1 / 0.3 / 1.0 shows in their spreads.
    assert np.ptp(whole[:, 0]) > 5 * whole[:, 0].min()


# ------------------------------------------------------------ rules
def test_greedy_variance_is_the_spread_of_the_source_centre():
    _, X = _data(seed=2)
    imp = UL4M4Imputer(3, random_state=0, dtype=np.float64).fit(X)
    k, n_mod = imp.model_.members[0].centers.mask.shape
    spread = np.arange(1.0, 1.0 + k * n_mod).reshape(k, n_mod) / 10
    task, view = _fill(imp, X, "greedy", spread)
    for m in range(n_mod):
        src = task.sources[:, m]
        assert np.isnan(task.variance[m][view.mask[:, m]]).all()
        np.testing.assert_array_equal(task.variance[m][src >= 0], spread[src[src >= 0], m])
        assert (task.variance[m][src == FROM_MEAN] == 1.0).all()
        assert (src >= 0).sum() > 10
    unknown, _ = _fill(imp, X, "greedy", None)
    for m in range(n_mod):
        filled = ~view.mask[:, m]
        assert (unknown.variance[m][filled] == 1.0).all()


def test_mean_rule_variance_is_one():
    _, X = _data(seed=2)
    imp = UL4M4Imputer(3, random_state=0, dtype=np.float64).fit(X)
    task, view = _fill(imp, X, "mean", np.full((3, 3), 0.2))
    for m in range(3):
        assert (task.variance[m][~view.mask[:, m]] == 1.0).all()
        assert np.isnan(task.variance[m][view.mask[:, m]]).all()


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_soft_variance_equals_literal_per_row_formula(temperature):
    _, X = _data(seed=3, n=60)
    X["m1"][5:8] = np.nan  # rows with only m0, some with only m2
    X["m0"][5:8] = np.nan
    X["m2"][5:8] = 1.0
    imp = UL4M4Imputer(4, random_state=0, dtype=np.float64, completion="soft",
                       temperature=temperature).fit(X)
    k = imp.model_.members[0].centers.k
    spread = np.random.default_rng(0).uniform(0.1, 2.0, size=(k, 3))
    task, view = _fill(imp, X, "soft", spread)
    expected = _literal_soft(imp, X, spread, temperature)
    assert sum(v is not None for v in expected.values()) > 30
    for (i, m), value in expected.items():
        got = task.variance[m][i]
        if value is None:  # the greedy fallback: its source's spread
            src = task.sources[i, m]
            assert got == (spread[src, m] if src >= 0 else 1.0)
        else:
            np.testing.assert_allclose(got, value, rtol=1e-9, atol=1e-12)
    for m in range(3):
        assert np.isnan(task.variance[m][view.mask[:, m]]).all()
        assert not np.isnan(task.variance[m][~view.mask[:, m]]).any()


def test_soft_variance_of_a_row_does_not_depend_on_its_batch():
    _, X = _data(seed=5, n=200)
    imp = UL4M4Imputer(3, random_state=0, dtype=np.float64, completion="soft").fit(X)
    spread = np.random.default_rng(1).uniform(0.1, 2.0, size=(3, 3))
    batch, view = _fill(imp, X, "soft", spread)
    one_by_one = imp.set_params(batch_size=1)
    small, _ = _fill(one_by_one, X, "soft", spread)
    rows = np.flatnonzero(~view.mask.all(axis=1))[:12]
    for m in range(3):
        np.testing.assert_array_equal(small.variance[m], batch.variance[m])
    for i in rows:
        alone, _ = _fill(imp, {n: a[i : i + 1] for n, a in X.items()}, "soft", spread)
        for m in range(3):
            np.testing.assert_array_equal(alone.variance[m], batch.variance[m][i : i + 1])


def test_soft_complete_writes_variance_only_when_asked():
    _, X = _data(seed=6)
    imp = UL4M4Imputer(3, random_state=0, dtype=np.float64, completion="soft").fit(X)
    view, engine = _view(imp, X)
    plan = imp.model_.members[0].plan
    rounding = error_factor(imp.model_.dims, imp.model_.dtype)
    outs = [[output_copy(a) for a in view.data.arrays] for _ in range(2)]
    variance = [np.full(view.mask.shape[0], np.nan) for _ in range(3)]
    variance[1] = None
    plain = soft_complete(view, plan, plan.exact_blocks, [0.1] * 3, outs[0], rounding)
    asked = soft_complete(view, plan, plan.exact_blocks, [0.1] * 3, outs[1], rounding,
                          variance=variance)  # spread None counts as 1
    for a, b in zip(plain, asked, strict=True):  # the fill itself is unchanged, bit for bit
        np.testing.assert_array_equal(a, b)
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
    for m in (0, 2):
        filled = variance[m][~view.mask[:, m]]
        assert (filled >= 1.0).all() and np.isnan(variance[m][view.mask[:, m]]).all()


def test_soft_variance_small_cases():
    centres = np.array([[0.0, 0.0], [2.0, 0.0]])
    spread = np.array([0.5, 1.5])
    w = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])
    got = soft_variance(w, centres, spread)
    # f = (0, 0): 0.5;  f = (1, 0): 1.0 + 0.5 * (1 + 1) / 2;  f = (1.5, 0): literal.
    third = 0.25 * (0.5 + 1.5**2 / 2) + 0.75 * (1.5 + 0.5**2 / 2)
    np.testing.assert_allclose(got, [0.5, 1.5, third], rtol=1e-14, atol=1e-15)


# ------------------------------------------------------------ ensemble, calibration
def test_ensemble_variance_equals_literal_formula():
    rng = np.random.default_rng(8)
    fills = [rng.normal(size=(7, 4)) for _ in range(3)]
    variances = [rng.uniform(0.1, 1.0, 7) for _ in range(3)]
    variances[1][2] = np.nan  # an observed row stays NaN
    weights = np.array([1.0, 2.0, 1.0])
    fill, variance = ensemble_variance(fills, variances, weights)
    w = weights / weights.sum()
    for i in range(7):
        f = sum(w[j] * fills[j][i] for j in range(3))
        np.testing.assert_allclose(fill[i], f, rtol=1e-14)
        v = sum(w[j] * (variances[j][i] + np.sum((fills[j][i] - f) ** 2) / 4) for j in range(3))
        if i == 2:
            assert np.isnan(variance[i])
        else:
            np.testing.assert_allclose(variance[i], v, rtol=1e-13)
    # Members that agree add no variance of their own.
    same, var = ensemble_variance([fills[0]] * 2, [variances[0]] * 2, [0.3, 0.7])
    np.testing.assert_allclose(same, fills[0], rtol=1e-15)
    np.testing.assert_allclose(var, variances[0], rtol=1e-14)
    with pytest.raises(ValueError, match="not all zero"):
        ensemble_variance(fills[:2], variances[:2], [0.0, 0.0])
    with pytest.raises(ValueError, match="one weight"):
        ensemble_variance(fills, variances, [1.0])


def test_calibration_factor_on_known_numbers():
    assert calibration_factor(np.array([1.0, 3.0]), np.array([4.0, 8.0])) == 3.0
    # Non-finite entries are left out, pairwise.
    assert calibration_factor(np.array([1.0, np.nan, 3.0, 2.0]),
                              np.array([4.0, 5.0, 8.0, np.inf])) == 3.0
    assert calibration_factor(np.array([]), np.array([])) == 1.0
    assert calibration_factor(np.array([np.nan]), np.array([1.0])) == 1.0
    assert calibration_factor(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 1.0
    assert calibration_factor(np.array([2.0]), np.array([0.0])) == 0.0
    with pytest.raises(ValueError, match="one error per"):
        calibration_factor(np.ones(2), np.ones(3))


# ------------------------------------------------------------ does it predict the error?
@pytest.mark.parametrize("rule", ["soft", "greedy"])
def test_predicted_variance_ranks_blocks_by_true_error(rule):
    spreads = (0.05, 0.2, 0.5, 1.0, 2.0)
    full, _ = _data(seed=10, n=1200, spreads=spreads, dims=(6, 5, 4))
    train = mask_blocks({n: a[:600] for n, a in full.items()}, 0.35, np.random.default_rng(2))
    imp = UL4M4Imputer(5, random_state=0, dtype=np.float64, completion=rule).fit(train)
    view, engine = _view(imp, train)
    (spread,) = sample_spread(view, engine, [(imp.model_.members[0].centers, imp.model_.labels)],
                              np.random.RandomState(0))
    # New rows from the same clusters.
    test = mask_blocks({n: a[600:] for n, a in full.items()}, 0.4, np.random.default_rng(3))
    task, view = _fill(imp, test, rule, spread)
    predicted, error = [], []
    for m, name in enumerate(imp.modalities_):
        rows = ~view.mask[:, m] & (task.sources[:, m] != FROM_MEAN)
        z_hat = (task.filled[m][rows] - imp.mean_[name]) / imp.scale_[name]
        z = (full[name][600:][rows] - imp.mean_[name]) / imp.scale_[name]
        error.append(((z_hat - z) ** 2).mean(axis=1))
        predicted.append(task.variance[m][rows])
    predicted, error = np.concatenate(predicted), np.concatenate(error)
    assert predicted.size > 300
    auroc = roc_auc_score(error > np.median(error), predicted)
    assert auroc > 0.6, auroc


@pytest.mark.parametrize("rule", ["greedy", "soft", "mean"])
def test_rules_skip_the_variance_when_it_is_not_wanted(rule):
    """``want_variance=False`` (a transform without return_std): the same fills, sources
    and weights, and no variance computed."""
    X = _data()[1]
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    view, engine = _view(imp, X)
    model, member = imp.model_, imp.model_.members[0]
    rounding = error_factor(model.dims, model.dtype)
    tasks = []
    for want in (True, False):
        task = FillTask.for_member(view, rounding, member, [0.1] * len(model.names),
                                   want_variance=want)
        COMPLETION_RULES[rule].fill(task, list(range(len(model.names))))
        tasks.append(task)
    with_var, without = tasks
    assert (~view.mask).any()
    assert without.variance is None and all(np.isfinite(v[~view.mask[:, m]]).all()
                                            for m, v in enumerate(with_var.variance))
    for a, b in zip(with_var.filled, without.filled, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(with_var.sources, without.sources)
    np.testing.assert_array_equal(with_var.weights, without.weights)
