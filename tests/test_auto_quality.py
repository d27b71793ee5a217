"""scripts/auto_quality.py on a reduced setting: tables, files, labels, merge, uncertainty path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _scripts import load_script

from ul4m4 import UL4M4Imputer


@pytest.fixture(scope="module")
def script():
    return load_script("auto_quality")


def _run(script, tmp_path, label, methods, *extra):
    return script.main(["--datasets", "mfeat", "--missing", "0.5", "--seeds", "1",
                        "--methods", methods, "--k", "4", "--label", label,
                        "--out", str(tmp_path), "--no-progress", *extra])


def test_quality_table_files_and_merge(script, tmp_path, capsys):
    assert _run(script, tmp_path, "a", "ul4m4,mean,nope", "--no-uncertainty") == 0
    text = capsys.readouterr().out
    assert "method 'nope' is not in this ul4m4" in text
    assert "| method | block-MSE @ 0.5 | accuracy @ 0.5 |" in text
    assert "| ul4m4 (k=4) |" in text and "| mean |" in text
    assert "| method | fit (s) | fit + fill train and test (s) |" in text
    for name in ("rows.csv", "summary.csv", "tables.md", "run.json"):
        assert (tmp_path / "a" / name).is_file()
    rows = pd.read_csv(tmp_path / "a" / "rows.csv")
    assert set(rows["label"]) == {"ul4m4 (k=4)", "mean"} and set(rows["run_label"]) == {"a"}
    assert rows.loc[rows["method"] == "mean", "mse"].between(0.8, 1.2).all()
    assert (rows["fit_fill_s"] >= rows["fit_s"]).all()

    assert _run(script, tmp_path, "b", "mean", "--no-uncertainty") == 0
    capsys.readouterr()
    assert script.main(["--merge", "a,b", "--out", str(tmp_path)]) == 0
    merged = capsys.readouterr().out
    assert "| mean [a] |" in merged and "| mean [b] |" in merged
    assert "| ul4m4 (k=4) [a] |" in merged
    assert script.main(["--merge", "a,zzz", "--out", str(tmp_path)]) == 2


def test_uncertainty_figures_when_transform_returns_std(script, tmp_path, capsys, monkeypatch):
    """With a transform that takes return_std (here: a constant std of 1 per filled block),
    the script scores it against the true block errors."""
    original = UL4M4Imputer.transform

    def transform(self, X, *, return_std=False, **kw):
        filled = original(self, X, **kw)
        if not return_std:
            return filled
        std = {k: np.where(np.isnan(np.asarray(v, dtype=float)[:, 0]), 1.0, np.nan)
               for k, v in X.items()}
        return filled, std

    monkeypatch.setattr(UL4M4Imputer, "transform", transform)
    assert script.supports_std()
    assert _run(script, tmp_path, "u", "ul4m4-auto,mean") == 0
    text = capsys.readouterr().out
    assert "| data set | missing | AUROC (top 25 % errors) |" in text
    unc = pd.read_csv(tmp_path / "u" / "uncertainty.csv")
    assert len(unc) == 1
    row = unc.iloc[0]
    assert row["auroc"] == 0.5  # a constant std ranks nothing
    assert row["calibration"] == pytest.approx(1.0 / row["mse"])
    assert 0.0 <= row["auroc_n_observed"] <= 1.0
    assert {"auroc_fac", "calibration_fac"} <= set(unc.columns)
    rows = pd.read_csv(tmp_path / "u" / "rows.csv")
    auto = rows[rows["method"] == "ul4m4-auto"]
    # The refit for the uncertainty is the same model on the same split and mask.
    assert row["mse"] == pytest.approx(auto["mse"].iloc[0], rel=1e-6)
