"""Seeded training, validation-based checkpoint selection and prediction of :class:`FusionModel`.

:func:`fit_fusion` trains on one split and selects the checkpoint on another; every
random choice (initialisation, dropout, shuffling, modality dropout) is drawn from
``random_state``, inside a forked RNG so the caller's global torch state is left
alone, and a CPU run is bit-reproducible. :func:`predict_fusion` returns
probabilities or values for new data with the same modalities.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._utils.progress import progress_bar
from ..statistics import unit_scales
from ._validation import Inputs, check_inputs, check_targets, check_task
from .config import FusionConfig
from .metrics import METRIC_NAMES, evaluate_task
from .model import FusionModel

__all__ = ["FusionResult", "fit_fusion", "modality_dropout_mask", "predict_fusion"]

#: Selection metrics that are errors (lower is better); all other metrics are maximised.
_MINIMISED = frozenset({"loss", "mae", "mse"})
_DEFAULT_METRIC = {"multilabel": "micro_f1", "multiclass": "macro_f1", "regression": "mae"}


@dataclass
class FusionResult:
    """What :func:`fit_fusion` returns.

    Attributes
    ----------
    model : FusionModel
        The model with the best validation checkpoint restored, in eval mode.
    history : list of dict
        One dict per epoch: ``epoch`` (from 1), ``train_loss`` (mean over training
        samples), ``val_loss``, ``val_score`` (the selection metric), ``seconds``.
    best_epoch : int
        Epoch whose weights :attr:`model` holds.
    best_val_score : float
        Its validation score.
    task : str
    config : FusionConfig
    seconds : float
        Wall time of the fit.
    selection_metric : str
        Name of ``val_score`` (minimised if ``loss``, ``mae`` or ``mse``).
    stopped_early : bool
        Whether ``patience`` ended training before ``max_epochs``.
    class_weight : ndarray or None
        Multi-class loss weights used.
    """

    model: FusionModel
    history: list[dict[str, float]]
    best_epoch: int
    best_val_score: float
    task: str
    config: FusionConfig
    seconds: float
    selection_metric: str = "loss"
    stopped_early: bool = False
    class_weight: np.ndarray | None = field(default=None, repr=False)


# ------------------------------------------------------------------ utilities
@contextlib.contextmanager
def _seeded(seed: int, deterministic: bool, device: torch.device) -> Iterator[None]:
    """Seed torch inside a forked RNG and, optionally, request deterministic kernels."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    # Fork the CPU generator and, on CUDA, the device's, so the caller's streams are untouched.
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's CPU thread count (``None``: leave it)."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seed_of(random_state: Any) -> int:
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise TypeError(
        f"random_state must be None, an int or a numpy RandomState/Generator, got {random_state!r}"
    )


