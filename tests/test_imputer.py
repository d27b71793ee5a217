"""UL4M4Imputer: hand-computed cases, invariants, determinism, bad input."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from strategies import multimodal
from test_cluster import cycling_data

import ul4m4.threads
from ul4m4 import UL4M4Imputer


def _incomplete(n=60, seed=0, rate=0.4, dims=(5, 3, 4)):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    X = {}
    for m, d in enumerate(dims):
        X[f"m{m}"] = latent @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))
    mask = rng.random((n, len(dims))) > rate
    mask[np.arange(n), rng.integers(0, len(dims), n)] = True
    for m, name in enumerate(X):
        X[name][~mask[:, m]] = np.nan
    return X, mask


def _fit_quiet(imp, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return imp.fit(X)


# ----------------------------------------------------------------- hand-computed
def test_partial_distance_is_not_a_metric():
    """SPEC example: a={T:0}, b={T:0,A:0}, c={T:1,A:0}, d_m=4 breaks the triangle inequality."""
    from ul4m4.distance import exact_partial_sq_dists

    def point(t, a):
        blocks = [np.full((1, 4), t, dtype=float), np.full((1, 4), 0.0 if a is None else a)]
        return blocks, np.array([[t is not None, a is not None]])

    a, b, c = point(0.0, None), point(0.0, 0.0), point(1.0, 0.0)

    def d(u, v):
        return float(np.sqrt(exact_partial_sq_dists(u[0], u[1], v[0], v[1])[0, 0]))

    assert d(a, b) == 0.0 and d(a, c) == 1.0
    assert d(b, c) == pytest.approx(np.sqrt(0.5))
    assert d(a, c) > d(a, b) + d(b, c)


def test_hand_computed_two_clusters_and_completion():
    # Modality "t" separates two groups; "a" is missing for samples 1 and 3.
    X = {
        "t": np.array([[0.0], [0.0], [10.0], [10.0]]),
        "a": np.array([[1.0, 1.0], [np.nan, np.nan], [5.0, 7.0], [np.nan, np.nan]]),
    }
    init = {"t": np.array([[0.0], [10.0]]), "a": np.array([[1.0, 1.0], [5.0, 7.0]])}
    imp = UL4M4Imputer(2, init=init, dtype=np.float64).fit(X)
    np.testing.assert_array_equal(imp.labels_, [0, 0, 1, 1])
    np.testing.assert_allclose(imp.cluster_centers_["t"], [[0.0], [10.0]])
    np.testing.assert_allclose(imp.cluster_centers_["a"], [[1.0, 1.0], [5.0, 7.0]])
    filled, sources = imp.transform(X, return_sources=True)
    np.testing.assert_array_equal(sources["a"], [-1, 0, -1, 1])
    np.testing.assert_allclose(filled["a"][[1, 3]], [[1.0, 1.0], [5.0, 7.0]])
    assert imp.n_iter_ == 2 and imp.converged_
    assert imp.inertia_ == pytest.approx(0.0, abs=1e-12)


def test_partial_centres_and_the_zero_distance_candidate():
    """A centre sharing none of a sample's observed modalities ranks first (distance 0)."""
    X = {
        "t": np.array([[0.0], [0.1], [np.nan], [np.nan], [5.0]]),
        "a": np.array([[np.nan], [np.nan], [3.0], [3.2], [np.nan]]),
    }
    init = {"t": np.array([[0.0], [np.nan]]), "a": np.array([[np.nan], [3.0]])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imp = UL4M4Imputer(2, init=init, dtype=np.float64).fit(X)
    # Centre 0 carries only "t", centre 1 only "a".
    np.testing.assert_array_equal(imp.center_modalities_, [[True, False], [False, True]])
    new = {"t": np.array([[100.0]]), "a": np.array([[np.nan]])}
    _, sources = imp.transform(new, return_sources=True)
    # Candidate 1 (centre 1 fills "a") is compared with centre 1 on "a" only: distance 0.
    assert sources["a"][0] == 1


def test_reference_one_step_is_seed_assign_update():
    X, _ = _incomplete()
    full = UL4M4Imputer(4, random_state=3).fit(X)
    one = UL4M4Imputer(4, random_state=3, reference_one_step=True).fit(X)
    assert one.n_iter_ == 1 and not one.converged_
    assert full.n_iter_ > 1
    assert len(one.history_) == 1 and one.history_[0] == full.history_[0]


# -------------------------------------------------------------------- invariants
@given(multimodal(max_n=30), st.integers(0, 2**31 - 1))
def test_observed_rows_bit_identical_and_no_nan(case, seed):
    X, mask, k = case
    X32 = {n: a.astype(np.float32) for n, a in X.items()}
    before = {n: a.copy() for n, a in X32.items()}
    imp = _fit_quiet(UL4M4Imputer(k, random_state=seed), X32)
    filled = imp.transform(X32)
    for m, name in enumerate(X32):
        assert filled[name].dtype == np.float32
        assert not np.isnan(filled[name]).any()
        np.testing.assert_array_equal(filled[name][mask[:, m]], X32[name][mask[:, m]])
        np.testing.assert_array_equal(X32[name], before[name])  # caller's arrays untouched


@given(multimodal(max_n=30), st.integers(0, 2**31 - 1))
def test_same_seed_same_result(case, seed):
    X, mask, k = case
    a = _fit_quiet(UL4M4Imputer(k, random_state=seed), X)
    b = _fit_quiet(UL4M4Imputer(k, random_state=seed), X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for name in X:
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])
        np.testing.assert_array_equal(a.transform(X)[name], b.transform(X)[name])


