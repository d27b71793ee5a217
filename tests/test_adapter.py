"""Tests of the 2-D scikit-learn adapter :class:`ul4m4.adapter.ModalityImputer`."""

from __future__ import annotations

import doctest
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from strategies import multimodal

import ul4m4.adapter
from ul4m4 import UL4M4Imputer
from ul4m4.adapter import ModalityImputer

#: Column layout used throughout: text 0-3, pass-through 4, image 5-7, audio 8 and 10,
#: pass-through 9.
LAYOUT = {"text": slice(0, 4), "image": [5, 6, 7], "audio": np.array([8, 10])}
PASSTHROUGH = [4, 9]


def make_data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with LAYOUT's modalities missing in blocks and NaN in the pass-through column 9."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, 11)) + y[:, None]
    X[rng.random(n) < 0.3, 0:4] = np.nan
    image_missing = rng.random(n) < 0.3
    X[image_missing, 5:8] = np.nan
    audio_missing = rng.random(n) < 0.3
    X[np.ix_(audio_missing, [8, 10])] = np.nan
    # Every sample keeps at least one modality.
    X[~np.isfinite(X[:, [0, 5, 8]]).any(axis=1), 0:4] = 1.0
    X[rng.random(n) < 0.2, 9] = np.nan
    return X, y


def split(X: np.ndarray) -> dict[str, np.ndarray]:
    return {name: X[:, cols] for name, cols in LAYOUT.items()}


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint64 if a.dtype == np.float64 else np.uint32)


# ----------------------------------------------------------------- equivalence
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_ul4m4imputer_on_split_data(dtype):
    X, _ = make_data()
    adapter = ModalityImputer(LAYOUT, n_clusters=5, random_state=3, dtype=dtype).fit(X)
    inner = UL4M4Imputer(n_clusters=5, random_state=3, dtype=dtype).fit(split(X))
    out = adapter.transform(X)
    expected = inner.transform(split(X))
    for name, cols in LAYOUT.items():
        np.testing.assert_array_equal(bits(out[:, cols]), bits(expected[name]))
    np.testing.assert_array_equal(adapter.imputer_.labels_, inner.labels_)
    assert adapter.n_iter_ == inner.n_iter_
    for name in LAYOUT:
        np.testing.assert_array_equal(
            adapter.imputer_.cluster_centers_[name], inner.cluster_centers_[name]
        )


def test_fit_transform_equals_fit_then_transform():
    X, _ = make_data()
    a = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit_transform(X)
    b = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)


def test_default_is_one_modality_over_all_columns():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    X[::4] = np.nan
    imp = ModalityImputer(n_clusters=3, random_state=0, empty="mean").fit(X)
    assert list(imp.modality_columns_) == ["0"]
    np.testing.assert_array_equal(imp.modality_columns_["0"], [0, 1, 2])
    assert imp.passthrough_columns_.size == 0
    out = imp.transform(X)
    # A sample with its only modality missing gets the training mean.
    np.testing.assert_allclose(out[0], np.nanmean(X, axis=0))


# ------------------------------------------------------- observed values, no mutation
def test_observed_untouched_and_input_not_mutated():
    X, _ = make_data()
    before = X.copy()
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0)
    out = imp.fit(X).transform(X)
    np.testing.assert_array_equal(bits(X), bits(before))
    assert out is not X and not np.shares_memory(out, X)
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(bits(out)[observed], bits(X)[observed])
    modality_cols = np.r_[0:4, 5:8, 8, 10]
    assert not np.isnan(out[:, modality_cols]).any()


def test_read_only_input_and_float32_dtype_kept():
    X, _ = make_data()
    X32 = X.astype(np.float32)
    X32.setflags(write=False)
    out = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X32).transform(X32)
    assert out.dtype == np.float32 and out.flags.writeable
    observed = ~np.isnan(X32)
    np.testing.assert_array_equal(bits(out)[observed], bits(X32)[observed])


def test_integer_input_becomes_float64():
    X = np.arange(60, dtype=np.int64).reshape(20, 3) % 7
    out = ModalityImputer({"a": [0, 1], "b": 2}, n_clusters=2, random_state=0).fit_transform(X)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, X)


def test_integers_beyond_2_53_warn_that_float64_rounds_them():
    X = np.arange(60, dtype=np.int64).reshape(20, 3) % 7
    X[3, 0] = 2**53 + 1
    imp = ModalityImputer({"a": [0, 1], "b": 2}, n_clusters=2, random_state=0)
    for call in (imp.fit, imp.transform):
        with pytest.warns(UserWarning, match=r"^X: integer values up to 9007199254740993 in "
                                             r"magnitude exceed 2\*\*53"):
            call(X)
    frame = pd.DataFrame({"i": X[:, 0], "f": X[:, 1].astype(float), "g": X[:, 2]})
    with pytest.warns(UserWarning, match=r"^X: integer values up to 9007199254740993"):
        imp.fit(frame)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@settings(max_examples=25)
