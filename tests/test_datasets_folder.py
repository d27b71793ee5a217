"""Tests for loading a multimodal data set from a folder of .npy / .parquet files."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import ul4m4.datasets.folder as folder_module
from ul4m4.datasets.folder import load_folder
from ul4m4.validation import check_multimodal

N = 6


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(N, 3))
    b = rng.normal(size=(N, 2)).astype(np.float32)
    b[[1, 4]] = np.nan
    np.save(tmp_path / "b_text.npy", b)
    np.save(tmp_path / "a_image.npy", a)
    np.save(tmp_path / "labels.npy", np.arange(N) % 2)
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / ".hidden.npy").write_bytes(b"not an array")
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "ignored.npy", np.zeros((2, 2)))
    return tmp_path


def test_layout(data_dir):
    X, y = load_folder(data_dir)
    assert list(X) == ["a_image", "b_text"]
    assert X["a_image"].shape == (N, 3) and X["a_image"].dtype == np.float64
    assert X["b_text"].shape == (N, 2) and X["b_text"].dtype == np.float32
    np.testing.assert_array_equal(y, np.arange(N) % 2)
    np.testing.assert_array_equal(np.isnan(X["b_text"]).all(axis=1), np.isin(np.arange(N), [1, 4]))
    mm = check_multimodal(X)
    assert mm.mask[:, 1].sum() == N - 2


def test_select_and_order_modalities(data_dir):
    X, _ = load_folder(data_dir, modalities=["b_text", "a_image"])
    assert list(X) == ["b_text", "a_image"]
    with pytest.raises(FileNotFoundError, match=r"\['audio'\].*found \['a_image', 'b_text'\]"):
        load_folder(data_dir, modalities=["audio"])
    with pytest.raises(ValueError, match="repeated"):
        load_folder(data_dir, modalities=["a_image", "a_image"])


def test_multilabel_and_string_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    np.save(tmp_path / "labels.npy", np.eye(4, 3, dtype=np.int8))
    _, y = load_folder(tmp_path)
    assert y.shape == (4, 3)
    np.save(tmp_path / "labels.npy", np.array(["cat", "dog", "cat", "eel"]))
    _, y = load_folder(tmp_path)
    assert y.tolist() == ["cat", "dog", "cat", "eel"]


def test_integer_and_bool_modalities_become_float(tmp_path):
    np.save(tmp_path / "counts.npy", np.arange(8).reshape(4, 2))
    np.save(tmp_path / "flags.npy", np.ones((4, 1), dtype=bool))
    X, y = load_folder(tmp_path, require_labels=False)
    assert y is None
    assert X["counts"].dtype == np.float64 and X["flags"].dtype == np.float64


def test_custom_labels_name(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    np.save(tmp_path / "target.npy", np.array([1.5, 2.5, 3.5]))
    X, y = load_folder(tmp_path, labels="target")
    assert list(X) == ["x"] and y.tolist() == [1.5, 2.5, 3.5]


def test_mmap(data_dir):
    X, _ = load_folder(data_dir, mmap=True)
    assert isinstance(X["a_image"], np.memmap)
    assert not X["a_image"].flags.writeable
    X2, _ = load_folder(data_dir)
    np.testing.assert_array_equal(X["a_image"], X2["a_image"])


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_folder(tmp_path / "nope")


def test_no_modality_files(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(3))
    with pytest.raises(FileNotFoundError, match="no modality file"):
        load_folder(tmp_path)


def test_missing_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    with pytest.raises(FileNotFoundError, match=r"labels\.npy.*ul4m4 fit.*require_labels=False"):
        load_folder(tmp_path)


def test_row_count_mismatch_names_the_files(data_dir):
    np.save(data_dir / "c_audio.npy", np.ones((N + 1, 4)))
    with pytest.raises(ValueError, match=r"a_image\.npy: 6.*c_audio\.npy: 7.*labels\.npy: 6"):
        load_folder(data_dir)


def test_label_row_count_mismatch(data_dir):
    np.save(data_dir / "labels.npy", np.zeros(N - 1))
    with pytest.raises(ValueError, match=r"labels\.npy: 5"):
        load_folder(data_dir)


def test_one_dimensional_modality(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(5))
    with pytest.raises(ValueError, match=r"x\.npy: expected a 2-D .*shape \(5,\).*\(n, 1\)"):
        load_folder(tmp_path, require_labels=False)


def test_three_dimensional_modality(tmp_path):
    np.save(tmp_path / "img.npy", np.ones((5, 2, 2)))
    with pytest.raises(ValueError, match=r"img\.npy: expected a 2-D"):
        load_folder(tmp_path, require_labels=False)


def test_empty_modality(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 0)))
    with pytest.raises(ValueError, match=r"x\.npy: empty"):
        load_folder(tmp_path, require_labels=False)


def test_labels_of_wrong_rank(data_dir):
    np.save(data_dir / "labels.npy", np.zeros((N, 2, 2)))
    with pytest.raises(ValueError, match=r"labels\.npy: expected labels of shape"):
        load_folder(data_dir)


def test_object_array(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1, "a"], [2, None]], dtype=object))
    with pytest.raises(ValueError, match=r"x\.npy: cannot be read"):
        load_folder(tmp_path, require_labels=False)


def test_string_modality(tmp_path):
    np.save(tmp_path / "x.npy", np.array([["a"], ["b"]]))
    with pytest.raises(ValueError, match=r"x\.npy: dtype <U1 is not numeric"):
        load_folder(tmp_path, require_labels=False)


def test_truncated_file(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((100, 4)))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:300])
    with pytest.raises(ValueError, match=r"x\.npy: cannot be read"):
        load_folder(tmp_path, require_labels=False)


def test_npz_under_an_npy_name(tmp_path):
    with open(tmp_path / "x.npy", "wb") as fh:
        np.savez(fh, a=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"x\.npy: is an \.npz archive"):
        load_folder(tmp_path, require_labels=False)


def test_partial_nan_rows(tmp_path):
    x = np.ones((5, 3))
    x[2, 0] = np.nan
    x[3] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"x\.npy: rows \[2\] \(1 in all\) are partly NaN"):
        load_folder(tmp_path, require_labels=False)


def test_infinite_values(tmp_path):
    x = np.ones((5, 3))
    x[4, 1] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"x\.npy: rows \[4\].*infinite"):
        load_folder(tmp_path, require_labels=False)


def test_ambiguous_stem(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"x\.npy and x\.parquet both define 'x'"):
        load_folder(tmp_path, require_labels=False)


# --------------------------------------------------------------------------- parquet


@pytest.fixture
def parquet_dir(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    frame = pd.DataFrame(
        {
            "age": pd.array([30, None, 41, 25], dtype="Int64"),
            "income": [1.5, np.nan, 2.5, 3.0],
            "member": pd.array([True, None, False, True], dtype="boolean"),
        }
    )
    frame.to_parquet(tmp_path / "tabular.parquet")
    np.save(tmp_path / "image.npy", np.ones((4, 2)))
    pd.DataFrame({"label": ["a", "b", "a", "c"]}).to_parquet(tmp_path / "labels.parquet")
    return tmp_path


def test_parquet_modality_and_labels(parquet_dir):
    X, y = load_folder(parquet_dir)
    assert list(X) == ["image", "tabular"]
    assert X["tabular"].dtype == np.float64 and X["tabular"].shape == (4, 3)
    assert np.isnan(X["tabular"][1]).all() and not np.isnan(X["tabular"][[0, 2, 3]]).any()
    np.testing.assert_array_equal(X["tabular"][3], [25.0, 3.0, 1.0])
    assert y.tolist() == ["a", "b", "a", "c"]


def test_parquet_partly_missing_row_is_rejected(parquet_dir):
    import pandas as pd

    # Row 1 has age and income missing but a membership flag: not a whole missing row.
    frame = pd.read_parquet(parquet_dir / "tabular.parquet")
    frame["member"] = [True, False, False, True]
    frame.to_parquet(parquet_dir / "tabular.parquet")
    with pytest.raises(ValueError, match=r"tabular\.parquet: rows \[1\]"):
        load_folder(parquet_dir)


def test_parquet_non_numeric_columns(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet: columns \['name'\] are not numeric"):
        load_folder(tmp_path, require_labels=False)


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"t\.parquet: cannot be read as a parquet table"):
        load_folder(tmp_path, require_labels=False)


def test_doctests():
    result = doctest.testmod(folder_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_parquet_without_an_engine(tmp_path, monkeypatch):
    import pandas as pd

    (tmp_path / "t.parquet").write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(ImportError, match=r"t\.parquet: .*pip install pyarrow"):
        load_folder(tmp_path, require_labels=False)
