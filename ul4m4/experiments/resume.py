"""Finished runs of an experiment, stored one JSON file each so that a rerun resumes.

A :class:`RunStore` keeps every result row in its own file, named by a hash of the
*key*: everything that determines the row (the caller's base fields, such as the
library version and a :func:`fingerprint` of the data, plus the seed, setting, method,
k and method parameters). A rerun reads back the rows whose key matches and computes
only the others (:func:`cached`), so a killed run resumes where it stopped and a
changed setting never reuses a stale row. :func:`ul4m4.experiments.benchmark.run_benchmark`
uses it for its ``resume_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import write_text_atomic
from ._common import json_scalar

__all__ = ["RunStore", "cached", "fingerprint"]


class RunStore:
    """Finished runs, one JSON file per row, keyed by what determines it.

    A row file is written with :func:`~ul4m4._utils.files.write_text_atomic`
    (temporary file + ``os.replace``), so a killed run leaves each row either
    complete or absent. Files that cannot be read back as a row of the expected
    key (foreign, damaged by hand) are ignored and recomputed.

    Parameters
    ----------
    folder : str or path-like
        Where the row files live; created on the first :meth:`put`.
    base : mapping
        The fields shared by every key of this run (JSON values).

    Attributes
    ----------
    reused : int
        Rows read back so far.
    """

    def __init__(self, folder: str | os.PathLike[str], base: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.reused = 0
        self.base = dict(base)

    def key(self, seed: int, setting: Mapping[str, Any] | None, method: str, k: int | None,
            params: Mapping[str, Any]) -> dict[str, Any]:
        """The key of one row: the base fields, the seed, the setting (``None`` for the
        complete-data row), the method, k, and the method parameters by their ``repr``."""
        return self.base | {
            "seed": int(seed),
            "setting": None if setting is None else dict(setting),
            "method": method,
            "k": k,
            "params": {name: repr(params[name]) for name in sorted(params)},
        }

    def path(self, key: Mapping[str, Any]) -> Path:
        """The file of ``key``: ``seed<seed>-<method or "complete">-<hash>.json``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        label = "complete" if key["setting"] is None else key["method"]
        return self.folder / f"seed{key['seed']}-{label}-{digest[:24]}.json"

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored row of ``key``, or ``None`` when there is none that matches."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != json.loads(json.dumps(key)):
            return None
        row = record.get("row")
        if not isinstance(row, dict):
            return None
        self.reused += 1
        return row

    def put(self, key: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Store ``row`` under ``key``, atomically."""
        record = {"key": key, "row": row}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path(key), json.dumps(record, default=json_scalar, indent=1))


def fingerprint(X: Mapping[str, np.ndarray], y: np.ndarray) -> str:
    """SHA-256 of the data's names, shapes, dtypes and bytes (rows reused only for the same data)."""
    digest = hashlib.sha256()
    for name, array in [*X.items(), ("__labels__", y)]:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def cached(store: RunStore | None, key: Mapping[str, Any] | None,
           compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The stored row for ``key``, or ``compute()`` stored under it (no store: computed)."""
    if store is None or key is None:
        return compute()
    row = store.get(key)
    if row is None:
        row = compute()
        store.put(key, row)
    return row