@given(data=multimodal(max_modalities=3, max_n=16, max_dim=3, max_k=4), seed=st.integers(0, 9))
def test_observed_bits_kept_for_random_patterns(data, seed):
    blocks, mask, k = data
    X = np.hstack(list(blocks.values()))
    # Columns shuffled, so the selectors are unsorted index lists rather than slices.
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    Xp = X[:, perm]
    where = np.argsort(perm)
    layout, start = {}, 0
    for name, block in blocks.items():
        layout[name] = where[start : start + block.shape[1]].tolist()
        start += block.shape[1]
    before = Xp.copy()
    imp = ModalityImputer(layout, n_clusters=k, random_state=seed).fit(Xp)
    out = imp.transform(Xp)
    np.testing.assert_array_equal(bits(Xp), bits(before))
    observed = ~np.isnan(Xp)
    np.testing.assert_array_equal(bits(out)[observed], bits(Xp)[observed])
    assert not np.isnan(out).any()
    expected = UL4M4Imputer(n_clusters=k, random_state=seed).fit(blocks).transform(blocks)
    for name, cols in layout.items():
        np.testing.assert_array_equal(bits(out[:, cols]), bits(expected[name]))


# ----------------------------------------------------------------- pass-through
def test_passthrough_columns_unchanged():
    X, _ = make_data()
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X)
    np.testing.assert_array_equal(imp.passthrough_columns_, PASSTHROUGH)
    out = imp.transform(X)
    np.testing.assert_array_equal(bits(out[:, PASSTHROUGH]), bits(X[:, PASSTHROUGH]))
    assert np.isnan(out[:, 9]).any()  # NaN in a pass-through column stays NaN


def test_passthrough_column_does_not_change_the_model():
    X, _ = make_data()
    X2 = X.copy()
    X2[:, PASSTHROUGH] = np.random.default_rng(5).normal(size=(X.shape[0], 2)) * 1e6
    a = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit_transform(X)
    b = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit_transform(X2)
    keep = np.setdiff1d(np.arange(X.shape[1]), PASSTHROUGH)
    np.testing.assert_array_equal(a[:, keep], b[:, keep])


