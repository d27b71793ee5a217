#!/usr/bin/env python
"""Core speed and memory benchmarks of ``UL4M4Imputer``, measured side by side in one run.

Sections (each prints absolute times and a ratio; nothing is asserted):

(a) fit time per Lloyd iteration against ``sklearn.cluster.KMeans(algorithm="lloyd")``
    started from the same k rows, on complete data, and UL4M4 alone with missing slots;
(b) ``transform`` time per incomplete sample against a literal per-sample greedy
    search (``benchmarks/_literal.py``), with partial centres (general path) and
    with complete centres (nearest-centre path);
(c) ``transform`` time per imputed row against ``sklearn.impute.KNNImputer``;
(d) peak resident memory of ``fit`` in a fresh process, next to the data's own size;
    ``--big`` adds the out-of-core case: a 1M x 1792 float32 memory-mapped ``.npy`` fitted
    with full Lloyd and with ``algorithm="minibatch"`` (each in a fresh process), and the
    mini-batch model's ``transform(..., out_dir=...)`` streamed back to disk;
(e) ``--only minibatch``: quality gap and speed of ``algorithm="minibatch"`` against full
    Lloyd on mfeat at 50% missing slots (inertia ratio, block-MSE of the completion on
    hidden test blocks) and on n=50k synthetic rows.

Data: 64 Gaussian clusters in a 32-d latent space, projected linearly to three
modalities (512 + 512 + 768 = 1792 dims, float32) with noise and per-dimension
offsets and scales (so the z-scoring matters).

Usage::

    python benchmarks/bench_core.py             # n = 20k and 200k (~16 min on a busy 2-core box)
    python benchmarks/bench_core.py --quick     # n = 20k, small subsets (a minute or two)
    python benchmarks/bench_core.py --big       # also the 1M-row memory-mapped fit
    python benchmarks/bench_core.py --only minibatch   # mini-batch vs Lloyd (a few minutes)
    python benchmarks/bench_core.py --profile   # cProfile of one fit and of transform
    python benchmarks/bench_core.py --json out.json
    python benchmarks/bench_core.py --isa avx2  # compiled kernels of one variant (re-executes
                                                # with UL4M4_ISA=avx2; same as setting it)

Every ratio is printed with its context: the CPU model, the compiled kernels' variant
(``ul4m4._kernels.ISA``), the BLAS library with its kernel architecture, and the time of
one float32 GEMM of the Lloyd shape (n x 1792 by 1792 x k) alone, the floor of an
iteration (UL4M4 and scikit-learn both spend most of one in it).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# Benchmark the working tree, not some other installed copy of the package.
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

import sklearn  # noqa: E402
from _common import cpu_model, fmt_time, gemm_seconds, print_table  # noqa: E402
from _literal import literal_complete, zscore_centres, zscore_sample  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.impute import KNNImputer  # noqa: E402

import ul4m4  # noqa: E402
from ul4m4 import UL4M4Imputer, _kernels  # noqa: E402
from ul4m4.missingness import independent_mask  # noqa: E402

DIMS = {"text": 512, "image": 512, "audio": 768}
K = 64
LATENT = 32
#: Latent spread of a cluster and per-dimension noise, relative to unit-variance centres:
#: enough overlap that Lloyd needs many iterations from random rows.
CLUSTER_NOISE = 0.7
FEATURE_NOISE = 0.5
#: Presence probability of each modality; with empty samples redrawn this leaves
#: about 43% of the modality slots missing.
PRESENCE = (0.5, 0.5, 0.5)
GEN_CHUNK = 16384
#: UL4M4 on 50 % missing slots against KMeans on complete data, per iteration (the issue's
#: protocol is ``bench_isa.py``'s (T(22) - T(2)) / 20; this section's is coarser).
TARGET_LLOYD_RATIO = 1.25
TARGET_LITERAL_SPEEDUP = 1000.0
TARGET_BIG_PEAK_GB = 2.0
ENV_VARS = (
    "UL4M4_ISA",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)

PROFILES = {
    "quick": {
        "sizes": [20_000],
        "repeats": {20_000: 2},
        "max_iter": {20_000: 5},
        "n_test": 5_000,
        "n_literal": 8,
        "n_knn": {20_000: 20},
        "memory_sizes": [20_000],
        "memory_max_iter": 2,
    },
    "default": {
        "sizes": [20_000, 200_000],
        "repeats": {20_000: 3, 200_000: 2},
        "max_iter": {20_000: 10, 200_000: 5},
        "n_test": 20_000,
        "n_literal": 30,
        "n_knn": {20_000: 50, 200_000: 5},
        "memory_sizes": [20_000, 200_000],
        "memory_max_iter": 2,
    },
}
BIG = {"n": 1_000_000, "max_iter": 3}


# ----------------------------------------------------------------------------- output helpers
def fmt_gb(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def fmt_ratio(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:.2f}x"


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


# ------------------------------------------------------------------------------ environment
def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "ul4m4": getattr(ul4m4, "__version__", "?"),
        "kernels_isa": _kernels.ISA,
        "kernels_usable": list(_kernels.usable_variants()),
        "env": {v: os.environ[v] for v in ENV_VARS if v in os.environ},
        "threadpools": [],
    }
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            info["threadpools"].append(
                {key: pool.get(key) for key in
                 ("user_api", "internal_api", "version", "num_threads", "architecture",
                  "threading_layer", "filepath")}
            )
    except ImportError:
        pass
    return info


def print_machine(info: dict) -> None:
    print("Machine")
    print(f"  {info['platform']}, Python {info['python']}")
    print(f"  CPU: {info['cpu_model']}; os.cpu_count()={info['cpu_count']}, "
          f"usable={info['cpu_affinity']}")
    print(f"  numpy {info['numpy']}, scikit-learn {info['sklearn']}, ul4m4 {info['ul4m4']}")
    print(f"  compiled kernels: {info['kernels_isa']} (usable here: "
          f"{', '.join(info['kernels_usable'])}; {_kernels.ENV_VAR} or --isa forces one)")
    for pool in info["threadpools"]:
        name = Path(pool.get("filepath") or "?").name
        print(f"  {pool['user_api']}: {pool['internal_api']} {pool.get('version')} "
              f"({pool.get('architecture') or pool.get('threading_layer') or '-'}), "
              f"{pool['num_threads']} threads [{name}]")
    if not info["threadpools"]:
        print("  threadpoolctl not installed: BLAS library unknown")
    for var in ENV_VARS:
        value = info["env"].get(var)
        print(f"  {var}={value}" if value is not None else f"  {var} not set")
    print(f"  {load_note()}")
    if os.getloadavg()[0] > 0.5 * (info["cpu_affinity"] or 1):
        print("  note: other processes are using the CPU; absolute times are noisy, and the "
              "ratios are taken from interleaved runs (best of the repeats) to limit that")


def blas_summary(info: dict) -> str:
    """The BLAS libraries in use: name, version, kernel architecture and threads."""
    pools = [pool for pool in info["threadpools"] if pool.get("user_api") == "blas"]
    if not pools:
        return "BLAS unknown (threadpoolctl missing)"
    return "; ".join(f"{pool['internal_api']} {pool.get('version')} "
                     f"{pool.get('architecture') or '-'} kernel, {pool['num_threads']} threads"
                     for pool in pools)


def print_context(info: dict, n: int, results: dict | None = None) -> None:
    """The line printed beside every table of ratios: what the figures were measured on."""
    gemm = gemm_seconds(n, sum(DIMS.values()), K)
    print(f"  context: CPU {info['cpu_model']}; kernels {_kernels.ISA}; {blas_summary(info)}; "
          f"one float32 GEMM {n:,} x {sum(DIMS.values())} @ {sum(DIMS.values())} x {K} alone: "
          f"{fmt_time(gemm)}")
    if results is not None:
        results["gemm_s"] = gemm
    sys.stdout.flush()


# ------------------------------------------------------------------------------ synthetic data
class World:
    """Cluster centres, projections, offsets and scales shared by every sample set."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(K, LATENT))
        self.proj = [rng.normal(size=(LATENT, d)) / np.sqrt(LATENT) for d in DIMS.values()]
        self.offset = [rng.normal(scale=2.0, size=d).astype(np.float32) for d in DIMS.values()]
        self.spread = [rng.uniform(0.5, 2.0, size=d).astype(np.float32) for d in DIMS.values()]


