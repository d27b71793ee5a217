"""benchmarks/bench_gpu.py: a clear exit without CUDA, and its code path on the CPU at tiny sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
TINY = ["--sizes", "600", "--parity-rows", "300", "--k", "4", "--numpy-transform-rows", "200"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *TINY, *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_says_so_and_exits_0():
    done = run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bench_gpu: no CUDA device")
    assert "ms/iteration" not in done.stdout


def test_tiny_run_on_the_cpu_prints_the_table_and_parity():
    done = run("--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| n | torch ms/iter | numpy ms/iter |" in done.stdout
    assert "| 600 |" in done.stdout
    assert ("labels equal, n_iter_ equal, centres equal, outputs equal"
            in done.stdout), done.stdout
