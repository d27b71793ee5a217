"""``ul4m4 benchmark`` resumes: finished runs are stored one file each and reused.

The end-to-end test starts the command in a subprocess, kills it with SIGKILL
part-way, checks that every stored run file is complete, then reruns the command
and checks that the stored runs were reused (not recomputed, files untouched)
and that the final results equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _processes import kill_when

from ul4m4.cli import main
from ul4m4.experiments import BenchmarkConfig, run_benchmark
from ul4m4.experiments.resume import RunStore, cached, fingerprint

ROOT = Path(__file__).resolve().parents[1]
#: Columns that measure the machine rather than the method.
TIMING = ["fit_s", "fill_train_s", "fill_test_s", "peak_mib"]


def _folder(path: Path, n: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    y = np.repeat(np.arange(3), n // 3)
    latent = rng.normal(size=(3, 4))[y] * 3 + rng.normal(size=(n, 4))
    for name, d in (("text", 24), ("image", 16)):
        np.save(path / f"{name}.npy", latent @ rng.normal(size=(4, d)))
    np.save(path / "labels.npy", y)
    return path


def _args(folder: Path, out: Path) -> list[str]:
    return ["benchmark", "--dataset", str(folder), "--methods", "mean,ul4m4", "--k", "2,3",
            "--seeds", "2", "--missing", "0.4", "--no-progress", "--quiet",
            "--memory", "none", "--out", str(out)]


def _run_files(out: Path) -> dict[str, bytes]:
    folder = out / "runs"
    return {p.name: p.read_bytes() for p in folder.glob("*.json")} if folder.exists() else {}


def _kill_after(argv: list[str], out: Path, n_files: int, limit_s: float = 120) -> int:
    """Start the command, SIGKILL it once ``n_files`` runs are stored; return that count."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ul4m4", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: len(_run_files(out)) >= n_files, "the benchmark", limit_s)
    return len(_run_files(out))


def test_killed_benchmark_resumes_without_recomputing(tmp_path, capsys):
    folder = _folder(tmp_path / "data")
    out = tmp_path / "out"
    argv = _args(folder, out)
    _kill_after(argv, out, n_files=3)
    stored = _run_files(out)
    total = 2 * (1 + 1 * 3)  # seeds x (complete row + settings x (mean + 2 k))
    assert 3 <= len(stored) < total
    # No half-written entry: every visible file is a complete record; an interrupted
    # write can only leave a hidden temporary file, which readers ignore.
    for content in stored.values():
        record = json.loads(content)
        assert set(record) == {"key", "row"} and record["row"]["seed"] == record["key"]["seed"]
    others = [p.name for p in (out / "runs").iterdir() if p.suffix != ".json"]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in others), others
    assert not (out / "results.csv").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"{total} rows ({len(stored)} reused" in err, err
    for name, content in stored.items():  # reused, not rewritten
        path = out / "runs" / name
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtimes[name]
    assert len(_run_files(out)) == total

    fresh = tmp_path / "fresh"
    assert main([*_args(folder, fresh)]) == 0
    capsys.readouterr()
    resumed = pd.read_csv(out / "results.csv").drop(columns=TIMING)
    uninterrupted = pd.read_csv(fresh / "results.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(resumed, uninterrupted)


def _config(**changes) -> BenchmarkConfig:
    base = dict(methods=("mean", "ul4m4"), ks=(2,), seeds=1, missing=(0.4,), memory="none",
                progress=False)
    return BenchmarkConfig(**(base | changes))


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(2), 20)
    X = {"a": rng.normal(size=(40, 3)) + y[:, None], "b": rng.normal(size=(40, 2))}
    return X, y


def test_rows_are_reused_only_for_the_same_settings_and_data(tmp_path):
    runs = tmp_path / "runs"
    first = run_benchmark(_config(), data=_data(), resume_dir=runs)
    assert first.reused == 0 and len(list(runs.glob("*.json"))) == 3
    again = run_benchmark(_config(), data=_data(), resume_dir=runs)
    assert again.reused == 3
    assert again.rows == json.loads(json.dumps(first.rows))
    # A new k adds one run; the others are reused.
    assert run_benchmark(_config(ks=(2, 3)), data=_data(), resume_dir=runs).reused == 3
    # Other data, another split or other method parameters: nothing stored applies.
    assert run_benchmark(_config(), data=_data(seed=1), resume_dir=runs).reused == 0
    assert run_benchmark(_config(test_size=0.4), data=_data(), resume_dir=runs).reused == 0
    changed = _config(method_params={"ul4m4": {"max_iter": 5}})
    assert run_benchmark(changed, data=_data(), resume_dir=runs).reused == 2