def modality_dropout_mask(mask: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Drop each observed token with probability ``p``, never all of a sample's tokens.

    Parameters
    ----------
    mask : bool Tensor of shape (B, M)
        True where the modality is observed (at least one per row).
    p : float
        Drop probability in [0, 1).
    generator : torch.Generator

    Returns
    -------
    bool Tensor of shape (B, M)
        The tokens kept: a subset of ``mask`` with at least one True per row. A row
        whose draw dropped every observed token keeps one of them, chosen uniformly.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> kept = modality_dropout_mask(torch.ones(4, 3, dtype=torch.bool), 0.99, g)
    >>> kept.sum(dim=1).tolist()
    [1, 1, 1, 1]
    """
    if p <= 0:
        return mask
    # Drawn on the CPU generator (same draws on any device), then moved.
    draw = torch.rand(mask.shape, generator=generator).to(mask.device)
    kept = mask & (draw >= p)
    emptied = ~kept.any(dim=1)
    if bool(emptied.any()):
        # Rescue one observed token per emptied row: the one with the largest fresh
        # uniform key is a uniform choice among the observed tokens.
        keys = torch.rand(mask.shape, generator=generator).to(mask.device)
        keys = torch.where(mask, keys, torch.full_like(keys, -1.0))
        rescue = torch.zeros_like(mask)
        rescue[torch.arange(mask.shape[0], device=mask.device), keys.argmax(dim=1)] = True
        kept = kept | (rescue & emptied.unsqueeze(1))
    return kept


def _tensors(data: Inputs, device: torch.device) -> tuple[list[Tensor], Tensor]:
    arrays = [torch.from_numpy(a).to(device) for a in data.arrays]
    return arrays, torch.from_numpy(data.mask).to(device)


def _batches(n: int, size: int, order: Tensor | None = None) -> Iterator[Tensor]:
    index = torch.arange(n) if order is None else order
    for start in range(0, n, size):
        yield index[start : start + size]


# -------------------------------------------------------------- loss and data
def _balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return y.size / (n_classes * np.maximum(counts, 1.0))


def _class_weights(config: FusionConfig, y: np.ndarray, n_classes: int) -> np.ndarray | None:
    if config.class_weight is None:
        return None
    if isinstance(config.class_weight, str):
        return _balanced_weights(y, n_classes)
    weights = np.asarray(config.class_weight, dtype=np.float64)
    if weights.shape != (n_classes,) or not (weights >= 0).all():
        raise ValueError(
            f"class_weight must hold {n_classes} non-negative weights (one per class), got "
            f"{config.class_weight!r}"
        )
    return weights


def _loss_function(task: str, class_weight: np.ndarray | None, device: torch.device) -> nn.Module:
    if task == "multilabel":
        return nn.BCEWithLogitsLoss()
    if task == "multiclass":
        w = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=None if w is None else w.to(device))
    return nn.MSELoss()


def _n_outputs(task: str, y_train: np.ndarray, y_val: np.ndarray, n_classes: int | None) -> int:
    if task == "multilabel":
        if y_val.shape[1] != y_train.shape[1]:
            raise ValueError(
                f"y_val has {y_val.shape[1]} labels but y_train has {y_train.shape[1]}"
            )
        return int(y_train.shape[1])
    if task == "regression":
        return 1
    seen = int(max(y_train.max(), y_val.max())) + 1
    if n_classes is None:
        return seen
    if n_classes < seen:
        raise ValueError(f"n_classes={n_classes} but the labels go up to {seen - 1}")
    return int(n_classes)


def _resolve_range(output_range: Any, task: str, y_train: np.ndarray) -> tuple[float, float] | None:
    if task != "regression":
        if output_range is not None:
            raise ValueError("output_range applies to the regression task only")
        return None
    if output_range is not None:
        return (float(output_range[0]), float(output_range[1]))
    low, high = float(y_train.min()), float(y_train.max())
    if not low < high:
        raise ValueError("the regression targets are constant; pass output_range explicitly")
    return (low, high)


def _standardization(data: Inputs) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Mean and unbiased std of each modality over its observed rows; 1 for a constant
    dimension, by the imputer's rule (:func:`ul4m4.statistics.unit_scales`)."""
    means, scales = [], []
    for name, a, observed in zip(data.names, data.arrays, data.mask.T, strict=True):
        rows = a[observed].astype(np.float64)
        if rows.shape[0] == 0:
            raise ValueError(f"modality {name!r} is never observed in the training data")
        mean = rows.mean(axis=0)
        std = rows.std(axis=0, ddof=1) if rows.shape[0] > 1 else np.ones_like(mean)
        means.append(mean)
        scales.append(std)
    return means, unit_scales(means, scales)


# ------------------------------------------------------------------ training
def _build_model(
    train: Inputs,
    task: str,
    n_outputs: int,
    config: FusionConfig,
    mask_aware: bool,
    output_range: tuple[float, float] | None,
    y_train: np.ndarray,
) -> FusionModel:
    dims = {name: a.shape[1] for name, a in zip(train.names, train.arrays, strict=True)}
    model = FusionModel(
        dims, n_outputs, task, config, mask_aware=mask_aware, output_range=output_range
    )
    if config.standardize:
        model.set_standardization(
            *([torch.as_tensor(v) for v in values] for values in _standardization(train))
        )
    if task == "regression":
        # Start at the mean target, inside the Hardtanh range, so the bound does not
        # zero the gradients of the first steps.
        with torch.no_grad():
            model.head[-1].bias.fill_(float(np.mean(y_train)))
    return model


def _optimizer(model: nn.Module, config: FusionConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _train_epoch(
    model: FusionModel,
    data: tuple[list[Tensor], Tensor],
    y: Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    modality_dropout: float,
) -> float:
    arrays, mask = data
    model.train()
    n = y.shape[0]
    order = torch.randperm(n, generator=generator)
    total = 0.0
    for rows in _batches(n, model.config.batch_size, order):
        rows = rows.to(mask.device)
        batch_mask = modality_dropout_mask(mask[rows], modality_dropout, generator)
        inputs = [a[rows] for a in arrays]
        if model.mask_aware:
            out = model(inputs, batch_mask)
        else:
            out = model(inputs, drop=~batch_mask if modality_dropout > 0 else None)
        loss = loss_fn(out, y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if model.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), model.config.grad_clip)
        optimizer.step()
        total += float(loss.detach()) * rows.numel()
    return total / n


@torch.no_grad()
def _outputs(model: FusionModel, data: tuple[list[Tensor], Tensor], batch_size: int) -> Tensor:
    arrays, mask = data
    model.eval()
    parts = []
    for rows in _batches(mask.shape[0], batch_size):
        rows = rows.to(mask.device)
        inputs = [a[rows] for a in arrays]
        parts.append(model(inputs, mask[rows] if model.mask_aware else None))
    return torch.cat(parts)


def _check_selection(metric: str | None, task: str) -> str:
    if metric is None:
        return _DEFAULT_METRIC[task]
    if metric != "loss" and metric not in METRIC_NAMES[task]:
        raise ValueError(
            f"selection_metric {metric!r} is not a {task} metric; choose 'loss' or one of "
            f"{list(METRIC_NAMES[task])}"
        )
    return metric


def _is_better(score: float, best: float, minimise: bool, min_delta: float) -> bool:
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score < best - min_delta if minimise else score > best + min_delta


def fit_fusion(
    X_train: Mapping[str, Any],
    y_train: Any,
    X_val: Mapping[str, Any],
    y_val: Any,
    task: str,
    config: FusionConfig | None = None,
    masks_train: Any = None,
    masks_val: Any = None,
    mask_aware: bool = False,
    modality_dropout: float = 0.0,
    random_state: Any = 0,
    progress: bool = True,
    output_range: tuple[float, float] | None = None,
    *,
    n_classes: int | None = None,
) -> FusionResult:
    """Train the SPEC §5 attention fusion model and keep its best validation checkpoint.

    Parameters
    ----------
    X_train, X_val : dict of str to ndarray of shape (n, d_m)
        Modality embeddings with the same names (the training dict's order is the
        token order). Without ``mask_aware`` they must be complete (no NaN): imputed
        data. With ``mask_aware`` a missing modality may be an all-NaN row.
    y_train, y_val : array-like
        ``(n, L)`` 0/1 (multilabel), ``(n,)`` integer classes (multiclass) or
        ``(n,)`` floats (regression).
    task : {"multilabel", "multiclass", "regression"}
        Loss: BCE with logits; cross-entropy weighted by ``config.class_weight``
        (balanced on the training labels by default); MSE of the Hardtanh-bounded output.
    config : FusionConfig, optional
    masks_train, masks_val : bool ndarray of shape (n, M), optional
        True = observed; columns in the order of the corresponding dict. Used by the
        mask-aware model (default: a row is observed unless it is all NaN); checked
        for shape and otherwise ignored when ``mask_aware=False`` (imputed values are
        then used like observed ones).
    mask_aware : bool, default=False
        The "no imputation" baseline: missing tokens are excluded from attention and
        from the mean pool.
    modality_dropout : float, default=0.0
        During training, drop each observed token of a sample with this probability,
        never all of them. The mask-aware model masks dropped tokens; the plain model
        sets their standardised input to zero (the training mean).
    random_state : int, numpy RandomState/Generator or None, default=0
        Seeds initialisation, dropout, shuffling and modality dropout.
    progress : bool, default=True
        Show a tqdm bar over epochs (on stderr, if tqdm is installed).
    output_range : (float, float), optional
        Regression: Hardtanh bounds; ``None`` uses the training targets' min and max.
    n_classes : int, optional
        Multiclass: number of classes (default: largest label seen + 1).

    Returns
    -------
    FusionResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = {"a": rng.normal(size=(60, 5)), "b": rng.normal(size=(60, 3))}
    >>> y = (X["a"][:, 0] > 0).astype(int)
    >>> tr = {k: v[:40] for k, v in X.items()}
    >>> va = {k: v[40:] for k, v in X.items()}
    >>> res = fit_fusion(tr, y[:40], va, y[40:], "multiclass",
    ...                  FusionConfig(d=8, heads=2, max_epochs=3), progress=False)
    >>> len(res.history), predict_fusion(res, va).shape
    (3, (20, 2))
    """
    started = time.perf_counter()
    task = check_task(task)
    config = FusionConfig() if config is None else config
    if not 0.0 <= float(modality_dropout) < 1.0:
        raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
    train = check_inputs(X_train, masks_train, mask_aware=mask_aware, what="X_train")
    val = check_inputs(
        X_val,
        masks_val,
        mask_aware=mask_aware,
        names=train.names,
        dims=[a.shape[1] for a in train.arrays],
        what="X_val",
    )
    y_tr = check_targets(y_train, task, train.n_samples, "y_train")
    y_va = check_targets(y_val, task, val.n_samples, "y_val")
    n_outputs = _n_outputs(task, y_tr, y_va, n_classes)
    class_weight = _class_weights(config, y_tr, n_outputs) if task == "multiclass" else None
    bounds = _resolve_range(output_range, task, y_tr)
    selection = _check_selection(config.selection_metric, task)
    seed = _seed_of(random_state)
    device = torch.device(config.device)
    with _threads(config.num_threads), _seeded(seed, config.deterministic, device):
        model = _build_model(train, task, n_outputs, config, mask_aware, bounds, y_tr).to(device)
        loop = _TrainingLoop(model, task, selection, class_weight, device, seed)
        loop.run(train, y_tr, val, y_va, float(modality_dropout), progress)
    return FusionResult(
        model=model.eval(),
        history=loop.history,
        best_epoch=loop.best_epoch,
        best_val_score=loop.best_score,
        task=task,
        config=config,
        seconds=time.perf_counter() - started,
        selection_metric=selection,
        stopped_early=loop.stopped_early,
        class_weight=class_weight,
    )


class _TrainingLoop:
    """Epoch loop with validation scoring, best-checkpoint copies and early stopping."""

    def __init__(
        self,
        model: FusionModel,
        task: str,
        selection: str,
        class_weight: np.ndarray | None,
        device: torch.device,
        seed: int,
    ) -> None:
        self.model = model
        self.task = task
        self.selection = selection
        self.minimise = selection in _MINIMISED
        self.loss_fn = _loss_function(task, class_weight, device)
        self.device = device
        self.optimizer = _optimizer(model, model.config)
        # Shuffling and modality dropout draw from their own CPU generator.
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.best_score = float("nan")
        self.best_state: dict[str, Tensor] | None = None
        self.stopped_early = False

    def _validate(
        self, data: tuple[list[Tensor], Tensor], y: Tensor, y_np: np.ndarray
    ) -> tuple[float, float]:
        out = _outputs(self.model, data, self.model.config.eval_batch_size)
        loss = float(self.loss_fn(out, y))
        if self.selection == "loss":
            return loss, loss
        scores = self.model.probabilities(out).cpu().numpy()
        metrics = evaluate_task(self.task, y_np, scores, threshold=self.model.config.threshold)
        return loss, metrics[self.selection]

    def run(
        self,
        train: Inputs,
        y_train: np.ndarray,
        val: Inputs,
        y_val: np.ndarray,
        modality_dropout: float,
        progress: bool,
    ) -> None:
        config = self.model.config
        train_data = _tensors(train, self.device)
        val_data = _tensors(val, self.device)
        y_tr = torch.from_numpy(y_train).to(self.device)
        y_va = torch.from_numpy(y_val).to(self.device)
        bar = progress_bar(progress, config.max_epochs, f"fusion ({self.task})", "epoch",
                           leave=False)
        try:
            for epoch in range(1, config.max_epochs + 1):
                tic = time.perf_counter()
                train_loss = _train_epoch(
                    self.model,
                    train_data,
                    y_tr,
                    self.loss_fn,
                    self.optimizer,
                    self.generator,
                    modality_dropout,
                )
                val_loss, score = self._validate(val_data, y_va, y_val)
                self._record(epoch, train_loss, val_loss, score, time.perf_counter() - tic)
                if bar is not None:
                    bar.set_postfix(
                        train_loss=f"{train_loss:.4f}",
                        val=f"{score:.4f}",
                        best=self.best_epoch,
                        refresh=False,
                    )
                    bar.update(1)
                if config.patience is not None and epoch - self.best_epoch >= config.patience:
                    self.stopped_early = epoch < config.max_epochs
                    break
        finally:
            if bar is not None:
                bar.close()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def _record(
        self, epoch: int, train_loss: float, val_loss: float, score: float, seconds: float
    ) -> None:
        self.history.append(
            dict(
                epoch=epoch,
                train_loss=train_loss,
                val_loss=val_loss,
                val_score=score,
                seconds=seconds,
            )
        )
        if self.best_state is None or _is_better(
            score, self.best_score, self.minimise, self.model.config.min_delta
        ):
            self.best_epoch, self.best_score = epoch, score
            self.best_state = copy.deepcopy(self.model.state_dict())


# ---------------------------------------------------------------- prediction
def predict_fusion(
    res: FusionResult | FusionModel,
    X: Mapping[str, Any],
    masks: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Scores of a fitted fusion model on new data.

    Parameters
    ----------
    res : FusionResult or FusionModel
    X : dict of str to ndarray of shape (n, d_m)
        The training modalities (any key order) and widths. Complete unless the model
        is mask-aware, where missing modalities may be all-NaN rows.
    masks : bool ndarray of shape (n, M), optional
        True = observed, columns in ``X``'s order (mask-aware models; default: a row
        is observed unless it is all NaN). Shape-checked and ignored otherwise.
    batch_size : int, optional
        Rows per forward pass (default: ``config.eval_batch_size``).

    Returns
    -------
    ndarray
        ``(n, L)`` label probabilities (multilabel), ``(n, C)`` class probabilities
        (multiclass) or ``(n,)`` values (regression), float32.

    Examples
    --------
    See :func:`fit_fusion`.
    """
    model = res.model if isinstance(res, FusionResult) else res
    if not isinstance(model, FusionModel):
        raise TypeError(f"res must be a FusionResult or a FusionModel, got {type(res).__name__}")
    batch = model.config.eval_batch_size if batch_size is None else int(batch_size)
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data = check_inputs(X, masks, mask_aware=model.mask_aware, names=model.names, dims=model.dims)
    device = next(model.parameters()).device
    was_training = model.training
    try:
        with _threads(model.config.num_threads):
            out = _outputs(model, _tensors(data, device), batch)
        return model.probabilities(out).cpu().numpy()
    finally:
        model.train(was_training)
