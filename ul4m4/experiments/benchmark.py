"""Benchmark of imputation methods under simulated missing modalities.

For every seed the data set is split into train and test (stratified by class for
single-label targets), and for every missingness setting one availability mask is
drawn for all samples, so train *and* test lose modalities. Each method is fitted
on the masked training set only, then fills the masked training and test sets
(with training statistics only; a method marked *transductive* refits on the data
it fills). UL4M4 methods run once per k, the others once. Scores:

- ``mse`` / ``mse_<modality>``: block MSE in training z-space on the hidden test
  blocks (:func:`ul4m4.metrics.block_mse`); ``train_mse`` on the hidden training
  blocks; ``cosine``: cosine similarity of the hidden test blocks in z-space;
- downstream: logistic regression trained on the imputed training set, scored on
  the imputed test set (``accuracy``, ``macro_f1``; multi-label: ``micro_f1``,
  ``samples_f1``, ``macro_f1``, ``subset_accuracy``, ``legacy_flattened_f1``);
- ``ami_train`` / ``ami_test``: adjusted mutual information of UL4M4's clusters with
  the classes;
- cost: ``fit_s``, ``fill_train_s``, ``fill_test_s`` (wall seconds) and ``peak_mib``
  (peak extra memory of the three steps, see :func:`ul4m4.metrics.measure`).

A ``complete`` row per seed gives the same head trained and tested on the complete
data, the ceiling for the downstream scores.

Missingness settings: ``independent`` (each modality present with probability
``1 - share``, redrawn so that no sample is left without a modality, which makes
the realised share a bit lower than ``share`` at high shares; every row records
the realised share), ``mnar`` (the same rates, missing-not-at-random, see
:func:`ul4m4.missingness.mnar_mask`), or named configurations of
:func:`ul4m4.missingness.parse_config` (``100_20_20``, ``complex_60_20_20``,
``pm0.4_ps0.5``, ...).

Data sets are registered names (``mfeat``; ``movielens`` when its loader is
installed) or folders: see :mod:`ul4m4.experiments.datasets` for the layout
(``<modality>.npy`` files of shape (n, d_m) plus ``labels.npy`` of shape (n,) or
(n, C)).

Outputs (:func:`write_outputs`, every file written atomically): ``results.csv``,
``summary.csv``, ``summary.md``, ``config.json``, ``metric_vs_missing.png`` and
``k_stability.png``.

Resuming: with ``resume_dir`` (the command uses ``<out>/runs``), every result row
is stored as soon as it is computed, atomically, in one JSON file named by a hash
of everything that determines it (data fingerprint, seed, setting, method, k,
method parameters, split, head, measurement mode, library version). A rerun reuses
the stored rows and computes only the missing ones, so a killed benchmark resumes
where it stopped and a changed setting never reuses a stale row (the store is
:class:`ul4m4.experiments.resume.RunStore`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import shlex
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from .. import __version__
from ..baselines import available_methods, make_method, method_parameters
from ..baselines.mofa import import_mofa
from ..metrics import (
    block_cosine,
    block_mse,
    cluster_ami,
    downstream_scores,
    hidden_mask,
    measure,
    training_statistics,
)
from ..missingness import (
    apply_mask,
    independent_mask,
    mask_from_data,
    missing_report,
    mnar_mask,
    parse_config,
)
from ._common import RunResult, progress, setting_records, take_rows
from .datasets import SPLIT_AWARE, DatasetError, describe_dataset, load_dataset
from .resume import RunStore, cached, fingerprint

__all__ = [
    "K_METHODS",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "DatasetError",
    "Setting",
    "config_record",
    "draw_mask",
    "environment",
    "method_label",
    "run_benchmark",
    "seed_for",
    "split_rows",
]

#: Methods that take the number of clusters k (run once per k).
K_METHODS = ("ul4m4", "ul4m4-soft", "ul4m4-onestep")
PROTOCOLS = ("independent", "mnar", "config")


class BenchmarkError(ValueError):
    """An invalid benchmark configuration; the message is one line for the CLI."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One missingness setting: a share of missing slots under a protocol, or a named config."""

    label: str
    protocol: str
    share: float | None = None
    config: str | None = None