# ------------------------------------------------------------ pipelines & search
def test_pipeline_with_logistic_regression():
    X, y = make_data(120)
    pipe = Pipeline(
        [
            ("impute", ModalityImputer(LAYOUT, n_clusters=4, random_state=0)),
            # A second step mean-fills the NaN left in pass-through column 9.
            ("note", ModalityImputer({"note": [9]}, n_clusters=2, random_state=0, empty="mean")),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (120,)
    assert pipe.score(X, y) > 0.6


def test_clone_and_grid_search():
    X, y = make_data(120)
    X = np.delete(X, 9, axis=1)  # LogisticRegression cannot take the NaN pass-through column
    imp = ModalityImputer(LAYOUT | {"audio": [8, 9]}, n_clusters=3, random_state=0)
    cloned = clone(imp)
    assert cloned.get_params() == imp.get_params()
    assert cloned.modalities is not imp.modalities  # params are deep-copied, not shared
    pipe = Pipeline([("impute", imp), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"impute__n_clusters": [2, 4]}, cv=3).fit(X, y)
    assert search.best_params_["impute__n_clusters"] in (2, 4)
    assert search.best_estimator_.named_steps["impute"].imputer_.n_clusters in (2, 4)
    assert imp.modalities["text"] == slice(0, 4)  # the constructor param is untouched
    assert not hasattr(imp, "imputer_")


def test_pickle_roundtrip():
    X, _ = make_data()
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(imp))
    np.testing.assert_array_equal(bits(again.transform(X)), bits(imp.transform(X)))


# ------------------------------------------------------------------------ pandas
def test_dataframe_with_column_names():
    X, _ = make_data()
    names = [f"t{i}" for i in range(4)] + ["id"] + ["i0", "i1", "i2"] + ["a0", "note", "a1"]
    df = pd.DataFrame(X, columns=names)
    before = df.copy()
    layout = {"text": ["t0", "t1", "t2", "t3"], "image": ["i2", "i0", "i1"], "audio": ["a0", "a1"]}
    imp = ModalityImputer(layout, n_clusters=5, random_state=3).fit(df)
    out = imp.transform(df)
    pd.testing.assert_frame_equal(df, before)
    np.testing.assert_array_equal(imp.feature_names_in_, names)
    np.testing.assert_array_equal(imp.get_feature_names_out(), names)
    np.testing.assert_array_equal(imp.modality_columns_["image"], [5, 6, 7])
    expected = ModalityImputer(LAYOUT, n_clusters=5, random_state=3).fit(X).transform(X)
    np.testing.assert_array_equal(bits(out), bits(expected))

    imp.set_output(transform="pandas")
    frame = imp.transform(df)
    assert list(frame.columns) == names
    np.testing.assert_array_equal(frame.to_numpy(), expected)
    with pytest.raises(ValueError, match="input_features is not equal"):
        imp.get_feature_names_out(["x"] * len(names))


def test_set_output_pandas_in_a_pipeline():
    X, y = make_data(120)
    names = [f"c{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=names, index=pd.RangeIndex(1000, 1120, name="id"))
    df = df.drop(columns="c9")  # the NaN pass-through column, which the next step refuses
    layout = {"text": ["c0", "c1", "c2", "c3"], "image": ["c5", "c6", "c7"],
              "audio": ["c8", "c10"]}
    pipe = Pipeline([("impute", ModalityImputer(layout, n_clusters=4, random_state=0)),
                     ("clf", LogisticRegression())]).set_output(transform="pandas")
    pipe.fit(df, y)
    assert pipe.predict(df).shape == (120,)
    frame = pipe[:-1].transform(df)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(df.columns)
    pd.testing.assert_index_equal(frame.index, df.index)
    expected = ModalityImputer(layout, n_clusters=4, random_state=0).fit(df).transform(df)
    np.testing.assert_array_equal(bits(frame.to_numpy()), bits(expected))
    assert not frame.isna().any().any()


def test_nullable_dataframe_na_rows_are_missing():
    X, _ = make_data()
    X = np.delete(X, 9, axis=1)  # no stray NaN outside the modalities
    layout = {"text": slice(0, 4), "image": [5, 6, 7], "audio": [8, 9]}
    nullable = pd.DataFrame(X).astype("Float64")
    assert nullable.isna().any().any()  # NaN became pd.NA
    out = ModalityImputer(layout, n_clusters=4, random_state=0).fit(nullable).transform(nullable)
    expected = ModalityImputer(layout, n_clusters=4, random_state=0).fit(X).transform(X)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(bits(out), bits(expected))


def test_dataframe_column_order_must_match():
    X, _ = make_data()
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    imp = ModalityImputer(
        {"a": ["c0", "c1"], "b": ["c5", "c6"]}, n_clusters=3, random_state=0, empty="mean"
    ).fit(df)
    with pytest.raises(ValueError, match="feature names"):
        imp.transform(df[df.columns[::-1]])


def test_feature_names_out_without_names():
    X, _ = make_data()
    imp = ModalityImputer(LAYOUT, n_clusters=3, random_state=0).fit(X)
    np.testing.assert_array_equal(imp.get_feature_names_out(), [f"x{i}" for i in range(11)])


# ------------------------------------------------------------- missing indicator
def literal_missing(X: np.ndarray) -> np.ndarray:
    """1 where LAYOUT's modality is all NaN in the row, per modality in LAYOUT's order."""
    return np.column_stack([np.isnan(X[:, cols]).all(axis=1) for cols in LAYOUT.values()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_indicator_appends_the_missing_mask(dtype):
    X, _ = make_data()
    X = X.astype(dtype)
    plain = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X)
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0, add_indicator=True).fit(X)
    out = imp.transform(X)
    assert out.shape == (90, 11 + 3) and out.dtype == dtype
    np.testing.assert_array_equal(bits(out[:, :11]), bits(plain.transform(X)))
    expected = literal_missing(X)
    assert expected.any(axis=0).all() and not expected.all(axis=0).any()
    np.testing.assert_array_equal(out[:, 11:], expected.astype(dtype))
    np.testing.assert_array_equal(imp.get_feature_names_out(), [f"x{i}" for i in range(11)] + [
        "missingindicator_text", "missingindicator_image", "missingindicator_audio"])
    np.testing.assert_array_equal(imp.fit_transform(X), out)


def test_add_indicator_follows_the_treatment_of_partial_and_empty_rows():
    X = np.random.default_rng(0).normal(size=(40, 3))
    X[:5] = np.nan  # no observed value: filled with the mean
    X[5:10, 0] = np.nan  # partly NaN: with partial="missing", the whole row is filled
    imp = ModalityImputer(n_clusters=2, random_state=0, empty="mean", partial="missing",
                          add_indicator=True).fit(X)
    out = imp.transform(X)
    np.testing.assert_array_equal(out[:, 3], np.r_[np.ones(10), np.zeros(30)])
    assert list(imp.get_feature_names_out()) == ["x0", "x1", "x2", "missingindicator_0"]


def test_add_indicator_names_and_pandas_output():
    X, _ = make_data()
    names = [f"c{i}" for i in range(11)]
    df = pd.DataFrame(X, columns=names, index=pd.RangeIndex(500, 590))
    layout = {"text": ["c0", "c1", "c2", "c3"], "image": ["c5", "c6", "c7"],
              "audio": ["c8", "c10"]}
    imp = ModalityImputer(layout, n_clusters=4, random_state=0, add_indicator=True).fit(df)
    imp.set_output(transform="pandas")
    frame = imp.transform(df)
    indicators = ["missingindicator_text", "missingindicator_image", "missingindicator_audio"]
    assert list(frame.columns) == names + indicators
    pd.testing.assert_index_equal(frame.index, df.index)
    np.testing.assert_array_equal(frame[indicators].to_numpy(), literal_missing(X))
    with pytest.raises(ValueError, match="input_features is not equal"):
        imp.get_feature_names_out(["x"] * 11)


def test_add_indicator_in_a_pipeline_gives_the_missingness_to_the_next_step():
    X, _ = make_data(120)
    X = np.delete(X, 9, axis=1)  # LogisticRegression cannot take the NaN pass-through column
    layout = {"text": slice(0, 4), "image": [5, 6, 7], "audio": [8, 9]}
    y = np.isnan(X[:, 5]).astype(int)  # the label is whether the image is missing
    steps = [("clf", LogisticRegression(C=100.0))]
    with_indicator = Pipeline([("impute", ModalityImputer(
        layout, n_clusters=4, random_state=0, add_indicator=True)), *steps]).fit(X, y)
    assert with_indicator[-1].n_features_in_ == 10 + 3
    assert with_indicator.score(X, y) == 1.0
    np.testing.assert_array_equal(with_indicator[:-1].get_feature_names_out()[-3:], [
        "missingindicator_text", "missingindicator_image", "missingindicator_audio"])


@pytest.mark.parametrize("value", ["yes", 1, None, np.array([True])])
def test_bad_add_indicator_is_refused_before_data_problems(value):
    X, _ = make_data()
    with pytest.raises(TypeError, match="add_indicator must be a bool, got"):
        ModalityImputer(LAYOUT, add_indicator=value).fit(X[:1])


# ------------------------------------------------------------------ bad selectors
@pytest.mark.parametrize(
    ("modalities", "match"),
    [
        ({"text": slice(0, 4), "image": [3, 4]}, r"'text' and 'image' overlap on columns \[3\]"),
        ({"text": slice(0, 4), "image": slice(2, 6)}, r"'text' and 'image' overlap .*\[2, 3\]"),
        ({"text": [0, -11]}, r"'text' and.*|selects columns \[0\] more than once"),
        ({"text": slice(0, 4), "image": [5, 11]}, r"modality 'image'.*\[11\] are out of range"),
        ({"image": [-12]}, r"modality 'image'.*out of range"),
        ({"image": slice(8, 12)}, r"modality 'image'.*out of range"),
        ({"image": ["i0"]}, r"modality 'image'.*DataFrame"),
        ({"image": slice(5, 5)}, r"modality 'image'.*selects no column"),
        ({"image": []}, r"modality 'image'.*selects no column"),
        ({"image": [0, "a"]}, r"modality 'image'"),
        ({"image": [[0, 1]]}, r"modality 'image'.*1-D"),
        ({"image": [True] * 3}, r"modality 'image'.*boolean mask has length 3"),
        ({"image": slice(0.0, 2)}, r"modality 'image'.*integers"),
        ({1: [0], "1": [1]}, r"unique as strings"),
        ({}, r"modalities is empty"),
        ([slice(0, 2)], r"mapping"),
    ],
)
def test_bad_selectors_raise(modalities, match):
    X, _ = make_data(20)
    imp = ModalityImputer(modalities, n_clusters=2)
    with pytest.raises(ValueError, match=match):
        imp.fit(X)
    assert not hasattr(imp, "imputer_")
    with pytest.raises(NotFittedError):
        imp.transform(X)


def test_unknown_column_name_raises():
    X, _ = make_data(20)
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    with pytest.raises(ValueError, match=r"modality 'img': unknown columns \['nope'\]"):
        ModalityImputer({"txt": ["c0"], "img": ["c1", "nope"]}, n_clusters=2).fit(df)
    with pytest.raises(ValueError, match=r"'txt' and 'img' overlap on columns \['c1'\]"):
        ModalityImputer({"txt": ["c0", "c1"], "img": ["c1", "c2"]}, n_clusters=2).fit(df)


def test_boolean_mask_and_negative_indices():
    X, _ = make_data()
    mask = np.zeros(11, dtype=bool)
    mask[5:8] = True
    layout = {"text": slice(0, 4), "image": mask, "audio": [-3, -1]}
    a = ModalityImputer(layout, n_clusters=4, random_state=0).fit(X)
    b = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X)
    for name in LAYOUT:
        np.testing.assert_array_equal(a.modality_columns_[name], b.modality_columns_[name])
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_empty_samples_by_mode():
    X, _ = make_data()
    X[:3, :] = np.nan  # every modality (and the pass-through columns) missing
    with pytest.raises(ValueError, match=r"samples \[0, 1, 2\] have no observed modality"):
        ModalityImputer(LAYOUT, n_clusters=3, random_state=0).fit(X)
    imp = ModalityImputer(LAYOUT, n_clusters=3, random_state=0, empty="mean")
    out = imp.fit_transform(X)
    # The empty samples are left out of the fit, so the model is the one of the others.
    ref = ModalityImputer(LAYOUT, n_clusters=3, random_state=0).fit(X[3:])
    np.testing.assert_array_equal(imp.imputer_.labels_[3:], ref.imputer_.labels_)
    np.testing.assert_array_equal(imp.imputer_.labels_[:3], [-1, -1, -1])
    np.testing.assert_array_equal(out[3:], ref.transform(X[3:]))
    for name, cols in LAYOUT.items():
        np.testing.assert_array_equal(out[:3, cols], np.tile(imp.imputer_.mean_[name], (3, 1)))
    assert np.isnan(out[:3, PASSTHROUGH]).all()


# ------------------------------------------------------------------- data errors
def test_too_few_samples():
    X, _ = make_data(5)
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=8"):
        ModalityImputer(LAYOUT).fit(X)
    with pytest.raises(ValueError, match="n_samples=1"):
        ModalityImputer(LAYOUT, n_clusters=1).fit(X[:1])


def test_partial_nan_row_in_a_modality_raises():
    X, _ = make_data()
    X[0, 0:4] = [1.0, np.nan, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"modality 'text': rows \[0\] have some but not all"):
        ModalityImputer(LAYOUT, n_clusters=2).fit(X)


def test_wrong_width_and_unfitted():
    X, _ = make_data()
    imp = ModalityImputer(LAYOUT, n_clusters=3, random_state=0)
    with pytest.raises(NotFittedError):
        imp.transform(X)
    imp.fit(X)
    with pytest.raises(ValueError, match="X has 10 features"):
        imp.transform(X[:, :10])


def test_bad_param_reported_before_data_problems():
    X, _ = make_data()
    with pytest.raises(ValueError, match="n_clusters must be an integer"):
        ModalityImputer(LAYOUT, n_clusters=0).fit(X[:1])


def test_docstring_example():
    result = doctest.testmod(ul4m4.adapter, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------- scikit-learn's checks
EXPECTED_FAILED_CHECKS = {
    "check_estimators_pickle": (
        "the check sets random single cells to NaN; a partly NaN modality row is rejected "
        "by default (partial='raise'); the partial='missing' instance passes it"
    ),
}


@parametrize_with_checks(
    [ModalityImputer(), ModalityImputer(n_clusters=2, dtype=np.float64, empty="mean"),
     # partly NaN rows count as missing modalities: every check passes
     ModalityImputer(n_clusters=2, empty="mean", partial="missing"),
     ModalityImputer(n_clusters=2, empty="mean", partial="missing", add_indicator=True)],
    expected_failed_checks=lambda est: (
        {} if est.partial == "missing" else EXPECTED_FAILED_CHECKS),
    xfail_strict=True,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_parameters_match_the_inner_imputer():
    """Every UL4M4Imputer parameter, with its default, is a ModalityImputer parameter too,
    so the adapter cannot drift from the estimator it wraps."""
    inner = inspect.signature(UL4M4Imputer.__init__).parameters
    outer = inspect.signature(ModalityImputer.__init__).parameters
    assert set(outer) - set(inner) == {"modalities", "add_indicator"}
    for name, parameter in inner.items():
        assert outer[name].default == parameter.default, name
        assert outer[name].kind == parameter.kind, name
