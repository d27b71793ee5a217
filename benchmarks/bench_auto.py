#!/usr/bin/env python
"""Cost of ``completion="auto"`` against one fit: T(auto) / T(one k=64 fit), and both fills' quality.

Issue 22's goal: at 60,000 rows, auto's fit takes at most 3x one
``UL4M4Imputer(n_clusters=64)`` fit and fills better than it. For each size (default
60,000 and 300,000 training rows), fit

* auto: ``UL4M4Imputer(n_clusters="auto", completion="auto")`` (the benchmark's
  ``ul4m4-auto``; ``--auto-n-clusters 8`` gives ``UL4M4Imputer(completion="auto")``
  with its default k instead), and
* one fit: ``UL4M4Imputer(n_clusters=64)`` (greedy, the faithful method),

both ``random_state=0``, interleaved (auto, one, one, auto, ...) and keep each one's
minimum over ``--repeats`` runs; print both times, T(auto) / T(one fit), and each
model's block-MSE on the hidden blocks of a held-out set (z-space of the training
statistics, :func:`ul4m4.metrics.block_mse`; the training mean scores about 1). Nothing
is asserted. The machine (CPU model, the compiled kernels' variant
``ul4m4._kernels.ISA``, the BLAS and its kernel) is printed as ``bench_core.py`` prints it.

Data: 3 modalities of 96 float32 dims sharing an 8-d latent made of 32 Gaussian
clusters plus a continuous 8-d factor (cluster structure and low-rank structure
at once), projected linearly with per-dimension noise, offsets and scales. Exactly
half of the modality slots are missing, with no empty row: half of the rows observe
one modality, half observe two, the modalities drawn uniformly.

Usage::

    python benchmarks/bench_auto.py              # 60k and 300k rows, 2 and 1 repeats
    python benchmarks/bench_auto.py --quick      # 20k rows, 1 repeat (smoke test)
    python benchmarks/bench_auto.py --sizes 60000 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import bench_core as core  # noqa: E402  (puts the working tree first on sys.path)
from _common import fmt_time, print_table  # noqa: E402

from ul4m4 import UL4M4Imputer, _kernels  # noqa: E402
from ul4m4.metrics import block_mse, hidden_mask, training_statistics  # noqa: E402

DIMS = {"a": 96, "b": 96, "c": 96}
CLUSTERS = 32
LATENT = 8
CLUSTER_NOISE = 0.6
FEATURE_NOISE = 0.5
#: T(auto) / T(one k=64 fit), at most (issue 22, at 60k rows).
TARGET_RATIO = 3.0

PROFILES = {
    "default": {"sizes": [60_000, 300_000], "repeats": {60_000: 2, 300_000: 1}, "n_test": 10_000},
    "quick": {"sizes": [20_000], "repeats": {20_000: 1}, "n_test": 2_000},
}


class World:
    """Cluster centres, projections, offsets and scales shared by the training and test rows."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(CLUSTERS, LATENT))
        # Two latent parts: the cluster position and a continuous factor, both projected.
        self.proj = [rng.normal(size=(2 * LATENT, d)) / np.sqrt(2 * LATENT) for d in DIMS.values()]
        self.offset = [rng.normal(scale=2.0, size=d) for d in DIMS.values()]
        self.spread = [rng.uniform(0.5, 2.0, size=d) for d in DIMS.values()]

    def sample(self, n: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(CLUSTERS, size=n)
        latent = np.hstack([
            self.centres[labels] + CLUSTER_NOISE * rng.standard_normal((n, LATENT)),
            rng.standard_normal((n, LATENT)),
        ])
        out = {}
        for m, name in enumerate(DIMS):
            block = latent @ self.proj[m] + FEATURE_NOISE * rng.standard_normal((n, DIMS[name]))
            out[name] = (block * self.spread[m] + self.offset[m]).astype(np.float32)
        return out


def half_mask(n: int, seed: int) -> np.ndarray:
    """(n, 3) availability: half the rows observe one modality, half two; exactly 50 % missing."""
    rng = np.random.default_rng(seed)
    M = len(DIMS)
    n_observed = np.where(np.arange(n) < n // 2, 1, 2)
    rng.shuffle(n_observed)
    order = np.argsort(rng.random((n, M)), axis=1)  # a random permutation of the modalities
    return np.argsort(order, axis=1) < n_observed[:, None]


def masked(X: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for m, (name, array) in enumerate(X.items()):
        block = array.copy()
        block[~mask[:, m]] = np.nan
        out[name] = block
    return out


def run_size(n: int, repeats: int, n_test: int, auto_k: int | str) -> dict:
    world = World(0)
    X_train = masked(world.sample(n, 1), half_mask(n, 2))
    X_true = world.sample(n_test, 3)
    X_test = masked(X_true, half_mask(n_test, 4))
    _, scale = training_statistics(X_train)
    hidden = hidden_mask(X_true, X_test)
    makers = {
        "auto": lambda: UL4M4Imputer(n_clusters=auto_k, completion="auto", random_state=0),
        "one": lambda: UL4M4Imputer(n_clusters=64, random_state=0),
    }
    best = {"auto": np.inf, "one": np.inf}
    models = {}
    for r in range(repeats):
        # Interleaved, alternating which goes first, so a slow spell hits both.
        for name in (("auto", "one") if r % 2 == 0 else ("one", "auto")):
            seconds, _, model = core.timed(lambda name=name: makers[name]().fit(X_train))
            best[name] = min(best[name], seconds)
            models[name] = model
            print(f"    n={n:,} repeat {r + 1}/{repeats}: {name} fit {fmt_time(seconds)}",
                  flush=True)
    mse = {name: block_mse(X_true, model.transform(X_test), hidden, scale)["all"]
           for name, model in models.items()}
    result = {"n": n, "n_test": n_test, "repeats": repeats, "auto_s": best["auto"],
              "one_s": best["one"], "ratio": best["auto"] / best["one"],
              "auto_mse": mse["auto"], "one_mse": mse["one"],
              "missing_share": core.missing_share(half_mask(n, 2))}
    selection = getattr(models["auto"], "selection_", None)
    if selection is not None and hasattr(selection, "to_markdown"):
        result["auto_selection"] = selection.to_markdown()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 1 repeat")
    parser.add_argument("--sizes", type=int, nargs="+", help="training rows (default 60k 300k)")
    parser.add_argument("--repeats", type=int, help="runs of each fit per size (minimum kept)")
    parser.add_argument("--n-test", type=int, help="held-out rows (default 10k; quick 2k)")
    parser.add_argument("--auto-n-clusters", default="auto",
                        help="n_clusters of the auto fit: 'auto' (default) or an integer")
    parser.add_argument("--show-selection", action="store_true",
                        help="print auto's selection_ report after each size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    prof = PROFILES["quick" if args.quick else "default"]
    sizes = args.sizes or prof["sizes"]
    n_test = args.n_test or prof["n_test"]
    auto_k = args.auto_n_clusters if args.auto_n_clusters == "auto" else int(args.auto_n_clusters)
    info = core.machine_info()
    core.print_machine(info)
    print(f"  context: CPU {info['cpu_model']}; kernels {_kernels.ISA}; "
          f"{core.blas_summary(info)}", flush=True)
    results = []
    for n in sizes:
        repeats = args.repeats or prof["repeats"].get(n, 1)
        results.append(run_size(n, repeats, n_test, auto_k))
    print()
    print(f"T(auto) / T(one fit): UL4M4Imputer(n_clusters={auto_k!r}, completion='auto') against "
          f"UL4M4Imputer(n_clusters=64), {sum(DIMS.values())} dims, 50 % of slots missing; "
          f"block-MSE on {n_test:,} held-out rows' hidden blocks (z-space)")
    print_table(
        "fit time (minimum of repeats) and fill quality",
        ["rows", "repeats", "T(auto)", "T(one fit)", "T(auto) / T(one fit)", "MSE auto",
         "MSE one fit"],
        [[f"{r['n']:,}", str(r["repeats"]), fmt_time(r["auto_s"]), fmt_time(r["one_s"]),
          f"{r['ratio']:.2f}", f"{r['auto_mse']:.4f}", f"{r['one_mse']:.4f}"] for r in results],
    )
    for r in results:
        ok = r["ratio"] <= TARGET_RATIO and r["auto_mse"] < r["one_mse"]
        print(f"  n={r['n']:,}: T(auto) / T(one fit) = {r['ratio']:.2f} (target <= {TARGET_RATIO})"
              f", MSE {r['auto_mse']:.4f} vs {r['one_mse']:.4f}: {core.verdict(ok)}")
        if args.show_selection and "auto_selection" in r:
            print(r["auto_selection"])
    print(f"  context: CPU {info['cpu_model']}; kernels {_kernels.ISA}; "
          f"{core.blas_summary(info)}; {core.load_note()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