@given(multimodal(max_n=30), st.integers(0, 2**31 - 1), st.integers(1, 7))
def test_predict_and_transform_do_not_depend_on_batch_size(case, seed, batch_size):
    X, mask, k = case
    imp = _fit_quiet(UL4M4Imputer(k, random_state=seed), X)
    labels = imp.predict(X)
    filled, sources = imp.transform(X, return_sources=True)
    imp.set_params(batch_size=batch_size)
    np.testing.assert_array_equal(imp.predict(X), labels)
    filled_b, sources_b = imp.transform(X, return_sources=True)
    for name in X:
        np.testing.assert_array_equal(sources_b[name], sources[name])
        np.testing.assert_array_equal(filled_b[name], filled[name])


@given(multimodal(max_n=30), st.integers(0, 2**31 - 1), st.integers(1, 7),
       st.sampled_from([np.float32, np.float64]))
def test_fit_does_not_depend_on_batch_size(case, seed, batch_size, dtype):
    """Sums run in row order whatever the chunking: bit-identical statistics and centres."""
    X, mask, k = case
    a = _fit_quiet(UL4M4Imputer(k, random_state=seed, dtype=dtype), X)
    b = _fit_quiet(UL4M4Imputer(k, random_state=seed, dtype=dtype, batch_size=batch_size), X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
    # Inertia is a sum of GEMM-estimated distances, whose rounding depends on the chunk
    # shape (labels do not: near-ties are rechecked exactly); compare it within that
    # rounding, absolute near zero.
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-4, atol=1e-4 * len(mask))
    for name in X:
        np.testing.assert_array_equal(a.mean_[name], b.mean_[name])
        np.testing.assert_array_equal(a.scale_[name], b.scale_[name])
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])


def test_predict_matches_labels_after_fit():
    X, _ = _incomplete(n=200, seed=4)
    imp = UL4M4Imputer(6, random_state=0).fit(X)
    assert imp.converged_
    np.testing.assert_array_equal(imp.predict(X), imp.labels_)


def test_modality_order_of_a_mapping_does_not_matter():
    X, _ = _incomplete(seed=5)
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    reordered = {name: X[name] for name in reversed(list(X))}
    out = imp.transform(reordered)
    assert list(out) == list(reordered)
    ref = imp.transform(X)
    for name in X:
        np.testing.assert_array_equal(out[name], ref[name])


def test_list_input_and_pandas_input():
    X, _ = _incomplete(seed=6)
    arrays = list(X.values())
    imp = UL4M4Imputer(3, random_state=0).fit(arrays)
    assert imp.modalities_ == ["0", "1", "2"]
    frames = {n: pd.DataFrame(a) for n, a in X.items()}
    imp2 = UL4M4Imputer(3, random_state=0).fit(frames)
    np.testing.assert_array_equal(imp.labels_, imp2.labels_)


def test_integer_keys_come_back_as_given(tmp_path):
    X, _ = _incomplete(seed=8)
    by_int = {i: a for i, a in enumerate(X.values())}
    by_str = {str(i): a for i, a in enumerate(X.values())}
    imp = UL4M4Imputer(3, random_state=0).fit(by_int)
    assert imp.modalities_ == ["0", "1", "2"]  # fitted names stay strings
    assert list(imp.n_features_) == ["0", "1", "2"]
    out, sources, weights = imp.transform(by_int, return_sources=True, return_weights=True)
    assert list(out) == list(sources) == list(weights) == [0, 1, 2]
    ref = UL4M4Imputer(3, random_state=0).fit(by_str)
    expected = ref.transform(by_str)
    assert list(expected) == ["0", "1", "2"]
    for i in range(3):
        np.testing.assert_array_equal(out[i], expected[str(i)])
    # Either spelling matches either model, in any order; the output follows X.
    assert list(ref.transform({2: by_int[2], 0: by_int[0], 1: by_int[1]})) == [2, 0, 1]
    assert list(imp.transform(by_str)) == ["0", "1", "2"]
    on_disk = imp.transform(by_int, out_dir=tmp_path)  # files are named by the modality names
    assert list(on_disk) == [0, 1, 2] and (tmp_path / "0.npy").exists()
    np.testing.assert_array_equal(on_disk[0], out[0])