def allocate(n: int, directory: Path | None = None) -> dict[str, np.ndarray]:
    if directory is None:
        return {name: np.empty((n, d), dtype=np.float32) for name, d in DIMS.items()}
    directory.mkdir(parents=True, exist_ok=True)
    return {
        name: np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+",
                                        dtype=np.float32, shape=(n, d))
        for name, d in DIMS.items()
    }


def fill(world: World, arrays: dict[str, np.ndarray], seed: int,
         mask: np.ndarray | None = None) -> np.ndarray:
    """Write samples chunk by chunk (works on memory maps); NaN rows where ``mask`` is False."""
    n = next(iter(arrays.values())).shape[0]
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, GEN_CHUNK):
        rows = slice(start, min(start + GEN_CHUNK, n))
        rng = np.random.default_rng([seed, start // GEN_CHUNK])
        lab = rng.integers(K, size=rows.stop - rows.start)
        lat = world.centres[lab] + CLUSTER_NOISE * rng.standard_normal((lab.size, LATENT))
        for m, arr in enumerate(arrays.values()):
            block = (lat @ world.proj[m]).astype(np.float32)
            block += FEATURE_NOISE * rng.standard_normal(block.shape, dtype=np.float32)
            block *= world.spread[m]
            block += world.offset[m]
            if mask is not None:
                block[~mask[rows, m]] = np.nan
            arr[rows] = block
        labels[rows] = lab
    return labels


def mask_in_place(arrays: dict[str, np.ndarray], mask: np.ndarray) -> None:
    for m, arr in enumerate(arrays.values()):
        arr[~mask[:, m]] = np.nan


def clustered_mask(labels: np.ndarray, seed: int) -> np.ndarray:
    """Independent masking, plus whole clusters that never observe a modality.

    Such clusters give centres that lack that modality, which is what sends
    ``transform`` down the general (B, k, k) completion path.
    """
    mask = independent_mask(labels.size, (0.6, 0.6, 0.6), random_state=seed)
    mask[labels % 4 == 1, 2] = False
    mask[labels % 4 == 2, 1] = False
    mask[~mask.any(axis=1), 0] = True
    return mask


def weighted_concat(X: dict[str, np.ndarray]) -> np.ndarray:
    """Complete data as one array on which Euclidean k-means is UL4M4's k-means.

    Each modality is z-scored and scaled by 1/sqrt(M d_m), so the squared
    Euclidean distance equals the squared partial distance with all modalities
    shared, and the two runs follow the same Lloyd trajectory from the same rows.
    """
    n = next(iter(X.values())).shape[0]
    out = np.empty((n, sum(DIMS.values())), dtype=np.float32)
    col = 0
    for arr in X.values():
        d = arr.shape[1]
        mean = np.zeros(d)
        for start in range(0, n, GEN_CHUNK):
            mean += arr[start:start + GEN_CHUNK].sum(axis=0, dtype=np.float64)
        mean /= n
        sq = np.zeros(d)
        for start in range(0, n, GEN_CHUNK):
            dev = arr[start:start + GEN_CHUNK].astype(np.float64) - mean
            sq += np.einsum("ij,ij->j", dev, dev)
        scale = np.sqrt(sq / (n - 1)) * np.sqrt(len(X) * d)
        for start in range(0, n, GEN_CHUNK):
            block = (arr[start:start + GEN_CHUNK].astype(np.float64) - mean) / scale
            out[start:start + GEN_CHUNK, col:col + d] = block
        col += d
    return out


def missing_share(mask: np.ndarray) -> float:
    return float(1.0 - mask.mean())


# ------------------------------------------------------------------------------------ timing
@contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def timed(fn):
    """Wall time, process CPU time (all threads) and result of ``fn()``."""
    gc.collect()
    with quiet():
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        return time.perf_counter() - start, time.process_time() - cpu, result


# ------------------------------------------------------------------------------- section (a)
def bench_lloyd(world: World, n: int, prof: dict, results: dict) -> dict:
    """Fit time per Lloyd iteration; returns the data and models later sections reuse."""
    max_iter, repeats = prof["max_iter"][n], prof["repeats"][n]
    X = allocate(n)
    labels = fill(world, X, seed=1)
    mask = independent_mask(n, PRESENCE, random_state=2)
    Xm = {name: arr.copy() for name, arr in X.items()}
    mask_in_place(Xm, mask)
    rows = np.sort(np.random.default_rng(3).choice(n, size=K, replace=False))
    init = {name: arr[rows].copy() for name, arr in X.items()}
    init_m = {name: arr[rows].copy() for name, arr in Xm.items()}
    Z = weighted_concat(X)
    init_z = Z[rows].copy()

    def ul4m4_fit(data, start, iters):
        return UL4M4Imputer(K, max_iter=iters, tol=0.0, init=start).fit(data)

    def kmeans_fit(iters):
        return KMeans(K, algorithm="lloyd", n_init=1, init=init_z, max_iter=iters,
                      tol=0.0).fit(Z)

    runs = {
        "kmeans": lambda iters: kmeans_fit(iters),
        "ul4m4": lambda iters: ul4m4_fit(X, init, iters),
        "ul4m4_missing": lambda iters: ul4m4_fit(Xm, init_m, iters),
    }
    best = {(name, iters): (np.inf, np.inf, None) for name in runs for iters in (1, max_iter)}
    # Interleaved so that load from other processes hits every estimator alike.
    for _ in range(repeats):
        for name, run in runs.items():
            for iters in (1, max_iter):
                seconds, cpu, model = timed(lambda run=run, iters=iters: run(iters))
                if seconds < best[name, iters][0]:
                    best[name, iters] = (seconds, cpu, model)
                del model

    out = {"n": n, "max_iter": max_iter, "repeats": repeats,
           "missing_share": missing_share(mask), "estimators": {}}
    for name in runs:
        t_full, cpu_full, model = best[name, max_iter]
        t_one = best[name, 1][0]
        n_iter = int(model.n_iter_)
        per_iter = t_full / n_iter
        marginal = (t_full - t_one) / (n_iter - 1) if n_iter > 1 else float("nan")
        if not marginal > 0:
            # Load from elsewhere swamped the extra iterations: no estimate.
            marginal = float("nan")
        out["estimators"][name] = {"fit_s": t_full, "n_iter": n_iter, "per_iter_s": per_iter,
                                   "fit_1_iter_s": t_one, "marginal_per_iter_s": marginal,
                                   "fit_cpu_s": cpu_full, "cpu_per_iter_s": cpu_full / n_iter}
    km = best["kmeans", max_iter][2]
    ul = best["ul4m4", max_iter][2]
    out["label_agreement"] = float(np.mean(km.labels_ == ul.labels_))
    base = out["estimators"]["kmeans"]
    for name in ("ul4m4", "ul4m4_missing"):
        est = out["estimators"][name]
        est["ratio_vs_kmeans"] = est["per_iter_s"] / base["per_iter_s"]
        est["marginal_ratio_vs_kmeans"] = est["marginal_per_iter_s"] / base["marginal_per_iter_s"]
        est["cpu_ratio_vs_kmeans"] = est["cpu_per_iter_s"] / base["cpu_per_iter_s"]

    names = {"kmeans": "sklearn KMeans (complete)", "ul4m4": "UL4M4 (complete)",
             "ul4m4_missing": f"UL4M4 ({100 * out['missing_share']:.0f}% slots missing)"}
    table_rows = []
    for name, est in out["estimators"].items():
        table_rows.append([
            names[name], fmt_time(est["fit_s"]), str(est["n_iter"]), fmt_time(est["per_iter_s"]),
            fmt_ratio(est.get("ratio_vs_kmeans", 1.0)), fmt_time(est["marginal_per_iter_s"]),
            fmt_ratio(est.get("marginal_ratio_vs_kmeans",
                              est["marginal_per_iter_s"] / est["marginal_per_iter_s"])),
            fmt_time(est["cpu_per_iter_s"]),
            fmt_ratio(est.get("cpu_ratio_vs_kmeans", 1.0)),
        ])
    print_table(
        f"(a) Lloyd fit, n={n:,}, k={K}, d=1792 float32, max_iter={max_iter}, best of {repeats}",
        ["estimator", "fit", "n_iter", "fit/n_iter", "ratio", "marginal/iter", "ratio",
         "cpu/iter", "ratio"],
        table_rows,
    )
    ratio = out["estimators"]["ul4m4_missing"]["ratio_vs_kmeans"]
    print(f"  ratio = UL4M4 (slots missing) fit/n_iter over KMeans fit/n_iter; target <= "
          f"{TARGET_LLOYD_RATIO}: {fmt_ratio(ratio)} ({verdict(ratio <= TARGET_LLOYD_RATIO)}); "
          f"benchmarks/bench_isa.py measures it as (T(22) - T(2)) / 20")
    print("  marginal/iter = (fit(max_iter) - fit(1 iteration)) / (n_iter - 1): the cost of one "
          "more iteration, without per-fit set-up ('-' when noise made it negative)")
    print("  cpu/iter = process CPU time (all threads, spin-waits included) / n_iter: less "
          "sensitive than wall time to other processes on the machine")
    print(f"  same Lloyd problem (KMeans on z-scored, 1/sqrt(M d_m)-weighted data): labels agree "
          f"on {100 * out['label_agreement']:.2f}% of samples")
    print(f"  {load_note()}")
    print_context(results["machine"], n, out)
    results.setdefault("lloyd", []).append(out)
    complete_model = best["ul4m4_missing", max_iter][2]
    return {"X": X, "labels": labels, "Xm": Xm, "rows": rows, "complete_model": complete_model}


# ------------------------------------------------------------------------------- section (b)
def make_test_set(world: World, n_test: int) -> dict[str, np.ndarray]:
    Xt = allocate(n_test)
    fill(world, Xt, seed=4)
    mask = independent_mask(n_test, PRESENCE, random_state=5)
    incomplete = ~mask.all(axis=1)
    Xt = {name: arr[incomplete] for name, arr in Xt.items()}
    mask_in_place(Xt, mask[incomplete])
    return Xt


def describe_centres(model) -> str:
    present = model.center_modalities_
    fast = model.model_.members[0].plan.all_complete
    path = {True: "nearest-centre path", False: "general (B,k,k) path"}
    return (f"{int((~present.all(axis=1)).sum())} of {present.shape[0]} centres partial, "
            f"{path[fast]}")


def bench_transform(world: World, n: int, prof: dict, state: dict, Xt, results: dict) -> None:
    max_iter = prof["max_iter"][n]
    X, labels, rows = state["X"], state["labels"], state["rows"]
    mask_p = clustered_mask(labels, seed=6)
    mask_in_place(X, mask_p)  # X is not needed complete any more
    init_p = {name: arr[rows].copy() for name, arr in X.items()}
    fit_s, _, partial_model = timed(
        lambda: UL4M4Imputer(K, max_iter=max_iter, init=init_p).fit(X)
    )
    state["X"] = None
    models = {"partial centres": partial_model, "complete centres": state["complete_model"]}
    n_rows = next(iter(Xt.values())).shape[0]
    n_lit = prof["n_literal"]
    subset = {name: arr[:n_lit] for name, arr in Xt.items()}
    out = {"n_train": n, "n_test_incomplete": n_rows, "n_literal": n_lit, "models": {}}
    table_rows = []
    for label, model in models.items():
        engine_s = min(timed(lambda model=model: model.transform(Xt))[0] for _ in range(3))
        _, _, (_, sources) = timed(
            lambda model=model: model.transform(subset, return_sources=True)
        )
        centres = zscore_centres(model)
        start = time.perf_counter()
        literal = [literal_complete(zscore_sample(model, subset, i), centres)
                   for i in range(n_lit)]
        literal_s = time.perf_counter() - start
        engine_codes = np.column_stack([sources[name] for name in model.modalities_])
        agree = int(np.all(engine_codes == np.asarray(literal), axis=1).sum())
        per_engine, per_literal = engine_s / n_rows, literal_s / n_lit
        speedup = per_literal / per_engine
        out["models"][label] = {
            "centres": describe_centres(model), "engine_s": engine_s,
            "engine_per_sample_s": per_engine, "literal_s": literal_s,
            "literal_per_sample_s": per_literal, "speedup": speedup,
            "literal_agreement": agree,
        }
        table_rows.append([label, describe_centres(model), fmt_time(per_engine),
                           fmt_time(per_literal), fmt_ratio(speedup), f"{agree}/{n_lit}",
                           verdict(speedup >= TARGET_LITERAL_SPEEDUP)])
    print_table(
        f"(b) transform per incomplete sample, k={K}, models fitted on n={n:,} "
        f"(partial-centres model fit: {fmt_time(fit_s)}); engine on {n_rows:,} test rows "
        f"(best of 3), literal greedy on {n_lit}",
        ["centres", "model", "engine/sample", "literal/sample", "speedup", "same fill",
         f"target >= {TARGET_LITERAL_SPEEDUP:.0f}x"],
        table_rows,
    )
    print("  same fill = samples where the literal greedy and the engine pick the same centre "
          "for every missing modality")
    print_context(results["machine"], n, out)
    results.setdefault("transform", []).append(out)


# ------------------------------------------------------------------------------- section (c)
def zscored_concat(model, X: dict[str, np.ndarray]) -> np.ndarray:
    n = next(iter(X.values())).shape[0]
    out = np.empty((n, sum(model.n_features_.values())), dtype=np.float32)
    col = 0
    for name in model.modalities_:
        d = model.n_features_[name]
        mean = model.mean_[name].astype(np.float32)
        scale = model.scale_[name].astype(np.float32)
        for start in range(0, n, GEN_CHUNK):
            block = X[name][start:start + GEN_CHUNK]
            out[start:start + GEN_CHUNK, col:col + d] = (block - mean) / scale
        col += d
    return out


def bench_knn(n: int, prof: dict, state: dict, Xt, results: dict) -> None:
    model = state["complete_model"]
    n_knn = prof["n_knn"][n]
    train = zscored_concat(model, state["Xm"])
    test_rows = {name: arr[:n_knn] for name, arr in Xt.items()}
    test = zscored_concat(model, test_rows)
    fit_s, _, knn = timed(lambda: KNNImputer(n_neighbors=5).fit(train))
    knn_s, _, _ = timed(lambda: knn.transform(test))
    n_rows = next(iter(Xt.values())).shape[0]
    ul_s = min(timed(lambda: model.transform(Xt))[0] for _ in range(3))
    per_knn, per_ul = knn_s / n_knn, ul_s / n_rows
    out = {"n_train": n, "n_knn_rows": n_knn, "knn_fit_s": fit_s, "knn_transform_s": knn_s,
           "knn_per_row_s": per_knn, "ul4m4_per_row_s": per_ul, "speedup": per_knn / per_ul}
    print_table(
        f"(c) imputation per row vs KNNImputer(n_neighbors=5) fitted on n={n:,} z-scored "
        "NaN-bearing rows x 1792",
        ["imputer", "fit", "rows timed", "per imputed row", "speedup"],
        [["KNNImputer", fmt_time(fit_s), f"{n_knn:,}", fmt_time(per_knn), "1x"],
         ["UL4M4 (complete centres)", "see (a)", f"{n_rows:,}", fmt_time(per_ul),
          fmt_ratio(out["speedup"])]],
    )
    print_context(results["machine"], n, out)
    results.setdefault("knn", []).append(out)


# ------------------------------------------------------------------------------- section (d)
def _status_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
    return fields


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _AnonPeak:
    """Samples RssAnon: VmHWM also counts file pages of a memory map that are cached."""

    def __init__(self, period: float = 0.02) -> None:
        self.period, self.peak = period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib().get("RssAnon", 0))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib().get("RssAnon", 0))