def test_a_foreign_or_damaged_run_file_is_recomputed(tmp_path):
    runs = tmp_path / "runs"
    run_benchmark(_config(), data=_data(), resume_dir=runs)
    files = sorted(runs.glob("*.json"))
    files[0].write_text("{not json")
    record = json.loads(files[1].read_text())
    record["key"]["seed"] = 99  # a file whose key does not match its name
    files[1].write_text(json.dumps(record))
    result = run_benchmark(_config(), data=_data(), resume_dir=runs)
    assert result.reused == 1
    assert json.loads(files[0].read_text())["key"]["seed"] == 0
    assert json.loads(files[1].read_text())["key"]["seed"] == 0


def test_fresh_flag_recomputes_everything(tmp_path, capsys):
    folder = _folder(tmp_path / "data", n=60)
    argv = ["benchmark", "--dataset", str(folder), "--methods", "mean", "--seeds", "1",
            "--missing", "0.3", "--no-progress", "--quiet", "--memory", "none",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--fresh"]) == 0
    assert "2 rows (0 reused" in capsys.readouterr().err


# ------------------------------------------------------------------ the store itself

SETTING = {"label": "0.3", "protocol": "independent", "share": 0.3, "config": None}


def test_file_names_are_pinned(tmp_path):
    # Runs stored by earlier releases are found again only if the naming never drifts.
    store = RunStore(tmp_path, {"library_version": "0.0", "data": "d"})
    complete = store.key(0, None, "complete", None, {})
    knn = store.key(2, SETTING, "knn", None, {"n_neighbors": 10})
    assert store.path(complete).name == "seed0-complete-ef4574095a334682ad80fa01.json"
    assert store.path(knn).name == "seed2-knn-93b6c7bfe94e829302d38fe8.json"
    assert knn["params"] == {"n_neighbors": "10"} and knn["setting"] == SETTING


def test_rows_round_trip_and_only_for_their_key(tmp_path):
    store = RunStore(tmp_path / "runs", {"data": "d"})
    key = store.key(1, SETTING, "ul4m4", 16, {"max_iter": 5})
    store.put(key, {"mse": np.float64(0.25), "n_train": np.int64(7), "label": "x"})
    again = RunStore(tmp_path / "runs", {"data": "d"})
    assert again.get(key) == {"mse": 0.25, "n_train": 7, "label": "x"} and again.reused == 1
    assert again.get(again.key(1, SETTING, "ul4m4", 32, {"max_iter": 5})) is None
    other = RunStore(tmp_path / "runs", {"data": "other data"})
    assert other.get(other.key(1, SETTING, "ul4m4", 16, {"max_iter": 5})) is None
    assert other.reused == 0 and again.reused == 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [store.path(key).name]


def test_cached_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    store = RunStore(tmp_path, {})
    key = store.key(0, None, "complete", None, {})
    assert cached(store, key, compute) == {"value": 1}
    assert cached(store, key, compute) == {"value": 1} and len(calls) == 1
    assert cached(None, None, compute) == {"value": 2}  # no store: always computed


def test_fingerprint_sees_names_shapes_dtypes_and_bytes():
    X = {"a": np.arange(6.0).reshape(3, 2), "b": np.ones((3, 1))}
    y = np.array([0, 1, 1])
    base = fingerprint(X, y)
    assert fingerprint({"a": np.asfortranarray(X["a"]), "b": X["b"]}, y.copy()) == base
    changed = [
        ({"c": X["a"], "b": X["b"]}, y),
        ({"a": X["a"].reshape(2, 3), "b": X["b"]}, y),
        ({"a": X["a"].astype(np.float32), "b": X["b"]}, y),
        ({"a": X["a"] + 1e-12, "b": X["b"]}, y),
        (X, y[::-1].copy()),
    ]
    assert len({base, *(fingerprint(*c) for c in changed)}) == 1 + len(changed)
