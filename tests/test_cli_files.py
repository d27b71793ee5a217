"""``ul4m4 fit`` and ``ul4m4 impute`` end to end on folders of .npy, .csv and .parquet files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4._utils.files import MANIFEST
from ul4m4.cli import main
from ul4m4.datasets.files import (
    count_missing_rows,
    discover_modality_files,
    open_modality_files,
)
from ul4m4.files_cli import FilesError, Progress, imputer_params, parse_param

ROOT = Path(__file__).resolve().parents[1]
N = 240


def _make_folder(path: Path, n: int = N, seed: int = 0) -> Path:
    """image.npy (float32), text.csv and audio.parquet, with all-NaN rows; no empty sample."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    z = rng.normal(size=(n, 2))
    image = (z @ rng.normal(size=(2, 8)) + 0.1 * rng.normal(size=(n, 8))).astype(np.float32)
    text = z @ rng.normal(size=(2, 3)) + 0.1 * rng.normal(size=(n, 3))
    audio = z @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(n, 4))
    which = rng.integers(0, 4, size=n)  # 0: complete, 1-3: one modality missing
    image[which == 1] = np.nan
    text[which == 2] = np.nan
    audio[which == 3] = np.nan
    np.save(path / "image.npy", image)
    pd.DataFrame(text, columns=["t0", "t1", "t2"]).to_csv(path / "text.csv", index=False)
    pd.DataFrame(audio, columns=[f"a{i}" for i in range(4)]).to_parquet(path / "audio.parquet")
    return path


