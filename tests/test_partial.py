"""``partial="missing"``: a partly NaN modality row counts as that modality missing."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4 import ModalityImputer, UL4M4Imputer


def _data():
    rng = np.random.default_rng(3)
    X = {"a": rng.normal(size=(120, 5)), "b": rng.normal(size=(120, 3))}
    X["b"][:25] = np.nan
    return X


def _with_partial_rows(X):
    partly = {name: a.copy() for name, a in X.items()}
    partly["a"][[30, 31], 1] = np.nan
    partly["b"][[40, 41, 42], 0] = np.nan
    whole = {name: a.copy() for name, a in X.items()}
    whole["a"][[30, 31]] = np.nan
    whole["b"][[40, 41, 42]] = np.nan
    return partly, whole


def test_default_raises_naming_the_rows():
    partly, _ = _with_partial_rows(_data())
    with pytest.raises(ValueError, match=r"rows \[30, 31\] have some but not all values NaN"):
        UL4M4Imputer(4, random_state=0).fit(partly)
    with pytest.raises(ValueError, match="partial must be"):
        UL4M4Imputer(4, partial="cells").fit(_data())


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_missing_equals_blanking_the_whole_row(completion):
    partly, whole = _with_partial_rows(_data())
    a = UL4M4Imputer(4, random_state=0, partial="missing", completion=completion).fit(partly)
    b = UL4M4Imputer(4, random_state=0, completion=completion).fit(whole)
    for name in a.modalities_:
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])
        np.testing.assert_array_equal(a.mean_[name], b.mean_[name])
    np.testing.assert_array_equal(a.labels_, b.labels_)
    out_a, src_a = a.transform(partly, return_sources=True)
    out_b, src_b = b.transform(whole, return_sources=True)
    for name in out_a:
        np.testing.assert_array_equal(out_a[name], out_b[name])
        np.testing.assert_array_equal(src_a[name], src_b[name])
        assert not np.isnan(out_a[name]).any()
    # the finite cells of a partly NaN row are replaced too: the whole block is filled
    assert src_a["a"][30] >= 0 and out_a["a"][30, 0] != partly["a"][30, 0]


def test_missing_survives_save_and_load(tmp_path):
    partly, _ = _with_partial_rows(_data())
    imp = UL4M4Imputer(4, random_state=0, partial="missing").fit(partly)
    imp.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4")
    assert loaded.partial == "missing"
    for name, values in imp.transform(partly).items():
        np.testing.assert_array_equal(loaded.transform(partly)[name], values)


def test_adapter_missing_fills_the_whole_modality():
    partly, _ = _with_partial_rows(_data())
    X = np.hstack([partly["a"], partly["b"]])
    layout = {"a": slice(0, 5), "b": slice(5, 8)}
    with pytest.raises(ValueError, match="some but not all values NaN"):
        ModalityImputer(layout, n_clusters=4).fit(X)
    out = ModalityImputer(layout, n_clusters=4, random_state=0, partial="missing").fit_transform(X)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[50:], X[50:])


def test_dask_engine_agrees():
    da = pytest.importorskip("dask.array")
    partly, _ = _with_partial_rows(_data())
    ref = UL4M4Imputer(4, random_state=0, partial="missing").fit(partly)
    lazy = {n: da.from_array(a, chunks=(50, -1)) for n, a in partly.items()}
    imp = UL4M4Imputer(4, random_state=0, partial="missing", backend="dask").fit(lazy)
    np.testing.assert_array_equal(imp.labels_, ref.labels_)
    out = imp.transform(lazy)
    for name, values in ref.transform(partly).items():
        np.testing.assert_array_equal(np.asarray(out[name]), values)
