"""``ul4m4 fit`` / ``ul4m4 impute`` never lose a user's file: refused paths, id joins, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4._utils.files import MANIFEST
from ul4m4.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _folder(path: Path, n: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    z = rng.normal(size=(n, 2))
    a = z @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(n, 5))
    b = z @ rng.normal(size=(2, 3)) + 0.1 * rng.normal(size=(n, 3))
    which = rng.integers(0, 3, size=n)
    a[which == 1] = np.nan
    b[which == 2] = np.nan
    np.save(path / "a.npy", a)
    pd.DataFrame(b, columns=["b0", "b1", "b2"]).to_csv(path / "b.csv", index=False)
    return path


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ul4m4: error: "), err
    return err[0]


def _hidden(*folders: Path) -> list[str]:
    return sorted(p.name for f in folders if f.is_dir() for p in f.iterdir()
                  if p.name.startswith("."))


@pytest.fixture
def data(tmp_path):
    return _folder(tmp_path / "data")


@pytest.fixture
def model(data, tmp_path, capsys):
    path = tmp_path / "m.ul4m4"
    assert main(["fit", str(data), "--out", str(path), "--quiet", "--param", "n_clusters=3"]) == 0
    capsys.readouterr()
    return path


# ------------------------------------------------------- nothing is written over
@pytest.mark.parametrize("name", ["a.npy", "b.csv"])
def test_fit_never_replaces_an_input(data, capsys, name):
    before = (data / name).read_bytes()
    line = _error(["fit", str(data), "--out", str(data / name), "--quiet"], capsys)
    assert f"is the input file {data / name}" in line
    assert (data / name).read_bytes() == before


@pytest.mark.parametrize("name", ["model.npy", "model.parquet", "model.csv"])
def test_fit_refuses_a_model_name_the_folder_reader_would_pick_up(data, capsys, name):
    line = _error(["fit", str(data), "--out", str(data / name), "--quiet"], capsys)
    assert "would be read as a modality" in line and not (data / name).exists()


def test_fit_never_replaces_a_file_that_is_not_a_model(data, tmp_path, capsys, model):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert "is not a ul4m4 model" in _error(["fit", str(data), "--out", str(notes)], capsys)
    assert notes.read_text() == "mine"
    # A model is replaced by the new one.
    assert main(["fit", str(data), "--out", str(model), "--quiet", "--param",
                 "n_clusters=2"]) == 0
    assert UL4M4Imputer.load(model).n_clusters_ == 2


def test_impute_never_replaces_the_model_or_a_users_files(data, model, tmp_path, capsys):
    before = model.read_bytes()
    line = _error(["impute", str(model), str(data), "--out", str(tmp_path)], capsys)
    assert "holds the model" in line
    assert model.read_bytes() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.npy").write_bytes(b"precious")
    line = _error(["impute", str(model), str(data), "--out", str(mine)], capsys)
    assert "not a ul4m4 output (a.npy)" in line
    assert (mine / "a.npy").read_bytes() == b"precious"


def test_impute_replaces_an_earlier_output_whole(data, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["impute", str(model), str(data), "--out", str(out), "--quiet"]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["a.npy", "b.npy", MANIFEST]
    assert main(["impute", str(model), str(data), "--out", str(out), "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert _hidden(tmp_path, out) == []


def test_param_values_are_checked_before_the_data(tmp_path, capsys):
    line = _error(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.ul4m4"),
                   "--param", "n_clusters=sixteen"], capsys)
    assert "--param" in line and "n_clusters" in line and "nowhere" not in line


# ------------------------------------------------------------ damaged data files
def _npy_with_shape(path: Path, shape: str) -> None:
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * ((64 - (len(header) + 11) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                     + b"\0" * 64)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: _npy_with_shape(d / "a.npy", "(-5, 3)"), "a.npy: cannot be read as a .npy"),
        (lambda d: _npy_with_shape(d / "a.npy", "(1180591620717411303424, 3)"),
         "a.npy: cannot be read as a .npy array of numbers (its header declares shape"),
        (lambda d: _npy_with_shape(d / "a.npy", "(1099511627776, 1099511627776)"),
         "it is truncated or damaged"),
        (lambda d: pd.DataFrame(index=range(120)).to_parquet(d / "e.parquet"),
         "e.parquet: the table has no data columns"),
        (lambda d: (d / "h.csv").write_text("x,y\n"), "h.csv: the table has no rows"),
    ],
)
def test_damaged_data_files_are_one_line_naming_the_file(data, tmp_path, capsys, setup,
                                                          message):
    setup(data)
    line = _error(["fit", str(data), "--out", str(tmp_path / "m.ul4m4"), "--quiet"], capsys)
    assert message in line and "Traceback" not in line


def test_a_folder_as_the_model_path_is_named(data, tmp_path, capsys):
    line = _error(["fit", str(data), "--out", str(tmp_path)], capsys)
    assert "is a folder" in line and ".tmp" not in line


# ------------------------------------------------------------------- --id joins
def test_id_join_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n = 150
    ids = rng.permutation(10_000)[:n] + 7
    z = rng.normal(size=(n, 2))
    text = z @ rng.normal(size=(2, 4))
    image = z @ rng.normal(size=(2, 3))
    has_text, has_image = rng.random(n) < 0.7, rng.random(n) < 0.7
    has_text[~(has_text | has_image)] = True
    data = tmp_path / "data"
    data.mkdir()
    t_rows, i_rows = rng.permutation(np.flatnonzero(has_text)), np.flatnonzero(has_image)[::-1]
    frame = pd.DataFrame(text[t_rows], columns=[f"t{j}" for j in range(4)])
    frame.insert(2, "sample_id", ids[t_rows])
    frame.to_csv(data / "text.csv", index=False)
    frame = pd.DataFrame(image[i_rows], columns=["i0", "i1", "i2"]).assign(sample_id=ids[i_rows])
    frame.to_parquet(data / "image.parquet", index=False)

    # Without --id, the column is read as a feature, and the user is told.
    assert main(["fit", str(data), "--out", str(tmp_path / "x.ul4m4"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "different numbers of rows" in err and "--id COLUMN" in err
    model, out = tmp_path / "m.ul4m4", tmp_path / "out"
    assert main(["fit", str(data), "--out", str(model), "--id", "sample_id", "--quiet",
                 "--param", "n_clusters=3"]) == 0
    assert main(["impute", str(model), str(data), "--out", str(out), "--id", "sample_id",
                 "--quiet"]) == 0
    assert "ids.npy" in capsys.readouterr().out
    order = np.argsort(ids)
    X = {"image": np.where(has_image[:, None], image, np.nan)[order],
         "text": np.where(has_text[:, None], text, np.nan)[order]}
    np.testing.assert_array_equal(np.load(out / "ids.npy"), ids[order])
    expected = UL4M4Imputer(3, random_state=0).fit(X).transform(X)
    for name, values in expected.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), values)
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["ids.npy", "image.npy", "text.npy"]


def test_an_id_column_without_id_is_warned_about(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    frame = pd.read_csv(data / "b.csv").fillna(0.0)
    frame.insert(0, "id", np.arange(len(frame)))
    frame.to_csv(data / "b.csv", index=False)
    assert main(["fit", str(data), "--out", str(tmp_path / "m.ul4m4"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ul4m4: warning: " in err and "column 'id'" in err and "--id id" in err


# -------------------------------------------------------------- killed runs
_CHILD = textwrap.dedent("""
    import importlib, sys, time
    from pathlib import Path
    module, owner, attr, after, flag = sys.argv[1:6]
    target = importlib.import_module(module)
    if owner:
        target = getattr(target, owner)
    original, calls = getattr(target, attr), []
    def held(*args, **kwargs):
        calls.append(1)
        if len(calls) > int(after):
            Path(flag).write_text("held")
            time.sleep(600)
        return original(*args, **kwargs)
    setattr(target, attr, held)
    import ul4m4.datasets.tables
    ul4m4.datasets.tables.TABLE_BATCH_BYTES = 8 * 5 * 10  # tables read 10 rows at a time
    from ul4m4.cli import main
    sys.exit(main(sys.argv[6:]))