def _read_inputs(folder: Path) -> dict[str, np.ndarray]:
    """The folder read whole in memory, in the model's (sorted) modality order."""
    return {
        "audio": pd.read_parquet(folder / "audio.parquet").to_numpy(np.float64, na_value=np.nan),
        "image": np.load(folder / "image.npy"),
        "text": pd.read_csv(folder / "text.csv").to_numpy(np.float64),
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return _make_folder(tmp_path / "data")


@pytest.fixture
def fitted(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    model = tmp_path / "model.ul4m4"
    assert main(["fit", str(data_dir), "--out", str(model), "--quiet",
                 "--param", "n_clusters=4"]) == 0
    capsys.readouterr()
    return model


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ul4m4: error: ") and "Traceback" not in err
    return lines[0]


def _leftovers(*folders: Path) -> list[str]:
    return [p.name for f in folders if f.is_dir() for p in f.iterdir()
            if p.name.startswith(".ul4m4-tmp-") or p.suffix == ".tmp"]


# ------------------------------------------------------------------ end to end
def test_fit_then_impute_matches_the_library(data_dir, fitted, tmp_path, capsys):
    out = tmp_path / "filled"
    assert main(["impute", str(fitted), str(data_dir), "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr()
    assert summary.err == ""
    X = _read_inputs(data_dir)
    expected = UL4M4Imputer.load(fitted).transform(X)
    for name, array in X.items():
        result = np.load(out / f"{name}.npy")
        assert result.dtype == array.dtype and result.shape == array.shape
        assert not np.isnan(result).any()
        observed = ~np.isnan(array).all(axis=1)
        assert np.array_equal(result[observed].view(np.uint8), array[observed].view(np.uint8))
        assert np.array_equal(result, expected[name])
        assert name in summary.out
    assert _leftovers(tmp_path, out) == []


def test_fit_summary_and_saved_model(data_dir, tmp_path, capsys):
    model = tmp_path / "models" / "m.ul4m4"  # the parent folder is created
    assert main(["fit", str(data_dir), "--out", str(model), "--quiet", "--param",
                 "n_clusters=3", "dtype=float64", "max_iter=50"]) == 0
    out = capsys.readouterr().out
    imp = UL4M4Imputer.load(model)
    assert imp.n_clusters_ == 3 and imp.dtype == "float64" and imp.random_state == 0
    assert imp.verbose is False and imp.modalities_ == ["audio", "image", "text"]
    lines = out.splitlines()
    assert len(lines) <= 24
    assert lines[0].startswith(f"ul4m4 fit: 3 modalities x {N} samples from")
    row = next(line for line in lines if line.split()[:2] == ["image", "image.npy"])
    missing = count_missing_rows(np.load(data_dir / "image.npy"))
    assert row.split()[2:] == [str(N), "8", f"{100 * missing / N:.1f}", "%"]
    converged = "converged" if imp.converged_ else "not converged"
    assert f"k = 3; {imp.n_iter_} iterations, {converged}" in out
    assert "completion: greedy" in out and f"model: {model}" in out and "time: " in out
    assert _leftovers(model.parent) == []


def test_auto_summary_names_the_choices(data_dir, tmp_path, capsys):
    model = tmp_path / "auto.ul4m4"
    argv = ["fit", str(data_dir), "--out", str(model), "--quiet",
            "--param", "n_clusters=auto", "k_grid=[2,4]", "completion=auto"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    imp = UL4M4Imputer.load(model)
    assert imp.k_grid == (2, 4)
    sel = imp.selection_
    assert f"chosen on {sel.n_rows:,} rows" in out and "models: " in out
    chosen = next(line for line in out.splitlines() if line.startswith("completion (chosen):"))
    for name in imp.modalities_:
        members = " + ".join(sel.members(name)) or "mean"
        assert f"{name} {members}" in chosen


def test_progress_lines_and_quiet(data_dir, tmp_path, capsys):
    model = tmp_path / "m.ul4m4"
    assert main(["fit", str(data_dir), "--out", str(model), "--param", "n_clusters=2"]) == 0
    err = capsys.readouterr().err
    assert "reading text.csv" in err and f"read audio.parquet: {N} rows" in err
    assert "fitting on" in err and "fitted in" in err
    out = tmp_path / "o"
    assert main(["impute", str(model), str(data_dir), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_verbose_passes_to_the_estimator(data_dir, tmp_path, capsys):
    model = tmp_path / "m.ul4m4"
    assert main(["fit", str(data_dir), "--out", str(model), "--quiet", "-v",
                 "--param", "n_clusters=2"]) == 0
    assert "[ul4m4]" in capsys.readouterr().err
    assert UL4M4Imputer.load(model).verbose is False  # not stored in the model


def test_impute_summary(data_dir, fitted, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["impute", str(fitted), str(data_dir), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    filled = sum(count_missing_rows(a) for a in _read_inputs(data_dir).values())
    assert f"wrote {filled:,} filled rows; audio.npy, image.npy, text.npy in {out}" in text
    assert f"model: {fitted}\nk = 4;" in text


def test_labels_file_is_ignored(data_dir, fitted, tmp_path):
    np.save(data_dir / "labels.npy", np.arange(N) % 2)
    (data_dir / "README.md").write_text("notes")
    assert main(["impute", str(fitted), str(data_dir), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "audio.npy", "image.npy", "text.npy", MANIFEST]


def test_csv_empty_lines_are_missing_rows(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "one.csv").write_text("x\n1.5\n\n2.5\n")
    (folder / "two.csv").write_text("a,b\n1,2\n3,4\n,\n")
    files = discover_modality_files(folder)
    one, two = open_modality_files(files, tmp_path)
    assert np.array_equal(one.array, [[1.5], [np.nan], [2.5]], equal_nan=True)
    assert np.array_equal(two.array, [[1, 2], [3, 4], [np.nan, np.nan]], equal_nan=True)


def test_tables_are_read_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("ul4m4.datasets.tables.TABLE_BATCH_BYTES", 8 * 3 * 7)  # 7 rows
    folder = _make_folder(tmp_path / "d", n=50)
    seen: list[tuple[str, int, int | None]] = []
    opened = open_modality_files(discover_modality_files(folder), tmp_path,
                                 lambda *call: seen.append(call))
    X = _read_inputs(folder)
    for m in opened:
        assert np.array_equal(m.array, X[m.name], equal_nan=True)
    text_calls = [c for c in seen if c[0] == "text.csv"]
    assert len(text_calls) > 5 and text_calls[-1] == ("text.csv", 50, 50)
    assert text_calls[0][2] is None  # the length of a CSV is unknown until read


def test_parse_param_values():
    assert parse_param("n_clusters=16") == ("n_clusters", 16)
    assert parse_param("n_clusters=auto") == ("n_clusters", "auto")
    assert parse_param("k_grid=[4,8]") == ("k_grid", (4, 8))
    assert parse_param("dtype=float64") == ("dtype", "float64")
    assert parse_param("random_state=null") == ("random_state", None)
    assert parse_param("n_jobs=None") == ("n_jobs", None)
    assert parse_param("tol=1e-4") == ("tol", 1e-4)
    assert imputer_params([], verbose=True) == {"random_state": 0, "verbose": True}
    with pytest.raises(FilesError, match="valid names: algorithm, backend"):
        imputer_params(["n_cluster=3"], verbose=False)


def test_subprocess_fit_and_impute(data_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    model, out = tmp_path / "model.ul4m4", tmp_path / "out"
    commands = [
        ["fit", str(data_dir), "--out", str(model), "--param", "n_clusters=auto", "k_grid=[2,4]"],
        ["impute", str(model), str(data_dir), "--out", str(out)],
    ]
    runs = [subprocess.run([sys.executable, "-m", "ul4m4", *c], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=120) for c in commands]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert "chosen from k in [2, 4" in runs[0].stdout and "fitted in" in runs[0].stderr
    assert "ul4m4 impute: 3 modalities" in runs[1].stdout
    assert not np.isnan(np.load(out / "text.npy")).any()
    bad = subprocess.run([sys.executable, "-m", "ul4m4", "impute", str(model), str(tmp_path),
                          "--out", str(out)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("ul4m4: error: ") and bad.stderr.count("\n") == 1


# ------------------------------------------------------------------ bad input
def _fit_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Exit status 2 and stderr exactly one ``ul4m4: error:`` line (progress off)."""
    assert main([*argv, "--quiet"]) == 2
    return _one_error_line(capsys)


def test_error_after_progress_lines(data_dir, tmp_path, capsys):
    (data_dir / "more.csv").write_text("a\n1\n2\n")
    assert main(["fit", str(data_dir), "--out", str(tmp_path / "m.ul4m4")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("ul4m4: ") for line in lines) and len(lines) > 1
    assert [line for line in lines if "error" in line] == [lines[-1]]
    assert lines[-1].startswith("ul4m4: error: the files have different numbers of rows")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "is not a folder"),
        (lambda d: (d.mkdir(), (d / "notes.txt").write_text("x")), "holds no modality file"),
        (lambda d: (_make_folder(d), np.save(d / "extra.npy", np.ones((5, 2)))),
         f"different numbers of rows (audio.parquet: {N}, extra.npy: 5, image.npy: {N})"),
        (lambda d: (_make_folder(d), (d / "more.csv").write_text("a\n1\n2\n")),
         f"different numbers of rows (audio.parquet: {N}, image.npy: {N}, more.csv: 2, "
         f"text.csv: {N})"),
        (lambda d: (d.mkdir(), (d / "t.csv").write_text("a,b\n1,2\nx,3\n")),
         "t.csv: columns ['a'] are not numeric"),
        (lambda d: (d.mkdir(), pd.DataFrame({"a": [1.0, 2.0], "s": ["u", "v"]})
                    .to_parquet(d / "p.parquet")), "p.parquet: columns ['s'] are not numeric"),
        (lambda d: (d.mkdir(), (d / "t.csv").write_text(",a\n0,1\n1,2\n")),
         "t.csv: a column has no name in the header"),
        (lambda d: (d.mkdir(), (d / "p.parquet").write_text("not parquet")),
         "p.parquet: cannot be read as a parquet table"),
        (lambda d: (d.mkdir(), (d / "x.npy").write_text("not npy")),
         "x.npy: cannot be read as a .npy array"),
        (lambda d: (d.mkdir(), np.save(d / "x.npy", np.ones(4))), "save a single feature"),
        (lambda d: (_make_folder(d), np.save(d / "text.npy", np.ones((N, 3)))),
         "text.csv and text.npy both define modality 'text'"),
        (lambda d: (d.mkdir(), np.save(d / "x.npy", np.array([[1.0, np.nan], [1.0, 2.0]]))),
         "rows [0] have some but not all values NaN"),
    ],
)
def test_fit_bad_data(tmp_path, capsys, setup, message):
    folder = tmp_path / "d"
    setup(folder)
    line = _fit_error(["fit", str(folder), "--out", str(tmp_path / "m.ul4m4")], capsys)
    assert message in line
    assert not (tmp_path / "m.ul4m4").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["n_cluster=3"], "unknown --param n_cluster; valid names: algorithm"),
        (["oops"], "--param expects NAME=VALUE, got 'oops'"),
        (["n_clusters=0"], "n_clusters must be an integer >= 1"),
        (["dtype=float16"], "dtype must be float32 or float64"),
        (["completion=best"], "completion must be one of"),
    ],
)
def test_fit_bad_params(data_dir, tmp_path, capsys, params, message):
    argv = ["fit", str(data_dir), "--out", str(tmp_path / "m.ul4m4"), "--param", *params,
            "--verbose"]
    assert message in _fit_error(argv, capsys)


def test_fit_out_is_a_folder(data_dir, tmp_path, capsys):
    assert "is a folder" in _fit_error(["fit", str(data_dir), "--out", str(tmp_path)], capsys)


def test_impute_bad_model(data_dir, tmp_path, capsys):
    garbage = tmp_path / "bad.ul4m4"
    garbage.write_bytes(b"not a model")
    for model, message in ((garbage, "cannot be read as a ul4m4 model file"),
                           (tmp_path / "absent.ul4m4", "absent.ul4m4: no such model file")):
        argv = ["impute", str(model), str(data_dir), "--out", str(tmp_path / "o")]
        assert message in _fit_error(argv, capsys)
    assert not (tmp_path / "o").exists()


def test_impute_modalities_must_match(data_dir, fitted, tmp_path, capsys):
    (data_dir / "text.csv").rename(data_dir / "words.csv")
    argv = ["impute", str(fitted), str(data_dir), "--out", str(tmp_path / "o")]
    line = _fit_error(argv, capsys)
    assert "do not match the model's ['audio', 'image', 'text']" in line
    assert "no file for ['text']; unknown ['words']" in line


def test_impute_width_must_match(data_dir, fitted, tmp_path, capsys):
    np.save(data_dir / "image.npy", np.ones((N, 5), dtype=np.float32))
    argv = ["impute", str(fitted), str(data_dir), "--out", str(tmp_path / "o")]
    assert "expected 8 features, got 5" in _fit_error(argv, capsys)
    assert _leftovers(tmp_path / "o") == []


def test_impute_refuses_to_overwrite_its_input(data_dir, fitted, capsys):
    argv = ["impute", str(fitted), str(data_dir), "--out", str(data_dir)]
    assert "would replace the inputs" in _fit_error(argv, capsys)


# ------------------------------------------------------------------ scale
_SCALE_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from ul4m4.cli import main

    def anonymous_rss():  # file-backed pages of the memory maps are not the process's own
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

    def peak_increase(argv):
        base, peak, done = anonymous_rss(), [0], threading.Event()
        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], anonymous_rss())
                time.sleep(0.002)
        watcher = threading.Thread(target=watch)
        watcher.start()
        status = main(argv)
        done.set()
        watcher.join()
        return status, peak[0] - base

    data, model, out = sys.argv[1:4]
    fit = peak_increase(["fit", data, "--out", model, "--quiet", "--param", "n_clusters=4",
                         "max_iter=3", "algorithm=minibatch"])
    impute = peak_increase(["impute", model, data, "--out", out, "--quiet"])
    print(json.dumps({"fit": fit, "impute": impute}))
    """
)


def _write_big_folder(folder: Path, n: int, rng: np.random.Generator) -> int:
    """a.npy (n x 128), b.npy (n x 64) float32 and c.parquet (n x 16); 30 % missing each."""
    folder.mkdir()
    which = rng.integers(0, 10, size=n)  # 0-2: a missing, 3-5: b missing, 6-8: c missing
    step = 50_000
    for name, width, gone in (("a", 128, which < 3), ("b", 64, (which >= 3) & (which < 6))):
        array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float32,
                                          shape=(n, width))
        for start in range(0, n, step):
            block = rng.standard_normal(size=(step, width), dtype=np.float32)
            block[gone[start : start + step]] = np.nan
            array[start : start + step] = block
        array.flush()
        del array
    gone = (which >= 6) & (which < 9)
    columns = [f"c{i}" for i in range(16)]
    schema = pa.schema([(c, pa.float32()) for c in columns])
    with pq.ParquetWriter(folder / "c.parquet", schema) as writer:
        for start in range(0, n, 10 * step):  # row groups of 500,000 rows
            block = rng.standard_normal(size=(10 * step, 16), dtype=np.float32)
            block[gone[start : start + 10 * step]] = np.nan
            writer.write_table(pa.table(dict(zip(columns, block.T, strict=True)), schema=schema))
    return n * (128 + 64 + 16) * 4


@pytest.mark.slow
def test_one_million_rows_in_bounded_memory(tmp_path):
    """1M rows (832 MB as float32): neither command holds the data in its own memory."""
    n = 1_000_000
    size = _write_big_folder(tmp_path / "big", n, np.random.default_rng(0))
    done = subprocess.run(
        [sys.executable, "-c", _SCALE_SCRIPT, str(tmp_path / "big"), str(tmp_path / "m.ul4m4"),
         str(tmp_path / "out")],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT, timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["fit"][0] == 0 and report["impute"][0] == 0, done.stderr
    for command in ("fit", "impute"):
        assert report[command][1] < size / 2, (report, size)
    for name, width in (("a", 128), ("b", 64), ("c", 16)):
        filled = np.load(tmp_path / "out" / f"{name}.npy", mmap_mode="r")
        assert filled.shape == (n, width) and not np.isnan(filled[-50_000:]).any()
    assert _leftovers(tmp_path, tmp_path / "out") == []


class _SizelessTerminal(io.StringIO):
    """A terminal that reports no size, as `script`, a pty or `docker exec -t` give."""

    def isatty(self) -> bool:
        return True


def test_reading_progress_is_a_bar_on_a_sizeless_terminal():
    stream = _SizelessTerminal()
    progress = Progress(True, stream=stream)
    for done in (10, 20, 30):
        progress.rows("text.csv", done, 30)
    out = stream.getvalue()
    assert "reading text.csv" in out and "\r" in out and "rows" in out
    assert "reading text.csv ..." not in out  # the bar, not the plain line
    assert "read text.csv: 30 rows" in out


def test_impute_std_writes_the_predicted_errors_beside_the_fills(data_dir, fitted, tmp_path,
                                                                 capsys):
    """``--std``: one <modality>.std.npy per modality, equal to transform(return_std=True),
    NaN exactly on the observed rows, in the same output folder (appears whole)."""
    out = tmp_path / "o"
    assert main(["impute", str(fitted), str(data_dir), "--out", str(out), "--quiet",
                 "--std"]) == 0
    assert "audio.std.npy, image.std.npy, text.std.npy" in capsys.readouterr().out
    inputs = _read_inputs(data_dir)
    imputer = UL4M4Imputer.load(fitted)
    _, std = imputer.transform(inputs, return_std=True)
    for name, values in inputs.items():
        written = np.load(out / f"{name}.std.npy")
        observed = ~np.isnan(values).all(axis=1)
        np.testing.assert_array_equal(written, std[name])
        assert np.isnan(written[observed]).all() and (written[~observed] > 0).all()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{n}.npy" for n in inputs), *(f"{n}.std.npy" for n in inputs), MANIFEST])
