#!/usr/bin/env python
"""Dask section of the scale benchmark: ``backend="dask"`` on 2 local workers vs NumPy and dask-ml.

Setting: the data of ``bench_scale.py`` (512 + 512 + 768 float32, half the modality
slots missing), k = 64, persisted dask arrays in 8 row chunks on a ``LocalCluster``
of 2 single-threaded worker processes on loopback; the NumPy backend runs in this
process with ``n_jobs=2`` (two threads), so both use 2 cores. ``dask_ml.cluster.KMeans``
(when installed) runs on the complete data of the same shape, in the same 8 chunks,
on the same cluster.

A Lloyd iteration is ``(T(12) - T(2)) / 10``: fits from the same explicit initial
centres with ``tol=0`` and ``max_iter`` 2 and 12 (``n_iter_`` is checked), so
validation, statistics and start-up cancel out. Runners are interleaved and the
minimum of each time over the rounds is kept. CPU ms per iteration (this process
and its worker processes, user + system, the same difference) is printed too: on
a shared machine it moves less with other load than wall time does.

Per-iteration breakdown of the Dask fit (the difference between a 12- and a
2-iteration fit, over 10): tasks run (``client.get_task_stream``; a Lloyd pass
runs none, each worker's block store makes it in one call), bytes moved between
workers (the workers' transfer logs), store calls, node summaries sent back and
their bytes, compute seconds inside the stores summed over the workers (counted
by wrapping the stores' ``e_step`` on each worker from here), and the overhead
``wall - compute / workers``: the round trips, the client-side driver and the scheduler.

Worker memory: before the timed fits, one Dask fit runs alone and each worker's
peak resident bytes over it (``VmHWM``, reset before the fit) less its resident
bytes before the fit is printed beside its share of the persisted input.

Usage::

    python benchmarks/_bench_dask.py --n 40000 100000 [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parent))  # benchmark the working tree

from _common import cpu_model  # noqa: E402
from _scale_data import initial_rows, make_dataset  # noqa: E402

from ul4m4 import UL4M4Imputer  # noqa: E402

SHORT, LONG = 2, 12


def cpu_seconds() -> float:
    """CPU time of this process and its children (the local workers), user + system."""
    import psutil

    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _timed(fit, iters: int, cpu: dict | None = None) -> tuple[float, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fixed budgets do not converge
        used = cpu_seconds()
        start = time.perf_counter()
        model = fit(iters)
        seconds = time.perf_counter() - start
        used = cpu_seconds() - used
    if int(model.n_iter_) != iters:
        raise RuntimeError(f"expected {iters} iterations, the fit ran {model.n_iter_}")
    if cpu is not None:
        cpu[iters] = min(cpu.get(iters, np.inf), used)
    return seconds, model


def _worker_transfer_bytes(client, since: float) -> int:
    """Bytes the workers fetched from each other since ``since`` (``time.time()``).

    Read from the transfer logs by time: the logs are bounded, so their totals
    are not counters.
    """
    def total(dask_worker) -> int:
        return int(sum(e["total"] for e in dask_worker.transfer_incoming_log
                       if e["start"] >= since))

    return sum(client.run(total).values())


def _store_counter():
    """A function that makes the block stores of its process count what they do.

    It wraps ``BlockStore.e_step`` once per process and keeps the totals on the
    class (``BlockStore.totals``): passes, seconds inside them, node summaries
    sent back and their bytes (the stores keep no counters of their own). Made
    here, not at module level, so that ``client.run`` ships it by value.
    """
    def count() -> None:
        import dask.sizeof

        from ul4m4.backends.dask.store import BlockStore

        if hasattr(BlockStore, "totals"):
            return
        totals = {"passes": 0, "seconds": 0.0, "summaries": 0, "summary_bytes": 0}
        e_step = BlockStore.e_step

        def counted(self, *args, **kwargs):
            start = time.perf_counter()
            scalars, nodes, rows = e_step(self, *args, **kwargs)
            totals["passes"] += 1
            totals["seconds"] += time.perf_counter() - start
            totals["summaries"] += len(nodes)
            totals["summary_bytes"] += sum(dask.sizeof.sizeof(v) for v in nodes.values())
            return scalars, nodes, rows

        BlockStore.e_step, BlockStore.totals = counted, totals

    return count


def _store_totals(client) -> dict:
    """The block stores' totals (passes, seconds, summaries, bytes), summed over the workers."""
    import ul4m4.backends.dask.store as store  # a module travels by name: each worker reads its own

    client.run(_store_counter())
    found = list(client.run(lambda: dict(store.BlockStore.totals)).values())
    return {key: sum(f[key] for f in found) for key in found[0]}


