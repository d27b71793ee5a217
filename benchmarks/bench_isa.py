#!/usr/bin/env python
"""Lloyd iteration time under each variant of the compiled kernels, against scikit-learn.

Per iteration: ``(T(22 iterations) - T(2)) / 20``, the minimum over interleaved rounds,
n = 20k rows of 512 + 512 + 768 float32 with 50% of the modality slots missing, k = 64,
fixed initial centres and ``tol=0``; the yardstick is ``KMeans(algorithm="lloyd")`` on
complete data of the same shape (the z-scored, 1/sqrt(M d_m)-weighted concatenation, as
in ``bench_core.py``). Every (variant, round) runs in a fresh process with ``UL4M4_ISA``
set, and scikit-learn is timed in each of them, so load from elsewhere hits all alike.

Usage::

    python benchmarks/bench_isa.py              # every variant this CPU runs, 3 rounds
    python benchmarks/bench_isa.py --rounds 5 --n 50000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

import bench_core as core  # noqa: E402
from _common import fmt_time, gemm_seconds, print_table  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from ul4m4 import UL4M4Imputer, _kernels  # noqa: E402
from ul4m4.blocks import PackedBlocks  # noqa: E402

SHORT, LONG = 2, 22
#: Wider clusters than bench_core's, so that neither Lloyd run converges before LONG
#: iterations (at n = 20k they stop at 28 and 32; bench_core's 0.7 stops them at 18 and 21).
CLUSTER_NOISE = 1.0


def half_missing_mask(n: int, n_mod: int, seed: int) -> np.ndarray:
    """Each row keeps one or two of three modalities (even odds): 50% of slots missing."""
    rng = np.random.default_rng(seed)
    keep = rng.integers(1, n_mod, n)
    order = np.argsort(rng.random((n, n_mod)), axis=1)
    return order < keep[:, None]


def timed_fit(make):
    """Wall time and the fitted model of ``make().fit``-style callable ``make``."""
    with core.quiet():
        start = time.perf_counter()
        model = make()
        return time.perf_counter() - start, model


def child(n: int) -> dict:
    """One round in this process: UL4M4 and KMeans at SHORT and LONG iterations."""
    core.CLUSTER_NOISE = CLUSTER_NOISE
    world = core.World(0)
    X = core.allocate(n)
    core.fill(world, X, seed=1)
    rows = np.sort(np.random.default_rng(3).choice(n, size=core.K, replace=False))
    init = {name: arr[rows].copy() for name, arr in X.items()}
    Z = core.weighted_concat(X)
    init_z = Z[rows].copy()
    mask = half_missing_mask(n, len(X), seed=2)
    core.mask_in_place(X, mask)
    out = {"isa": _kernels.ISA, "missing_share": float(1 - mask.mean()),
           "gemm_s": gemm_seconds(n, sum(core.DIMS.values()), core.K)}
    for iters in (SHORT, LONG):
        seconds, model = timed_fit(lambda iters=iters: UL4M4Imputer(
            core.K, max_iter=iters, tol=0.0, init=init, random_state=0).fit(X))
        out[f"ul4m4_{iters}"] = (seconds, int(model.n_iter_))
        seconds, model = timed_fit(lambda iters=iters: KMeans(
            core.K, algorithm="lloyd", n_init=1, init=init_z, max_iter=iters,
            tol=0.0).fit(Z))
        out[f"kmeans_{iters}"] = (seconds, int(model.n_iter_))
    return out


def kernel_work(kernels, n: int, seed: int = 0):
    """The kernels' share of one Lloyd iteration at n rows: distances, argmin, centre sums.

    The rows are packed as the NumPy engine holds them: each modality's products
    and sums cover only the rows that observe it.
    """
    rng = np.random.default_rng(seed)
    dims, k = list(core.DIMS.values()), core.K
    row_has = half_missing_mask(n, len(dims), seed)
    packed = PackedBlocks.pack([rng.standard_normal((n, d), dtype=np.float32) for d in dims],
                               row_has)
    rows = sum(value.shape[0] for value in packed.values)
    cross = rng.standard_normal((rows, k), dtype=np.float32)
    row_norms, center_norms = rng.random(rows) * 3, rng.random((len(dims), k)) * 3
    center_has = np.ones((k, len(dims)), np.uint8)
    inv = 1.0 / np.array(dims, dtype=np.float64)
    sq, err = np.empty((n, k)), np.empty((n, k))
    labels, best, flags = np.empty(n, np.int64), np.empty(n), np.empty(n, np.uint8)
    sums = [np.zeros((k, d)) for d in dims]

    def work():
        kernels.partial_sq_dists_from_cross(cross, row_norms, packed.at, center_norms,
                                            center_has, inv, 1e-5, sq, err)
        kernels.bounded_argmin(sq, err, labels, best, flags)
        for m, value in enumerate(packed.values):
            kernels.add_rows(sums[m], np.ascontiguousarray(packed.labels_of(m, labels)), value)
    return work


def kernel_table(n: int, rounds: int) -> None:
    """The kernels alone under each variant, interleaved in this process (best of rounds)."""
    variants = _kernels.usable_variants()
    work = {isa: kernel_work(_kernels.load_variant(isa), n) for isa in variants}
    best = dict.fromkeys(variants, np.inf)
    for _ in range(rounds):
        for isa in variants:
            start = time.perf_counter()
            work[isa]()
            best[isa] = min(best[isa], time.perf_counter() - start)
    base = best["baseline"]
    print_table(
        f"Compiled kernels alone, one Lloyd iteration's worth at n={n:,} (partial distances "
        f"from 3 GEMMs, bounded argmin, centre sums of 1792 float32 columns), best of {rounds}",
        ["kernels", "time", "speed-up vs baseline"],
        [[isa, fmt_time(t), core.fmt_ratio(base / t)] for isa, t in best.items()],
    )


def run_round(isa: str, n: int) -> dict:
    env = {**os.environ, _kernels.ENV_VAR: isa}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(n)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_iteration(runs: list[dict], name: str) -> tuple[float, str]:
    """(T(LONG) - T(SHORT)) / (LONG - SHORT), minimum over rounds; the iteration counts seen."""
    short = min(r[f"{name}_{SHORT}"][0] for r in runs)
    long = min(r[f"{name}_{LONG}"][0] for r in runs)
    counts = sorted({(r[f"{name}_{SHORT}"][1], r[f"{name}_{LONG}"][1]) for r in runs})
    return (long - short) / (LONG - SHORT), ", ".join(f"{a}/{b}" for a, b in counts)


def report(results: dict[str, list[dict]], n: int, rounds: int) -> None:
    info = core.machine_info()
    rows = []
    all_runs = [r for runs in results.values() for r in runs]
    km, km_iters = per_iteration(all_runs, "kmeans")
    for isa, runs in results.items():
        ul, ul_iters = per_iteration(runs, "ul4m4")
        rows.append([isa, fmt_time(ul), ul_iters, fmt_time(km), km_iters,
                     core.fmt_ratio(ul / km)])
    share = 100 * all_runs[0]["missing_share"]
    print_table(
        f"Lloyd iteration, (T({LONG}) - T({SHORT})) / {LONG - SHORT}, min of {rounds} "
        f"interleaved rounds; n={n:,}, 512+512+768 float32, {share:.0f}% slots missing, "
        f"k={core.K}",
        ["kernels", "UL4M4/iter", "n_iter", "KMeans/iter (complete)", "n_iter", "ratio"],
        rows,
    )
    print("  KMeans/iter and GEMM: minimum over every process (neither uses the variants)")
    if any(r[f"{name}_{LONG}"][1] != LONG for r in all_runs for name in ("ul4m4", "kmeans")):
        print(f"  WARNING: a run converged before {LONG} iterations; its figure is too low")
    gemm = min(r["gemm_s"] for r in all_runs)
    print(f"  context: CPU {info['cpu_model']}; {core.blas_summary(info)}; one float32 GEMM "
          f"{n:,} x 1792 @ 1792 x {core.K} alone: {fmt_time(gemm)}")
    print(f"  {core.load_note()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    variants = _kernels.usable_variants()
    results: dict[str, list[dict]] = {isa: [] for isa in variants}
    for _ in range(args.rounds):
        for isa in variants:
            results[isa].append(run_round(isa, args.n))
    report(results, args.n, args.rounds)
    kernel_table(args.n, 5 * args.rounds)


if __name__ == "__main__":
    main()
