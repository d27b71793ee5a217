"""ul4m4.inputs: what each kind of input is read as or why it is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4.inputs import InputForm
from ul4m4.validation import check_multimodal


def _arrays(n=12, seed=0):
    rng = np.random.default_rng(seed)
    X = {"a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 3))}
    X["b"][[0, 3]] = np.nan
    return X


# ------------------------------------------------------------------ torch tensors
def test_a_tensor_with_a_host_backend_says_to_use_the_torch_backend():
    torch = pytest.importorskip("torch")
    X = {"a": torch.ones(6, 2), "b": np.ones((6, 1))}
    for backend in ("numpy", "dask"):
        if backend == "dask":
            pytest.importorskip("dask")
        with pytest.raises(TypeError) as caught:
            UL4M4Imputer(2, backend=backend).fit(X)
        message = str(caught.value)
        assert message.startswith("modality 'a' is a torch.Tensor: pass backend='torch'")
        assert message.count(". ") == 0 and "\n" not in message  # one sentence
        assert message.endswith("convert it with .numpy() for this backend")
    # NumPy has no bfloat16, so .numpy() would fail on such a tensor.
    with pytest.raises(TypeError, match=r"convert it with \.float\(\)\.numpy\(\) for this"):
        UL4M4Imputer(2).fit({"a": torch.ones(6, 2, dtype=torch.bfloat16)})


# ------------------------------------------------------- nullable pandas dtypes
@pytest.mark.parametrize("dtype", ["Float64", "Int64", "Float32"])
def test_nullable_columns_read_as_floats_and_na_rows_are_missing(dtype):
    values = np.arange(12.0).reshape(6, 2)
    frame = pd.DataFrame(values).astype(dtype)
    frame.iloc[[1, 4]] = pd.NA
    data = check_multimodal({"a": frame, "b": np.ones((6, 1))})
    expected = np.float32 if dtype == "Float32" else np.float64
    assert data.arrays[0].dtype == expected
    np.testing.assert_array_equal(data.mask[:, 0], [True, False, True, True, False, True])
    observed = data.mask[:, 0]
    np.testing.assert_array_equal(data.arrays[0][observed], values[observed])
    assert np.isnan(data.arrays[0][~observed]).all()


def test_nullable_and_plain_columns_mix():
    frame = pd.DataFrame({"x": pd.array([1.5, None, 2.0], dtype="Float64"),
                          "y": pd.array([1, None, 3], dtype="Int32"),
                          "z": np.array([0.5, np.nan, 1.0], dtype=np.float32)})
    data = check_multimodal({"a": frame, "b": np.ones((3, 1))})
    assert data.arrays[0].dtype == np.float64
    np.testing.assert_array_equal(data.mask[:, 0], [True, False, True])


def test_a_non_numeric_nullable_column_is_still_refused():
    frame = pd.DataFrame({"x": pd.array([True, None], dtype="boolean"), "y": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"modality 'a': expected a real numeric dtype"):
        check_multimodal({"a": frame})


def test_the_dict_api_takes_nullable_frames_as_the_float_arrays_they_hold():
    X = _arrays(40, seed=1)
    nullable = {n: pd.DataFrame(a).astype("Float64") for n, a in X.items()}
    assert nullable["b"].iloc[0].isna().all()  # NaN became pd.NA
    ref = UL4M4Imputer(3, random_state=0).fit(X)
    imp = UL4M4Imputer(3, random_state=0).fit(nullable)
    np.testing.assert_array_equal(imp.labels_, ref.labels_)
    out = imp.transform(nullable)
    for name, array in ref.transform(X).items():
        np.testing.assert_array_equal(out[name].to_numpy(dtype=np.float64), array)


# ---------------------------------------------------------- DataFrame indexes
def test_frames_with_different_indexes_are_refused():
    X = {n: pd.DataFrame(a) for n, a in _arrays().items()}
    X["b"] = X["b"].sample(frac=1.0, random_state=0)  # same labels, other order
    with pytest.raises(ValueError, match=r"'a' and 'b' are DataFrames with different indexes.*"
                                         r"union of their indexes"):
        check_multimodal(X)
    with pytest.raises(ValueError, match="different indexes"):
        UL4M4Imputer(2, random_state=0).fit(X)
    # The fix the message gives pairs the rows right.
    aligned = _run_hint(X)
    data = check_multimodal(aligned)
    np.testing.assert_array_equal(np.asarray(data.arrays[1]), _arrays()["b"])


def _run_hint(X):
    """Run the code the index error suggests on ``X``; return the aligned ``X``."""
    with pytest.raises(ValueError) as caught:
        check_multimodal(X)
    code = str(caught.value).split("e.g. ", 1)[1]
    scope = {"X": X}
    exec(code, scope)
    return scope["X"]


def test_the_index_hint_keeps_every_sample_of_every_frame():
    # 'text' lacks samples 9-11, 'audio' lacks 0-1 and has 12: the union keeps all 13;
    # reindexing on the first frame's index would drop the samples without text.
    rng = np.random.default_rng(0)
    labels = [f"s{i:02d}" for i in range(13)]
    text = pd.DataFrame(rng.normal(size=(9, 2)), index=labels[:9])
    image = pd.DataFrame(rng.normal(size=(13, 3)), index=labels)
    audio = pd.DataFrame(rng.normal(size=(11, 1)), index=labels[2:])
    for X, names in (({"text": text, 0: image, "audio": audio}, ["text", 0, "audio"]),
                     ([text, image, audio], [0, 1, 2])):
        aligned = _run_hint(X)
        frames = [aligned[n] for n in names]
        assert all(list(f.index) == labels for f in frames)
        data = check_multimodal(aligned)
        np.testing.assert_array_equal(data.mask.sum(axis=0), [9, 13, 11])
        np.testing.assert_array_equal(frames[0].loc["s03"], text.loc["s03"])


def test_frames_with_equal_indexes_and_arrays_pair_by_position():
    X = _arrays()
    labels = pd.Index([f"s{i}" for i in range(12)])
    frames = {"a": pd.DataFrame(X["a"], index=labels), "b": pd.DataFrame(X["b"], index=labels)}
    check_multimodal(frames)
    # RangeIndex and an Index of the same labels are equal; an array has no index.
    check_multimodal({"a": pd.DataFrame(X["a"]), "b": pd.DataFrame(X["b"], index=list(range(12))),
                      "c": np.ones((12, 1))})


# ------------------------------------------------------------------ InputForm
def test_input_form_gives_results_back_under_the_callers_keys_and_frames():
    frame = pd.DataFrame(np.zeros((2, 2)), index=["x", "y"], columns=["c0", "c1"])
    form = InputForm.of({0: frame, "b": np.zeros((2, 1))})
    assert form.order(["b", "0"]) == ["0", "b"]
    filled = {"0": np.ones((2, 2)), "b": np.ones((2, 1))}
    sources = {"0": np.array([-1, 0]), "b": np.array([-1, -1])}
    out, src = form.wrap((filled, sources))
    assert list(out) == [0, "b"] and list(src) == [0, "b"]
    pd.testing.assert_frame_equal(out[0], pd.DataFrame(np.ones((2, 2)), index=frame.index,
                                                       columns=frame.columns))
    assert isinstance(out["b"], np.ndarray) and isinstance(src[0], np.ndarray)
    assert isinstance(form.wrap(filled, frames=False)[0], np.ndarray)
    # A list input has no keys of its own: results keep the fitted names.
    assert InputForm.of([np.zeros((2, 1))]).order(["0"]) == ["0"]