def child_memory(spec: dict) -> None:
    """Run in a fresh process: build or open the data, fit once, print peak memory as JSON."""
    if spec.get("blas_threads"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(spec["blas_threads"], user_api="blas")
    n = spec["n"]
    if spec.get("directory"):
        X = {name: np.load(Path(spec["directory"]) / f"{name}.npy", mmap_mode="r")
             for name in DIMS}
    else:
        X = allocate(n)
        fill(World(0), X, seed=1, mask=independent_mask(n, PRESENCE, random_state=2))
    data_bytes = int(sum(a.size * a.itemsize for a in X.values()))
    gc.collect()
    before = _status_kib()
    reset = _reset_peak()
    algorithm = spec.get("algorithm", "lloyd")
    with _AnonPeak() as anon, quiet():
        start = time.perf_counter()
        model = UL4M4Imputer(K, max_iter=spec["max_iter"], random_state=0,
                             algorithm=algorithm).fit(X)
        fit_s = time.perf_counter() - start
    after = _status_kib()
    out = {
        "n": n, "data_bytes": data_bytes, "rss_before_kib": before["VmRSS"],
        "peak_kib": after["VmHWM"], "peak_reset": reset, "peak_anon_kib": anon.peak,
        "rss_file_end_kib": after.get("RssFile", 0), "fit_s": fit_s,
        "n_iter": int(model.n_iter_), "memmap": bool(spec.get("directory")),
        "algorithm": algorithm, "inertia": float(model.inertia_),
    }
    if spec.get("transform_dir"):
        out.update(_child_transform(model, X, Path(spec["transform_dir"])))
    print(json.dumps(out))


def _child_transform(model, X: dict, directory: Path) -> dict:
    """Peak memory of a streamed ``transform(X, out_dir=...)``; the output is removed after."""
    gc.collect()
    before = _status_kib()
    _reset_peak()
    try:
        with _AnonPeak() as anon:
            start = time.perf_counter()
            filled = model.transform(X, out_dir=directory)
            seconds = time.perf_counter() - start
        after = _status_kib()
        written = int(sum(a.size * a.itemsize for a in filled.values()))
        no_nan = all(not np.isnan(a[:GEN_CHUNK]).any() for a in filled.values())
        del filled
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"transform_s": seconds, "transform_rss_before_kib": before["VmRSS"],
            "transform_peak_kib": after["VmHWM"], "transform_peak_anon_kib": anon.peak,
            "transform_written_bytes": written, "transform_first_rows_complete": no_nan}


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-memory", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(sizes: list[int], max_iter: int, blas_threads: int | None,
                 results: dict) -> None:
    table_rows = []
    for n in sizes:
        r = run_child({"n": n, "max_iter": max_iter, "blas_threads": blas_threads})
        results.setdefault("memory", []).append(r)
        table_rows.append(_memory_row(r))
    _print_memory(table_rows, max_iter, "data in RAM, ~43% slots missing")