def test_return_mask_is_the_observed_pattern_in_output_order(tmp_path):
    X, _ = _incomplete(seed=10)
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    new = {name: X[name] for name in ("m2", "m0", "m1")}  # not the fitted order
    literal = np.column_stack([~np.isnan(a).all(axis=1) for a in new.values()])
    assert not literal.all() and literal.any(axis=1).all()  # both kinds of rows occur
    out, mask = imp.transform(new, return_mask=True)
    assert list(out) == ["m2", "m0", "m1"]
    assert mask.dtype == np.bool_ and mask.shape == (60, 3)
    np.testing.assert_array_equal(mask, literal)
    for j, (name, a) in enumerate(new.items()):
        np.testing.assert_array_equal(out[name][mask[:, j]], a[mask[:, j]])  # observed: as given
    # The mask comes last, after sources and weights, which are unchanged by it.
    src, w = imp.transform(new, return_sources=True, return_weights=True)[1:]
    both = imp.transform(new, return_sources=True, return_weights=True, return_mask=True)
    assert len(both) == 4
    for name in new:
        np.testing.assert_array_equal(both[0][name], out[name])
        np.testing.assert_array_equal(both[1][name], src[name])
        np.testing.assert_array_equal(both[2][name], w[name])
    np.testing.assert_array_equal(both[3], literal)
    for flag in ("return_sources", "return_weights"):
        got = imp.transform(new, return_mask=True, **{flag: True})
        assert len(got) == 3 and isinstance(got[1], dict)
        np.testing.assert_array_equal(got[2], literal)
    # The same with the output written to files.
    on_disk, src_disk, mask_disk = imp.transform(new, return_sources=True, return_mask=True,
                                                 out_dir=tmp_path / "out")
    np.testing.assert_array_equal(mask_disk, literal)
    for name in new:
        np.testing.assert_array_equal(on_disk[name], out[name])
        np.testing.assert_array_equal(src_disk[name], src[name])


def test_return_mask_marks_what_the_fill_treats_as_missing():
    X, _ = _incomplete(seed=11)
    new = {n: a[:4].copy() for n, a in X.items()}
    for a in new.values():
        a[0] = 1.0
        a[1] = np.nan  # no observed modality: filled with the training means
    new["m0"][2, 0] = np.nan  # partly NaN: missing with partial="missing"
    imp = UL4M4Imputer(3, random_state=0, empty="mean", partial="missing").fit(X)
    out, mask = imp.transform(new, return_mask=True)
    np.testing.assert_array_equal(mask[:2], [[True] * 3, [False] * 3])
    assert not mask[2, 0] and not np.isnan(out["m0"][2]).any()


def test_dataframes_come_back_as_dataframes():
    X, _ = _incomplete(seed=9)
    rng = np.random.default_rng(1)
    index = pd.Index(rng.permutation(1000)[:60], name="sample")
    frames = {n: pd.DataFrame(a, index=index, columns=[f"{n}_{j}" for j in range(a.shape[1])])
              for n, a in X.items()}
    frames["m1"] = frames["m1"].astype(np.float32)
    imp = UL4M4Imputer(3, random_state=0).fit(frames)
    out, sources = imp.transform(frames, return_sources=True)
    expected = UL4M4Imputer(3, random_state=0).fit(
        {n: f.to_numpy() for n, f in frames.items()}).transform(
        {n: f.to_numpy() for n, f in frames.items()})
    for name, frame in frames.items():
        got = out[name]
        assert isinstance(got, pd.DataFrame)
        pd.testing.assert_index_equal(got.index, frame.index)
        pd.testing.assert_index_equal(got.columns, frame.columns)
        assert (got.dtypes == frame.dtypes).all()
        observed = frame.notna().all(axis=1).to_numpy()
        values = got.to_numpy()
        assert values[observed].tobytes() == frame.to_numpy()[observed].tobytes()
        np.testing.assert_array_equal(values, expected[name])
        assert isinstance(sources[name], np.ndarray)
    # Frames and arrays mixed: each comes back in its own form.
    mixed = imp.transform({"m0": frames["m0"], "m1": X["m1"].astype(np.float32),
                           "m2": frames["m2"]})
    assert isinstance(mixed["m0"], pd.DataFrame) and isinstance(mixed["m1"], np.ndarray)