def _profile(client, fit, iters: int) -> dict:
    from distributed import get_task_stream

    since = time.time()
    stores = _store_totals(client)
    with get_task_stream(client) as stream:
        seconds, _ = _timed(fit, iters)
    after = _store_totals(client)
    return {"seconds": seconds, "tasks": len(stream.data),
            "moved_bytes": _worker_transfer_bytes(client, since),
            "compute": after["seconds"] - stores["seconds"],
            "store_calls": after["passes"] - stores["passes"],
            "summaries": after["summaries"] - stores["summaries"],
            "summary_bytes": after["summary_bytes"] - stores["summary_bytes"]}


def _worker_memory(client, *, reset: bool = False) -> dict[str, dict[str, int]]:
    """Per worker: its resident bytes now and at their peak (``VmRSS``, ``VmHWM``).

    With ``reset``, the peak is then reset to the current size (Linux
    ``clear_refs``), so that a later call sees the peak of what ran in between.
    """
    def probe() -> dict[str, int]:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}

    return client.run(probe)


def _input_share(client, arrays) -> dict[str, int]:
    """Per worker, the bytes of the persisted input blocks it holds."""
    sizes = client.nbytes(summary=False)
    share: dict[str, int] = {}
    for array in arrays:
        for key, workers in client.who_has(array).items():
            for worker in workers:
                share[worker] = share.get(worker, 0) + int(sizes.get(key, 0))
    return share


def _memory_probe(client, fit, arrays) -> dict:
    """Peak memory of each worker over one Dask fit, beside its share of the input.

    The fit's growth is its peak less its resident bytes before the fit: the packed
    z-scored copy of its blocks, blocks moved to it once, and a pass's buffers.
    """
    share = _input_share(client, arrays)
    before = _worker_memory(client, reset=True)
    fit(LONG)
    after = _worker_memory(client)
    return {w: {"input_share": share.get(w, 0), "rss_before": before[w]["rss"],
                "peak": after[w]["peak"], "growth": after[w]["peak"] - before[w]["rss"]}
            for w in after}