def _memory_row(r: dict) -> list[str]:
    kib = 1024
    extra = r["peak_kib"] * kib - r["rss_before_kib"] * kib
    r["extra_bytes"] = extra
    return [r.get("algorithm", "lloyd"), f"{r['n']:,}", fmt_gb(r["data_bytes"]),
            fmt_gb(r["rss_before_kib"] * kib), fmt_gb(r["peak_kib"] * kib), fmt_gb(extra),
            fmt_gb(r["peak_anon_kib"] * kib), fmt_time(r["fit_s"]), str(r["n_iter"])]


def _print_memory(table_rows, max_iter, what) -> None:
    print_table(
        f"(d) peak memory of fit in a fresh process ({what}; k-means++ seeding, "
        f"max_iter={max_iter})",
        ["algorithm", "n", "data", "RSS before fit", "peak RSS (VmHWM)", "peak - before",
         "peak anon", "fit", "n_iter / steps"],
        table_rows,
    )


def bench_big(n: int, directory: Path, keep: bool, blas_threads: int | None,
              results: dict) -> None:
    print(f"\n(d) --big: writing {n:,} x 1792 float32 to {directory} chunk by chunk ...")
    sys.stdout.flush()
    start = time.perf_counter()
    arrays = allocate(n, directory)
    fill(World(0), arrays, seed=1, mask=independent_mask(n, PRESENCE, random_state=2))
    for arr in arrays.values():
        arr.flush()
    del arrays
    print(f"  written in {fmt_time(time.perf_counter() - start)}")
    spec = {"n": n, "max_iter": BIG["max_iter"], "directory": str(directory),
            "blas_threads": blas_threads}
    try:
        r = run_child(spec)
        mini = run_child({**spec, "algorithm": "minibatch",
                          "transform_dir": str(directory.with_name(directory.name + "_out"))})
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    results["memory_big"] = r
    results["memory_big_minibatch"] = mini
    _print_memory([_memory_row(r), _memory_row(mini)], BIG["max_iter"], "memory-mapped .npy")
    for label, run in (("lloyd", r), ("minibatch", mini)):
        peak_gb = run["peak_kib"] * 1024 / 1e9
        print(f"  {label}: peak RSS {peak_gb:.2f} GB (mapped file pages included; RSS file at "
              f"the end {fmt_gb(run['rss_file_end_kib'] * 1024)}); target <= "
              f"{TARGET_BIG_PEAK_GB:.0f} GB: {verdict(peak_gb <= TARGET_BIG_PEAK_GB)}")
    print(f"  inertia: minibatch / lloyd(max_iter={BIG['max_iter']}) = "
          f"{mini['inertia'] / r['inertia']:.4f}; fit time ratio lloyd / minibatch = "
          f"{fmt_ratio(r['fit_s'] / mini['fit_s'])}")
    print_context(results["machine"], n)
    kib = 1024
    print(f"  transform(out_dir=...) of all {n:,} rows by the minibatch model: "
          f"{fmt_time(mini['transform_s'])}, wrote {fmt_gb(mini['transform_written_bytes'])}, "
          f"peak RSS {fmt_gb(mini['transform_peak_kib'] * kib)} (before "
          f"{fmt_gb(mini['transform_rss_before_kib'] * kib)}), peak anon "
          f"{fmt_gb(mini['transform_peak_anon_kib'] * kib)}")