def test_integer_input_comes_back_exactly_in_its_dtype():
    # An integer modality has no NaN, so it is observed everywhere and returned as
    # given: in its dtype, so integers beyond 2**53 are not rounded by float64.
    big = 2**60
    X = {"a": np.array([[big + 1], [big + 3], [5], [-big - 7]]),
         "b": np.array([[1.0], [np.nan], [2.0], [3.5]]),
         "c": np.arange(4, dtype=np.uint8).reshape(4, 1)}
    imp = UL4M4Imputer(2, random_state=0).fit(X)
    out = imp.transform(X)
    assert out["a"].dtype == np.int64 and out["c"].dtype == np.uint8
    assert out["a"].tolist() == X["a"].tolist()
    assert out["b"].dtype == np.float64 and not np.isnan(out["b"]).any()
    framed = imp.set_output(transform="pandas").transform(X)
    assert framed["a"]["a_0"].tolist() == X["a"][:, 0].tolist()


def test_nullable_integers_beyond_2_53_warn_that_float64_rounds_them():
    big = 2**53 + 1
    frame = pd.DataFrame({"x": pd.array([big, None, 3, 4], dtype="Int64")})
    X = {"a": frame, "b": np.arange(8.0).reshape(4, 2)}
    with pytest.warns(UserWarning, match=r"modality 'a': integer values up to "
                                         r"9007199254740993 in magnitude exceed 2\*\*53"):
        UL4M4Imputer(2, random_state=0).fit(X)
    small = {"a": pd.DataFrame({"x": pd.array([2**53, None, 3, 4], dtype="Int64")}),
             "b": X["b"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        UL4M4Imputer(2, random_state=0).fit(small)  # 2**53 itself is exact


def test_empty_sample_policy():
    X, _ = _incomplete(seed=7)
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    new = {n: a[:3].copy() for n, a in X.items()}
    for a in new.values():
        a[1] = np.nan
    with pytest.raises(ValueError, match=r"samples \[1\] have no observed modality"):
        imp.transform(new)
    imp.set_params(empty="mean")
    out, src = imp.transform(new, return_sources=True)
    for name in new:
        np.testing.assert_allclose(out[name][1], imp.mean_[name].astype(np.float32), rtol=1e-6)
        assert src[name][1] == -2
    assert imp.predict(new)[1] == -1


def test_sklearn_clone_and_params():
    imp = UL4M4Imputer(5, random_state=1, dtype=np.float64)
    c = clone(imp)
    assert c.get_params() == imp.get_params()
    with pytest.raises(NotFittedError):
        c.transform({"a": np.ones((2, 2))})


def test_fitted_attributes():
    X, _ = _incomplete(seed=8)
    imp = UL4M4Imputer(4, random_state=0).fit(X)
    assert imp.modalities_ == list(X)
    assert imp.n_features_ == {"m0": 5, "m1": 3, "m2": 4}
    for name, a in X.items():
        observed = a[~np.isnan(a).all(axis=1)]
        np.testing.assert_allclose(imp.mean_[name], observed.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(imp.scale_[name], observed.std(axis=0, ddof=1), rtol=1e-10)
        assert imp.cluster_centers_[name].shape == (4, a.shape[1])
        absent = ~imp.center_modalities_[:, list(X).index(name)]
        assert np.isnan(imp.cluster_centers_[name][absent]).all()
    assert imp.labels_.shape == (60,)
    assert imp.inertia_ == pytest.approx(imp.history_[-1])


def test_constant_dimension_gets_unit_scale():
    X = {"a": np.column_stack([np.arange(6.0), np.full(6, 3.0)]), "b": np.ones((6, 1))}
    with pytest.warns(UserWarning) as caught:
        imp = UL4M4Imputer(2, random_state=0).fit(X)
    np.testing.assert_array_equal(imp.scale_["a"][1], 1.0)
    np.testing.assert_array_equal(imp.scale_["b"], [1.0])
    # One warning per modality with constant dimensions, naming it and counting them,
    # pointing at the caller's line.
    messages = [str(w.message) for w in caught if "constant" in str(w.message)]
    assert len(messages) == 2
    assert messages[0].startswith("modality 'a': 1 of 2 dimensions are constant")
    assert messages[1].startswith("modality 'b': 1 of 1 dimensions are constant")
    assert "left unscaled (scale 1)" in messages[0]
    assert {w.filename for w in caught} == {__file__}


def test_a_modality_of_tiny_values_is_scaled_by_its_own_spread():
    # Two correlated modalities, one multiplied by 1e-9: its std (~1e-9) used to fall
    # under an absolute 1e-8 and stay unscaled, so it weighed nothing in the distance
    # and the other modality's hidden blocks were filled from the wrong centres.
    X, _ = _incomplete(n=120, seed=5, rate=0.4)
    tiny = {**X, "m1": X["m1"] * 1e-9}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is constant here
        ref = _fit_quiet(UL4M4Imputer(4, random_state=0, dtype=np.float64), X)
        imp = _fit_quiet(UL4M4Imputer(4, random_state=0, dtype=np.float64), tiny)
    np.testing.assert_allclose(imp.scale_["m1"], ref.scale_["m1"] * 1e-9, rtol=1e-12)
    np.testing.assert_array_equal(imp.labels_, ref.labels_)
    out, ref_out = imp.transform(tiny), ref.transform(X)
    np.testing.assert_allclose(out["m0"], ref_out["m0"], rtol=1e-9)
    np.testing.assert_allclose(out["m1"], ref_out["m1"] * 1e-9, rtol=1e-9)


def test_fewer_distinct_points_than_clusters_warns():
    X = {"a": np.repeat(np.array([[0.0], [1.0]]), 5, axis=0)}
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        imp = UL4M4Imputer(4, random_state=0).fit(X)
    assert imp.center_modalities_.sum() == 2


# --------------------------------------------------------------------- bad input
GOOD = {"a": np.ones((4, 2)), "b": np.arange(8.0).reshape(4, 2)}


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        ({"a": np.array([[1.0, np.nan], [1.0, 2.0], [3, 4]])}, ValueError,
         r"modality 'a': rows \[0\] have some but not all values NaN"),
        ({"a": np.array([[1.0, np.inf], [1.0, 2.0], [3, 4]])}, ValueError,
         r"modality 'a': rows \[0\] contain infinite values"),
        ({"a": np.ones((3, 2)), "b": np.ones((4, 2))}, ValueError, "different numbers of rows"),
        ({"a": np.array([["x", "y"], ["z", "w"]])}, TypeError, "modality 'a': expected a real"),
        ({"a": np.ones((0, 2))}, ValueError, "zero rows"),
        ({"a": np.ones(5)}, ValueError, r"modality 'a': expected a 2-D array"),
        ({"a": np.ones((3, 0))}, ValueError, "zero features"),
        ({}, ValueError, "no modality"),
        ("text", TypeError, "X must be a mapping"),
        ({"a": np.array([[1.0], [np.nan], [2.0]]), "b": np.array([[1.0], [np.nan], [2.0]])},
         ValueError, r"samples \[1\] have no observed modality"),
        ({"a": np.array([[1.0], [np.nan], [np.nan]]), "b": np.ones((3, 1))}, ValueError,
         r"at least 2 training samples.*'a' \(1\)"),
        ({"a": np.ones((2, 2))}, ValueError, r"n_samples=2 should be >= n_clusters=3"),
        ({"a": np.ones((4, 2), dtype=complex)}, TypeError, "real numeric dtype"),
    ],
)
def test_bad_training_input(X, error, match):
    with pytest.raises(error, match=match):
        UL4M4Imputer(3).fit(X)


def test_many_bad_rows_are_summarised():
    a = np.ones((50, 2))
    a[::2, 0] = np.nan
    with pytest.raises(ValueError, match=r"\[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, \.\.\. \(25 rows"):
        UL4M4Imputer(2).fit({"a": a})


@pytest.mark.parametrize(
    ("X", "match"),
    [
        ({"a": np.ones((2, 2))}, r"missing modalities \['b'\]"),
        ({"a": np.ones((2, 2)), "b": np.ones((2, 2)), "c": np.ones((2, 2))},
         r"unknown modalities \['c'\]"),
        ({"a": np.ones((2, 3)), "b": np.ones((2, 2))}, r"modality 'a': expected 2 features, got 3"),
        ([np.ones((2, 2))], r"X has 1 modalities, expected 2"),
    ],
)
def test_bad_transform_input(X, match):
    imp = UL4M4Imputer(2, random_state=0).fit(GOOD)
    with pytest.raises(ValueError, match=match):
        imp.transform(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_clusters": 0}, "n_clusters must be an integer >= 1"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"init": "kmeans"}, "init must be one of"),
        ({"dtype": np.int32}, "dtype must be float32 or float64"),
        ({"batch_size": 0}, "batch_size"),
        ({"empty": "zero"}, "empty must be one of"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        UL4M4Imputer(**params).fit(GOOD)


def test_bad_explicit_init():
    with pytest.raises(ValueError, match="init has 3 centres, expected n_clusters=2"):
        UL4M4Imputer(2, init={"a": np.ones((3, 2)), "b": np.ones((3, 2))}).fit(GOOD)
    with pytest.raises(ValueError, match=r"modality 'b': expected 2 features"):
        UL4M4Imputer(2, init={"a": np.ones((2, 2)), "b": np.ones((2, 1))}).fit(GOOD)


def test_inputs_are_never_mutated_on_error():
    a = np.array([[1.0, np.nan], [1.0, 2.0], [3, 4]])
    before = a.copy()
    with pytest.raises(ValueError):
        UL4M4Imputer(2).fit({"a": a})
    np.testing.assert_array_equal(a, before)


def test_memmap_input(tmp_path):
    X, _ = _incomplete(n=80, seed=9)
    maps = {}
    for name, a in X.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, a)
        maps[name] = np.load(path, mmap_mode="r")
    a = UL4M4Imputer(3, random_state=0, batch_size=16).fit(maps)
    b = UL4M4Imputer(3, random_state=0, batch_size=16).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    out = a.transform(maps)
    assert not any(np.isnan(v).any() for v in out.values())


@pytest.mark.parametrize("inline_bytes", [0, None], ids=["pool", "inline"])
def test_threads_do_not_change_results(monkeypatch, inline_bytes):
    if inline_bytes is not None:  # 0: every pass of n_jobs=3 goes through the pool
        monkeypatch.setattr(ul4m4.threads, "INLINE_BYTES", inline_bytes)
    X, _ = _incomplete(n=300, seed=12)
    one = UL4M4Imputer(5, random_state=0, batch_size=16, n_jobs=1).fit(X)
    three = UL4M4Imputer(5, random_state=0, batch_size=16, n_jobs=3).fit(X)
    np.testing.assert_array_equal(one.labels_, three.labels_)
    assert one.history_ == three.history_
    for name in X:
        np.testing.assert_array_equal(one.cluster_centers_[name], three.cluster_centers_[name])
        np.testing.assert_array_equal(one.transform(X)[name], three.transform(X)[name])


def test_inertia_and_model_do_not_depend_on_chunks_or_threads(monkeypatch):
    """Wide enough rows that BLAS's GEMM rounds a row differently in blocks of other
    sizes: the inertia is a sum of per-row float64 distances, so it is the same bits."""
    monkeypatch.setattr(ul4m4.threads, "INLINE_BYTES", 0)  # n_jobs=2 runs the pool
    X, _ = _incomplete(n=3000, seed=13, dims=(96, 64, 128))
    fits = [UL4M4Imputer(8, random_state=0, batch_size=b, n_jobs=j, max_iter=6).fit(X)
            for b, j in ((None, 1), (None, 2), (257, 2), (1000, 1))]
    for other in fits[1:]:
        assert other.history_ == fits[0].history_ and other.inertia_ == fits[0].inertia_
        np.testing.assert_array_equal(other.labels_, fits[0].labels_)
        for name in X:
            np.testing.assert_array_equal(other.cluster_centers_[name],
                                          fits[0].cluster_centers_[name])


def test_explicit_init_with_an_empty_centre_names_the_centre():
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(10, 2)), "b": rng.normal(size=(10, 3))}
    init = {"a": np.array([[np.nan, np.nan], [0.0, 0.0]]),
            "b": np.array([[np.nan] * 3, [0.0, 0.0, 0.0]])}
    with pytest.raises(ValueError, match=r"^init: centres \[0\] have no observed modality") as e:
        UL4M4Imputer(2, init=init).fit(X)
    assert "empty=" not in str(e.value)  # the samples' option does not apply to centres


