#!/usr/bin/env python
"""What ``tol`` trades: Lloyd iterations and fit time against inertia and block-MSE.

For each ``tol`` in (0, 1e-4, 1e-2, 1e-1) (relative, as in scikit-learn's KMeans: see
:func:`ul4m4.centers.shift_tolerance`), fits ``UL4M4Imputer`` (Lloyd, greedy
completion, float32) on

``mfeat``
    UCI mfeat (2000 x 649, six modalities) with 50 % of the modality slots
    removed independently (``independent_mask``, no empty sample), k = 16,
    random_state 0, 1, 2 (means over the seeds);
``synthetic``
    ``--n`` samples (default 200,000) x 4 modalities of 250 dims (float32):
    32 Gaussian clusters in a 16-d latent space, projected linearly to each
    modality plus unit noise, 50 % of the slots removed the same way; k = 32,
    random_state 0.

and reports iterations, fit time, the training inertia and the block-MSE of the
hidden blocks (training z-space; the mean scores about 1) after ``transform``.

Usage::

    python benchmarks/bench_tol.py                 # both data sets
    python benchmarks/bench_tol.py --only mfeat
    python benchmarks/bench_tol.py --n 50000 --only synthetic
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import cpu_model
from sklearn.exceptions import ConvergenceWarning

from ul4m4 import UL4M4Imputer
from ul4m4.datasets import load_mfeat
from ul4m4.metrics import block_mse
from ul4m4.missingness import apply_mask, independent_mask

TOLS = (0.0, 1e-4, 1e-2, 1e-1)


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(32, 16)).astype(np.float32)
    latent = centres[rng.integers(0, 32, n)] + rng.normal(size=(n, 16)).astype(np.float32)
    X = {}
    for m in range(4):
        proj = rng.normal(size=(16, 250)).astype(np.float32) / 4
        X[f"m{m}"] = latent @ proj + rng.normal(size=(n, 250)).astype(np.float32)
    return X


def run(name: str, X: dict, k: int, seeds) -> list[dict]:
    mask = independent_mask(len(next(iter(X.values()))), [0.5] * len(X), random_state=0)
    masked = apply_mask(X, mask)
    rows = []
    for tol in TOLS:
        for seed in seeds:
            imp = UL4M4Imputer(k, tol=tol, random_state=seed)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                imp.fit(masked)
            fit_s = time.perf_counter() - start
            filled = imp.transform(masked)
            mse = block_mse(X, filled, ~mask, imp.scale_)["all"]
            rows.append({"data": name, "tol": tol, "seed": seed, "n_iter": imp.n_iter_,
                         "stopped_by": imp.runs_[0].stopped_by, "fit_s": fit_s,
                         "inertia": imp.inertia_, "block_mse": mse})
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | tol | iterations | fit time (s) | inertia | block-MSE (hidden) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["data"] for r in rows):
        for tol in TOLS:
            sel = [r for r in rows if r["data"] == name and r["tol"] == tol]
            lines.append(
                f"| {name} | {tol:g} | {np.mean([r['n_iter'] for r in sel]):.1f} | "
                f"{np.mean([r['fit_s'] for r in sel]):.2f} | "
                f"{np.mean([r['inertia'] for r in sel]):.6g} | "
                f"{np.mean([r['block_mse'] for r in sel]):.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("mfeat", "synthetic"))
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    rows = []
    if args.only in (None, "mfeat"):
        X, _ = load_mfeat()
        rows += run("mfeat (2000 x 649)", X, 16, (0, 1, 2))
    if args.only in (None, "synthetic"):
        rows += run(f"synthetic ({args.n:,} x 1000)", synthetic(args.n), 32, (0,))
    print(f"CPU: {cpu_model()}")
    print(table(rows))


if __name__ == "__main__":
    main()
