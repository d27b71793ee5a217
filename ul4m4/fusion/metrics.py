"""Task metrics of the fusion experiments, in plain NumPy (no PyTorch needed).

Three task types (SPEC §5):

- **multilabel** (MM-IMDb genres): :func:`multilabel_scores` thresholds the predicted
  probabilities at 0.5 (a label is predicted when ``p >= threshold``) and reports the
  true ``micro_f1``, ``samples_f1`` and ``macro_f1``, the ``subset_accuracy`` and, only
  as a labelled legacy column, ``legacy_flattened_f1``: the MM-IMDb reference script's
  "F1-Micro", which is element-wise accuracy (SPEC §3.3; predicting no label at all
  scores about 0.9 on sparse labels, while its true micro-F1 is 0).
- **multiclass** (Sleep-EDF stages): :func:`multiclass_scores` takes the argmax of the
  class scores and reports ``accuracy`` and ``macro_f1``.
- **regression** (CMU-MOSI sentiment): :func:`regression_scores` reports ``mae``,
  ``mse``, ``pearson_r`` and the binary sentiment scores ``binary_accuracy``,
  ``binary_f1`` and ``binary_f1_weighted``.

Conventions, chosen to agree with ``sklearn.metrics`` (``zero_division=0``):

- an F1 whose denominator is zero (no true and no predicted positive) is 0;
- macro-F1 of a multi-class task averages over the classes present in the true *or*
  the predicted labels (sklearn's default ``labels``);
- **zeros in regression**: the binary class of a value ``v`` is ``v >= 0`` ("non-negative",
  the MOSI Acc-2 convention that counts neutral samples as positive), for the true
  values and the predictions alike. ``binary_f1`` is the F1 of that non-negative class;
  ``binary_f1_weighted`` averages the F1 of both classes weighted by their true counts
  (what the common MOSI evaluation code prints as "F1"). A binary micro-F1 would equal
  ``binary_accuracy``, so it is not listed separately;
- ``pearson_r`` is NaN when the true values or the predictions are constant (the
  correlation is undefined there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "TASKS",
    "classification_scores",
    "evaluate_task",
    "legacy_flattened_f1",
    "multiclass_scores",
    "multilabel_scores",
    "regression_scores",
]

#: The task types the fusion model and :func:`evaluate_task` know.
TASKS = ("multilabel", "multiclass", "regression")

#: The keys :func:`evaluate_task` returns for each task, in order.
METRIC_NAMES = {
    "multilabel": ("micro_f1", "samples_f1", "macro_f1", "subset_accuracy", "legacy_flattened_f1"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": (
        "mae",
        "mse",
        "pearson_r",
        "binary_accuracy",
        "binary_f1",
        "binary_f1_weighted",
    ),
}


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den == 0`` (sklearn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # F1 = 2TP / (2TP + FP + FN): the harmonic mean of precision and recall without
    # forming them, so a zero precision or recall needs no special case.
    return _safe_ratio(2 * tp, 2 * tp + fp + fn)


def _check_same_rows(y_true: np.ndarray, other: np.ndarray, what: str) -> None:
    if y_true.shape[0] != other.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} rows but {what} has {other.shape[0]} rows")
    if y_true.shape[0] == 0:
        raise ValueError("cannot score zero samples")


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values).reshape(values.shape[0], -1).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} has non-finite values in rows {bad[:10].tolist()}")


def _as_binary_matrix(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (n_samples, n_labels) 0/1 matrix, got shape {arr.shape}"
        )
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 (or False/True)")
    return arr.astype(bool)


# ------------------------------------------------------------------ multi-label
def legacy_flattened_f1(y_true: Any, y_pred: Any) -> float:
    """The MM-IMDb reference script's "F1-Micro": element-wise accuracy, **not an F1**.

    The script calls ``f1_score(L.flatten(), P.flatten(), average="micro")``, which
    micro-averages over both classes 0 and 1 of every (sample, label) cell and so
    equals the share of cells predicted correctly (SPEC §3.3). Report it only under
    this name, next to the true F1 scores of :func:`multilabel_scores`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_labels)
        True and predicted 0/1 indicator matrices.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    >>> legacy_flattened_f1(L, np.zeros_like(L))  # predicts nothing, "scores" 0.9
    0.9
    """
    true = _as_binary_matrix(y_true, "y_true")
    pred = _as_binary_matrix(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape} but y_pred has shape {pred.shape}")
    return float(np.mean(true == pred))


def multilabel_scores(y_true: Any, scores: Any, *, threshold: float = 0.5) -> dict[str, float]:
    """True multi-label F1 scores of probabilities thresholded at ``threshold``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_labels)
        0/1 indicator matrix.
    scores : array-like of shape (n_samples, n_labels)
        Predicted probabilities; label ``l`` is predicted when ``scores >= threshold``.
    threshold : float, default=0.5

    Returns
    -------
    dict
        ``micro_f1`` (pooled TP/FP/FN over all cells), ``samples_f1`` (mean per-sample
        F1), ``macro_f1`` (mean per-label F1), ``subset_accuracy`` (exact match of the
        whole label set) and ``legacy_flattened_f1`` (element-wise accuracy; see
        :func:`legacy_flattened_f1`, not an F1). A sample or label with no true and no
        predicted positive contributes an F1 of 0, as sklearn does with
        ``zero_division=0``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1, 0], [1, 1]])
    >>> p = np.array([[0.9, 0.2], [0.7, 0.1]])
    >>> {k: round(v, 3) for k, v in multilabel_scores(y, p).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'micro_f1': 0.8, 'samples_f1': 0.833, 'macro_f1': 0.5, 'subset_accuracy': 0.5,
     'legacy_flattened_f1': 0.75}
    """
    true = _as_binary_matrix(y_true, "y_true")
    prob = np.asarray(scores, dtype=np.float64)
    if prob.shape != true.shape:
        raise ValueError(f"y_true has shape {true.shape} but scores has shape {prob.shape}")
    _check_same_rows(true, prob, "scores")
    _check_finite("scores", prob)
    pred = prob >= threshold
    tp = true & pred
    fp = ~true & pred
    fn = true & ~pred
    micro = _f1_from_counts(tp.sum(), fp.sum(), fn.sum())
    per_sample = _f1_from_counts(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
    per_label = _f1_from_counts(tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0))
    return {
        "micro_f1": float(micro),
        "samples_f1": float(per_sample.mean()),
        "macro_f1": float(per_label.mean()),
        "subset_accuracy": float(np.mean((true == pred).all(axis=1))),
        "legacy_flattened_f1": float(np.mean(true == pred)),
    }


# ------------------------------------------------------------------ multi-class
def _as_labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def multiclass_scores(y_true: Any, scores: Any) -> dict[str, float]:
    """Accuracy and macro-F1 of a single-label classification.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer class labels.
    scores : array-like of shape (n_samples, n_classes) or (n_samples,)
        Class probabilities or logits (the prediction is the argmax; ties go to the
        lowest class), or already the predicted integer labels.

    Returns
    -------
    dict
        ``accuracy`` and ``macro_f1`` (unweighted mean of the per-class F1 over the
        classes present in ``y_true`` or in the predictions).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4], [0.6, 0.4, 0.0]])
    >>> multiclass_scores([0, 1, 2, 1], p)
    {'accuracy': 0.75, 'macro_f1': 0.7777777777777777}
    """
    true = _as_labels(y_true, "y_true")
    arr = np.asarray(scores)
    if arr.ndim == 2:
        _check_same_rows(true, arr, "scores")
        _check_finite("scores", arr.astype(np.float64))
        pred = np.argmax(arr, axis=1).astype(np.int64)
    else:
        pred = _as_labels(arr, "scores (predicted labels)")
        _check_same_rows(true, pred, "scores")
    classes = np.union1d(true, pred)
    true_hot = true[:, None] == classes[None, :]
    pred_hot = pred[:, None] == classes[None, :]
    tp = (true_hot & pred_hot).sum(axis=0)
    fp = (~true_hot & pred_hot).sum(axis=0)
    fn = (true_hot & ~pred_hot).sum(axis=0)
    return {
        "accuracy": float(np.mean(true == pred)),
        "macro_f1": float(_f1_from_counts(tp, fp, fn).mean()),
    }


#: Alias of :func:`multiclass_scores`.
classification_scores = multiclass_scores


# ------------------------------------------------------------------- regression
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da = a - a.mean()
    db = b - b.mean()
    den = np.sqrt(np.dot(da, da) * np.dot(db, db))
    # Undefined for a constant input: NaN, and no division warning.
    return float(np.dot(da, db) / den) if den > 0 else float("nan")


def regression_scores(y_true: Any, scores: Any) -> dict[str, float]:
    """Error, correlation and binary sentiment scores of a regression (CMU-MOSI style).

    Parameters
    ----------
    y_true, scores : array-like of shape (n_samples,)
        True and predicted values (a trailing axis of size 1 is accepted).

    Returns
    -------
    dict
        ``mae``, ``mse``, ``pearson_r`` (NaN if either side is constant),
        ``binary_accuracy`` and ``binary_f1`` / ``binary_f1_weighted`` of the classes
        ``value >= 0`` (non-negative, **zero counts as positive**) vs ``value < 0``,
        applied to truth and prediction alike. ``binary_f1`` is the F1 of the
        non-negative class; ``binary_f1_weighted`` is the support-weighted mean of the
        F1 of both classes.

    Examples
    --------
    >>> r = regression_scores([-1.0, 0.0, 2.0, 1.0], [-0.5, -0.1, 1.5, 1.0])
    >>> r["mae"], r["binary_accuracy"]  # the true 0.0 is non-negative, -0.1 is not
    (0.275, 0.75)
    """
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(scores, dtype=np.float64)
    if true.ndim == 2 and true.shape[1] == 1:
        true = true[:, 0]
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if true.ndim != 1 or pred.ndim != 1:
        raise ValueError(
            f"regression y_true and scores must be 1-D, got shapes {true.shape} and {pred.shape}"
        )
    _check_same_rows(true, pred, "scores")
    _check_finite("y_true", true)
    _check_finite("scores", pred)
    err = pred - true
    true_pos = true >= 0
    pred_pos = pred >= 0
    f1_pos = _f1_from_counts(
        np.sum(true_pos & pred_pos), np.sum(~true_pos & pred_pos), np.sum(true_pos & ~pred_pos)
    )
    f1_neg = _f1_from_counts(
        np.sum(~true_pos & ~pred_pos), np.sum(true_pos & ~pred_pos), np.sum(~true_pos & pred_pos)
    )
    share_pos = float(np.mean(true_pos))
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "pearson_r": _pearson(true, pred),
        "binary_accuracy": float(np.mean(true_pos == pred_pos)),
        "binary_f1": float(f1_pos),
        "binary_f1_weighted": float(share_pos * f1_pos + (1.0 - share_pos) * f1_neg),
    }


# --------------------------------------------------------------------- dispatch
def evaluate_task(
    task: str, y_true: Any, scores: Any, *, threshold: float = 0.5
) -> dict[str, float]:
    """Score predictions of a fusion model for one task type.

    Parameters
    ----------
    task : {"multilabel", "multiclass", "regression"}
    y_true : array-like
        ``(n, L)`` 0/1 for multilabel, ``(n,)`` integer labels for multiclass,
        ``(n,)`` floats for regression.
    scores : array-like
        What :func:`ul4m4.fusion.predict_fusion` returns: probabilities ``(n, L)`` or
        ``(n, C)``, or values ``(n,)``.
    threshold : float, default=0.5
        Decision threshold on multi-label probabilities.

    Returns
    -------
    dict of str to float
        See :func:`multilabel_scores`, :func:`multiclass_scores` and
        :func:`regression_scores`.

    Examples
    --------
    >>> evaluate_task("multiclass", [0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])["accuracy"]
    0.6666666666666666
    """
    if task == "multilabel":
        return multilabel_scores(y_true, scores, threshold=threshold)
    if task == "multiclass":
        return multiclass_scores(y_true, scores)
    if task == "regression":
        return regression_scores(y_true, scores)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
