#!/usr/bin/env python
"""Scaling benchmark of ``UL4M4Imputer`` backends against sklearn and faiss k-means.

Data: n samples, three modalities of 512, 512 and 768 dims (float32), drawn from
64 Gaussian clusters in a 32-d latent space projected linearly to each modality,
with 50% of the modality slots missing (each modality present independently
with probability (3 - sqrt 5) / 2, conditioned on at least one present, which
makes the expected missing share exactly 1/2). k = 64.

Sections (each a function of :data:`SECTIONS`; ``--only`` picks some):

``lloyd``
    Time per Lloyd iteration of every *runner* (:data:`RUNNERS`: UL4M4 with the
    numpy and torch backends on the incomplete data; ``sklearn.cluster.KMeans``
    and ``faiss.Kmeans`` on complete data of the same shape), all started from the
    same k rows. Each runner fits once with 1 iteration and once with the full
    budget; the time per iteration is the difference over the extra iterations,
    the rest is reported as one-off ``setup``. Also each runner's peak resident
    memory increase (sampled every 5 ms) during the full fit; ratios to sklearn
    and faiss.
``transform``
    Time per transformed (incomplete) sample of each UL4M4 backend.
``scaling``
    Growth slopes ``d log(time per iteration) / d log(n)`` and ``/ d log(k)`` of
    each runner (least squares over the measured sizes and over a k grid).
``dask``
    ``UL4M4Imputer(backend="dask")`` on 2 local single-threaded worker processes vs
    the NumPy backend on 2 threads and ``dask_ml.cluster.KMeans`` (complete data, same
    cluster) at n = 40k and 100k (10k with ``--quick``), k = 64, 8 row chunks: time per
    iteration, ratios, the CPU model, and per iteration the tasks, bytes moved
    between workers, store calls, node summaries sent back, compute and overhead
    (see ``_bench_dask.py``).

A new backend adds a runner to :data:`RUNNERS` (and, if it needs one, a section
function to :data:`SECTIONS`); the table code needs no change.

Usage::

    python benchmarks/bench_scale.py --quick      # n = 5k, 10k; k in (16, 64); a few minutes
    python benchmarks/bench_scale.py              # n = 10k, 100k; k in (16, 32, 64)
    python benchmarks/bench_scale.py --big        # adds n = 1M (about 15 GB of RAM)
    python benchmarks/bench_scale.py --device cuda --json out.json

Timings are wall-clock on whatever else the machine is doing; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# Benchmark the working tree, not some other installed copy of the package.
sys.path.insert(0, str(_HERE.parent))

from _common import fmt_time, print_table  # noqa: E402
from _scale_data import Dataset, initial_rows, make_dataset  # noqa: E402

from ul4m4 import UL4M4Imputer  # noqa: E402


# ---------------------------------------------------------------- helpers
def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class PeakMemory:
    """Peak RSS increase over the value at entry, sampled on a thread every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.base = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self.base)
            self._stop.wait(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes() - self.base)


def fmt_mb(n_bytes: float) -> str:
    return "-" if not np.isfinite(n_bytes) else f"{n_bytes / 2**20:.0f} MiB"