# ------------------------------------------------------------------------------- section (e)
MINIBATCH = {"mfeat_seeds": 3, "mfeat_k": 16, "mfeat_missing": 0.5, "n_synthetic": 50_000,
             "lloyd_max_iter": 100, "batch_sizes": (None, 256)}


def _mfeat_split(seed: int):
    from ul4m4 import load_mfeat
    from ul4m4.missingness import apply_mask

    X, y = load_mfeat()
    n = len(y)
    mask = independent_mask(n, [MINIBATCH["mfeat_missing"]] * len(X), random_state=seed)
    masked = apply_mask(X, mask)
    order = np.random.RandomState(seed).permutation(n)
    train, test = order[: int(0.7 * n)], order[int(0.7 * n):]
    return ({k: v[train] for k, v in masked.items()}, {k: v[test] for k, v in masked.items()},
            {k: v[test] for k, v in X.items()})


def bench_minibatch(results: dict) -> None:
    """Mini-batch vs full Lloyd: inertia, completion block-MSE and fit time."""
    from ul4m4.metrics import block_mse, hidden_mask, training_statistics

    k = MINIBATCH["mfeat_k"]
    runs = [("lloyd", None)] + [("minibatch", b) for b in MINIBATCH["batch_sizes"]]
    rows, out = [], {"mfeat": [], "synthetic": {}}
    for seed in range(MINIBATCH["mfeat_seeds"]):
        train, test, truth = _mfeat_split(seed)
        _, scale = training_statistics(train)
        hidden = hidden_mask(truth, test)
        for algorithm, batch in runs:
            seconds, _, model = timed(lambda a=algorithm, b=batch, s=seed, t=train: UL4M4Imputer(
                k, random_state=s, algorithm=a, batch_size=b).fit(t))
            mse = block_mse(truth, model.transform(test), hidden, scale)["all"]
            out["mfeat"].append({"seed": seed, "algorithm": algorithm, "batch_size": batch,
                                 "inertia": model.inertia_, "block_mse": mse, "fit_s": seconds,
                                 "n_iter": int(model.n_iter_)})
    for algorithm, batch in runs:
        picked = [r for r in out["mfeat"] if r["algorithm"] == algorithm
                  and r["batch_size"] == batch]
        lloyd = [r for r in out["mfeat"] if r["algorithm"] == "lloyd"]
        ratio = [p["inertia"] / q["inertia"] for p, q in zip(picked, lloyd, strict=True)]
        mse = [p["block_mse"] for p in picked]
        rows.append([algorithm, str(batch or "default"),
                     f"{np.mean(ratio):.4f} ± {np.std(ratio):.4f}",
                     f"{np.mean(mse):.3f} ± {np.std(mse):.3f}",
                     fmt_time(float(np.mean([p["fit_s"] for p in picked]))),
                     f"{np.mean([p['n_iter'] for p in picked]):.0f}"])
    print_table(
        f"(e) mini-batch vs Lloyd on mfeat, {100 * MINIBATCH['mfeat_missing']:.0f}% slots "
        f"missing, k={k}, 70/30 split, {MINIBATCH['mfeat_seeds']} seeds (mean ± std)",
        ["algorithm", "batch", "inertia / Lloyd's", "block-MSE (test)", "fit", "iters/steps"],
        rows,
    )
    n = MINIBATCH["n_synthetic"]
    X = allocate(n)
    fill(World(0), X, seed=1, mask=independent_mask(n, PRESENCE, random_state=2))
    synth_rows = []
    for algorithm, batch in runs:
        seconds, _, model = timed(lambda a=algorithm, b=batch: UL4M4Imputer(
            K, random_state=0, algorithm=a, batch_size=b,
            max_iter=MINIBATCH["lloyd_max_iter"]).fit(X))
        out["synthetic"][f"{algorithm}-{batch}"] = {"inertia": model.inertia_, "fit_s": seconds,
                                                   "n_iter": int(model.n_iter_),
                                                   "converged": bool(model.converged_)}
        synth_rows.append((algorithm, batch, model.inertia_, seconds, model.n_iter_,
                           model.converged_))
    base_inertia, base_s = synth_rows[0][2], synth_rows[0][3]
    print_table(
        f"(e) mini-batch vs Lloyd on synthetic data, n={n:,}, k={K}, d=1792 float32, ~43% "
        f"slots missing (Lloyd max_iter={MINIBATCH['lloyd_max_iter']})",
        ["algorithm", "batch", "inertia / Lloyd's", "fit", "speed-up", "iters/steps",
         "converged"],
        [[a, str(b or "default"), f"{i / base_inertia:.4f}", fmt_time(t),
          fmt_ratio(base_s / t), str(it), str(c)] for a, b, i, t, it, c in synth_rows],
    )
    print(f"  {load_note()}")
    print_context(results["machine"], n, out)
    results["minibatch"] = out


