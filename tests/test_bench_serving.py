"""benchmarks/bench_serving.py: its tiny mode runs every measurement and prints the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serving.py"


def test_tiny_run_prints_the_table_the_context_and_the_targets(tmp_path):
    out = tmp_path / "serving.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "| backend | completion | n_jobs | rows | p50 | p99 | calls/s |" in text
    assert "| numpy | soft | 1 | 64 |" in text
    assert "| numpy | greedy | None | 1 |" in text
    assert "context: CPU " in text and "kernels " in text
    assert "default n_jobs p50 / n_jobs=1 p50 =" in text
    results = json.loads(out.read_text())["results"]
    cells = {(r["backend"], r["completion"], r["n_jobs"], r["rows"]) for r in results}
    assert ("numpy", "greedy", 1, 8) in cells and ("numpy", "soft", None, 64) in cells
    assert all(r["seq_p50"] > 0 and r["thr_per_s"] > 0 for r in results)
