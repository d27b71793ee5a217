#!/usr/bin/env python
"""Serving latency of ``UL4M4Imputer.transform``: small calls, one after the other and from threads.

For a fitted model (``bench_core``'s synthetic data: 512 + 512 + 768 float32 dims,
64 latent clusters, about 43% of the modality slots missing; 20k training rows),
time ``transform`` on batches of 1, 64 and 4,096 new rows:

* sequentially: p50 and p99 latency of one call, and calls per second;
* from 4 threads at once (each sends its own calls, one after the other): p50 and
  p99 latency of one call, and calls per second of the 4 together;

for the NumPy and torch backends (torch: CPU tensors in and out, as a DataLoader's
collate would send them), greedy and soft completion, default ``n_jobs`` (every CPU)
against ``n_jobs=1``. Below the table: for 1-row calls, default p50 / ``n_jobs=1``
p50 (target <= 1.2) and 4 threads' calls/s / sequential calls/s (target >= 1). Nothing
is asserted. The CPU model, the compiled kernels' variant (``ul4m4._kernels.ISA``) and
the BLAS (threadpoolctl) are printed beside the table.

Usage::

    python benchmarks/bench_serving.py             # about 1-2 minutes on 2 cores
    python benchmarks/bench_serving.py --tiny      # seconds: the code path only (tests)
    python benchmarks/bench_serving.py --rows 1 64 --calls 400 --backends numpy
    python benchmarks/bench_serving.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import bench_core as core  # noqa: E402  (puts the working tree first on sys.path)
from _common import fmt_time  # noqa: E402

from ul4m4 import UL4M4Imputer, _kernels  # noqa: E402
from ul4m4.missingness import independent_mask  # noqa: E402

#: Concurrent callers of the threaded measurement.
THREADS = 4
#: 1-row default-n_jobs p50 over the n_jobs=1 p50, at most.
TARGET_DEFAULT_OVER_ONE = 1.2
#: 1-row calls/s from THREADS threads over sequential calls/s, at least.
TARGET_THREADED_OVER_SEQUENTIAL = 1.0

PROFILES = {
    # Each (backend, completion, n_jobs, rows) cell gets about the same wall time:
    # calls = max(min_calls, budget // rows), capped by max_calls.
    "default": {"n_train": 20_000, "k": 64, "max_iter": 5, "rows": [1, 64, 4096],
                "max_calls": 1500, "min_calls": 8, "row_budget": 40_000},
    "tiny": {"n_train": 600, "k": 8, "max_iter": 2, "rows": [1, 8, 64],
             "max_calls": 8, "min_calls": 4, "row_budget": 64},
}


def make_data(n: int, seed: int) -> dict[str, np.ndarray]:
    """bench_core's synthetic rows with independent missing modality rows."""
    world = core.World(0)
    X = core.allocate(n)
    mask = independent_mask(n, core.PRESENCE, random_state=seed)
    core.fill(world, X, seed, mask)
    return X


def requests(X: dict[str, np.ndarray], rows: int, calls: int, backend: str) -> list:
    """``calls`` batches of ``rows`` consecutive rows (wrapping around), as the backend gets them."""
    n = next(iter(X.values())).shape[0]
    out = []
    for c in range(calls):
        start = (c * rows) % max(1, n - rows)
        batch = {name: a[start:start + rows] for name, a in X.items()}
        if backend == "torch":
            import torch

            batch = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in batch.items()}
        out.append(batch)
    return out


def sequential(imp: UL4M4Imputer, calls: list) -> tuple[np.ndarray, float]:
    """Latency of each call, one after the other, and the wall time of all."""
    imp.transform(calls[0])  # warm-up: engine import, first-call allocations
    times = np.empty(len(calls))
    start = time.perf_counter()
    for i, batch in enumerate(calls):
        t = time.perf_counter()
        imp.transform(batch)
        times[i] = time.perf_counter() - t
    return times, time.perf_counter() - start


def threaded(imp: UL4M4Imputer, calls: list, threads: int = THREADS
             ) -> tuple[np.ndarray, float]:
    """Latency of each call with ``threads`` callers at once, and the wall time of all."""
    imp.transform(calls[0])
    times = np.empty(len(calls))
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def caller(offset: int) -> None:
        barrier.wait()
        try:
            for i in range(offset, len(calls), threads):
                t = time.perf_counter()
                imp.transform(calls[i])
                times[i] = time.perf_counter() - t
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=caller, args=(j,)) for j in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return times, time.perf_counter() - start


