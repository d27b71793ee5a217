"""Modality tables: headerless CSV, stored indexes, id columns, dtypes, empty tables."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4.datasets.files import join_modality_files, open_modality_files
from ul4m4.datasets.tables import IdColumnWarning, Table


def _open(files: dict[str, Path], tmp_path: Path) -> dict[str, np.ndarray]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return {m.name: np.array(m.array) for m in open_modality_files(files, scratch)}


# ------------------------------------------------------------------ CSV header lines
def test_headerless_csv_keeps_its_first_sample(tmp_path):
    values = np.random.default_rng(0).normal(size=(300, 4))
    np.savetxt(tmp_path / "a.csv", values, delimiter=",")
    got = _open({"a": tmp_path / "a.csv"}, tmp_path)["a"]
    assert got.shape == (300, 4)
    np.testing.assert_allclose(got, values, rtol=1e-15)


def test_headerless_csv_with_a_missing_cell_in_its_first_line(tmp_path):
    (tmp_path / "a.csv").write_text("1.5,,2\n3,4,5\n")
    got = _open({"a": tmp_path / "a.csv"}, tmp_path)["a"]
    np.testing.assert_array_equal(got, [[1.5, np.nan, 2], [3, 4, 5]])


@pytest.mark.parametrize("header", ["0,1,2", "1,2,3", "x,y,z"])
def test_a_header_line_is_not_a_sample(tmp_path, header):
    (tmp_path / "a.csv").write_text(f"{header}\n7,8,9\n")
    got = _open({"a": tmp_path / "a.csv"}, tmp_path)["a"]
    np.testing.assert_array_equal(got, [[7, 8, 9]])


def test_header_only_csv_has_no_rows(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match=r"a\.csv: the table has no rows$"):
        _open({"a": tmp_path / "a.csv"}, tmp_path)


def test_a_first_row_longer_than_the_header_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("a,b\n1,2,3\n4,5\n")  # pandas would make 1 an index
    with pytest.raises(ValueError, match=r"a\.csv: cannot be read as a CSV table \(.*line 2"):
        _open({"a": tmp_path / "a.csv"}, tmp_path)


def test_repeated_column_name_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("x,x\n1,2\n")
    with pytest.raises(ValueError, match="column 'x' appears twice"):
        _open({"a": tmp_path / "a.csv"}, tmp_path)


# ------------------------------------------------------------------ parquet
def test_float32_parquet_stays_float32(tmp_path):
    frame = pd.DataFrame(np.arange(6, dtype=np.float32).reshape(3, 2), columns=["a", "b"])
    frame.to_parquet(tmp_path / "f.parquet")
    got = _open({"f": tmp_path / "f.parquet"}, tmp_path)["f"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, frame.to_numpy())
    frame["c"] = np.float64(1.0)
    frame.to_parquet(tmp_path / "g.parquet")
    assert _open({"g": tmp_path / "g.parquet"}, tmp_path)["g"].dtype == np.float64


def test_zero_column_parquet_is_refused(tmp_path):
    pd.DataFrame(index=range(5)).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet: the table has no data columns"):
        _open({"e": tmp_path / "e.parquet"}, tmp_path)


def _frames(index_a, index_b):
    rng = np.random.default_rng(1)
    a = pd.DataFrame(rng.normal(size=(len(index_a), 2)), columns=["a0", "a1"], index=index_a)
    b = pd.DataFrame(rng.normal(size=(len(index_b), 3)), columns=["b0", "b1", "b2"],
                     index=index_b)
    return a, b


@pytest.mark.parametrize("index_b", [[10, 12, 11, 13], range(1, 5), ["x", "y", "z", "w"]])
def test_parquet_files_with_different_stored_indexes_are_refused(tmp_path, index_b):
    a, b = _frames([10, 11, 12, 13], index_b)
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    files = {"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"}
    with pytest.raises(ValueError, match=r"a\.parquet and b\.parquet store different row "
                                         r"indexes \(row \d"):
        _open(files, tmp_path)
    # The Python API refuses the same DataFrames.
    from ul4m4 import UL4M4Imputer
    with pytest.raises(ValueError, match="index"):
        UL4M4Imputer(2).fit({"a": a, "b": b})


def test_parquet_files_with_one_stored_index_are_paired(tmp_path):
    a, b = _frames(["p", "q", "r", "s"], ["p", "q", "r", "s"])
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    got = _open({"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"}, tmp_path)
    np.testing.assert_array_equal(got["a"], a.to_numpy())
    np.testing.assert_array_equal(got["b"], b.to_numpy())


# ------------------------------------------------------------------ id-like columns
@pytest.mark.parametrize(
    ("frame", "column"),
    [
        (pd.DataFrame({"id": [5.0, 1.0], "x": [0.5, 0.25]}), "id"),
        (pd.DataFrame({"sample_id": [5.0, 1.0], "x": [0.5, 0.25]}), "sample_id"),
        (pd.DataFrame({"n": [3, 4, 9], "x": [0.5, 0.25, 1.0]}), "n"),
    ],
)
def test_an_id_like_column_read_as_a_feature_is_named(tmp_path, frame, column):
    frame.to_csv(tmp_path / "a.csv", index=False)
    with pytest.warns(IdColumnWarning, match=rf"a\.csv: column '{column}' .* --id {column}"):
        _open({"a": tmp_path / "a.csv"}, tmp_path)


def test_ordinary_columns_raise_no_id_warning(tmp_path):
    pd.DataFrame({"x": [3, 4, 2], "valid": [0.1, 0.2, 0.3]}).to_csv(tmp_path / "a.csv",
                                                                      index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _open({"a": tmp_path / "a.csv"}, tmp_path)


# ------------------------------------------------------------------ joined on ids
def _joined(files, tmp_path, column="id"):
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    opened, ids = join_modality_files(files, column, scratch)
    return {m.name: np.array(m.array) for m in opened}, ids


def _literal_join(tables: dict[str, pd.DataFrame], column: str):
    """The outer join on the sorted union of ids, written plainly with pandas."""
    union = sorted(set().union(*(set(t[column]) for t in tables.values())))
    return {name: t.set_index(column).reindex(union).to_numpy(np.float64)
            for name, t in tables.items()}, union


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_join_is_the_outer_join_on_the_union_of_ids(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("join")
    universe = data.draw(st.lists(st.integers(-50, 10**12), min_size=1, max_size=30,
                                  unique=True))
    tables = {}
    for name, width, suffix in (("a", 2, ".csv"), ("b", 3, ".parquet")):
        ids = data.draw(st.lists(st.sampled_from(universe), min_size=1, unique=True))
        values = np.arange(len(ids) * width, dtype=np.float64).reshape(-1, width) / 7
        tables[name] = pd.DataFrame(values, columns=[f"{name}{j}" for j in range(width)])
        tables[name].insert(data.draw(st.integers(0, width)), "id", ids)
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".csv":
            tables[name].to_csv(path, index=False)
        else:
            tables[name].to_parquet(path, index=False)
    files = {"a": tmp_path / "a.csv", "b": tmp_path / "b.parquet"}
    got, ids = _joined(files, tmp_path)
    expected, union = _literal_join(tables, "id")
    assert ids.dtype == np.int64 and ids.tolist() == union
    for name in tables:
        np.testing.assert_array_equal(got[name], expected[name])


def test_text_ids_join_with_integer_ids_written_as_text(tmp_path):
    pd.DataFrame({"key": ["u7", "u3"], "x": [1.0, 2.0]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"key": ["u3", "u9"], "y": [5.0, 6.0]}).to_parquet(tmp_path / "b.parquet")
    got, ids = _joined({"a": tmp_path / "a.csv", "b": tmp_path / "b.parquet"}, tmp_path, "key")
    assert ids.tolist() == ["u3", "u7", "u9"]
    np.testing.assert_array_equal(got["a"], [[2.0], [1.0], [np.nan]])
    np.testing.assert_array_equal(got["b"], [[5.0], [np.nan], [6.0]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,x\n1,0.5\n2,0.1\n1,0.3\n", r"a\.csv: id 1 appears twice in column 'id' \(rows 0 and 2\)"),
        ("id,x\n1,0.5\n,0.1\n", r"a\.csv: row 1 has no id in column 'id'"),
        ("name,x\n1,0.5\n", r"a\.csv: has no column 'id' for --id"),
    ],
)
def test_bad_ids_are_refused(tmp_path, text, message):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        _joined({"a": tmp_path / "a.csv"}, tmp_path)


def test_fractional_ids_are_refused(tmp_path):
    pd.DataFrame({"id": [1.5, 2.0], "x": [0.5, 0.1]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"a\.parquet: ids in column 'id' must be integers"):
        _joined({"a": tmp_path / "a.parquet"}, tmp_path)


def test_npy_files_cannot_be_joined_on_ids(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"a\.npy: an \.npy array has no id column"):
        _joined({"a": tmp_path / "a.npy"}, tmp_path)


def test_table_reports_its_columns_without_the_id(tmp_path):
    pd.DataFrame({"x": [1.0], "id": [3], "y": [2.0]}).to_csv(tmp_path / "a.csv", index=False)
    assert Table(tmp_path / "a.csv", "id").columns == ["x", "y"]
    assert Table(tmp_path / "a.csv").columns == ["x", "id", "y"]
