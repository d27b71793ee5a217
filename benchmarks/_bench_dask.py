#!/usr/bin/env python
"""Dask section of the scale benchmark: ``backend="dask"`` on 2 local workers vs the NumPy backend.

For one data shape it measures, for each backend:

* seconds per Lloyd iteration: ``(t(max_iter=M) - t(max_iter=1)) / (n_iter(M) - 1)``
  from the same explicit initial centres, so statistics, seeding and start-up
  cancel out;
* total fit time with the default k-means++ seeding, to convergence (capped);
* peak resident memory of the fit: this process plus, for dask, its worker
  processes (sampled every 20 ms);
* agreement: label agreement of the explicit-init fits (identical seeds), and
  the inertia of dask fits seeded by k-means++ on a 10 % sample relative to
  NumPy fits seeded on all the data (same seeds 0..2).

The NumPy backend runs with ``n_jobs=2`` (two threads), the dask backend on a
``LocalCluster`` of 2 single-threaded worker processes, so both use 2 cores.

Usage::

    python benchmarks/_bench_dask.py --n 20000     # prints a table, optional --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # benchmark the working tree

from ul4m4 import UL4M4Imputer  # noqa: E402

DIMS = {"text": 384, "image": 512, "audio": 256}


def make_data(n: int, seed: int = 0, missing: float = 0.4) -> dict[str, np.ndarray]:
    """64 Gaussian clusters in a 32-d latent space, projected to three float32 modalities.

    Every modality slot is missing with probability ``missing``; no sample is left empty.
    """
    rng = np.random.default_rng(seed)
    latent_centres = rng.normal(scale=3.0, size=(64, 32))
    latent = latent_centres[rng.integers(64, size=n)] + rng.normal(size=(n, 32))
    observed = rng.random((n, len(DIMS))) >= missing
    observed[~observed.any(axis=1), 0] = True
    X = {}
    for m, (name, d) in enumerate(DIMS.items()):
        projection = rng.normal(size=(32, d)) / np.sqrt(32)
        block = latent @ projection + 0.5 * rng.normal(size=(n, d))
        block = (block * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)).astype(np.float32)
        block[~observed[:, m]] = np.nan
        X[name] = block
    return X


@contextmanager
def peak_rss(include_children: bool):
    """Yield a dict whose ``"bytes"`` is the peak RSS seen while the block ran."""
    import psutil

    me = psutil.Process()
    result = {"bytes": 0}
    stop = threading.Event()

    def rss() -> int:
        total = me.memory_info().rss
        if include_children:
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
        return total

    def watch() -> None:
        while not stop.is_set():
            result["bytes"] = max(result["bytes"], rss())
            stop.wait(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["bytes"] = max(result["bytes"], rss())


def _explicit_init(X: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """k samples that observe every modality, as explicit initial centres."""
    complete = np.flatnonzero(np.all([~np.isnan(a[:, 0]) for a in X.values()], axis=0))
    rows = complete[np.linspace(0, complete.size - 1, k).astype(int)]
    return {name: a[rows].astype(np.float64) for name, a in X.items()}


def _timed_fit(fit, params: dict) -> tuple[float, UL4M4Imputer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter-capped runs warn by design
        start = time.perf_counter()
        model = fit(UL4M4Imputer(**params))
        return time.perf_counter() - start, model


def _per_iteration(fit, base: dict, init, iters: int) -> tuple[float, UL4M4Imputer]:
    t_one, _ = _timed_fit(fit, {**base, "init": init, "max_iter": 1})
    t_many, model = _timed_fit(fit, {**base, "init": init, "max_iter": iters})
    return (t_many - t_one) / max(1, model.n_iter_ - 1), model


def run_dask_section(
    n: int,
    *,
    k: int = 16,
    chunk_rows: int = 5000,
    iters: int = 6,
    max_iter: int = 50,
    seeds: tuple[int, ...] = (0, 1, 2),
    n_workers: int = 2,
) -> list[dict]:
    """Dask on ``n_workers`` local single-threaded workers vs the NumPy backend at one shape.

    Returns one row per backend (``"numpy"``, ``"dask"``) with ``seconds_per_iteration``,
    ``fit_seconds`` (k-means++ to convergence, at most ``max_iter``), ``n_iter``,
    ``peak_rss_bytes`` and agreement columns, plus the data shape.
    """
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from ul4m4.backends.dask import fit_dask

    X = make_data(n)
    init = _explicit_init(X, k)
    base = {"n_clusters": k, "random_state": 0}
    shape = {"n": n, "dims": "+".join(str(d) for d in DIMS.values()), "k": k,
             "chunk_rows": chunk_rows, "data_bytes": int(sum(a.nbytes for a in X.values()))}
    rows = []

    def fit_numpy(imp):
        imp.set_params(n_jobs=n_workers)
        return imp.fit(X)

    per_iter, numpy_fixed = _per_iteration(fit_numpy, base, init, iters)
    with peak_rss(include_children=False) as peak:
        fit_s, numpy_full = _timed_fit(fit_numpy, {**base, "max_iter": max_iter})
    numpy_inertia = [
        _timed_fit(fit_numpy, {**base, "random_state": s, "max_iter": max_iter})[1].inertia_
        for s in seeds
    ]
    rows.append({"backend": "numpy", "workers": f"{n_workers} threads", **shape,
                 "seconds_per_iteration": per_iter, "fit_seconds": fit_s,
                 "n_iter": numpy_full.n_iter_, "peak_rss_bytes": peak["bytes"],
                 "label_agreement": 1.0, "sampled_seeding_inertia_ratio": 1.0})

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
        lazy = {name: da.from_array(a, chunks=(chunk_rows, -1)) for name, a in X.items()}
        with warnings.catch_warnings():
            # The arrays travel to the workers once, here, inside the graph.
            warnings.filterwarnings("ignore", message="Sending large graph")
            lazy = dict(zip(lazy, dask.persist(*lazy.values()), strict=True))

        def fit_dask_backend(imp, **kwargs):
            return fit_dask(imp, lazy, **kwargs)

        _timed_fit(fit_dask_backend, {**base, "max_iter": 1})  # workers import the package
        per_iter_d, dask_fixed = _per_iteration(fit_dask_backend, base, init, iters)
        with peak_rss(include_children=True) as peak_d:
            fit_d, dask_full = _timed_fit(fit_dask_backend, {**base, "max_iter": max_iter})
        sampled = [
            _timed_fit(lambda imp: fit_dask_backend(imp, init_sample_rows=max(k, n // 10)),
                       {**base, "random_state": s, "max_iter": max_iter})[1].inertia_
            for s in seeds
        ]
    rows.append({"backend": "dask", "workers": f"{n_workers} processes", **shape,
                 "seconds_per_iteration": per_iter_d, "fit_seconds": fit_d,
                 "n_iter": dask_full.n_iter_, "peak_rss_bytes": peak_d["bytes"],
                 "label_agreement": float(np.mean(dask_fixed.labels_ == numpy_fixed.labels_)),
                 "sampled_seeding_inertia_ratio": float(np.mean(sampled) / np.mean(numpy_inertia)),
                 "sampled_seeding_inertia_ratio_per_seed":
                     [float(a / b) for a, b in zip(sampled, numpy_inertia, strict=True)],
                 "numpy_inertia_seed_spread": float(np.ptp(numpy_inertia) / np.mean(numpy_inertia)),
                 "same_labels_as_numpy_full_fit": bool(np.array_equal(dask_full.labels_,
                                                                      numpy_full.labels_))})
    return rows


def _print(rows: list[dict]) -> None:
    head = ["backend", "workers", "n", "k", "s/iteration", "fit s", "n_iter", "peak RSS GB",
            "label agreement", "sampled-seed inertia ratio"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['backend']} | {r['workers']} | {r['n']} | {r['k']} | "
              f"{r['seconds_per_iteration']:.3f} | {r['fit_seconds']:.2f} | {r['n_iter']} | "
              f"{r['peak_rss_bytes'] / 1e9:.2f} | {r['label_agreement']:.4f} | "
              f"{r['sampled_seeding_inertia_ratio']:.4f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run_dask_section(args.n, k=args.k, chunk_rows=args.chunk_rows)
    _print(result)
    if args.json:
        partial = args.json.with_name(args.json.name + ".tmp")
        partial.write_text(json.dumps(result, indent=2))
        os.replace(partial, args.json)  # never leave a half-written file