def cell(imp: UL4M4Imputer, calls: list) -> dict:
    seq, seq_wall = sequential(imp, calls)
    par, par_wall = threaded(imp, calls)
    return {
        "seq_p50": float(np.median(seq)), "seq_p99": float(np.quantile(seq, 0.99)),
        "seq_per_s": len(calls) / seq_wall,
        "thr_p50": float(np.median(par)), "thr_p99": float(np.quantile(par, 0.99)),
        "thr_per_s": len(calls) / par_wall, "calls": len(calls),
    }


def run(prof: dict, backends: list[str], completions: list[str]) -> list[dict]:
    with core.quiet():
        train = make_data(prof["n_train"], seed=1)
        new = make_data(max(prof["rows"]) * 2, seed=2)
        models = {}
        for completion in completions:
            start = time.perf_counter()
            models[completion] = UL4M4Imputer(prof["k"], completion=completion,
                                              max_iter=prof["max_iter"],
                                              random_state=0).fit(train)
            print(f"fitted {completion}: n={prof['n_train']:,}, k={prof['k']}, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    print_header()
    results = []
    for backend in backends:
        for completion in completions:
            for n_jobs in (None, 1):
                imp = models[completion].set_params(backend=backend, n_jobs=n_jobs)
                for rows in prof["rows"]:
                    calls = int(np.clip(prof["row_budget"] // rows, prof["min_calls"],
                                        prof["max_calls"]))
                    with core.quiet():
                        found = cell(imp, requests(new, rows, calls, backend))
                    results.append({"backend": backend, "completion": completion,
                                    "n_jobs": n_jobs, "rows": rows, **found})
                    print_row(results[-1])
    return results


def print_row(r: dict) -> None:
    ms = fmt_time
    print(f"| {r['backend']} | {r['completion']} | {r['n_jobs']} | {r['rows']:,} | "
          f"{ms(r['seq_p50'])} | {ms(r['seq_p99'])} | {r['seq_per_s']:,.0f} | "
          f"{ms(r['thr_p50'])} | {ms(r['thr_p99'])} | {r['thr_per_s']:,.0f} |", flush=True)


def print_header() -> None:
    print(f"\n| backend | completion | n_jobs | rows | p50 | p99 | calls/s | "
          f"{THREADS} threads p50 | p99 | calls/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)


def print_summary(results: list[dict]) -> None:
    """The targets of 1-row calls, per backend and completion."""
    print("\n1-row calls:")
    smallest = min(r["rows"] for r in results)
    for r in results:
        if r["rows"] != smallest or r["n_jobs"] is not None:
            continue
        one = next(o for o in results if o["rows"] == smallest and o["n_jobs"] == 1
                   and o["backend"] == r["backend"] and o["completion"] == r["completion"])
        ratio = r["seq_p50"] / one["seq_p50"]
        scaling = r["thr_per_s"] / r["seq_per_s"]
        print(f"  {r['backend']}, {r['completion']}: default n_jobs p50 / n_jobs=1 p50 = "
              f"{ratio:.2f} ({core.verdict(ratio <= TARGET_DEFAULT_OVER_ONE)}: <= "
              f"{TARGET_DEFAULT_OVER_ONE}); {THREADS} threads {r['thr_per_s']:,.0f} calls/s "
              f"vs sequential {r['seq_per_s']:,.0f} = {scaling:.2f}x "
              f"({core.verdict(scaling >= TARGET_THREADED_OVER_SEQUENTIAL)}: >= "
              f"{TARGET_THREADED_OVER_SEQUENTIAL})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the code path only")
    parser.add_argument("--rows", type=int, nargs="+", help="rows per call (default 1 64 4096)")
    parser.add_argument("--calls", type=int, help="calls per cell at most (default 1500)")
    parser.add_argument("--backends", nargs="+", default=["numpy", "torch"],
                        choices=["numpy", "torch"])
    parser.add_argument("--completions", nargs="+", default=["greedy", "soft"],
                        choices=["greedy", "soft"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    prof = dict(PROFILES["tiny" if args.tiny else "default"])
    if args.rows:
        prof["rows"] = sorted(args.rows)
    if args.calls:
        prof["max_calls"] = args.calls
    backends = list(args.backends)
    if "torch" in backends:
        try:
            import torch
        except ImportError:
            print("torch is not installed: the torch rows are left out")
            backends.remove("torch")
    info = core.machine_info()
    core.print_machine(info)
    if "torch" in backends:
        print(f"  torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    print(f"  context: CPU {info['cpu_model']}; kernels {_kernels.ISA}; "
          f"{core.blas_summary(info)}", flush=True)
    results = run(prof, backends, list(args.completions))
    print_summary(results)
    print(f"  ({core.load_note()})")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
