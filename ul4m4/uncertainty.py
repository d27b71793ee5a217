"""Predicted variance of the filled blocks, and the pieces shared by every rule.

Every completion rule reports, for each block it fills, a predicted
per-coordinate variance in z-space (the mean over the block's ``d_m``
coordinates of the expected squared error). The centre-based rules read it from
the *centre spread*: for centre j and modality m, the mean per-coordinate
z-space variance of centre j's training members around ``c_j^m``
(:func:`centre_spread`, estimated on a bounded seeded sample of the training
rows by :func:`sample_spread`). The greedy rule reports the spread of its
source centre; the soft rule the variance of its mixture of centres
(:func:`ul4m4.complete.soft_variance`). An ensemble combines its members' fills
and variances with :func:`ensemble_variance` (the law of total variance), and
:func:`calibration_factor` rescales the result so that it matches the errors
measured on hidden blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._utils.chunks import iter_row_chunks
from .centers import Centers
from .engine import Engine, View

__all__ = ["calibration_factor", "centre_spread", "ensemble_variance", "sample_spread"]

#: Predicted per-coordinate z-space variance where nothing better is known (the
#: z-scored data have unit variance per coordinate).
UNIT_VARIANCE = 1.0


def centre_spread(blocks: list[np.ndarray], mask: np.ndarray, centers: Centers,
                  labels: np.ndarray) -> np.ndarray:
    """Mean per-coordinate z-space variance of each centre's members, per modality.

    Parameters
    ----------
    blocks : list of ndarray, one (n, d_m) per modality
        z-scored rows (any float dtype; rows that lack a modality are ignored).
    mask : ndarray of shape (n, M), bool
        Which modalities each row observes.
    centers : Centers
        The k centres (z-space).
    labels : ndarray of shape (n,), int
        Each row's centre; negative labels (rows with no observed modality) are ignored.

    Returns
    -------
    spread : ndarray of shape (k, M), float64
        ``spread[j, m]`` is the mean over the rows labelled j that observe m of
        ``||z_i^m - c_j^m||^2 / d_m``. Where centre j lacks m or has fewer than 2
        such rows (too few to tell a spread), the pooled value of m over all rows
        whose centre carries m; 1.0 where there is none.
    """
    return _spread_from_rows(_row_sq(blocks, mask, centers, labels), np.asarray(labels),
                             centers.mask)


def sample_spread(view: View, engine: Engine, fits: Sequence[tuple[Centers, np.ndarray]],
                  rng: np.random.RandomState | np.random.Generator,
                  max_rows: int = 20_000) -> list[np.ndarray]:
    """:func:`centre_spread` of each ``(centers, labels)`` fit of ``view``, on one seeded
    sample of at most ``max_rows`` rows read once for all of them.

    The sample (sorted row indices, all rows when there are at most ``max_rows``)
    is read through ``engine.take`` one chunk of ``view.chunk_rows`` at a time, so
    memory stays bounded; each fit's ``labels`` (the host labels of the fit, one
    per row of ``view``) are taken at the same rows. Each result equals
    ``centre_spread`` on the sampled rows bit for bit, and depends only on the
    state of ``rng``.

    Returns
    -------
    spreads : list of ndarray of shape (k, M), float64, one per fit
    """
    if not fits:
        return []  # nothing to estimate: read no rows
    n, n_mod = view.mask.shape
    fits = [(centers, np.asarray(labels)) for centers, labels in fits]
    rows = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, size=max_rows,
                                                                 replace=False))
    sq = [np.full((rows.size, n_mod), np.nan) for _ in fits]
    for chunk in iter_row_chunks(rows.size, view.chunk_rows):
        blocks, mask = engine.take(view, rows[chunk])
        for out, (centers, labels) in zip(sq, fits, strict=True):
            out[chunk] = _row_sq(blocks, mask, centers, labels[rows[chunk]])
    return [_spread_from_rows(out, labels[rows], centers.mask)
            for out, (centers, labels) in zip(sq, fits, strict=True)]


def ensemble_variance(fills: list[np.ndarray], variances: list[np.ndarray],
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill and predicted variance of a weighted ensemble, for one modality.

    Parameters
    ----------
    fills : list of ndarray, one (n, d_m) per member
        The members' fills of the modality.
    variances : list of ndarray, one (n,) per member
        Their predicted per-coordinate variances (NaN where observed).
    weights : array-like of shape (n_members,)
        Non-negative member weights; they are divided by their sum.

    Returns
    -------
    fill : ndarray of shape (n, d_m), float64
        ``f = sum_j w_j f_j``.
    variance : ndarray of shape (n,), float64
        ``sum_j w_j (var_j + ||f_j - f||^2 / d_m)`` (the law of total variance:
        the members' own variance plus their disagreement); NaN where any
        member's is NaN.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(fills),) or len(variances) != len(fills):
        raise ValueError(f"ensemble_variance needs one weight and one variance per fill; got "
                         f"{len(fills)} fills, {len(variances)} variances, weights of shape "
                         f"{w.shape}")
    total = w.sum()
    if not len(fills) or not np.isfinite(w).all() or (w < 0).any() or total <= 0:
        raise ValueError(f"ensemble weights must be finite, non-negative and not all zero; "
                         f"got {w.tolist()}")
    w = w / total
    members = [np.asarray(f, dtype=np.float64) for f in fills]
    fill = np.zeros_like(members[0])
    for wj, f in zip(w, members, strict=True):
        fill += wj * f
    d = max(1, fill.shape[1])
    variance = np.zeros(fill.shape[0])
    for wj, f, v in zip(w, members, variances, strict=True):
        variance += wj * (np.asarray(v, dtype=np.float64) + ((f - fill) ** 2).sum(axis=1) / d)
    return fill, variance


def calibration_factor(predicted_var: np.ndarray, errors: np.ndarray) -> float:
    """``mean(errors) / mean(predicted_var)`` over the entries where both are finite.

    The factor that makes the predicted variances match the measured squared
    errors on average (errors as ``||z_hat - z||^2 / d_m`` on hidden blocks).
    Returns 1.0 (the model's variance as it is) when there is nothing to
    calibrate on: no such entry, or a non-positive or non-finite mean prediction.
    """
    predicted_var = np.asarray(predicted_var, dtype=np.float64).ravel()
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if predicted_var.shape != errors.shape:
        raise ValueError(f"calibration_factor needs one error per predicted variance; got "
                         f"{predicted_var.size} variances and {errors.size} errors")
    keep = np.isfinite(predicted_var) & np.isfinite(errors)
    if not keep.any():
        return 1.0
    mean_var = float(predicted_var[keep].mean())
    factor = float(errors[keep].mean()) / mean_var if mean_var > 0 else np.nan
    return factor if np.isfinite(factor) and factor >= 0 else 1.0


def _row_sq(blocks: list[np.ndarray], mask: np.ndarray, centers: Centers,
            labels: np.ndarray) -> np.ndarray:
    """(n, M) ``||z_i^m - c_{label_i}^m||^2 / d_m`` in float64; NaN where not counted."""
    labels = np.asarray(labels)
    out = np.full(mask.shape, np.nan)
    for m, block in enumerate(blocks):
        rows = np.flatnonzero(mask[:, m] & (labels >= 0))
        lab = labels[rows]
        rows, lab = rows[centers.mask[lab, m]], lab[centers.mask[lab, m]]
        diff = block[rows].astype(np.float64) - centers.blocks[m][lab].astype(np.float64)
        out[rows, m] = (diff * diff).sum(axis=1) / max(1, block.shape[1])
    return out


def _spread_from_rows(sq: np.ndarray, labels: np.ndarray, carries: np.ndarray) -> np.ndarray:
    """Per-centre means of the counted entries of ``sq``, pooled where too few."""
    k, n_mod = carries.shape
    spread = np.empty((k, n_mod))
    for m in range(n_mod):
        counted = np.flatnonzero(np.isfinite(sq[:, m]))
        lab = labels[counted]
        sums = np.bincount(lab, weights=sq[counted, m], minlength=k)
        counts = np.bincount(lab, minlength=k)
        pooled = sums.sum() / counts.sum() if counts.sum() else UNIT_VARIANCE
        own = (counts >= 2) & carries[:, m]
        spread[:, m] = pooled
        spread[own, m] = sums[own] / counts[own]
    return spread
