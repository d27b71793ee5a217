"""benchmarks/bench_auto.py: a small run prints the machine, the ratio table and the verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_auto.py"


def test_small_run_prints_the_ratio_the_fill_quality_and_the_context(tmp_path):
    out = tmp_path / "auto.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--sizes", "2000", "--n-test", "300",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "T(auto) / T(one fit)" in text and "MSE one fit" in text
    assert "context: CPU " in text and "kernels " in text and "kernel," in text
    assert "n=2,000: T(auto) / T(one fit) = " in text
    (result,) = json.loads(out.read_text())["results"]
    assert result["n"] == 2000 and result["repeats"] == 1
    assert result["auto_s"] > 0 and result["one_s"] > 0
    assert result["ratio"] == result["auto_s"] / result["one_s"]
    assert result["missing_share"] == 0.5  # half the rows observe one modality, half two
    assert 0.0 < result["auto_mse"] < 2.0 and 0.0 < result["one_mse"] < 2.0
