"""ModalityImputer.save/load (pickle-free, with the column layout) and ModalityImputer.sources."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from ul4m4 import ModalityImputer, UL4M4Imputer
from ul4m4.persistence import ADAPTER_FORMAT_NAME, ModelFileError

LAYOUT = {"text": slice(0, 4), "image": [5, 6, 7], "audio": np.array([8, 10])}


def make_X(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 11))
    X[:20, 5:8] = np.nan
    X[20:35, [8, 10]] = np.nan
    X[35:45, 0:4] = np.nan
    X[::7, 9] = np.nan  # a pass-through column keeps its NaN
    return X


@pytest.mark.parametrize("params", [{}, {"completion": "soft", "dtype": np.float64},
                                    {"completion": "auto", "n_clusters": "auto",
                                     "k_grid": (2, 4)}])
def test_round_trip_is_bit_identical(tmp_path, params):
    X = make_X()
    imp = ModalityImputer(LAYOUT, random_state=0, **{"n_clusters": 4, **params}).fit(X)
    imp.save(tmp_path / "a.ul4m4")
    loaded = ModalityImputer.load(tmp_path / "a.ul4m4")
    np.testing.assert_array_equal(loaded.transform(X), imp.transform(X))
    for name, cols in imp.modality_columns_.items():
        np.testing.assert_array_equal(loaded.modality_columns_[name], cols)
    np.testing.assert_array_equal(loaded.passthrough_columns_, [4, 9])
    assert loaded.n_features_in_ == 11 and not hasattr(loaded, "feature_names_in_")
    assert loaded.get_params()["completion"] == imp.get_params()["completion"]
    # the restored modalities parameter selects the same columns on a refit
    refit = ModalityImputer(**loaded.get_params()).fit(X)
    np.testing.assert_array_equal(refit.transform(X), imp.transform(X))


def test_round_trip_keeps_add_indicator(tmp_path):
    X = make_X()
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0, add_indicator=True).fit(X)
    imp.save(tmp_path / "a.ul4m4")
    loaded = ModalityImputer.load(tmp_path / "a.ul4m4")
    assert loaded.add_indicator is True
    out = loaded.transform(X)
    assert out.shape == (90, 14)
    np.testing.assert_array_equal(out, imp.transform(X))
    np.testing.assert_array_equal(loaded.get_feature_names_out(), imp.get_feature_names_out())
    # A file without the field (written before it existed) loads without indicators.
    _rewrite_layout(tmp_path / "a.ul4m4", tmp_path / "old.ul4m4", add_indicator=None)
    with pytest.raises(ModelFileError, match="add_indicator=None is not a bool"):
        ModalityImputer.load(tmp_path / "old.ul4m4")
    _rewrite_layout(tmp_path / "a.ul4m4", tmp_path / "old.ul4m4", drop="add_indicator")
    assert ModalityImputer.load(tmp_path / "old.ul4m4").transform(X).shape == (90, 11)


def test_round_trip_keeps_feature_names_and_the_whole_layout(tmp_path):
    X = pd.DataFrame(make_X()[:, :8], columns=[f"c{i}" for i in range(8)])
    X.iloc[:, 4:] = np.where(np.isnan(X.iloc[:, 4:]), np.nan, X.iloc[:, 4:])
    imp = ModalityImputer({"a": ["c0", "c1", "c2", "c3"], "b": ["c5", "c6", "c7"]},
                          n_clusters=3, random_state=0).fit(X)
    imp.save(tmp_path / "named.ul4m4")
    loaded = ModalityImputer.load(tmp_path / "named.ul4m4")
    assert list(loaded.feature_names_in_) == list(X.columns)
    assert list(loaded.get_feature_names_out()) == list(X.columns)
    np.testing.assert_array_equal(loaded.transform(X), imp.transform(X))
    whole = ModalityImputer(n_clusters=2, random_state=0).fit(np.random.default_rng(0).normal(
        size=(30, 3)))
    whole.save(tmp_path / "whole.ul4m4")
    assert ModalityImputer.load(tmp_path / "whole.ul4m4").modalities is None


def test_formats_are_not_confused(tmp_path):
    X = make_X()
    ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X).save(tmp_path / "a.ul4m4")
    blocks = {"x": np.random.default_rng(0).normal(size=(20, 3))}
    UL4M4Imputer(2, random_state=0).fit(blocks).save(tmp_path / "i.ul4m4")
    with pytest.raises(ModelFileError, match="load it with ModalityImputer.load"):
        UL4M4Imputer.load(tmp_path / "a.ul4m4")
    with pytest.raises(ModelFileError, match="load it with UL4M4Imputer.load"):
        ModalityImputer.load(tmp_path / "i.ul4m4")
    with zipfile.ZipFile(tmp_path / "a.ul4m4") as archive:
        meta = json.loads(archive.read("meta.json"))
        assert meta["format"] == ADAPTER_FORMAT_NAME
        assert not any(name.endswith((".pkl", ".pickle")) for name in archive.namelist())


def _rewrite_layout(src, dst, drop=None, **changes):
    with zipfile.ZipFile(src) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    meta = json.loads(members["meta.json"])
    meta["adapter"].update(changes)
    meta["adapter"].pop(drop, None)
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


@pytest.mark.parametrize("changes", [
    {"n_features_in": 12},
    {"passthrough": [4]},
    {"modalities": [["text", [0, 1, 2, 3]], ["image", [5, 6, 7]]]},
    {"modalities": [["text", [0, 1, 2]], ["image", [3, 5, 6, 7]], ["audio", [8, 10]]]},
    {"modalities": {"text": [0, 1, 2, 3]}},
    {"feature_names_in": ["a"]},
    {"n_features_in": "eleven"},
])
def test_inconsistent_layouts_are_refused(tmp_path, changes):
    ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(make_X()).save(tmp_path / "a")
    _rewrite_layout(tmp_path / "a", tmp_path / "b", **changes)
    with pytest.raises(ModelFileError, match="column layout"):
        ModalityImputer.load(tmp_path / "b")


def test_sources_match_the_inner_imputer():
    X = make_X()
    imp = ModalityImputer(LAYOUT, n_clusters=4, random_state=0).fit(X)
    found = imp.sources(X)
    assert list(found) == ["text", "image", "audio"]
    assert (found["image"][:20] >= 0).all() and (found["image"][20:] == -1).all()
    assert (found["audio"][20:35] >= 0).all() and (found["text"][35:45] >= 0).all()
    filled = imp.transform(X)
    centres = imp.imputer_.cluster_centers_["image"]
    np.testing.assert_allclose(filled[:20, 5:8], centres[found["image"][:20]], rtol=1e-6)
    with pytest.raises(ValueError, match="ensemble"):
        ModalityImputer(LAYOUT, n_clusters=4, random_state=0, n_ensemble=2).fit(X).sources(X)