@dataclasses.dataclass
class BenchmarkConfig:
    """Everything that defines a benchmark run.

    Parameters
    ----------
    dataset : str
        Registered name (``"mfeat"``) or folder path.
    protocol : {"independent", "mnar", "config"}
        How masks are drawn; ``"config"`` uses ``configs``.
    missing : sequence of float
        Shares of missing modality slots in [0, 1) (``independent``/``mnar``).
    configs : sequence of str
        :func:`ul4m4.missingness.parse_config` names (``protocol="config"``).
    ks : sequence of int
        Numbers of clusters for the UL4M4 methods.
    methods : sequence of str
        Registry names (:func:`ul4m4.baselines.available_methods`).
    seeds : int
        Number of seeds; seeds ``first_seed .. first_seed + seeds - 1``.
    first_seed : int
        First seed.
    test_size : float
        Test share of the split, in (0, 1).
    mnar_strength : float
        Strength of the MNAR dependence (``protocol="mnar"``).
    method_params : dict of str to dict
        Extra constructor parameters per method name.
    memory : {"tracemalloc", "rss", "none"}
        Peak-memory measurement (:func:`ul4m4.metrics.measure`).
    head_max_iter : int
        ``max_iter`` of the logistic-regression head.
    blas_threads : int or None
        Threads BLAS/OpenMP may use during the run (``None``: no limit). The default
        1 times every method on one core, which keeps the comparison fair and
        avoids oversubscription: on a busy 2-core machine, two BLAS threads made
        the logistic-regression head 14 times and UL4M4 3 times slower.
    progress : bool
        Show tqdm progress bars on stderr.
    """

    dataset: str = "mfeat"
    protocol: str = "independent"
    missing: Sequence[float] = (0.3, 0.5, 0.7)
    configs: Sequence[str] = ()
    ks: Sequence[int] = (4, 16, 64)
    methods: Sequence[str] = ("ul4m4", "mean", "knn", "iterative", "nearest")
    seeds: int = 5
    first_seed: int = 0
    test_size: float = 0.3
    mnar_strength: float = 2.0
    method_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    memory: str = "tracemalloc"
    head_max_iter: int = 1000
    blas_threads: int | None = 1
    progress: bool = True

    def validate(self) -> None:
        """Check the parts that do not need the data; raise :class:`BenchmarkError`."""
        if self.protocol not in PROTOCOLS:
            raise BenchmarkError(f"unknown protocol {self.protocol!r}; choose from {PROTOCOLS}")
        if self.protocol == "config":
            if not self.configs:
                raise BenchmarkError("protocol 'config' needs at least one configuration name")
        else:
            if not self.missing:
                raise BenchmarkError("give at least one missing share")
            for share in self.missing:
                if not (isinstance(share, int | float) and 0.0 <= share < 1.0):
                    raise BenchmarkError(f"missing share {share!r} is not in [0, 1)")
        if not self.methods:
            raise BenchmarkError("give at least one method")
        known = available_methods()
        for name in self.methods:
            if name not in known:
                raise BenchmarkError(f"unknown method {name!r}; available: {', '.join(known)}")
        if len(set(self.methods)) != len(self.methods):
            raise BenchmarkError(f"a method is listed twice in {list(self.methods)}")
        if any(m in K_METHODS for m in self.methods):
            if not self.ks:
                raise BenchmarkError("give at least one k for the UL4M4 methods")
            for k in self.ks:
                if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                    raise BenchmarkError(f"k must be a positive integer, got {k!r}")
        for name, params in self.method_params.items():
            if name not in known:
                raise BenchmarkError(f"parameters given for unknown method {name!r}")
            unknown = set(params) - method_parameters(name)
            if unknown:
                raise BenchmarkError(
                    f"method {name!r} has no parameter(s) {sorted(unknown)}; it takes "
                    f"{sorted(method_parameters(name))}"
                )
        if not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise BenchmarkError(f"the first seed must be >= 0, got {self.first_seed!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise BenchmarkError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not (0.0 < self.test_size < 1.0):
            raise BenchmarkError(f"test size must be in (0, 1), got {self.test_size!r}")
        if not (isinstance(self.mnar_strength, int | float) and math.isfinite(self.mnar_strength)):
            raise BenchmarkError(
                f"--mnar-strength must be a finite number, got {self.mnar_strength!r}"
            )
        if self.blas_threads is not None and (
            not isinstance(self.blas_threads, int) or self.blas_threads < 1
        ):
            raise BenchmarkError(f"blas_threads must be None or >= 1, got {self.blas_threads!r}")
        if self.memory not in ("tracemalloc", "rss", "none"):
            raise BenchmarkError(f"memory must be tracemalloc, rss or none, got {self.memory!r}")
        if "mofa" in self.methods:
            try:
                import_mofa()
            except ImportError as exc:
                raise BenchmarkError(str(exc)) from None

    def settings(self) -> list[Setting]:
        """The missingness settings, in table order."""
        if self.protocol == "config":
            return [Setting(name, "config", config=name) for name in self.configs]
        return [Setting(f"{s:g}", self.protocol, share=float(s)) for s in self.missing]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def runs(self) -> list[tuple[str, int | None]]:
        """(method, k) pairs in table order: each UL4M4 method once per k (ascending)."""
        out: list[tuple[str, int | None]] = []
        for name in self.methods:
            if name in K_METHODS:
                out += [(name, int(k)) for k in sorted(set(self.ks))]
            else:
                out.append((name, None))
        return out


@dataclasses.dataclass
class BenchmarkResult(RunResult):
    """Rows of a finished benchmark and what is needed to report them."""

    config: BenchmarkConfig
    #: Rows read back from ``resume_dir`` instead of computed.
    reused: int = 0


def method_label(method: str, k: int | None) -> str:
    """Row label of a method in tables and plots: ``"ul4m4 (k=16)"``, ``"knn"``."""
    return method if k is None else f"{method} (k={k})"


def seed_for(*parts: int | str) -> int:
    """A 32-bit seed from a tuple; strings hash with CRC32 so labels give stable seeds."""
    entropy = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def draw_mask(
    setting: Setting, X: dict[str, np.ndarray], random_state: int, mnar_strength: float = 2.0
) -> np.ndarray:
    """Availability mask of all samples of ``X`` under ``setting`` (no empty sample)."""
    names = list(X)
    n = next(iter(X.values())).shape[0]
    if setting.protocol == "config":
        assert setting.config is not None
        try:
            cfg = parse_config(setting.config, names)
        except ValueError as exc:
            raise BenchmarkError(str(exc)) from None
        return cfg.make_mask(n, random_state)
    assert setting.share is not None
    rates = [1.0 - setting.share] * len(names)
    if setting.protocol == "mnar":
        # Rows already missing in the data carry NaN; the MNAR score needs finite values.
        finite = {k: np.nan_to_num(v, nan=0.0) for k, v in X.items()}
        return np.asarray(mnar_mask(finite, rates, mnar_strength, random_state))
    return independent_mask(n, rates, random_state)


def split_rows(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row indices of one seed, as every benchmark run splits.

    Stratified by class for single-label targets when every class has two members
    and room on both sides; otherwise a plain seeded split.

    Parameters
    ----------
    y : ndarray of shape (n,) or (n, C)
        Labels (a 2-D multi-label matrix is never stratified).
    test_size : float
        Test share, in (0, 1).
    seed : int
        ``random_state`` of :func:`sklearn.model_selection.train_test_split`.

    Returns
    -------
    train, test : ndarray of int
    """
    idx = np.arange(y.shape[0])
    stratify = y if y.ndim == 1 else None
    if stratify is not None:
        _, counts = np.unique(y, return_counts=True)
        n_test = math.ceil(test_size * y.shape[0])
        # scikit-learn needs two members per class and room for every class on both sides.
        if counts.min() < 2 or n_test < counts.size or y.shape[0] - n_test < counts.size:
            stratify = None
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def run_benchmark(
    config: BenchmarkConfig,
    *,
    data: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
    argv: list[str] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    resume_dir: str | os.PathLike[str] | None = None,
) -> BenchmarkResult:
    """Run every seed x setting x method and return the result rows.

    Parameters
    ----------
    config : BenchmarkConfig
        What to run.
    data : (X, y), optional
        Use this data set instead of loading ``config.dataset``.
    argv : list of str, optional
        The command line, recorded in ``config.json``.
    on_row : callable, optional
        Called with every result row as soon as it is computed (or reused).
    resume_dir : str or path-like, optional
        Folder of finished runs. Every row is written there as soon as it is
        computed, atomically, as one JSON file named by a hash of everything that
        determines it (data fingerprint, seed, setting, method, k, parameters,
        split, head, measurement, library version); a later call with the same
        folder reuses those rows instead of recomputing them, so a run that was
        killed resumes where it stopped. ``None`` computes everything.

    Returns
    -------
    BenchmarkResult
        ``reused`` counts the rows read back from ``resume_dir``.

    Raises
    ------
    BenchmarkError, DatasetError
        For an invalid configuration or data set (one-line messages).
    """
    config.validate()
    X, y = load_dataset(config.dataset) if data is None else data
    # Features fitted on a split are rebuilt on each seed's own training rows.
    split_loader = SPLIT_AWARE.get(config.dataset) if data is None else None
    info = describe_dataset(X, y)
    settings = config.settings()
    for setting in settings:
        if setting.config is not None:
            try:
                parse_config(setting.config, list(X))
            except ValueError as exc:
                raise BenchmarkError(str(exc)) from None
    runs = config.runs()
    seeds = config.seed_list()
    n_test = math.ceil(config.test_size * info["n_samples"])
    n_train = info["n_samples"] - n_test
    too_big = [k for m, k in runs if k is not None and k > n_train]
    if too_big:
        raise BenchmarkError(f"k={max(too_big)} exceeds the {n_train} training samples")
    _check_classes(y)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    store = _run_store(resume_dir, config, X, y) if resume_dir is not None else None

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    bar = progress(len(seeds) * len(settings) * len(runs), config.progress, "benchmark")
    try:
        with threadpool_limits(config.blas_threads):
            for seed in seeds:
                _run_seed(config, seed, X, y, settings, runs, emit, bar, split_loader, store)
    finally:
        bar.close()
    return BenchmarkResult(
        config=config,
        rows=rows,
        dataset_info=info,
        started_at=started,
        elapsed_s=time.perf_counter() - t0,
        argv=argv,
        reused=store.reused if store is not None else 0,
    )


def _check_classes(y: np.ndarray) -> None:
    """The logistic-regression head needs two classes (every label column, multi-label)."""
    columns = [y] if y.ndim == 1 else [y[:, c] for c in range(y.shape[1])]
    for c, column in enumerate(columns):
        if np.unique(column).size < 2:
            where = "the labels hold" if y.ndim == 1 else f"label column {c} holds"
            raise BenchmarkError(
                f"{where} one class only; the downstream head needs at least 2 classes"
            )


def _run_store(folder: str | os.PathLike[str], config: BenchmarkConfig,
               X: dict[str, np.ndarray], y: np.ndarray) -> RunStore:
    """The store of finished runs: its keys hold everything of ``config`` and the data that
    determines a row, besides the seed, setting, method, k and method parameters."""
    return RunStore(folder, {
        "library_version": __version__,
        "data": fingerprint(X, y),
        "dataset": config.dataset,
        "test_size": float(config.test_size),
        "mnar_strength": float(config.mnar_strength),
        "head_max_iter": int(config.head_max_iter),
        "memory": config.memory,
        "blas_threads": config.blas_threads,
    })


def _run_seed(config, seed, X, y, settings, runs, emit, bar, split_loader=None,
              store=None) -> None:
    train, test = split_rows(y, config.test_size, seed)
    if split_loader is not None:
        X, y_again = split_loader(train)
        if not np.array_equal(y, y_again):
            raise BenchmarkError(f"dataset {config.dataset!r}: labels changed with the split")
    X_train, X_test = take_rows(X, train), take_rows(X, test)
    complete_key = store.key(seed, None, "complete", None, {}) if store else None
    emit(cached(store, complete_key,
                 lambda: _complete_row(config, seed, X_train, y[train], X_test, y[test])))
    for setting in settings:
        mask = draw_mask(setting, X, seed_for(seed, setting.label), config.mnar_strength)
        # Built only when some run of this setting is not stored yet.
        data = _LazySettingData(
            f"seed {seed}, setting {setting.label}",
            (X_train, X_test, mask[train], mask[test], y[train], y[test]),
        )
        for method, k in runs:
            bar.set_postfix_str(f"seed {seed} | {setting.label} | {method_label(method, k)}")
            key = (store.key(seed, dataclasses.asdict(setting), method, k,
                             config.method_params.get(method, {}))
                   if store else None)
            run = functools.partial(_run_one, config, seed, setting, method, k, data)
            emit(cached(store, key, run))
            bar.update(1)


class _LazySettingData:
    """A :class:`_SettingData` made on first use (resumed runs may need none)."""

    def __init__(self, where: str, args: tuple) -> None:
        self.where, self.args, self.value = where, args, None

    def get(self) -> _SettingData:
        if self.value is None:
            try:
                self.value = _SettingData(*self.args)
            except ValueError as exc:
                # Too little data for the share: a modality left in fewer than 2 training rows.
                raise BenchmarkError(f"{self.where}: {exc}") from None
        return self.value


@dataclasses.dataclass
class _SettingData:
    """The true and masked train/test data of one seed and setting."""

    X_train: dict[str, np.ndarray]
    X_test: dict[str, np.ndarray]
    mask_train: np.ndarray
    mask_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        self.Xm_train = apply_mask(self.X_train, self.mask_train)
        self.Xm_test = apply_mask(self.X_test, self.mask_test)
        self.hidden_train = hidden_mask(self.X_train, self.Xm_train)
        self.hidden_test = hidden_mask(self.X_test, self.Xm_test)
        # Read back from the masked data, so rows the data set lacks itself count as missing.
        names = list(self.X_train)
        self.report_train = missing_report(mask_from_data(self.Xm_train), names)
        self.report_test = missing_report(mask_from_data(self.Xm_test), names)
        n_train, n_test = len(self.y_train), len(self.y_test)
        self.realised = (
            self.report_train.missing_share * n_train + self.report_test.missing_share * n_test
        ) / (n_train + n_test)
        self.mean, self.scale = training_statistics(self.Xm_train)


def _base_row(config: BenchmarkConfig, seed: int) -> dict[str, Any]:
    return {"dataset": config.dataset, "seed": seed}


def _complete_row(config, seed, X_train, y_train, X_test, y_test) -> dict[str, Any]:
    mean, scale = training_statistics(X_train)
    row = _base_row(config, seed) | {
        "protocol": "none",
        "setting": "complete",
        "missing_nominal": 0.0,
        "method": "complete",
        "k": np.nan,
        "label": "complete data",
        "transductive": False,
        "n_train": len(y_train),
        "n_test": len(y_test),
    }
    if any(np.isnan(v).any() for v in (*X_train.values(), *X_test.values())):
        return row  # the data have missing rows of their own: there is no complete reference
    row |= downstream_scores(
        X_train, y_train, X_test, y_test, mean, scale, max_iter=config.head_max_iter
    )
    return row


def _run_one(
    config: BenchmarkConfig,
    seed: int,
    setting: Setting,
    method: str,
    k: int | None,
    lazy: _LazySettingData,
) -> dict[str, Any]:
    d = lazy.get()
    params = dict(config.method_params.get(method, {}))
    accepted = method_parameters(method)
    if k is not None:
        params["n_clusters"] = k
    if "random_state" in accepted:
        params.setdefault("random_state", seed)
    try:
        imputer = make_method(method, **params)
        with measure(config.memory) as fit_cost:
            imputer.fit(d.Xm_train)
    except (TypeError, ValueError) as exc:
        # Parameter and data errors of a method (ours or scikit-learn's) are user
        # errors here: report them on one line, naming the run.
        raise BenchmarkError(
            f"seed {seed}, setting {setting.label}, {method_label(method, k)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    with measure(config.memory) as train_cost:
        filled_train = imputer.transform(d.Xm_train)
    with measure(config.memory) as test_cost:
        filled_test = imputer.transform(d.Xm_test)
    row = _base_row(config, seed) | {
        "protocol": setting.protocol,
        "setting": setting.label,
        "missing_nominal": setting.share if setting.share is not None else np.nan,
        "missing_realised": d.realised,
        "missing_train": d.report_train.missing_share,
        "missing_test": d.report_test.missing_share,
        "method": method,
        "k": k if k is not None else np.nan,
        "label": method_label(method, k),
        "transductive": bool(imputer.transductive),
        "n_train": len(d.y_train),
        "n_test": len(d.y_test),
        "fit_s": fit_cost.seconds,
        "fill_train_s": train_cost.seconds,
        "fill_test_s": test_cost.seconds,
        "peak_mib": max(fit_cost.peak_mib, train_cost.peak_mib, test_cost.peak_mib),
    }
    mse = block_mse(d.X_test, filled_test, d.hidden_test, d.scale)
    row["mse"] = mse.pop("all")
    row["train_mse"] = block_mse(d.X_train, filled_train, d.hidden_train, d.scale)["all"]
    row["cosine"] = block_cosine(d.X_test, filled_test, d.hidden_test, d.mean, d.scale)["all"]
    row |= {f"mse_{name}": value for name, value in mse.items()}
    row |= downstream_scores(
        filled_train,
        d.y_train,
        filled_test,
        d.y_test,
        d.mean,
        d.scale,
        max_iter=config.head_max_iter,
    )
    if hasattr(imputer, "imputer_") and hasattr(imputer, "predict"):
        row["ami_train"] = cluster_ami(d.y_train, imputer.labels_)
        row["ami_test"] = cluster_ami(d.y_test, imputer.predict(d.Xm_test))
        row["n_iter"] = int(imputer.imputer_.n_iter_)
    return row


# ----------------------------------------------------------------- provenance
def environment() -> dict[str, Any]:
    """Package versions and machine description for ``config.json``."""
    import scipy
    import sklearn

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "ul4m4": __version__,
    }
    for module in ("pandas", "matplotlib", "tqdm"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
    }
    return {"versions": versions, "machine": machine}


def config_record(result: BenchmarkResult) -> dict[str, Any]:
    """The content of ``config.json``."""
    cfg = result.config
    settings = setting_records(cfg.settings(), result.frame())
    argv = result.argv
    return {
        "command": shlex.join(argv) if argv is not None else None,
        "argv": argv,
        "config": dataclasses.asdict(cfg) | {"missing": list(cfg.missing), "ks": list(cfg.ks)},
        "seeds": cfg.seed_list(),
        "settings": settings,
        "runs": [method_label(m, k) for m, k in cfg.runs()],
        "dataset": result.dataset_info | {"spec": cfg.dataset},
        "started_at": result.started_at,
        "elapsed_s": round(result.elapsed_s, 3),
        **environment(),
    }