# ------------------------------------------------------------------------------------ profile
def profile(world: World, n: int, max_iter: int, top: int = 15) -> None:
    X = allocate(n)
    labels = fill(world, X, seed=1)
    mask_in_place(X, independent_mask(n, PRESENCE, random_state=2))
    rows = np.sort(np.random.default_rng(3).choice(n, size=K, replace=False))
    init = {name: arr[rows].copy() for name, arr in X.items()}
    Xt = make_test_set(world, 5_000)

    def show(title, fn):
        profiler = cProfile.Profile()
        with quiet():
            profiler.enable()
            result = fn()
            profiler.disable()
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats("tottime").print_stats(top)
        print(f"\n--- {title}")
        print("\n".join(line for line in buffer.getvalue().splitlines() if line.strip()))
        return result

    model = show(f"fit, n={n:,}, {max_iter} Lloyd iterations, ~43% slots missing",
                 lambda: UL4M4Imputer(K, max_iter=max_iter, init=init).fit(X))
    show(f"transform of {next(iter(Xt.values())).shape[0]:,} incomplete rows, "
         f"{describe_centres(model)}", lambda: model.transform(Xt))
    X2 = allocate(n)
    fill(world, X2, seed=1, mask=clustered_mask(labels, seed=6))
    init_p = {name: arr[rows].copy() for name, arr in X2.items()}
    with quiet():
        partial = UL4M4Imputer(K, max_iter=max_iter, init=init_p).fit(X2)
    show(f"transform, {describe_centres(partial)}", lambda: partial.transform(Xt))
    show(f"fit with k-means++ seeding and max_iter=1, n={n:,}",
         lambda: UL4M4Imputer(K, max_iter=1, random_state=0).fit(X))