""")

#: (stage, module, class, function held, calls let through): where a run is killed.
_FIT_STAGES = [
    ("reading a table", "ul4m4.datasets.files", "", "_fill_nan", 0),
    ("reading a table", "ul4m4.datasets.tables", "", "_numeric_block", 1),
    ("fitting", "ul4m4.imputer", "UL4M4Imputer", "fit", 0),
    ("writing the model", "zipfile", "ZipFile", "writestr", 2),
]
_IMPUTE_STAGES = [
    ("reading a table", "ul4m4.datasets.tables", "", "_numeric_block", 1),
    ("writing the outputs", "ul4m4.inference", "", "complete", 0),
    ("swapping the output folder in", "ul4m4._utils.files", "", "_swap_in", 0),
]


def _killed(tmp_path: Path, stage: tuple, argv: list[str]) -> None:
    """Run the command in a child held at ``stage``, then SIGKILL it there."""
    _, module, owner, attr, after = stage
    flag = tmp_path / "held.flag"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, module, owner, attr, str(after),
                              str(flag), *argv], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()


def _with_id_tables(data: Path) -> None:
    """Give the folder a table read with --id, so that reading fills a joined scratch file."""
    frame = pd.read_csv(data / "b.csv").assign(key=np.arange(120))
    frame.to_csv(data / "b.csv", index=False)
    arr = np.load(data / "a.npy")
    pd.DataFrame(arr, columns=[f"a{j}" for j in range(5)]).assign(key=np.arange(120)).to_parquet(
        data / "a.parquet", index=False)
    (data / "a.npy").unlink()


@pytest.mark.parametrize("stage", _FIT_STAGES, ids=lambda s: f"{s[0]}:{s[3]}")
def test_fit_killed_at_any_stage_loses_nothing_and_the_next_run_cleans_up(tmp_path, stage,
                                                                          capsys):
    data = _folder(tmp_path / "data")
    id_args = []
    if stage[3] == "_fill_nan":
        _with_id_tables(data)
        id_args = ["--id", "key"]
    models = tmp_path / "models"
    model = models / "m.ul4m4"
    argv = ["fit", str(data), "--out", str(model), "--quiet", *id_args,
            "--param", "n_clusters=3"]
    assert main(argv) == 0
    before = model.read_bytes()
    inputs = {p.name: p.read_bytes() for p in data.iterdir()}
    _killed(tmp_path, stage, argv[:-1] + ["n_clusters=2"])
    assert model.read_bytes() == before  # the earlier model is whole
    assert {p.name: p.read_bytes() for p in data.iterdir()} == inputs
    assert _hidden(models)  # the killed run's scratch or temporary file is still there
    assert main(argv[:-1] + ["n_clusters=2"]) == 0
    assert _hidden(models) == [] and UL4M4Imputer.load(model).n_clusters_ == 2


@pytest.mark.parametrize("stage", _IMPUTE_STAGES, ids=lambda s: f"{s[0]}:{s[3]}")
def test_impute_killed_at_any_stage_leaves_the_earlier_output_whole(tmp_path, stage, capsys):
    data = _folder(tmp_path / "data")
    model = tmp_path / "m.ul4m4"
    assert main(["fit", str(data), "--out", str(model), "--quiet", "--param",
                 "n_clusters=3"]) == 0
    out = tmp_path / "results" / "filled"
    argv = ["impute", str(model), str(data), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    np.save(data / "a.npy", np.load(data / "a.npy") * 2)  # the next output differs
    _killed(tmp_path, stage, argv)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _hidden(out.parent)  # the killed run's staging or scratch folder
    assert main(argv) == 0
    assert _hidden(out.parent, out) == []
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before
    np.testing.assert_array_equal(
        np.load(out / "a.npy"),
        UL4M4Imputer.load(model).transform({"a": np.load(data / "a.npy"),
                                            "b": pd.read_csv(data / "b.csv").to_numpy()})["a"])
