"""Evaluation of imputed modalities: reconstruction, downstream quality, clusters, cost.

Reconstruction is scored on the *hidden* blocks only (rows observed in the complete
data but removed by the missingness simulation), in the z-space of the training
statistics, so modalities of different scales weigh alike:

- :func:`block_mse`: mean squared z-error per dimension, per modality and overall;
- :func:`block_cosine`: cosine similarity between imputed and true blocks;
- :func:`block_errors`: the z-space MSE of each hidden block, as an ``(n, M)`` matrix.

Predicted uncertainty of the fills (e.g. ``UL4M4Imputer.transform(X,
return_std=True)``) against the blocks' true errors: :func:`uncertainty_auroc` (does
the predicted std rank the worst fills first?) and :func:`calibration_ratio` (does
its mean square match the measured error?).

Downstream quality (:func:`downstream_scores`) trains one fixed, fast head (logistic
regression, one-vs-rest for multi-label targets) on the concatenated z-scored
imputed training set and scores it on the imputed test set. Multi-label targets are
scored with the true micro-, samples- and macro-F1; :func:`legacy_flattened_f1` is
the number the public MM-IMDb reference script printed as "F1-Micro" and is only
ever reported under a name containing ``legacy`` (see its docstring).

:func:`cluster_ami` compares cluster labels with classes and :func:`measure` times a
block of code and records its peak memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, adjusted_mutual_info_score, f1_score
from sklearn.multiclass import OneVsRestClassifier

from .missingness import mask_from_data
from .statistics import modality_statistics
from .validation import check_multimodal, check_observed_twice

__all__ = [
    "Measurement",
    "block_cosine",
    "block_errors",
    "block_mse",
    "calibration_ratio",
    "cluster_ami",
    "downstream_scores",
    "hidden_mask",
    "legacy_flattened_f1",
    "measure",
    "task_type",
    "training_statistics",
    "uncertainty_auroc",
    "zscore_concat",
]

Stats = dict[str, np.ndarray]


# --------------------------------------------------------------------- z-space
def training_statistics(X_train: Mapping[str, Any]) -> tuple[Stats, Stats]:
    """Per-modality mean and scale over the training rows that observe each modality.

    The same statistics :class:`ul4m4.UL4M4Imputer` uses: unbiased std, and scale 1
    for a constant dimension (std at most 1e-8 of the modality's magnitude; see
    :func:`ul4m4.statistics.constant_dimensions`).

    Parameters
    ----------
    X_train : mapping of str to array of shape (n, d_m)
        Masked training data (all-NaN rows are missing).

    Returns
    -------
    mean, scale : dict of str to ndarray of shape (d_m,)
    """
    data = check_multimodal(X_train, require_observed=False)
    check_observed_twice(data)
    means, scales = modality_statistics(data, 8192)
    return dict(zip(data.names, means, strict=True)), dict(zip(data.names, scales, strict=True))


def zscore_concat(X: Mapping[str, np.ndarray], mean: Stats, scale: Stats) -> np.ndarray:
    """Concatenate the z-scored modalities of ``X`` (in the order of ``mean``) as float64."""
    return np.hstack(
        [(np.asarray(X[name], dtype=np.float64) - mean[name]) / scale[name] for name in mean]
    )


def hidden_mask(X_true: Mapping[str, Any], X_masked: Mapping[str, Any]) -> np.ndarray:
    """Slots observed in ``X_true`` but missing in ``X_masked``: ``(n, M)`` bool, order of ``X_true``."""
    names = list(X_true)
    return mask_from_data(X_true) & ~mask_from_data({n: X_masked[n] for n in names})


def block_mse(
    X_true: Mapping[str, Any],
    X_filled: Mapping[str, Any],
    hidden: np.ndarray,
    scale: Stats,
) -> dict[str, float]:
    """Mean squared error per dimension on the hidden blocks, in training z-space.

    For modality ``m`` the z-error of a dimension is ``(x_filled - x_true) / sigma``
    (the mean cancels), so the score is
    ``mean over hidden rows i and dimensions j of ((x_filled_ij - x_true_ij) / sigma_j)^2``.
    Filling with the training mean scores about 1 on data resembling the training set.

    Parameters
    ----------
    X_true : mapping of str to array of shape (n, d_m)
        The complete data.
    X_filled : mapping of str to array of shape (n, d_m)
        The imputed data.
    hidden : ndarray of bool, shape (n, M)
        Slots to score, columns in the order of ``X_true`` (see :func:`hidden_mask`).
    scale : dict of str to ndarray of shape (d_m,)
        Training scales (see :func:`training_statistics`).

    Returns
    -------
    dict of str to float
        One entry per modality (NaN where nothing of it is hidden) and ``"all"``:
        the mean over every hidden (sample, modality) slot of that slot's
        per-dimension MSE, so each hidden block weighs the same whatever its width
        (the weighting of the partial distance).

    Examples
    --------
    >>> import numpy as np
    >>> true = {"a": np.array([[1.0, 2.0], [3.0, 4.0]])}
    >>> filled = {"a": np.array([[1.0, 2.0], [5.0, 4.0]])}
    >>> block_mse(true, filled, np.array([[False], [True]]), {"a": np.array([2.0, 1.0])})
    {'a': 0.5, 'all': 0.5}
    """
    return _per_slot(X_true, X_filled, hidden, scale, None, kind="mse")[1]


def block_cosine(
    X_true: Mapping[str, Any],
    X_filled: Mapping[str, Any],
    hidden: np.ndarray,
    mean: Stats | None = None,
    scale: Stats | None = None,
) -> dict[str, float]:
    """Mean cosine similarity between imputed and true hidden blocks.

    Parameters
    ----------
    X_true, X_filled, hidden
        As in :func:`block_mse`.
    mean, scale : dict of str to ndarray, optional
        Training statistics: given both, vectors are compared in z-space (where a
        mean fill is the zero vector); otherwise in the raw space.

    Returns
    -------
    dict of str to float
        Per modality and ``"all"`` (mean over hidden slots). A zero vector has
        cosine 0 with anything.
    """
    if (mean is None) != (scale is None):
        raise ValueError("give both mean and scale, or neither")
    return _per_slot(X_true, X_filled, hidden, scale, mean, kind="cosine")[1]


def block_errors(
    X_true: Mapping[str, Any],
    X_filled: Mapping[str, Any],
    hidden: np.ndarray,
    scale: Stats,
) -> np.ndarray:
    """The z-space MSE of every hidden block: ``(n, M)``, NaN where the slot is not hidden.

    Entry ``(i, m)`` is ``mean_j ((x_filled_ij - x_true_ij) / sigma_j)^2`` over the
    ``d_m`` dimensions of modality ``m``; :func:`block_mse`'s ``"all"`` is the mean of
    the non-NaN entries.

    Parameters
    ----------
    X_true, X_filled, hidden, scale
        As in :func:`block_mse`.

    Returns
    -------
    ndarray of shape (n, M)
        Columns in the order of ``X_true``.

    Examples
    --------
    >>> import numpy as np
    >>> true = {"a": np.array([[1.0, 2.0], [3.0, 4.0]])}
    >>> filled = {"a": np.array([[1.0, 2.0], [5.0, 4.0]])}
    >>> block_errors(true, filled, np.array([[False], [True]]), {"a": np.array([2.0, 1.0])})
    array([[nan],
           [0.5]])
    """
    per_slot, _ = _per_slot(X_true, X_filled, hidden, scale, None, kind="mse")
    hidden = np.asarray(hidden, dtype=bool)
    out = np.full(hidden.shape, np.nan)
    # _per_slot concatenates the hidden rows modality by modality: cut it back.
    start = 0
    for m in range(hidden.shape[1]):
        stop = start + int(hidden[:, m].sum())
        out[hidden[:, m], m] = per_slot[start:stop]
        start = stop
    return out


def _paired_finite(std: Any, errors: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float64 copies of ``std`` and ``errors``, keeping the slots finite in both."""
    std = np.asarray(std, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if std.shape != errors.shape:
        raise ValueError(f"std has shape {std.shape} but errors has shape {errors.shape}")
    keep = np.isfinite(std) & np.isfinite(errors)
    return std[keep], errors[keep]


def uncertainty_auroc(std: Any, errors: Any, top: float = 0.25) -> float:
    """AUROC of the predicted std as a detector of the worst fills.

    The positives are the blocks whose true error is in the top ``top`` share: above
    the ``1 - top`` quantile of the errors (linear interpolation, so with distinct
    errors the ``ceil(top * n)``-th largest and up, at most). The score is the
    probability that a positive block has a larger predicted std than a negative one,
    ties counting one half (the Mann-Whitney statistic on average ranks): 0.5 is
    chance, 1 a perfect ranking.

    Parameters
    ----------
    std : array-like
        Predicted std (or variance: only its order matters) of each filled block;
        NaN where nothing was filled.
    errors : array-like, same shape
        True error of each block, e.g. :func:`block_errors`; NaN where not hidden.
    top : float, default=0.25
        Share of the blocks, by largest error, that count as positives; in (0, 1).

    Returns
    -------
    float
        NaN when there are no positives or no negatives (e.g. all errors equal).
        Slots where either input is NaN are left out.

    Examples
    --------
    >>> uncertainty_auroc([0.1, 0.2, 0.3, 0.9], [1.0, 2.0, 3.0, 4.0])
    1.0
    >>> uncertainty_auroc([0.9, 0.2, 0.3, 0.1], [1.0, 2.0, 3.0, 4.0])
    0.0
    """
    if not (isinstance(top, int | float) and 0.0 < top < 1.0):
        raise ValueError(f"top must be in (0, 1), got {top!r}")
    std, errors = _paired_finite(std, errors)
    if errors.size == 0:
        return float("nan")
    positive = errors > np.quantile(errors, 1.0 - top)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(std)  # ties get their average rank, i.e. count one half
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_ratio(std: Any, errors: Any) -> float:
    """``mean(std ** 2) / mean(errors)``: 1 when the predicted variance matches the error.

    Parameters
    ----------
    std : array-like
        Predicted root-mean-square error per coordinate of each filled block (NaN
        where nothing was filled).
    errors : array-like, same shape
        True per-coordinate mean squared error of each block (:func:`block_errors`).

    Returns
    -------
    float
        Above 1: the std overstates the error; below 1: it understates it. NaN when
        no slot is finite in both, or the errors are all 0. Slots where either input
        is NaN are left out.

    Examples
    --------
    >>> calibration_ratio([1.0, 3.0], [2.0, 3.0])
    2.0
    """
    std, errors = _paired_finite(std, errors)
    denominator = float(np.mean(errors)) if errors.size else 0.0
    if denominator <= 0.0:
        return float("nan")
    return float(np.mean(std**2) / denominator)


def _per_slot(X_true, X_filled, hidden, scale, mean, *, kind) -> tuple[np.ndarray, dict]:
    """Every hidden slot's score (modality by modality), and its means per modality and "all"."""
    names = list(X_true)
    if "all" in names:
        raise ValueError("a modality named 'all' would clash with the overall score; rename it")
    hidden = np.asarray(hidden, dtype=bool)
    if hidden.shape[1] != len(names):
        raise ValueError(f"hidden has {hidden.shape[1]} columns for {len(names)} modalities")
    slots, out = [], {}
    for m, name in enumerate(names):
        rows = hidden[:, m]
        true = np.asarray(X_true[name], dtype=np.float64)[rows]
        filled = np.asarray(X_filled[name], dtype=np.float64)[rows]
        if kind == "mse":
            values = np.mean(((filled - true) / scale[name]) ** 2, axis=1)
        else:
            if mean is not None:
                true = (true - mean[name]) / scale[name]
                filled = (filled - mean[name]) / scale[name]
            norms = np.linalg.norm(true, axis=1) * np.linalg.norm(filled, axis=1)
            dots = np.einsum("ij,ij->i", true, filled)
            values = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        out[name] = float(np.mean(values)) if values.size else float("nan")
        slots.append(values)
    per_slot = np.concatenate(slots)
    out["all"] = float(np.mean(per_slot)) if per_slot.size else float("nan")
    return per_slot, out


# ------------------------------------------------------------------ downstream
def task_type(y: Any) -> Literal["multiclass", "multilabel"]:
    """``"multilabel"`` for a 2-D 0/1 indicator matrix, ``"multiclass"`` for 1-D labels."""
    y = np.asarray(y)
    if y.ndim == 1:
        return "multiclass"
    if y.ndim == 2 and np.isin(y, (0, 1)).all():
        return "multilabel"
    raise ValueError(f"labels must be 1-D classes or a 2-D 0/1 matrix, got shape {y.shape}")


def legacy_flattened_f1(L: Any, P: Any) -> float:
    """The MM-IMDb reference scripts' "F1-Micro": **element-wise accuracy, not an F1**.

    ``f1_score(L.flatten(), P.flatten(), average="micro")`` treats every
    (sample, label) cell as one binary prediction and micro-averages over *both*
    classes 0 and 1, which equals the share of cells predicted correctly (SPEC
    §3.3). With sparse labels, predicting no label at all scores about 0.9 while
    its true micro-F1 is 0. Provided only to compare with numbers published with
    that script; report it labelled "legacy", never as an F1.

    Parameters
    ----------
    L, P : array-like of shape (n_samples, n_labels)
        True and predicted 0/1 indicator matrices.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    >>> legacy_flattened_f1(L, np.zeros_like(L))
    0.9
    """
    L = np.asarray(L)
    P = np.asarray(P)
    return float(f1_score(L.flatten(), P.flatten(), average="micro"))


def _head(task: str, C: float, max_iter: int, random_state: Any) -> Any:
    lr = LogisticRegression(C=C, max_iter=max_iter, random_state=random_state)
    return OneVsRestClassifier(lr) if task == "multilabel" else lr


def downstream_scores(
    X_train: Mapping[str, Any],
    y_train: Any,
    X_test: Mapping[str, Any],
    y_test: Any,
    mean: Stats,
    scale: Stats,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    random_state: Any = 0,
) -> dict[str, float]:
    """Fit a logistic-regression head on imputed training data and score it on imputed test data.

    Features are the modalities z-scored with the training statistics and
    concatenated (order of ``mean``). Multi-class targets get a multinomial
    :class:`~sklearn.linear_model.LogisticRegression`; multi-label targets a
    one-vs-rest logistic regression per label.

    Parameters
    ----------
    X_train, X_test : mapping of str to array of shape (n, d_m)
        Imputed data (no NaN).
    y_train, y_test : array-like of shape (n,) or (n, n_labels)
        Class labels, or a 0/1 indicator matrix for multi-label targets.
    mean, scale : dict of str to ndarray
        Training statistics (see :func:`training_statistics`).
    C, max_iter, random_state
        Passed to :class:`~sklearn.linear_model.LogisticRegression`.

    Returns
    -------
    dict of str to float
        Multi-class: ``accuracy`` and ``macro_f1``. Multi-label: ``micro_f1``,
        ``samples_f1``, ``macro_f1`` (true F1 scores, ``zero_division=0``),
        ``subset_accuracy`` and ``legacy_flattened_f1`` (see
        :func:`legacy_flattened_f1`; not an F1).
    """
    task = task_type(y_train)
    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    head = _head(task, C, max_iter, random_state)
    head.fit(zscore_concat(X_train, mean, scale), y_train)
    pred = head.predict(zscore_concat(X_test, mean, scale))
    if task == "multiclass":
        return {
            "accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
        }
    return {
        "micro_f1": float(f1_score(y_test, pred, average="micro", zero_division=0)),
        "samples_f1": float(f1_score(y_test, pred, average="samples", zero_division=0)),
        "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_test, pred)),
        "legacy_flattened_f1": legacy_flattened_f1(y_test, pred),
    }


def cluster_ami(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted mutual information between classes and cluster labels.

    Samples with cluster label -1 (no observed modality) are left out. Multi-label
    targets have no single class per sample, so they give NaN.
    """
    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred)
    if labels_true.ndim != 1:
        return float("nan")
    keep = labels_pred != -1
    if not keep.any():
        return float("nan")
    return float(adjusted_mutual_info_score(labels_true[keep], labels_pred[keep]))


# ------------------------------------------------------------------------ cost
@dataclasses.dataclass
class Measurement:
    """Result of :func:`measure`: wall time (s) and peak extra memory (bytes, NaN if off)."""

    seconds: float = float("nan")
    peak_bytes: float = float("nan")

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


@contextlib.contextmanager
def measure(
    memory: Literal["tracemalloc", "rss", "none"] = "tracemalloc",
) -> Iterator[Measurement]:
    """Time the enclosed block and record its peak memory above the level at entry.

    Parameters
    ----------
    memory : {"tracemalloc", "rss", "none"}, default="tracemalloc"
        ``"tracemalloc"``: peak of memory allocated through Python's allocator
        hooks, which NumPy reports for its array buffers (BLAS work space is not
        seen). It slows allocation-heavy pure-Python code somewhat, which inflates
        the time of such code. A measurement running inside another one resets
        the outer peak.
        ``"rss"``: growth of the peak resident set size (Linux only: resets the
        kernel's high-water mark through ``/proc/self/clear_refs``; falls back to
        ``"tracemalloc"`` elsewhere). Sees everything, including BLAS buffers, but
        not memory the allocator reuses without returning it to the system.
        ``"none"``: time only.

    Yields
    ------
    Measurement
        Filled in when the block exits.

    Examples
    --------
    >>> import numpy as np
    >>> with measure() as m:
    ...     a = np.ones(1_000_000)
    >>> m.seconds >= 0, m.peak_bytes >= 8e6
    (True, True)
    """
    if memory not in ("tracemalloc", "rss", "none"):
        raise ValueError(f"memory must be 'tracemalloc', 'rss' or 'none', got {memory!r}")
    if memory == "rss" and not _rss_reset():
        memory = "tracemalloc"
    result = Measurement()
    started_tracing = False
    if memory == "tracemalloc":
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        else:
            tracemalloc.start()
            started_tracing = True
        base = tracemalloc.get_traced_memory()[0]
    elif memory == "rss":
        base = _rss_kib("VmRSS")
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        if memory == "tracemalloc":
            result.peak_bytes = float(max(0, tracemalloc.get_traced_memory()[1] - base))
            if started_tracing:
                tracemalloc.stop()
        elif memory == "rss":
            result.peak_bytes = float(max(0, _rss_kib("VmHWM") - base) * 1024)


def _rss_reset() -> bool:
    """Reset this process's peak-RSS mark; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return _rss_kib("VmHWM") >= 0
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1