# --------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n=20k only, small subsets")
    parser.add_argument("--big", action="store_true",
                        help="also fit 1M x 1792 float32 from a memory-mapped .npy (7.2 GB on "
                             "disk under --big-dir) and report its peak RSS")
    parser.add_argument("--big-dir", type=Path, default=Path("/tmp/ul4m4_bench_big"))
    parser.add_argument("--big-rows", type=int, default=BIG["n"],
                        help="rows of the --big data (default 1,000,000)")
    parser.add_argument("--keep-big-data", action="store_true",
                        help="leave the --big data on disk")
    parser.add_argument("--only", choices=["lloyd", "transform", "knn", "memory", "big",
                                           "minibatch"],
                        nargs="+",
                        help="run only these sections ((b) and (c) need (a)'s models, so "
                             "they run it too; 'big' is the same as --big)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads through threadpoolctl for the run")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile top entries of one fit and of transform, then exit")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    parser.add_argument("--isa", choices=_kernels.VARIANTS, default=None,
                        help=f"run under this variant of the compiled kernels (re-executes the "
                             f"script with {_kernels.ENV_VAR} set; default: the best one)")
    parser.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.isa is not None:
        rerun_under(args.isa, sys.argv[1:] if argv is None else argv)
    if args.child_memory is not None:
        child_memory(json.loads(args.child_memory))
        return
    limits = nullcontext()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(args.blas_threads, user_api="blas")
    with limits:
        run(args)