def test_a_single_sample_or_an_empty_sample_gets_the_fix_in_the_error():
    X, _ = _incomplete(seed=7)
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    one = {n: a[5] for n, a in X.items()}  # one sample, 1-D rows
    with pytest.raises(ValueError, match=r"modality 'm0': expected a 2-D array .* got shape "
                                         r"\(5,\); for a single sample pass x\.reshape\(1, -1\)"):
        imp.transform(one)
    assert imp.transform({n: a.reshape(1, -1) for n, a in one.items()})["m0"].shape == (1, 5)
    empty = {n: a[:4].copy() for n, a in X.items()}
    for a in empty.values():
        a[2] = np.nan
    for call in (imp.transform, UL4M4Imputer(2).fit):
        with pytest.raises(ValueError, match=r"samples \[2\] have no observed modality .*; pass "
                                             r"empty='mean' to fill"):
            call(empty)
    assert not np.isnan(imp.set_params(empty="mean").transform(empty)["m1"]).any()


# ------------------------------------------------------------ convergence warnings
def _convergence_warnings(imp, X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imp.fit(X)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_a_cycling_ensemble_member_is_reseeded_without_a_warning():
    """Member 2 of 3 cycles from its first seeds: the library drew them, so it draws
    others (from random_state) instead of telling the user to change settings."""
    X = cycling_data()
    imp = UL4M4Imputer(7, random_state=17, n_ensemble=3, dtype=np.float64)
    assert _convergence_warnings(imp, X) == []
    assert [r.stopped_by for r in imp.runs_] == ["fixed_point"] * 3
    assert [r.n_reseeds for r in imp.runs_] == [0, 1, 0]  # the cycle is on record
    assert all(r.converged for r in imp.runs_) and imp.converged_
    again = UL4M4Imputer(7, random_state=17, n_ensemble=3, dtype=np.float64).fit(X)
    for name in X:  # reseeding draws from random_state: the fit is reproducible
        np.testing.assert_array_equal(again.transform(X)[name], imp.transform(X)[name])


def test_an_ensemble_member_that_keeps_cycling_warns_and_is_not_converged(monkeypatch):
    """With no reseeding left, the warning names the member, and converged_ agrees
    with it even though the first member (the model of labels_) converged."""
    import ul4m4.model

    monkeypatch.setattr(ul4m4.model, "MAX_RESEEDS", 0)
    X = cycling_data()
    imp = UL4M4Imputer(7, random_state=17, n_ensemble=3, dtype=np.float64)
    messages = _convergence_warnings(imp, X)
    assert len(messages) == 1
    assert "ensemble member 2 of 3" in messages[0] and "cycle of period 2" in messages[0]
    assert "Increasing max_iter will not help" in messages[0]
    assert [r.stopped_by for r in imp.runs_] == ["fixed_point", "cycle", "fixed_point"]
    assert imp.runs_[1].cycle_period == 2 and imp.runs_[1].n_iter < 20
    assert imp.runs_[0].converged and not imp.converged_


def test_cycle_warning_advice_works():
    X = cycling_data()
    single = UL4M4Imputer(7, random_state=364, dtype=np.float64)
    messages = _convergence_warnings(single, X)
    assert len(messages) == 1 and "k-means did not converge" in messages[0]
    assert "cycle of period 2" in messages[0]
    # The user's own single fit is not reseeded: the advice is theirs to take.
    assert single.runs_[0].stopped_by == "cycle" and single.runs_[0].n_reseeds == 0
    assert not single.converged_
    for advice in ({"random_state": 365}, {"random_state": 364, "n_init": 3}):
        imp = UL4M4Imputer(7, dtype=np.float64, **advice)
        assert _convergence_warnings(imp, X) == []
        assert imp.runs_[0].stopped_by == "fixed_point" and imp.converged_


def test_max_iter_warning_names_the_member():
    X, _ = _incomplete(seed=0)
    imp = UL4M4Imputer(4, random_state=0, n_ensemble=2, max_iter=1)
    messages = _convergence_warnings(imp, X)
    assert [m.split(" did not")[0] for m in messages] == [
        "k-means of ensemble member 1 of 2", "k-means of ensemble member 2 of 2"]
    assert all("max_iter=1" in m and "Increase max_iter" in m for m in messages)
    assert [r.stopped_by for r in imp.runs_] == ["max_iter", "max_iter"]


def test_mfeat_issue_reproduction():
    """The report: converged_ True, n_iter_ 19 and a warning to increase max_iter. Then
    member 2 of the ensemble cycled and warned; it is now reseeded, without a warning."""
    from ul4m4.datasets import load_mfeat
    from ul4m4.missingness import apply_mask, independent_mask

    X, _ = load_mfeat()
    X = apply_mask(X, independent_mask(2000, [0.5] * 6, random_state=0))
    imp = UL4M4Imputer(64, n_ensemble=5, random_state=2)
    messages = _convergence_warnings(imp, X)
    assert imp.converged_ and imp.n_iter_ == 19
    assert messages == []
    assert [r.stopped_by for r in imp.runs_] == ["fixed_point"] * 5
    assert [r.n_reseeds for r in imp.runs_] == [0, 1, 0, 0, 0]


# -------------------------------------------------------------------- progress
def test_verbose_one_logs_stages_and_the_auto_choice(monkeypatch, capsys):
    import ul4m4._utils.progress as progress

    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)  # a Lloyd line every iteration
    X, _ = _incomplete(n=200, seed=1)
    _fit_quiet(UL4M4Imputer("auto", completion="soft", k_grid=(2, 4), n_ensemble=2,
                            random_state=0, verbose=1), X)
    err = capsys.readouterr().err.splitlines()
    assert "[ul4m4] selection: k=2, 1/2" in err and "[ul4m4] selection: k=4, 2/2" in err
    assert any(line.startswith("[ul4m4] member 2/2: k=") for line in err)
    assert any(line.startswith("[ul4m4] member 1/2: Lloyd iteration 1/300, inertia ")
               and ", centre shift " in line and ", elapsed " in line for line in err)
    assert any(line.startswith("[ul4m4] member 2/2: fixed point after ") for line in err)
    # k-means++ passes are progress too (a pass per seed)
    assert any(line.startswith("[ul4m4] member 1/2: k-means++ seed 2/") for line in err)
    auto = [line for line in err if line.startswith("[ul4m4] auto: k=")]
    assert len(auto) == 1 and "lowest hidden-block MSE" in auto[0]
    assert "of k in [2, 4" in auto[0] and "; completion as set" in auto[0]
    assert not any(" iteration 1: inertia" in line for line in err)  # level 2 only


