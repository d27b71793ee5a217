#!/usr/bin/env python
"""GPU benchmark: ``backend="torch"`` on CUDA against the NumPy engine and torch's own GEMM.

One command, under 5 minutes on one GPU machine::

    python benchmarks/bench_gpu.py                  # n = 100k and 1M, then parity at 20k
    python benchmarks/bench_gpu.py --sizes 100000   # a subset
    python benchmarks/bench_gpu.py --device cpu --sizes 600 --parity-rows 400 --k 4
                                                    # the same code on the CPU (a smoke test)

Data: float32, three modalities of 512 + 512 + 768 dims drawn from 64 overlapping
Gaussian clusters in a 32-d latent space (made on the device, so 1M rows take
seconds), half of the modality slots missing (``independent_mask``, presence
(3 - sqrt 5) / 2 per modality, no empty sample); k = 64.

For each size it prints:

* ms per Lloyd iteration, ``(T(7) - T(2)) / 5`` from the same explicit initial
  centres with ``tol=0`` (``n_iter_`` is checked), of the torch engine on the
  device and of the NumPy engine on all CPU cores (``n_jobs=None``);
* the time of torch's plain GEMM of the iteration's shape, ``(n, 1792) @ (1792, 64)``
  float32 on the device (median of 20), the floor of one iteration;
* us per transformed sample (the training rows, half of their slots missing):
  torch on all ``n`` rows, NumPy on the first ``min(n, --numpy-transform-rows)``
  rows (its time is linear in the rows);

and then parity at float64 on ``--parity-rows`` rows (k-means++ seeding, default
tolerance): labels, ``n_iter_``, centres and transform outputs of the torch
engine on the device equal to the NumPy engine's, bit for bit.

Exit status: 0 when done, or when no CUDA device is present (the one line
``bench_gpu: no CUDA device ...`` is printed and nothing runs; pass
``--device cpu`` to run the code on the CPU); 1 when parity fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parent))  # benchmark the working tree

from _common import cpu_model  # noqa: E402

from ul4m4 import UL4M4Imputer  # noqa: E402
from ul4m4.missingness import independent_mask  # noqa: E402

DIMS = {"text": 512, "image": 512, "audio": 768}
LATENT_DIM, N_LATENT = 32, 64
PRESENCE = (3 - 5**0.5) / 2
SHORT, LONG = 2, 7


def say(*parts: object) -> None:
    print(*parts, flush=True)


def make_data(n: int, seed: int, device) -> dict[str, np.ndarray]:
    """Host float32 modalities with NaN rows for the missing slots (drawn on ``device``)."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=gen, device=device)

    centres = normal(N_LATENT, LATENT_DIM)
    latent = centres[torch.randint(0, N_LATENT, (n,), generator=gen, device=device)]
    latent += normal(n, LATENT_DIM)
    mask = independent_mask(n, [PRESENCE] * len(DIMS), random_state=seed)
    X = {}
    for m, (name, d) in enumerate(DIMS.items()):
        block = latent @ (normal(LATENT_DIM, d) / LATENT_DIM**0.5) + 0.3 * normal(n, d)
        block[torch.from_numpy(~mask[:, m]).to(device)] = float("nan")
        X[name] = block.float().cpu().numpy()
        del block
    return X


def initial_centres(X: dict[str, np.ndarray], k: int, seed: int) -> dict[str, np.ndarray]:
    """k rows observing every modality: the explicit initial centres of every timed fit."""
    complete = np.flatnonzero(np.all([~np.isnan(a[:, 0]) for a in X.values()], axis=0))
    rows = np.sort(np.random.default_rng(seed).choice(complete, size=k, replace=False))
    return {name: a[rows] for name, a in X.items()}


def _fit(X, init, iters: int, **params) -> tuple[float, UL4M4Imputer]:
    model = UL4M4Imputer(len(next(iter(init.values()))), init=init, max_iter=iters, tol=0.0,
                         random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed budget does not converge
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    if model.n_iter_ != iters:
        raise RuntimeError(f"{params}: expected {iters} iterations, the fit ran {model.n_iter_}")
    return seconds, model


def per_iteration(X, init, **params) -> tuple[float, UL4M4Imputer]:
    """Seconds per Lloyd iteration, ``(T(LONG) - T(SHORT)) / (LONG - SHORT)``, and the model."""
    short, _ = _fit(X, init, SHORT, **params)
    long, model = _fit(X, init, LONG, **params)
    return (long - short) / (LONG - SHORT), model


def torch_gemm_seconds(n: int, k: int, device, sync) -> float:
    """Median time of torch's float32 ``(n, D) @ (D, k)`` on ``device``.

    The NumPy yardstick (best of a few, on the host) is ``_common.gemm_seconds``.
    """
    import torch

    a = torch.randn(n, sum(DIMS.values()), device=device)
    b = torch.randn(sum(DIMS.values()), k, device=device)
    times = []
    for _ in range(23):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - start)
    del a, b
    return float(np.median(times[3:]))


