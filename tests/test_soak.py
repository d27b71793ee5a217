"""Soak test: 1,000 fit / transform / save / load cycles must not leak memory.

Run with ``make test-slow`` (or ``pytest -m slow tests/test_soak.py -s`` to see the
figures). Shapes, missing patterns, k, dtype and completion change every cycle, so
every code path that allocates per call (chunk buffers, thread pools, zip
archives, temporary files) is exercised many times. The resident set size is
read with psutil after a warm-up (allocator pools and imports settle there) and
at the end; its growth must stay below :data:`MAX_GROWTH_MIB`.
"""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from ul4m4 import UL4M4Imputer

psutil = pytest.importorskip("psutil")

CYCLES = 1000
WARM_UP = 100
#: Allowed RSS growth between the end of the warm-up and the last cycle. A leak of
#: one fitted model (a few KiB to ~100 KiB here) per cycle would exceed it.
MAX_GROWTH_MIB = 24.0


def _random_case(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    n = int(rng.integers(20, 300))
    n_mod = int(rng.integers(1, 5))
    X = {}
    mask = rng.random((n, n_mod)) < 0.7
    mask[np.arange(n), rng.integers(0, n_mod, n)] = True
    mask[:2] = True  # every modality observed at least twice
    for m in range(n_mod):
        a = rng.normal(size=(n, int(rng.integers(1, 40))))
        a[~mask[:, m]] = np.nan
        X[f"m{m}"] = a.astype(rng.choice([np.float32, np.float64]))
    params = {
        "n_clusters": int(rng.integers(1, 9)),
        "dtype": rng.choice([np.float32, np.float64]),
        "completion": str(rng.choice(["greedy", "soft"])),
        "batch_size": int(rng.choice([16, 64, 1024])),
        "random_state": int(rng.integers(2**31)),
    }
    return X, params


def _cycle(rng: np.random.Generator, path) -> None:
    X, params = _random_case(rng)
    imp = UL4M4Imputer(**params).fit(X)
    filled = imp.transform(X)
    imp.save(path)
    loaded = UL4M4Imputer.load(path)
    again = loaded.transform(X)
    for name in X:
        np.testing.assert_array_equal(again[name], filled[name])


def _rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.slow
def test_fit_transform_save_load_cycles_do_not_leak(tmp_path):
    rng = np.random.default_rng(20261124)
    path = tmp_path / "model.ul4m4"
    checkpoints: list[tuple[int, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cycle in range(1, CYCLES + 1):
            _cycle(rng, path)
            if cycle == WARM_UP or cycle % 200 == 0:
                checkpoints.append((cycle, _rss_mib()))
    start = dict(checkpoints)[WARM_UP]
    end = checkpoints[-1][1]
    print(f"\nsoak: {CYCLES} cycles; RSS after the {WARM_UP}-cycle warm-up {start:.1f} MiB, "
          f"at the end {end:.1f} MiB, growth {end - start:+.1f} MiB "
          f"(bound {MAX_GROWTH_MIB} MiB); checkpoints "
          + ", ".join(f"{c}: {r:.1f}" for c, r in checkpoints))
    assert end - start < MAX_GROWTH_MIB
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