def test_verbose_one_logs_the_auto_ensemble_and_its_fits(capsys):
    X, _ = _incomplete(n=200, seed=1)
    _fit_quiet(UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), random_state=0,
                            verbose=1), X)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("[ul4m4] selection: ") and " candidates on a subsample"
               in line for line in err)
    assert any(line.startswith("[ul4m4] selection: k=4") for line in err)
    auto = [line for line in err if line.startswith("[ul4m4] auto: ")]
    assert len(auto) == 1 and "candidates scored on" in auto[0] and " x " in auto[0]


def test_verbose_two_logs_every_iteration(capsys):
    X, _ = _incomplete(n=200, seed=1)
    imp = _fit_quiet(UL4M4Imputer(3, random_state=0, verbose=2), X)
    err = capsys.readouterr().err
    for i in range(1, imp.n_iter_ + 1):
        assert f"[ul4m4] iteration {i}: inertia " in err


def test_verbose_zero_is_silent(capsys):
    X, _ = _incomplete(n=200, seed=1)
    _fit_quiet(UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), random_state=0), X)
    assert capsys.readouterr().err == ""


def test_auto_line_says_why_a_modality_keeps_the_mean(caplog):
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(300, 4)), "b": rng.normal(size=(300, 3))}  # independent
    X["b"][::4] = np.nan
    X["a"][1::4] = np.nan
    caplog.set_level(logging.INFO, logger="ul4m4")
    _fit_quiet(UL4M4Imputer(4, completion="auto", random_state=0), X)
    auto = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auto: ")]
    assert len(auto) == 1
    assert "; a: mean (hidden-block MSE " in auto[0] and "; b: mean (" in auto[0], auto[0]
    assert auto[0].endswith("(a, b: no ensemble beat the mean by 2 standard errors)")