def rerun_under(isa: str, argv: list[str]) -> None:
    """Re-execute this script with ``UL4M4_ISA=isa`` unless it already runs so.

    The variant is chosen when :mod:`ul4m4` is first imported, so it cannot change
    in a running process; child processes inherit the setting.
    """
    if os.environ.get(_kernels.ENV_VAR) == isa and _kernels.ISA == isa:
        return
    sys.stdout.flush()
    env = {**os.environ, _kernels.ENV_VAR: isa}
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def run(args: argparse.Namespace) -> None:
    prof = PROFILES["quick" if args.quick else "default"]
    info = machine_info()
    print_machine(info)
    world = World(0)
    if args.profile:
        profile(world, prof["sizes"][0], prof["max_iter"][prof["sizes"][0]])
        return
    sections = set(args.only or ["lloyd", "transform", "knn", "memory"])
    results: dict = {"machine": info, "profile": "quick" if args.quick else "default",
                     "k": K, "dims": DIMS}
    started = time.perf_counter()
    print(f"\nData: {K} Gaussian clusters in {LATENT}-d latent space -> modalities "
          f"{DIMS} (float32); k={K}")
    if sections & {"lloyd", "transform", "knn"}:
        Xt = make_test_set(world, prof["n_test"])
        for n in prof["sizes"]:
            state = bench_lloyd(world, n, prof, results)
            if "transform" in sections:
                bench_transform(world, n, prof, state, Xt, results)
            if "knn" in sections:
                bench_knn(n, prof, state, Xt, results)
            del state
            gc.collect()
    if "memory" in sections:
        bench_memory(prof["memory_sizes"], prof["memory_max_iter"], args.blas_threads, results)
    if "minibatch" in sections:
        bench_minibatch(results)
    if args.big or "big" in sections:
        bench_big(args.big_rows, args.big_dir, args.keep_big_data, args.blas_threads, results)
    total = time.perf_counter() - started
    results["total_s"] = total
    print(f"\nTotal {fmt_time(total)}; {load_note()}")
    if args.json is not None:
        args.json.write_text(json.dumps(_finite(results), indent=2, default=_json_default))
        print(f"numbers written to {args.json}")


def _finite(value):
    """NaN and inf become null, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    main()
