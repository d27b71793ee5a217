"""Helpers shared by the benchmark scripts: the machine, time formats, tables, a GEMM yardstick.

Only the standard library and NumPy: importing this module never imports ``ul4m4``, so a
script can put the working tree on ``sys.path`` before or after it.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["cpu_model", "fmt_time", "gemm_seconds", "print_table"]


def cpu_model() -> str:
    """The CPU model name of ``/proc/cpuinfo`` (else the platform's processor, else ``?``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def fmt_time(seconds: float) -> str:
    """Seconds as ``1.23 s``, ``4.56 ms`` or ``7.8 us`` (``-`` when not finite)."""
    if not np.isfinite(seconds):
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """Print ``title`` and a left-aligned table, columns two spaces apart, then flush."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


_GEMM_SECONDS: dict[tuple[int, int, int], float] = {}


def gemm_seconds(n: int, d: int, k: int, repeats: int = 5) -> float:
    """Best time of one float32 NumPy GEMM ``(n, d) @ (d, k)``: the floor of a Lloyd iteration.

    Measured once per shape and process (later calls return the stored time).
    """
    if (n, d, k) not in _GEMM_SECONDS:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, d), dtype=np.float32)
        b = rng.standard_normal((k, d), dtype=np.float32)
        out = np.empty((n, k), dtype=np.float32)
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b.T, out=out)
            best = min(best, time.perf_counter() - start)
        _GEMM_SECONDS[n, d, k] = best
    return _GEMM_SECONDS[n, d, k]