def log_slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y against log x (nan with fewer than 2 finite points)."""
    pts = [(a, b) for a, b in zip(x, y, strict=True) if b > 0 and np.isfinite(b)]
    if len(pts) < 2:
        return float("nan")
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


# ---------------------------------------------------------------- runners
@dataclass
class Config:
    sizes: list[int]
    k: int
    k_grid: list[int]
    iters: int
    n_test: int
    threads: int
    device: str | None
    seed: int
    results: dict = field(default_factory=dict)
    repeat_dask: int = 3


@dataclass
class FitResult:
    """A fit with the full iteration budget and one with a single iteration.

    The time per iteration is the difference over the extra iterations, so the
    one-off work of each library (validation, statistics, copies) is left out
    and reported as ``setup``.
    """

    seconds: float
    n_iter: int
    peak_bytes: float
    seconds_one: float = float("nan")

    @property
    def per_iter(self) -> float:
        extra = self.seconds - self.seconds_one
        if self.n_iter > 1 and extra > 0:
            return extra / (self.n_iter - 1)
        return self.seconds / max(1, self.n_iter)

    @property
    def setup(self) -> float:
        return max(self.seconds - self.n_iter * self.per_iter, 0.0)


#: Each timing is the best of this many runs (``--repeat``).
REPEAT = [1]


def _best_time(fn: Callable[[int], int], iters: int) -> tuple[float, int]:
    best, n_iter = float("inf"), 0
    for _ in range(REPEAT[0]):
        start = time.perf_counter()
        n_iter = fn(iters)
        best = min(best, time.perf_counter() - start)
    return best, n_iter


def _timed_fit(fn: Callable[[int], int], iters: int) -> FitResult:
    """Time ``fn(1)`` then ``fn(iters)`` (each returns the iterations it ran)."""
    seconds_one, _ = _best_time(fn, 1)
    with PeakMemory() as memory:
        seconds, n_iter = _best_time(fn, iters)
    return FitResult(seconds, n_iter, memory.peak, seconds_one)


def run_ul4m4(backend: str) -> Callable[[Dataset, int, Config], FitResult]:
    def run(data: Dataset, k: int, cfg: Config) -> FitResult:
        rows = initial_rows(data, k, cfg.seed)
        init = {m: a[rows] for m, a in data.incomplete.items()}
        device = cfg.device if backend == "torch" else None
        models = []

        def fit(iters: int) -> int:
            model = UL4M4Imputer(k, init=init, max_iter=iters, random_state=cfg.seed,
                                 n_jobs=cfg.threads, backend=backend, device=device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a fixed budget does not converge
                model.fit(data.incomplete)
            models.append(model)
            return int(model.n_iter_)

        result = _timed_fit(fit, cfg.iters)
        cfg.results.setdefault("models", {})[(backend, data.n, k)] = models[-1]
        return result

    return run


def run_sklearn(data: Dataset, k: int, cfg: Config) -> FitResult:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    X = data.concatenated()
    init = X[initial_rows(data, k, cfg.seed)]

    def fit(iters: int) -> int:
        model = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
        with threadpool_limits(cfg.threads):
            model.fit(X)
        return int(model.n_iter_)

    return _timed_fit(fit, cfg.iters)


def run_faiss(data: Dataset, k: int, cfg: Config) -> FitResult:
    import faiss

    faiss.omp_set_num_threads(cfg.threads)
    X = data.concatenated()
    init = np.ascontiguousarray(X[initial_rows(data, k, cfg.seed)])

    def fit(iters: int) -> int:
        # max_points_per_centroid = n: use every row, as the other runners do.
        model = faiss.Kmeans(X.shape[1], k, niter=iters, seed=cfg.seed, verbose=False,
                             max_points_per_centroid=X.shape[0], min_points_per_centroid=1)
        model.train(X, init_centroids=init)
        return iters

    return _timed_fit(fit, cfg.iters)


#: name -> runner(data, k, cfg) -> FitResult. UL4M4 runners fit the incomplete
#: data; the yardsticks fit complete data of the same shape.
RUNNERS: dict[str, Callable[[Dataset, int, Config], FitResult]] = {
    "ul4m4-numpy": run_ul4m4("numpy"),
    "ul4m4-torch": run_ul4m4("torch"),
    "sklearn-KMeans": run_sklearn,
    "faiss-Kmeans": run_faiss,
}


def _available(name: str) -> bool:
    try:
        if name.startswith("faiss"):
            import faiss  # noqa: F401
        if name == "ul4m4-torch":
            import torch  # noqa: F401
        if name == "dask":
            import dask.array  # noqa: F401
            import distributed  # noqa: F401
    except ImportError:
        print(f"[skip] {name}: not installed")
        return False
    return True


# --------------------------------------------------------------- sections
def _datasets(cfg: Config) -> dict[int, Dataset]:
    cache = cfg.results.setdefault("datasets", {})
    for n in cfg.sizes:
        if n not in cache:
            cache[n] = make_dataset(n, cfg.n_test, cfg.seed)
    return cache


def _measure(cfg: Config, n: int, k: int) -> dict[str, FitResult]:
    """Every runner on size n with k clusters (memoised across sections)."""
    memo = cfg.results.setdefault("fits", {})
    data = _datasets(cfg)[n]
    for name, runner in RUNNERS.items():
        if (name, n, k) not in memo and _available(name):
            print(f"  fitting {name:15s} n={n:>8,d} k={k} ...", flush=True)
            memo[(name, n, k)] = runner(data, k, cfg)
    return {name: memo[(name, n, k)] for name in RUNNERS if (name, n, k) in memo}


def section_lloyd(cfg: Config) -> None:
    rows = []
    for n in cfg.sizes:
        fits = _measure(cfg, n, cfg.k)
        sk, fa = fits.get("sklearn-KMeans"), fits.get("faiss-Kmeans")
        for name, r in fits.items():
            rows.append([
                f"{n:,}", name, str(r.n_iter), fmt_time(r.setup), fmt_time(r.per_iter),
                _ratio(r.per_iter, sk), _ratio(r.per_iter, fa),
                fmt_mb(r.peak_bytes),
            ])
    print_table(f"Lloyd: time per iteration, k={cfg.k}, dims 512+512+768, "
                f"{cfg.threads} threads (UL4M4 on 50%-missing data, yardsticks on complete data)",
                ["n", "runner", "iters", "setup", "per iteration", "/ sklearn", "/ faiss",
                 "peak RSS +"],
                rows)


def _ratio(value: float, reference: FitResult | None) -> str:
    if reference is None or not reference.per_iter > 0:
        return "-"
    return f"{value / reference.per_iter:.2f}"


def section_transform(cfg: Config) -> None:
    rows = []
    for n in cfg.sizes:
        _measure(cfg, n, cfg.k)
        test = _datasets(cfg)[n].test
        n_missing = int(np.sum([np.isnan(a[:, 0]) for a in test.values()], axis=0).astype(
            bool).sum())
        base = None
        for backend in ("numpy", "torch"):
            model = cfg.results.get("models", {}).get((backend, n, cfg.k))
            if model is None:
                continue
            with PeakMemory() as memory:
                start = time.perf_counter()
                model.transform(test)
                seconds = time.perf_counter() - start
            per = seconds / max(1, n_missing)
            base = per if backend == "numpy" else base
            plan = model.model_.members[0].plan
            path = "nearest-centre" if plan.all_complete else "general (B,k,k)"
            rows.append([f"{n:,}", f"ul4m4-{backend}", path, f"{n_missing:,}", fmt_time(per),
                         f"{per / base:.2f}" if base else "-", fmt_mb(memory.peak)])
    print_table(f"transform: time per incomplete sample, k={cfg.k}",
                ["n (fit)", "backend", "completion path", "samples", "per sample", "/ numpy",
                 "peak RSS +"], rows)


def section_scaling(cfg: Config) -> None:
    n_small = min(cfg.sizes)
    by_n = {name: [] for name in RUNNERS}
    for n in cfg.sizes:
        for name, r in _measure(cfg, n, cfg.k).items():
            by_n[name].append((n, r.per_iter))
    by_k = {name: [] for name in RUNNERS}
    for k in cfg.k_grid:
        for name, r in _measure(cfg, n_small, k).items():
            by_k[name].append((k, r.per_iter))
    rows = []
    for name in RUNNERS:
        if not by_n[name]:
            continue
        slope_n = log_slope(*map(list, zip(*by_n[name], strict=True)))
        slope_k = log_slope(*map(list, zip(*by_k[name], strict=True))) if by_k[name] else np.nan
        k_times = ", ".join(f"k={k}: {fmt_time(t)}" for k, t in by_k[name])
        rows.append([name, f"{slope_n:.2f}", f"{slope_k:.2f}", k_times])
    print_table(f"growth of time per iteration: slope in n over {cfg.sizes}, in k over "
                f"{cfg.k_grid} at n={n_small:,} (1 = linear)",
                ["runner", "slope in n", "slope in k", "per iteration by k"], rows)


def section_dask(cfg: Config) -> None:
    """Dask on 2 local worker processes vs NumPy (and dask-ml KMeans): 40k and 100k rows.

    (10k with ``--quick``.) The same data and k as the other sections, 8 row chunks;
    see ``_bench_dask.py`` for the timing and the per-iteration breakdown.
    """
    if not _available("dask"):
        return
    from _bench_dask import print_results, run_dask_section

    sizes = [10_000] if max(cfg.sizes) < 100_000 else [40_000, 100_000]
    found = [run_dask_section(n, k=cfg.k, rounds=cfg.repeat_dask, seed=cfg.seed)
             for n in sizes]
    cfg.results["dask"] = found
    print_results(found)


#: Sections in run order; each takes the Config and prints its table.
SECTIONS: dict[str, Callable[[Config], None]] = {
    "lloyd": section_lloyd,
    "transform": section_transform,
    "scaling": section_scaling,
    "dask": section_dask,
}


# ------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="n = 5k, 10k; k in (16, 64); 4 iters")
    p.add_argument("--big", action="store_true", help="also n = 1M (about 15 GB of RAM)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="sections to run")
    p.add_argument("--runners", nargs="+", choices=list(RUNNERS), help="runners to run")
    p.add_argument("--iters", type=int, help="Lloyd iterations per fit (default 6, quick 4)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="best of this many runs per timing")
    p.add_argument("--json", type=Path, help="write the measurements here")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    sizes = [5_000, 10_000] if args.quick else [10_000, 100_000]
    if args.big:
        sizes.append(1_000_000)
    k_grid = [16, 64] if args.quick else [16, 32, 64]
    iters = args.iters or (4 if args.quick else 6)
    n_test = 2_000 if args.quick else 10_000
    return Config(sizes, 64, k_grid, iters, n_test, args.threads, args.device, args.seed,
                  repeat_dask=max(args.repeat, 1 if args.quick else 3))


def _write_json(cfg: Config, path: Path) -> None:
    fits = [{"runner": name, "n": n, "k": k, "seconds": r.seconds, "n_iter": r.n_iter,
             "per_iter": r.per_iter, "peak_bytes": r.peak_bytes}
            for (name, n, k), r in cfg.results.get("fits", {}).items()]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"sizes": cfg.sizes, "k": cfg.k, "iters": cfg.iters,
                               "threads": cfg.threads, "fits": fits,
                               "dask": cfg.results.get("dask")}, indent=1))
    os.replace(tmp, path)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.runners:
        for name in [n for n in RUNNERS if n not in args.runners]:
            del RUNNERS[name]
    cfg = config_from(args)
    REPEAT[0] = max(1, args.repeat)
    print(f"bench_scale: sizes {cfg.sizes}, k={cfg.k}, {cfg.iters} iterations, "
          f"{cfg.threads} threads, load average {os.getloadavg()[0]:.1f}")
    for name in args.only or list(SECTIONS):
        SECTIONS[name](cfg)
    if args.json:
        _write_json(cfg, args.json)


if __name__ == "__main__":
    main()