def run_dask_section(n: int, *, k: int = 64, n_chunks: int = 8, rounds: int = 3,
                     n_workers: int = 2, seed: int = 0, dask_ml: bool = True) -> dict:
    """Seconds per Lloyd iteration of NumPy, Dask (and dask-ml) at ``n`` rows, and a breakdown."""
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    data = make_dataset(n, 1, seed)
    rows = initial_rows(data, k, seed)
    init = {m: a[rows] for m, a in data.incomplete.items()}
    chunk = -(-n // n_chunks)

    def model(iters: int, backend: str) -> UL4M4Imputer:
        return UL4M4Imputer(k, init=init, max_iter=iters, tol=0.0, random_state=seed,
                            n_jobs=n_workers, backend=backend)

    runners = {"numpy": lambda iters: model(iters, "numpy").fit(data.incomplete)}
    times: dict[str, dict[int, float]] = {}
    cpu: dict[str, dict[int, float]] = {}
    models: dict[str, object] = {}
    result = {"n": n, "k": k, "chunks": n_chunks, "dims": sum(a.shape[1] for a in init.values()),
              "cpu": cpu_model()}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client, warnings.catch_warnings():
        # The arrays travel to the workers once, here, inside the graph.
        warnings.filterwarnings("ignore", message="Sending large graph")
        lazy = {m: da.from_array(a, chunks=(chunk, -1)) for m, a in data.incomplete.items()}
        lazy = dict(zip(lazy, dask.persist(*lazy.values()), strict=True))
        wait(list(lazy.values()))
        runners["dask"] = lambda iters: model(iters, "dask").fit(lazy)
        # Before dask-ml's data arrive: each worker then holds only its share of ours.
        result["memory"] = _memory_probe(client, runners["dask"], list(lazy.values()))
        if dask_ml:
            try:
                from dask_ml.cluster import KMeans
            except ImportError:
                print("[skip] dask-ml: not installed")
            else:
                full = da.from_array(data.concatenated(), chunks=(chunk, -1)).persist()
                wait(full)
                start = full[rows].compute()

                def fit_dask_ml(iters: int):
                    return KMeans(n_clusters=k, init=start, max_iter=iters, tol=0.0,
                                  random_state=seed).fit(full)

                runners["dask-ml KMeans"] = fit_dask_ml
        _timed(runners["dask"], SHORT)  # the workers import the package
        for round_ in range(rounds):
            for name, fit in runners.items():
                for iters in (SHORT, LONG):
                    seconds, models[name] = _timed(fit, iters, cpu.setdefault(name, {}))
                    best = times.setdefault(name, {})
                    best[iters] = min(best.get(iters, np.inf), seconds)
                    print(f"  [dask section] n={n:,} round {round_ + 1}/{rounds} {name} "
                          f"T({iters}) = {seconds:.2f} s", flush=True)
        short, long = (_profile(client, runners["dask"], iters) for iters in (SHORT, LONG))
    per_iter = {name: (t[LONG] - t[SHORT]) / (LONG - SHORT) for name, t in times.items()}
    result["per_iteration"] = per_iter
    # CPU seconds of this process and the workers: less sensitive to other load.
    result["cpu_per_iteration"] = {name: (t[LONG] - t[SHORT]) / (LONG - SHORT)
                                   for name, t in cpu.items()}
    result["breakdown"] = {key: (long[key] - short[key]) / (LONG - SHORT) for key in long}
    result["breakdown"]["overhead"] = (result["breakdown"]["seconds"]
                                       - result["breakdown"]["compute"] / n_workers)
    result["same_labels"] = bool(np.array_equal(models["dask"].labels_, models["numpy"].labels_))
    result["load_average"] = os.getloadavg()[0]
    return result


def print_results(results: list[dict]) -> None:
    """The Lloyd table (ratios to NumPy) and the Dask per-iteration breakdown."""
    print(f"\nDask: 2 single-threaded worker processes vs NumPy n_jobs=2, k={results[0]['k']}, "
          f"{results[0]['chunks']} row chunks, ms per Lloyd iteration (T({LONG}) - T({SHORT}))"
          f" / {LONG - SHORT}; CPU: {results[0]['cpu']}")
    head = ["n", "NumPy", "Dask", "Dask / NumPy", "dask-ml KMeans", "dask-ml / NumPy",
            "CPU ms NumPy", "CPU ms Dask", "same labels", "load"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        p, c = r["per_iteration"], r["cpu_per_iteration"]
        ml = p.get("dask-ml KMeans")
        print(f"| {r['n']:,} | {1e3 * p['numpy']:.0f} | {1e3 * p['dask']:.0f} | "
              f"{p['dask'] / p['numpy']:.2f}x | "
              + (f"{1e3 * ml:.0f} | {ml / p['numpy']:.2f}x" if ml else "- | -")
              + f" | {1e3 * c['numpy']:.0f} | {1e3 * c['dask']:.0f}"
              + f" | {r['same_labels']} | {r['load_average']:.1f} |")
    print("\nDask worker memory over one fit: its share of the persisted input, resident "
          "bytes before the fit, peak, growth = peak - before (MB)")
    head = ["n", "worker", "input share", "before", "peak", "growth", "growth / share"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        for i, (_, m) in enumerate(sorted(r["memory"].items())):
            print(f"| {r['n']:,} | {i} | {m['input_share'] / 1e6:.0f} | "
                  f"{m['rss_before'] / 1e6:.0f} | {m['peak'] / 1e6:.0f} | "
                  f"{m['growth'] / 1e6:.0f} | {m['growth'] / max(1, m['input_share']):.2f} |")
    print("\nDask per iteration: tasks run, bytes moved between workers, store calls (one "
          "per worker per pass), node summaries sent back and their bytes, store compute "
          "summed over workers, overhead = wall - compute / workers")
    head = ["n", "wall ms", "tasks", "moved bytes", "store calls", "summaries",
            "summary bytes", "compute ms", "overhead ms"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        b = r["breakdown"]
        print(f"| {r['n']:,} | {1e3 * b['seconds']:.0f} | {b['tasks']:.1f} | "
              f"{b['moved_bytes']:,.0f} | {b['store_calls']:.1f} | {b['summaries']:.1f} | "
              f"{b['summary_bytes']:,.0f} | {1e3 * b['compute']:.0f} | "
              f"{1e3 * b['overhead']:.0f} |")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[40_000, 100_000])
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-dask-ml", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    found = [run_dask_section(n, k=args.k, rounds=args.rounds, dask_ml=not args.no_dask_ml)
             for n in args.n]
    print_results(found)
    if args.json:
        partial = args.json.with_name(args.json.name + ".tmp")
        partial.write_text(json.dumps(found, indent=2))
        os.replace(partial, args.json)  # never leave a half-written file
