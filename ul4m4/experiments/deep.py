"""End-to-end deep experiments: encode → mask → impute → train a fusion model → evaluate.

One run of :func:`run_deep_experiment` goes through these stages for every seed and
missingness setting, and records the wall time of each (``encode_s``, ``mask_s``,
``impute_s``, ``train_s``, ``evaluate_s``) in every result row:

1. **encode** (cached): the raw items of each modality (text, images, ...) become
   embeddings with frozen encoders (:func:`ul4m4.encoders.encode_modality`); a
   missing item (``None``) is never given to an encoder and becomes an all-NaN row.
   Sleep-EDF's signal autoencoder is trained, so it is fitted on the *observed
   training* channels only, after masking (:func:`ul4m4.encoders.encode_signals`).
   MovieLens comes embedded already (:func:`ul4m4.datasets.load_movielens`; its rating
   SVD is fitted on each seed's training rows).
2. **mask**: one availability mask per seed and setting (a named configuration of
   :func:`ul4m4.missingness.parse_config` or a share of missing slots), combined with
   the data's own missing items. Under ``protocol="paper"`` MOSI's training split stays
   complete (the reference scripts' choice); otherwise train, val and test all lose
   modalities.
3. **impute**: each imputation method is fitted on the masked *training* rows only
   (statistics, centres) and fills train, val and test with what it learned there.
4. **train**: the fusion model (:func:`ul4m4.fusion.fit_fusion`) on the filled training
   set, checkpoint chosen on the filled validation set. The two methods without an
   imputer, ``mask-aware`` and ``modality-dropout``, train a mask-aware fusion model on
   the masked embeddings (``modality-dropout`` also drops observed modalities at
   random during training).
5. **evaluate**: :func:`ul4m4.fusion.evaluate_task` on the test split, plus the
   block-MSE of the imputed test embeddings on the hidden blocks (``block_mse``,
   ``block_mse_<modality>``; ``mse`` is the regression task's test error).

Protocols
---------
``paper``
    The reference scripts' choices: UL4M4 clusters with the one-step procedure
    (``UL4M4Imputer(reference_one_step=True)``, method name ``ul4m4-onestep``), MOSI
    trains on the complete training split, and the default k is the paper's (MM-IMDb
    64, MOSI 10, Sleep-EDF 1, MovieLens 16).
``clean``
    Train is masked like val and test, UL4M4 runs Lloyd to a fixed point, and the
    default k is a sweep (see :data:`ul4m4.experiments.sources.SOURCES`).

What is deliberately *not* reproduced in either protocol (SPEC §3): the Sleep-EDF
encoder pretrained on unmasked channels (a leak) and its different val/test mask seeds,
MM-IMDb's k-means++ seeding on a concatenation snapped to samples, and MOSI's
batch-padding-dependent audio pooling. ``ul4m4-soft`` and ``ul4m4-auto`` are beyond the
paper and run the same way under both protocols.

Embeddings that the simulation hides are still computed for MM-IMDb, MOSI and MovieLens
(a frozen encoder embeds each item on its own, and the hidden truth is needed for the
block-MSE); an item the data set itself lacks (``None``) never reaches an encoder.

Examples
--------
>>> cfg = DeepConfig(dataset="mosi", data_dir="data/mosi", configs=("100_20_20",),
...                  ks=(10,), protocol="clean")  # doctest: +SKIP
>>> result = run_deep_experiment(cfg)  # doctest: +SKIP
>>> write_deep_outputs(result, "results/mosi")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .._utils.text import first_line
from ..baselines import make_method, method_parameters
from ..metrics import block_mse, hidden_mask, training_statistics
from ..missingness import apply_mask, missing_report
from ._common import RunResult, progress, python_scalar, take_rows
from .benchmark import K_METHODS, Setting, draw_mask, method_label, seed_for
from .sources import (
    DEEP_DATASETS,
    SOURCES,
    DatasetPreset,
    EmbeddedData,
    ExperimentError,
    Source,
    check_setting,
    complete_splits,
    default_embedding_cache,
    embed_dataset,
    embed_signals,
    load_movielens_data,
    load_raw,
    natural_availability,
    random_splits,
)

__all__ = [
    "DEEP_DATASETS",
    "DEEP_METHODS",
    "SOURCES",
    "DatasetPreset",
    "DeepConfig",
    "DeepResult",
    "EmbeddedData",
    "ExperimentError",
    "combine_masks",
    "complete_splits",
    "default_embedding_cache",
    "draw_availability",
    "embed_dataset",
    "embed_signals",
    "impute_splits",
    "load_movielens_data",
    "load_raw",
    "natural_availability",
    "random_splits",
    "run_deep_experiment",
]

#: Imputation methods of the deep experiment (names of :mod:`ul4m4.baselines`).
IMPUTATION_METHODS = ("ul4m4", "ul4m4-soft", "ul4m4-auto", "mean", "knn")
#: Methods that train the fusion model on masked embeddings, without an imputer.
MASK_METHODS = ("mask-aware", "modality-dropout")
#: Every method name :class:`DeepConfig` accepts (``ul4m4-onestep`` explicitly, too).
DEEP_METHODS = (*IMPUTATION_METHODS, "ul4m4-onestep", *MASK_METHODS)
PROTOCOLS = ("paper", "clean")


# ------------------------------------------------------------------------ configuration
@dataclasses.dataclass
class DeepConfig:
    """Everything that defines a deep experiment.

    Parameters
    ----------
    dataset : {"mmimdb", "mosi", "sleep-edf", "movielens"}
        Data set; see :data:`ul4m4.experiments.sources.SOURCES`.
    data_dir : str or Path, optional
        Folder of the raw data set (required except for MovieLens, where it is the
        embedding cache folder and defaults to :func:`ul4m4.datasets.movielens.default_cache_dir`).
    protocol : {"paper", "clean"}
        See the module docstring.
    configs : sequence of str
        Missingness configurations (:func:`ul4m4.missingness.parse_config` names).
    missing : sequence of float
        Shares of missing modality slots, drawn independently per slot (used when
        ``configs`` is empty).
    ks : sequence of int, optional
        Numbers of clusters of the UL4M4 methods; default: the preset's (paper k or
        the clean sweep).
    methods : sequence of str
        From :data:`DEEP_METHODS`.
    seeds, first_seed : int
        Seeds ``first_seed .. first_seed + seeds - 1`` (masks, imputers, fusion models).
    fusion : dict
        Overrides of the preset's :class:`ul4m4.fusion.FusionConfig` fields (e.g.
        ``{"max_epochs": 2}``).
    encoders : dict of str to str
        Encoder kind per modality, overriding the data set's defaults
        (:attr:`ul4m4.experiments.sources.DatasetPreset.encoders`).
    modality_dropout : float
        Drop probability of the ``modality-dropout`` method.
    signal_epochs : int
        Training epochs of the Sleep-EDF signal autoencoders.
    cache_dir : str or Path, optional
        Embedding cache of the encoders (default: :func:`default_embedding_cache`).
    val_size, test_size : float
        Shares of the validation and test rows for data sets without official splits
        (MovieLens: ``test_size`` and ``val_size`` of all rows); for a data set without a
        validation split, ``val_size`` of its training rows (whole groups) become validation.
    blas_threads : int or None
        BLAS/OpenMP threads during the run (``None``: no limit).
    torch_threads : int or None
        PyTorch CPU threads during the run (``None``: PyTorch's default). On a machine
        shared with other jobs, 1 thread trained the MovieLens model 8 times faster than 2.
    progress : bool
        tqdm progress bars on stderr.
    """

    dataset: str = "movielens"
    data_dir: str | Path | None = None
    protocol: str = "clean"
    configs: Sequence[str] = ()
    missing: Sequence[float] = ()
    ks: Sequence[int] | None = None
    methods: Sequence[str] = (*IMPUTATION_METHODS, *MASK_METHODS)
    seeds: int = 1
    first_seed: int = 0
    fusion: dict[str, Any] = dataclasses.field(default_factory=dict)
    encoders: dict[str, str] = dataclasses.field(default_factory=dict)
    modality_dropout: float = 0.3
    signal_epochs: int = 20
    cache_dir: str | Path | None = None
    val_size: float = 0.1
    test_size: float = 0.2
    blas_threads: int | None = None
    torch_threads: int | None = None
    progress: bool = True

    @property
    def preset(self) -> DatasetPreset:
        return SOURCES[self.dataset].preset

    def validate(self) -> None:
        """Check what does not need the data; raise :class:`ExperimentError`."""
        if self.dataset not in SOURCES:
            raise ExperimentError(
                f"unknown dataset {self.dataset!r}; choose from {', '.join(DEEP_DATASETS)}"
            )
        if self.protocol not in PROTOCOLS:
            raise ExperimentError(f"unknown protocol {self.protocol!r}; choose paper or clean")
        SOURCES[self.dataset].check_data_dir(self.data_dir)
        if self.configs and self.missing:
            raise ExperimentError("give either configurations or missing shares, not both")
        for share in self.missing:
            if not (isinstance(share, int | float) and 0.0 <= share < 1.0):
                raise ExperimentError(f"missing share {share!r} is not in [0, 1)")
        if not self.methods:
            raise ExperimentError("give at least one method")
        for name in self.methods:
            if name not in DEEP_METHODS:
                raise ExperimentError(
                    f"unknown method {name!r}; available: {', '.join(DEEP_METHODS)}"
                )
        if len({self._resolved(m) for m in self.methods}) != len(self.methods):
            raise ExperimentError(f"a method is listed twice in {list(self.methods)}")
        for k in self.k_values():
            if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
                raise ExperimentError(f"k must be a positive integer, got {k!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ExperimentError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise ExperimentError(f"the first seed must be >= 0, got {self.first_seed!r}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ExperimentError(
                f"modality dropout must be in [0, 1), got {self.modality_dropout!r}"
            )
        for name, share in (("val", self.val_size), ("test", self.test_size)):
            if not 0.0 < share < 1.0:
                raise ExperimentError(f"{name} share must be in (0, 1), got {share!r}")
        for name, threads in (("blas", self.blas_threads), ("torch", self.torch_threads)):
            if threads is not None and (not isinstance(threads, int) or threads < 1):
                raise ExperimentError(f"{name} threads must be None or >= 1, got {threads!r}")
        if self.val_size + self.test_size >= 1.0:
            raise ExperimentError("val and test shares leave no training rows")
        for setting in self.settings():
            if setting.config is not None:
                _check_config_name(setting.config)

    def _resolved(self, method: str) -> str:
        """Registry name a method runs as (``ul4m4`` is the one-step variant in ``paper``)."""
        if method == "ul4m4" and self.protocol == "paper":
            return "ul4m4-onestep"
        return method

    def k_values(self) -> list[int]:
        """The k of the UL4M4 methods: given, or the preset's for the protocol."""
        if self.ks:
            return [int(k) if isinstance(k, int | np.integer) else k for k in self.ks]
        preset = self.preset
        return [preset.paper_k] if self.protocol == "paper" else list(preset.clean_ks)

    def settings(self) -> list[Setting]:
        """The missingness settings, in table order."""
        configs, missing = self.configs, self.missing
        if not configs and not missing:
            configs, missing = self.preset.configs, self.preset.missing
        if configs:
            return [Setting(name, "config", config=name) for name in configs]
        return [Setting(f"{s:g}", "independent", share=float(s)) for s in missing]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def runs(self) -> list[tuple[str, int | None]]:
        """(method, k) pairs in table order, with the registry names actually run."""
        out: list[tuple[str, int | None]] = []
        for name in self.methods:
            resolved = self._resolved(name)
            if resolved in K_METHODS:
                out += [(resolved, k) for k in sorted(set(self.k_values()))]
            else:
                out.append((resolved, None))
        return out

    def fusion_config(self) -> Any:
        """The :class:`ul4m4.fusion.FusionConfig` of the data set with the overrides applied."""
        from ..fusion import FusionConfig

        params = {**self.preset.fusion, **self.fusion}
        try:
            if self.preset.fusion_preset is not None:
                return FusionConfig.preset(self.preset.fusion_preset, **params)
            return FusionConfig(**params)
        except (TypeError, ValueError) as exc:
            raise ExperimentError(f"fusion settings: {first_line(exc)}") from None


def _check_config_name(name: str) -> None:
    """Reject a configuration name no modality list could accept (syntax only)."""
    if not isinstance(name, str) or not name.strip():
        raise ExperimentError(f"invalid missingness config {name!r}")


# ------------------------------------------------------------------------ masks
def combine_masks(natural: np.ndarray, simulated: np.ndarray) -> tuple[np.ndarray, int]:
    """Availability after simulated missingness, never leaving a sample empty.

    A slot is available when the data has it and the simulated mask keeps it. A
    sample that would lose every modality keeps its own (natural) modalities instead.

    Returns
    -------
    mask : ndarray of bool, shape (n, M)
    n_restored : int
        Samples whose simulated mask was dropped for that reason.

    Examples
    --------
    >>> nat = np.array([[True, False], [True, True]])
    >>> sim = np.array([[False, True], [True, False]])
    >>> combine_masks(nat, sim)[0].tolist(), combine_masks(nat, sim)[1]
    ([[True, False], [True, False]], 1)
    """
    mask = natural & simulated
    empty = ~mask.any(axis=1)
    mask[empty] = natural[empty]
    return mask, int(empty.sum())


def draw_availability(
    setting: Setting,
    names: Sequence[str],
    natural: np.ndarray,
    splits: Mapping[str, np.ndarray],
    protocol: str,
    dataset: str,
    random_state: int,
) -> tuple[np.ndarray, int]:
    """The (n, M) availability of one seed and setting, with the protocol's rules applied."""
    n = natural.shape[0]
    shapes = {name: np.empty((n, 0)) for name in names}
    try:
        simulated = draw_mask(setting, shapes, random_state)
    except ValueError as exc:
        raise ExperimentError(first_line(exc)) from None
    if protocol == "paper" and SOURCES[dataset].paper_complete_train:
        simulated[splits["train"]] = True
    return combine_masks(natural, simulated)


# ------------------------------------------------------------------------ impute
def impute_splits(
    method: str,
    Xm: Mapping[str, np.ndarray],
    splits: Mapping[str, np.ndarray],
    *,
    k: int | None = None,
    random_state: int = 0,
) -> tuple[dict[str, dict[str, np.ndarray]], Any]:
    """Fit an imputer on the masked training rows only; fill train, val and test with it.

    Parameters
    ----------
    method : str
        Registry name (:func:`ul4m4.baselines.make_method`).
    Xm : dict of str to ndarray of shape (n, d_m)
        Masked embeddings of all rows.
    splits : dict
        ``"train"``, ``"val"``, ``"test"`` row indices.
    k : int, optional
        Number of clusters of a UL4M4 method run per k (ignored by the others).

    Returns
    -------
    filled : dict of split name to data dict (no NaN)
    imputer : the fitted method

    Examples
    --------
    >>> X = {"a": np.array([[1.0], [np.nan], [3.0], [np.nan]]), "b": np.ones((4, 1))}
    >>> filled, imp = impute_splits("mean", X, {"train": np.array([0, 2]),
    ...     "val": np.array([1]), "test": np.array([3])})
    >>> float(filled["test"]["a"][0, 0])
    2.0
    """
    accepted = method_parameters(method)
    params: dict[str, Any] = {}
    if k is not None and method in K_METHODS:
        params["n_clusters"] = int(k)
    if "random_state" in accepted:
        params["random_state"] = random_state
    imputer = make_method(method, **params)
    try:
        imputer.fit(take_rows(Xm, splits["train"]))
    except ValueError as exc:
        raise ExperimentError(f"{method_label(method, k)}: {first_line(exc)}") from None
    filled = {name: imputer.transform(take_rows(Xm, rows)) for name, rows in splits.items()}
    return filled, imputer


# ------------------------------------------------------------------------ fusion
@dataclasses.dataclass
class _Prepared:
    """The masked embeddings of one seed and setting, shared by every method."""

    data: EmbeddedData
    mask: np.ndarray
    Xm: dict[str, np.ndarray]
    n_restored: int
    mask_s: float
    encode_s: float

    def report(self, split: str) -> Any:
        return missing_report(self.mask[self.data.splits[split]], list(self.data.X))


def _train_and_evaluate(
    config: DeepConfig,
    prep: _Prepared,
    method: str,
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    masks: Mapping[str, np.ndarray] | None,
    seed: int,
) -> tuple[dict[str, Any], Any]:
    from ..fusion import evaluate_task, fit_fusion, predict_fusion

    d = prep.data
    fcfg = config.fusion_config()
    mask_aware = method in MASK_METHODS
    t0 = time.perf_counter()
    res = fit_fusion(
        dict(inputs["train"]),
        d.y[d.splits["train"]],
        dict(inputs["val"]),
        d.y[d.splits["val"]],
        task=d.task,
        config=fcfg,
        masks_train=None if masks is None else masks["train"],
        masks_val=None if masks is None else masks["val"],
        mask_aware=mask_aware,
        modality_dropout=config.modality_dropout if method == "modality-dropout" else 0.0,
        random_state=seed,
        progress=config.progress,
        output_range=d.output_range,
    )
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = predict_fusion(
        res, dict(inputs["test"]), masks=None if masks is None else masks["test"]
    )
    metrics = dict(evaluate_task(d.task, d.y[d.splits["test"]], scores))
    evaluate_s = time.perf_counter() - t0
    row = {
        "train_s": train_s,
        "evaluate_s": evaluate_s,
        "best_epoch": res.best_epoch,
        "best_val_score": res.best_val_score,
        "epochs_run": len(res.history) if res.history is not None else np.nan,
    }
    return row | {k: python_scalar(v) for k, v in metrics.items()}, res


# ------------------------------------------------------------------------ run
@dataclasses.dataclass
class DeepResult(RunResult):
    """Rows of a finished deep experiment and what is needed to report them."""

    config: DeepConfig
    imputers: dict[tuple[int, str, str], Any] = dataclasses.field(default_factory=dict)


def _describe(data: EmbeddedData) -> dict[str, Any]:
    y = data.y
    if data.task == "multilabel":
        n_classes = int(y.shape[1])
    elif data.task == "regression":
        n_classes = 0
    else:
        n_classes = int(np.unique(y).size)
    return {
        "n_samples": data.n_samples,
        "modalities": {name: int(a.shape[1]) for name, a in data.X.items()},
        "task": data.task,
        "n_classes": n_classes,
        "split_sizes": {name: int(rows.size) for name, rows in data.splits.items()},
        "naturally_missing": {
            name: int(np.isnan(a).all(axis=1).sum()) for name, a in data.X.items()
        },
        "label_names": data.label_names,
        "output_range": data.output_range,
    }


def _prepare(source: Source, seed: int, setting: Setting, data: EmbeddedData | None) -> _Prepared:
    """Draw the availability of one seed and setting and mask the source's embeddings."""
    cfg = source.config
    t0 = time.perf_counter()
    mask, n_restored = draw_availability(
        setting,
        source.names,
        source.natural,
        source.splits,
        cfg.protocol,
        cfg.dataset,
        seed_for(seed, setting.label),
    )
    mask_s = time.perf_counter() - t0
    # Rows carry the encode time of the embeddings they use (see Source.embed).
    data, encode_s = source.embed(seed, mask, data)
    t0 = time.perf_counter()
    Xm = apply_mask(data.X, mask)
    mask_s += time.perf_counter() - t0
    return _Prepared(data, mask, Xm, n_restored, mask_s, encode_s)


def run_deep_experiment(
    config: DeepConfig,
    *,
    argv: list[str] | None = None,
    encoders: Mapping[str, Any] | None = None,
    loader_kwargs: Mapping[str, Any] | None = None,
    keep_imputers: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> DeepResult:
    """Run every seed x setting x method and return the result rows.

    Parameters
    ----------
    config : DeepConfig
        What to run.
    argv : list of str, optional
        The command line, recorded in ``config.json``.
    encoders : dict of str to encoder, optional
        Encoder per modality instead of :func:`default_encoders`.
    loader_kwargs : dict, optional
        Extra arguments of the MovieLens loader (``frame``, ``encoder``).
    keep_imputers : bool, default False
        Keep every fitted imputer in ``result.imputers[(seed, setting, label)]``.
    on_row : callable, optional
        Called with every result row as soon as it is computed.

    Returns
    -------
    DeepResult

    Raises
    ------
    ExperimentError
        For an invalid configuration or data set (one-line messages).

    Examples
    --------
    >>> cfg = DeepConfig(dataset="movielens", missing=(0.5,), ks=(16,),
    ...                  methods=("ul4m4", "mean", "mask-aware"))
    >>> result = run_deep_experiment(cfg)  # doctest: +SKIP
    >>> result.frame()[["label", "micro_f1", "train_s"]]  # doctest: +SKIP
    """
    config.validate()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t_start = time.perf_counter()
    source = SOURCES[config.dataset](config, encoders, loader_kwargs or {})
    settings = config.settings()
    runs = config.runs()
    rows: list[dict[str, Any]] = []
    imputers: dict[tuple[int, str, str], Any] = {}
    info: dict[str, Any] = {}
    bar = progress(
        len(config.seed_list()) * len(settings) * len(runs), config.progress, "experiment"
    )
    try:
        with threadpool_limits(config.blas_threads), _torch_threads(config.torch_threads):
            for seed in config.seed_list():
                data = source.seed_data(seed)
                for setting in settings:
                    check_setting(setting, source.names)
                    prep = _prepare(source, seed, setting, data)
                    info = info or _describe(prep.data)
                    _check_ks(runs, prep.data.splits["train"].size)
                    for method, k in runs:
                        label = method_label(method, k)
                        bar.set_postfix_str(f"seed {seed} | {setting.label} | {label}")
                        row, imputer = _run_one(config, seed, setting, method, k, prep)
                        if keep_imputers and imputer is not None:
                            imputers[(seed, setting.label, label)] = imputer
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
                        bar.update(1)
    finally:
        bar.close()
    return DeepResult(
        config=config,
        rows=rows,
        dataset_info=info,
        started_at=started,
        elapsed_s=time.perf_counter() - t_start,
        argv=argv,
        imputers=imputers,
    )


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` PyTorch CPU threads (``None``: unchanged)."""
    if n is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _check_ks(runs: Sequence[tuple[str, int | None]], n_train: int) -> None:
    too_big = [k for _, k in runs if k is not None and k > n_train]
    if too_big:
        raise ExperimentError(f"k={max(too_big)} exceeds the {n_train} training samples")


def _run_one(
    config: DeepConfig,
    seed: int,
    setting: Setting,
    method: str,
    k: int | None,
    prep: _Prepared,
) -> tuple[dict[str, Any], Any]:
    d = prep.data
    splits = d.splits
    imputer = None
    masks = None
    impute_s = 0.0
    scores: dict[str, Any] = {}
    if method in MASK_METHODS:
        inputs = {name: take_rows(prep.Xm, rows) for name, rows in splits.items()}
        masks = {name: prep.mask[rows] for name, rows in splits.items()}
    else:
        t0 = time.perf_counter()
        inputs, imputer = impute_splits(method, prep.Xm, splits, k=k, random_state=seed)
        impute_s = time.perf_counter() - t0
        scores = _imputation_scores(prep, inputs["test"])
    fitted, _ = _train_and_evaluate(config, prep, method, inputs, masks, seed)
    train_report, test_report = prep.report("train"), prep.report("test")
    row = {
        "dataset": config.dataset,
        "seed": seed,
        "protocol": config.protocol,
        "setting": setting.label,
        "missing_nominal": setting.share if setting.share is not None else np.nan,
        "missing_realised": float((~prep.mask).mean()),
        "missing_train": train_report.missing_share,
        "missing_test": test_report.missing_share,
        "n_restored": prep.n_restored,
        "method": method,
        "k": k if k is not None else np.nan,
        "label": method_label(method, k),
        "transductive": False,
        "task": d.task,
        "n_train": int(splits["train"].size),
        "n_val": int(splits["val"].size),
        "n_test": int(splits["test"].size),
        "encode_s": prep.encode_s,
        "mask_s": prep.mask_s,
        "impute_s": impute_s,
    }
    return row | scores | fitted, imputer


def _imputation_scores(prep: _Prepared, filled_test: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Block-MSE (training z-space) of the imputed test embeddings on the hidden blocks."""
    d = prep.data
    rows = d.splits["test"]
    X_true = take_rows(d.X, rows)
    hidden = hidden_mask(X_true, take_rows(prep.Xm, rows))
    if not hidden.any():
        return {"block_mse": np.nan}
    _, scale = training_statistics(take_rows(prep.Xm, d.splits["train"]))
    mse = block_mse(X_true, filled_test, hidden, scale)
    # Not "mse": that name is the regression task's test error (evaluate_task).
    out = {"block_mse": mse.pop("all")}
    return out | {f"block_mse_{name}": value for name, value in mse.items()}