def transform_seconds(model: UL4M4Imputer, X, rows: int) -> float:
    part = {name: a[:rows] for name, a in X.items()}
    start = time.perf_counter()
    model.transform(part)
    return time.perf_counter() - start


def speed(n: int, k: int, device, sync, numpy_transform_rows: int) -> list[str]:
    say(f"-- n = {n:,}: making the data")
    X = make_data(n, 0, device)
    init = initial_centres(X, k, 0)
    torch_iter, torch_model = per_iteration(X, init, backend="torch", device=device)
    say(f"   torch {1e3 * torch_iter:.1f} ms/iteration")
    numpy_iter, numpy_model = per_iteration(X, init, backend="numpy", n_jobs=None)
    say(f"   numpy {1e3 * numpy_iter:.1f} ms/iteration")
    gemm = torch_gemm_seconds(n, k, device, sync)
    transform_torch = transform_seconds(torch_model, X, n) / n
    rows = min(n, numpy_transform_rows)
    transform_numpy = transform_seconds(numpy_model, X, rows) / rows
    same = bool(np.array_equal(torch_model.labels_, numpy_model.labels_))
    return [f"{n:,}", f"{1e3 * torch_iter:.1f}", f"{1e3 * numpy_iter:.1f}",
            f"{numpy_iter / torch_iter:.1f}x", f"{1e3 * gemm:.2f}", f"{torch_iter / gemm:.1f}x",
            f"{1e6 * transform_torch:.2f}", f"{1e6 * transform_numpy:.2f} ({rows:,} rows)",
            f"{transform_numpy / transform_torch:.1f}x", str(same)]


def parity(rows: int, k: int, device) -> bool:
    """Float64 fits and transforms of the torch engine on ``device`` equal NumPy's, bit for bit."""
    X = make_data(rows, 1, device)
    params = {"n_clusters": k, "random_state": 0, "dtype": np.float64, "max_iter": 50}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = UL4M4Imputer(**params, backend="numpy").fit(X)
        got = UL4M4Imputer(**params, backend="torch", device=device).fit(X)
        want, got_out = ref.transform(X), got.transform(X)
    checks = {
        "labels": np.array_equal(ref.labels_, got.labels_),
        "n_iter_": ref.n_iter_ == got.n_iter_,
        "centres": all(ref.cluster_centers_[m].tobytes() == got.cluster_centers_[m].tobytes()
                       for m in DIMS),
        "outputs": all(np.array_equal(np.asarray(want[m]), np.asarray(got_out[m]))
                       for m in DIMS),
    }
    worst = max(float(np.nanmax(np.abs(np.asarray(want[m]) - np.asarray(got_out[m]))))
                for m in DIMS)
    say(f"parity at float64, n = {rows:,}, k = {k}: n_iter_ {ref.n_iter_} (numpy) / "
        f"{got.n_iter_} (torch); " + ", ".join(f"{c} {'equal' if ok else 'DIFFER'}"
                                               for c, ok in checks.items())
        + f"; largest output difference {worst:.3g}")
    return all(checks.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--parity-rows", type=int, default=20_000)
    p.add_argument("--numpy-transform-rows", type=int, default=100_000)
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        say("bench_gpu: no CUDA device (PyTorch is not installed); nothing to measure")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        say("bench_gpu: no CUDA device (torch.cuda.is_available() is False); nothing to "
            "measure (pass --device cpu to run the benchmark's code on the CPU)")
        return 0
    if device.type == "cuda":
        def sync() -> None:
            torch.cuda.synchronize(device)

        name = torch.cuda.get_device_name(device)
    else:
        def sync() -> None:
            return None

        name = f"{device} (no GPU)"
    say(f"bench_gpu: torch {torch.__version__} on {name}; NumPy engine on {cpu_model()}; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}; "
        f"k = {args.k}, dims {'+'.join(map(str, DIMS.values()))} float32, half the slots missing")
    start = time.perf_counter()
    # Warm up (CUDA context, cuBLAS handles, kernel loading) outside every timing.
    small = make_data(2_000, 2, device)
    for backend in ("torch", "numpy"):
        _fit(small, initial_centres(small, args.k, 0), 1, backend=backend,
             **({"device": device} if backend == "torch" else {}))
    rows = [speed(n, args.k, device, sync, args.numpy_transform_rows) for n in args.sizes]
    head = ["n", "torch ms/iter", "numpy ms/iter", "numpy / torch", "torch GEMM ms",
            "iter / GEMM", "torch us/sample", "numpy us/sample", "numpy / torch",
            "same labels"]
    say(f"\nLloyd iteration (T({LONG}) - T({SHORT})) / {LONG - SHORT} and transform per "
        "sample, torch on " + name)
    say("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        say("| " + " | ".join(r) + " |")
    ok = parity(args.parity_rows, args.k, device)
    say(f"bench_gpu: done in {time.perf_counter() - start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
