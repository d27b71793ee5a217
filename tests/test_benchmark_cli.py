"""``ul4m4 benchmark`` end to end on tiny folder data sets, and its error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ul4m4.cli import main
from ul4m4.experiments import (
    BenchmarkConfig,
    BenchmarkError,
    DatasetError,
    load_folder,
    run_benchmark,
)

ROOT = Path(__file__).resolve().parents[1]


def _make_folder(path: Path, n: int = 60, multilabel: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    y = np.repeat(np.arange(3), n // 3)
    centres = rng.normal(size=(3, 2)) * 3
    latent = centres[y] + rng.normal(size=(n, 2)) * 0.3
    for name, d in (("text", 4), ("image", 3), ("audio", 2)):
        x = latent @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))
        np.save(path / f"{name}.npy", x)
    if multilabel:
        Y = np.zeros((n, 3), dtype=np.int64)
        Y[np.arange(n), y] = 1
        Y[:, 2] |= (y == 0).astype(np.int64)
        np.save(path / "labels.npy", Y)
    else:
        np.save(path / "labels.npy", y)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("data") / "tiny")


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _bench(data: Path, out: Path, capsys, *options: str) -> tuple[int, str, str]:
    """``ul4m4 benchmark`` on the folder ``data`` with ``options``, into ``out``, no bars."""
    return _run(
        ["benchmark", "--dataset", str(data), *options, "--out", str(out), "--no-progress"],
        capsys,
    )


def test_benchmark_end_to_end(folder, tmp_path, capsys):
    out = tmp_path / "results"
    code, stdout, _ = _bench(
        folder, out, capsys,
        "--missing", "0.3,0.5", "--k", "2,3", "--methods", "ul4m4,mean", "--seeds", "2",
    )
    assert code == 0
    assert "| method |" in stdout and "block-MSE @ 0.3" in stdout
    for name in (
        "results.csv",
        "summary.csv",
        "summary.md",
        "config.json",
        "metric_vs_missing.png",
        "k_stability.png",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    results = pd.read_csv(out / "results.csv")
    runs = results[results["method"] != "complete"]
    # 2 seeds x 2 shares x (ul4m4 at k=2, k=3, mean), plus one complete-data row per seed
    assert len(runs) == 2 * 2 * 3
    assert (results["method"] == "complete").sum() == 2
    expected = {
        "dataset",
        "seed",
        "protocol",
        "setting",
        "missing_nominal",
        "missing_realised",
        "missing_train",
        "missing_test",
        "method",
        "k",
        "label",
        "transductive",
        "n_train",
        "n_test",
        "fit_s",
        "fill_train_s",
        "fill_test_s",
        "peak_mib",
        "mse",
        "train_mse",
        "cosine",
        "mse_text",
        "mse_image",
        "mse_audio",
        "accuracy",
        "macro_f1",
        "ami_train",
        "ami_test",
    }
    assert expected <= set(results.columns)
    assert set(runs["label"]) == {"ul4m4 (k=2)", "ul4m4 (k=3)", "mean"}
    assert set(runs["setting"].astype(str)) == {"0.3", "0.5"}
    assert runs["mse"].notna().all() and runs["accuracy"].between(0, 1).all()
    assert (runs["missing_realised"] > 0).all()
    # test rows are 30% of 60, stratified: 6 per class
    assert (runs["n_test"] == 18).all()

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 * 2
    assert {"mse_mean", "mse_std", "accuracy_mean", "accuracy_std", "n_seeds"} <= set(
        summary.columns
    )
    assert (summary["n_seeds"] == 2).all()

    config = json.loads((out / "config.json").read_text())
    assert config["argv"][0] == "ul4m4" and "--missing" in config["argv"]
    assert config["seeds"] == [0, 1]
    assert {"python", "numpy", "scikit-learn", "ul4m4"} <= set(config["versions"])
    assert config["machine"]["cpu_count"] >= 1 and config["machine"]["platform"]
    assert config["dataset"]["modalities"] == {"audio": 2, "image": 3, "text": 4}

    md = (out / "summary.md").read_text()
    assert "ul4m4 (k=2)" in md and "± " in md


def test_results_are_reproducible(folder):
    config = BenchmarkConfig(
        dataset=str(folder),
        missing=(0.4,),
        ks=(2,),
        methods=("ul4m4", "nearest"),
        seeds=1,
        progress=False,
    )
    a, b = run_benchmark(config).frame(), run_benchmark(config).frame()
    cols = ["mse", "accuracy", "missing_realised"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_multilabel_folder_reports_true_f1_and_labelled_legacy(tmp_path, capsys):
    data = _make_folder(tmp_path / "ml", multilabel=True)
    out = tmp_path / "out"
    code, _, _ = _bench(
        data, out, capsys, "--missing", "0.4", "--methods", "mean", "--seeds", "1", "--quiet"
    )
    assert code == 0
    results = pd.read_csv(out / "results.csv")
    assert {"micro_f1", "samples_f1", "macro_f1", "legacy_flattened_f1"} <= set(results.columns)
    assert "accuracy" not in results.columns
    md = (out / "summary.md").read_text()
    assert "micro-F1 @ 0.4" in md
    assert "legacy flattened F1 (element-wise accuracy, not an F1)" in md


def test_named_config_and_mnar(folder, tmp_path, capsys):
    out = tmp_path / "cfg"
    code, stdout, _ = _bench(
        folder, out, capsys, "--config", "100_50_50", "--methods", "mean", "--seeds", "1"
    )
    assert code == 0 and "@ 100_50_50" in stdout
    results = pd.read_csv(out / "results.csv")
    assert set(results["protocol"]) == {"config", "none"}
    out2 = tmp_path / "mnar"
    code, _, _ = _bench(
        folder, out2, capsys,
        "--protocol", "mnar", "--missing", "0.5", "--methods", "mean", "--seeds", "1", "--quiet",
    )
    assert code == 0
    assert set(pd.read_csv(out2 / "results.csv")["protocol"]) == {"mnar", "none"}


def test_modalities_txt_sets_the_order(tmp_path):
    data = _make_folder(tmp_path / "ordered")
    (data / "modalities.txt").write_text("text\naudio\nimage\n")
    X, y = load_folder(data)
    assert list(X) == ["text", "audio", "image"] and y.shape == (60,)


@pytest.mark.parametrize(
    "args, message",
    [
        (["benchmark", "--dataset", "/no/such/folder"], "unknown dataset"),
        (["benchmark", "--methods", "ul4m4,bogus"], "unknown method 'bogus'"),
        (["benchmark", "--missing", "0.3,abc"], "--missing"),
        (["benchmark", "--missing", "1.5"], "not in [0, 1)"),
        (["benchmark", "--k", "0"], "--k"),
        (["benchmark", "--seeds", "-1"], "--seeds"),
        (["benchmark", "--test-size", "1"], "--test-size"),
        (["benchmark", "--param", "knn"], "METHOD.NAME=VALUE"),
        (["benchmark", "--param", "knn.bogus=3", "--methods", "knn"], "no parameter"),
        (["benchmark", "--nope"], "unrecognized arguments"),
        ([], "required"),
    ],
)
def test_bad_inputs_exit_nonzero_with_one_line(args, message, tmp_path, capsys):
    code, stdout, stderr = _run([*args, "--out", str(tmp_path)] if args else args, capsys)
    assert code != 0
    assert message in stderr
    assert stderr.strip().count("\n") == 0, stderr
    assert "Traceback" not in stderr


def test_bad_folder_contents(tmp_path, capsys):
    bad = _make_folder(tmp_path / "bad")
    np.save(bad / "image.npy", np.zeros((59, 3)))
    code, _, stderr = _run(
        ["benchmark", "--dataset", str(bad), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "different numbers of rows" in stderr and stderr.count("\n") == 1
    (bad / "labels.npy").unlink()
    with pytest.raises(DatasetError, match="no labels.npy"):
        load_folder(bad)
    code, _, stderr = _run(["benchmark", "--dataset", str(bad / "text.npy")], capsys)
    assert code == 2 and "is a file" in stderr


def test_unknown_config_name_is_one_line(folder, tmp_path, capsys):
    code, _, stderr = _run(
        ["benchmark", "--dataset", str(folder), "--config", "complex_1_2", "--out", str(tmp_path)],
        capsys,
    )
    assert code == 2 and "invalid missingness config" in stderr
    assert stderr.count("\n") == 1


def test_config_validation():
    with pytest.raises(BenchmarkError, match="k=100 exceeds"):
        run_benchmark(
            BenchmarkConfig(methods=("ul4m4",), ks=(100,), seeds=1, progress=False),
            data=(
                {
                    "a": np.random.default_rng(0).normal(size=(20, 2)),
                    "b": np.random.default_rng(1).normal(size=(20, 2)),
                },
                np.arange(20) % 2,
            ),
        )


def _python_m(*args: str) -> subprocess.CompletedProcess:
    """``python -m ul4m4 ARGS`` on this tree, output captured."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "ul4m4", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_python_dash_m_help_and_error():
    done = _python_m("benchmark", "--help")
    assert done.returncode == 0
    assert "labels.npy" in done.stdout and "--missing" in done.stdout
    bad = _python_m("benchmark", "--dataset", "/nope")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_registered_and_split_aware_datasets(monkeypatch, folder):
    from ul4m4.experiments.datasets import DATASETS, SPLIT_AWARE

    X, y = load_folder(folder)
    calls = []

    def per_split(train_idx):
        calls.append(np.asarray(train_idx))
        return X, y

    monkeypatch.setitem(DATASETS, "toy", lambda: (X, y))
    monkeypatch.setitem(SPLIT_AWARE, "toy", per_split)
    config = BenchmarkConfig(
        dataset="toy", missing=(0.3,), methods=("mean",), seeds=2, progress=False
    )
    rows = run_benchmark(config).frame()
    assert len(calls) == 2 and all(c.size == 42 for c in calls)
    assert not np.array_equal(calls[0], calls[1])  # each seed's own training rows
    assert set(rows["dataset"]) == {"toy"}


def test_param_option_builds_method_params():
    from ul4m4.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "benchmark",
            "--param",
            "knn.n_neighbors=10",
            "--param",
            "ul4m4.imputer_params={'completion': 'soft'}",
            "--blas-threads",
            "0",
        ]
    )
    config = config_from_args(args)
    assert config.method_params == {
        "knn": {"n_neighbors": 10},
        "ul4m4": {"imputer_params": {"completion": "soft"}},
    }
    assert config.blas_threads is None
    config.validate()


def test_progress_off_a_terminal_is_plain_lines(folder, tmp_path, capsys):
    """stderr redirected to a file or a pipe: no tqdm bar (its carriage returns), but
    a line per interval and the final count."""
    code, _, err = _run(
        ["benchmark", "--dataset", str(folder), "--missing", "0.3", "--k", "2",
         "--methods", "ul4m4,mean", "--seeds", "1", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("benchmark: ")]
    assert lines[0].startswith("benchmark: 1/2 (seed 0 | 0.3 | ul4m4 (k=2)), ")
    assert lines[-1].startswith("benchmark: 2/2 (seed 0 | 0.3 | mean), ")
