"""The demo's entry point on a reduced setting."""

from __future__ import annotations

import warnings

import pandas as pd

from ul4m4 import demo


def test_demo_defaults_match_the_documented_benchmark():
    assert demo.DEFAULTS["missing"] == (0.3, 0.5, 0.7)
    assert demo.DEFAULTS["methods"] == ("ul4m4", "ul4m4-soft", "ul4m4-auto", "mean", "knn")
    assert demo.DEFAULTS["k"] == (16,)
    assert demo.DEFAULTS["seeds"] == 3
    assert demo.DEFAULTS["out"] == "results/demo"


def test_demo_main_reduced(tmp_path, capsys):
    out = tmp_path / "demo"
    code = demo.main(
        [
            "--seeds",
            "1",
            "--missing",
            "0.5",
            "--methods",
            "ul4m4,mean",
            "--k",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| method | block-MSE @ 0.5 | accuracy @ 0.5 |" in stdout
    assert "| ul4m4 (k=4) |" in stdout and "| mean |" in stdout
    assert "Complete data" in stdout
    for name in (
        "results.csv",
        "summary.csv",
        "summary.md",
        "config.json",
        "metric_vs_missing.png",
    ):
        assert (out / name).is_file()
    results = pd.read_csv(out / "results.csv")
    assert set(results["label"]) == {"ul4m4 (k=4)", "mean", "complete data"}
    assert results.loc[results["method"] == "mean", "mse"].between(0.8, 1.2).all()


def test_demo_auto_prints_no_warning(tmp_path, capsys):
    """The demo's ul4m4-auto at 50 % missing, seed 0: ensemble member 5 of 5 entered a
    Lloyd cycle and the demo printed a ConvergenceWarning advising random_state or
    n_init, settings the demo's user does not choose. The member is reseeded now."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = demo.main(["--seeds", "1", "--missing", "0.5", "--methods", "ul4m4-auto",
                          "--out", str(tmp_path / "demo"), "--no-progress"])
    assert code == 0
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert "| ul4m4-auto |" in capsys.readouterr().out