def test_set_output_pandas_gives_a_dataframe_per_modality():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    X = {"text": rng.normal(size=(30, 3)), "image": rng.normal(size=(30, 2))}
    X["image"][:8] = np.nan
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    plain = imp.transform(X)
    assert imp.set_output(transform="pandas") is imp
    framed = imp.transform(X)
    for name, values in plain.items():
        assert isinstance(framed[name], pd.DataFrame)
        assert list(framed[name].columns) == [f"{name}_{j}" for j in range(values.shape[1])]
        assert framed[name].to_numpy().tobytes() == values.tobytes()
    index = pd.Index([f"s{i}" for i in range(30)])
    mixed = imp.transform({"text": pd.DataFrame(X["text"], index=index, columns=list("abc")),
                           "image": X["image"]})
    assert list(mixed["text"].columns) == list("abc")
    assert mixed["image"].index.equals(index)  # the frames' index, rows paired by position
    imp.set_output(transform="default")
    assert isinstance(imp.transform(X)["text"], np.ndarray)
    with pytest.raises(ValueError, match="transform must be"):
        imp.set_output(transform="polars")


def test_feature_names_out_are_the_pandas_output_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    X = {0: rng.normal(size=(30, 3)), "image": rng.normal(size=(30, 2))}
    X["image"][:8] = np.nan
    imp = UL4M4Imputer(3, random_state=0)
    with pytest.raises(NotFittedError):
        imp.get_feature_names_out()
    imp.fit(X)
    names = imp.get_feature_names_out()
    assert list(names) == imp.modalities_ == ["0", "image"]
    framed = imp.set_output(transform="pandas").transform(X)
    for key, name in zip(X, names, strict=True):
        assert names[name].dtype == object
        assert list(framed[key].columns) == list(names[name]) == [
            f"{name}_{j}" for j in range(X[key].shape[1])]
    # A DataFrame's own columns, given as input_features (keys compared as str).
    named = imp.get_feature_names_out({0: pd.Index(["a", "b", "c"])})
    assert list(named["0"]) == ["a", "b", "c"] and list(named["image"]) == list(names["image"])
    with pytest.raises(ValueError, match=r"input_features\['0'\] has 2 names, modality '0' has 3"):
        imp.get_feature_names_out({"0": ["a", "b"]})
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\]"):
        imp.get_feature_names_out({"audio": ["a"]})
    imp.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4").get_feature_names_out()
    assert {n: list(v) for n, v in loaded.items()} == {n: list(v) for n, v in names.items()}
