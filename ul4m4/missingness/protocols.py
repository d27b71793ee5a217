"""Missingness protocols: seeded draws of which modality of which sample is present.

- :func:`independent_mask`: modality ``m`` present independently with probability ``p_m``.
- :func:`pattern_mask`: one probability per subset of present modalities.
- :func:`leads_mask`: the PEPSY "leads" protocol (a few modalities miss in a share of samples).
- :func:`mnar_mask`: missing-not-at-random, driven by a random projection of the embedding.

The mask convention and the seeding that every protocol follows are described once, in the
docstring of the package (:mod:`ul4m4.missingness`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logit
from sklearn.utils import check_random_state

from .masks import check_data

__all__ = [
    "PROB_TOL",
    "RandomStateLike",
    "check_n_modalities",
    "independent_mask",
    "leads_mask",
    "mnar_mask",
    "pattern_mask",
]

RandomStateLike = int | np.integer | np.random.RandomState | np.random.Generator | None

#: Absolute tolerance on the total probability of a pattern specification.
PROB_TOL = 1e-6


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _rng(random_state: RandomStateLike) -> np.random.RandomState:
    if isinstance(random_state, np.random.Generator):
        # One draw from the Generator seeds a legacy stream, so all protocols share a single
        # code path whose stream NumPy guarantees not to change.
        seed = int(random_state.integers(0, 2**32, dtype=np.uint64))
        return np.random.RandomState(seed)
    return check_random_state(random_state)


def _check_n(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be a non-negative integer, got {n!r}")
    if n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n}")
    return int(n)


def check_n_modalities(n_modalities: Any) -> int:
    if isinstance(n_modalities, (bool, np.bool_)) or not isinstance(
        n_modalities, (int, np.integer)
    ):
        raise TypeError(f"n_modalities must be a positive integer, got {n_modalities!r}")
    if n_modalities < 1:
        raise ValueError(f"n_modalities must be a positive integer, got {n_modalities}")
    return int(n_modalities)


def _check_unit_interval(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def _check_rates(rates: Any, name: str = "rates") -> np.ndarray:
    try:
        arr = np.asarray(rates, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers in [0, 1], got {rates!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence (one presence probability per modality), "
            f"got shape {arr.shape}"
        )
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # NaN fails both comparisons
    if bad.any():
        idx = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{idx}] = {arr[idx]} is not a probability in [0, 1]")
    return arr



def _sample_nonempty(
    p: np.ndarray, u: np.ndarray, fallback_scores: np.ndarray | None = None
) -> np.ndarray:
    """Rows of independent Bernoulli(p) draws conditioned on at least one success.

    The conditional law is sampled exactly (no rejection loop) by walking over the modalities:
    while no modality is present yet, modality ``m`` is present with probability
    ``p_m / P(at least one of m..M-1 present)``; once one is present the rest are plain
    Bernoulli(p).  ``u`` supplies one uniform per entry, so the number of draws is fixed.
    Rows whose probabilities are all zero (numerically) have no conditional law; they get the
    single modality with the largest ``fallback_scores`` (default ``p``), which is the limit of
    the conditional law as the probabilities shrink.
    """
    k, n_mod = p.shape
    with np.errstate(divide="ignore"):
        log_absent = np.log1p(-p)  # -inf where p == 1
    suffix = np.cumsum(log_absent[:, ::-1], axis=1)[:, ::-1]
    tail = -np.expm1(suffix)  # tail[:, m] = P(some modality in m..M-1 present)
    tail_next = np.concatenate([tail[:, 1:], np.zeros((k, 1))], axis=1)
    ratio = np.divide(p, tail, out=np.ones_like(p), where=tail > 0)
    # When nothing after m can be present, m is forced; exact 1 also absorbs rounding in tail.
    first = np.where(tail_next == 0.0, 1.0, np.minimum(ratio, 1.0))

    out = np.zeros((k, n_mod), dtype=bool)
    found = np.zeros(k, dtype=bool)
    for m in range(n_mod):
        prob = np.where(found, p[:, m], first[:, m])
        out[:, m] = u[:, m] < prob
        found |= out[:, m]

    degenerate = ~(tail[:, 0] > 0.0)
    if degenerate.any():
        scores = p if fallback_scores is None else fallback_scores
        out[degenerate] = False
        out[np.flatnonzero(degenerate), np.argmax(scores[degenerate], axis=1)] = True
    return out


def _repair_empty(
    mask: np.ndarray,
    p: np.ndarray,
    rs: np.random.RandomState,
    fallback_scores: np.ndarray | None = None,
) -> np.ndarray:
    empty = ~mask.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        u = rs.random_sample((rows.size, mask.shape[1]))
        fb = None if fallback_scores is None else fallback_scores[rows]
        mask[rows] = _sample_nonempty(p[rows], u, fb)
    return mask


# ---------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------


def independent_mask(
    n: int,
    rates: Sequence[float] | np.ndarray,
    random_state: RandomStateLike = None,
    *,
    allow_empty: bool = False,
) -> np.ndarray:
    """Availability mask with each modality present independently.

    Parameters
    ----------
    n : int
        Number of samples.
    rates : sequence of float
        Presence probability ``p_m`` in ``[0, 1]`` of each modality; its length is ``M``.
    random_state : None, int, RandomState or Generator
        Seed; see "Seeding" in :mod:`ul4m4.missingness`.
    allow_empty : bool, default False
        Keep samples that end up with no modality.  When False, every such sample is redrawn
        from the exact conditional law "independent Bernoulli(p) given at least one present"
        (no rejection loop).  Samples that were already non-empty are left untouched, so the
        whole mask follows that conditional law and the per-modality presence rate becomes
        ``p_m / (1 - prod_j (1 - p_j))``.

    Returns
    -------
    mask : ndarray of bool, shape (n, M)
        True where the modality is present.

    Raises
    ------
    ValueError
        If a rate is outside ``[0, 1]``, or all rates are 0 while ``allow_empty`` is False.

    Notes
    -----
    Draw order: one ``(n, M)`` block of uniforms, then one ``(k, M)`` block for the ``k``
    empty samples being redrawn.

    Examples
    --------
    >>> mask = independent_mask(5, [1.0, 0.5], random_state=0)
    >>> mask.shape, mask.dtype, bool(mask[:, 0].all())
    ((5, 2), dtype('bool'), True)
    """
    n = _check_n(n)
    p = _check_rates(rates)
    if not allow_empty and not (p > 0).any():
        raise ValueError(
            "all presence rates are 0, so every sample would have no modality; "
            "pass allow_empty=True to accept empty samples"
        )
    rs = _rng(random_state)
    mask = rs.random_sample((n, p.size)) < p
    if not allow_empty:
        mask = _repair_empty(mask, np.broadcast_to(p, mask.shape), rs)
    return mask


def _pattern_key_to_subset(key: Any, n_modalities: int | None) -> tuple[frozenset[int], int | None]:
    """Return (subset of indices, M implied by the key or None)."""
    if isinstance(key, (set, frozenset)):
        items = list(key)
        is_bool = False
    elif isinstance(key, (tuple, list)):
        items = list(key)
        is_bool = len(items) > 0 and all(isinstance(v, (bool, np.bool_)) for v in items)
    else:
        raise TypeError(
            f"pattern key {key!r} must be a tuple/frozenset of modality indices "
            "or a boolean tuple of length n_modalities"
        )
    if is_bool:
        if n_modalities is not None and len(items) != n_modalities:
            raise ValueError(
                f"boolean pattern {key!r} has length {len(items)} but n_modalities={n_modalities}"
            )
        return frozenset(i for i, v in enumerate(items) if v), len(items)
    subset = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"pattern {key!r} mixes booleans and indices or holds non-integers")
        subset.append(int(v))
    if len(set(subset)) != len(subset):
        raise ValueError(f"pattern {key!r} repeats a modality index")
    return frozenset(subset), None


def _normalise_patterns(
    patterns: Mapping[Any, float], n_modalities: int | None, allow_empty: bool
) -> tuple[int, list[frozenset[int]], np.ndarray]:
    if not isinstance(patterns, Mapping) or len(patterns) == 0:
        raise ValueError("patterns must be a non-empty mapping {subset: probability}")
    if n_modalities is not None:
        n_modalities = check_n_modalities(n_modalities)
    parsed = []
    for key, prob in patterns.items():
        subset, implied = _pattern_key_to_subset(key, n_modalities)
        if n_modalities is None and implied is not None:
            n_modalities = implied
        parsed.append((key, subset, implied, prob))
    if n_modalities is None:
        raise ValueError(
            "n_modalities is required when patterns are given as index sets "
            "(it cannot be inferred safely: a never-present modality would be dropped)"
        )

    subsets: list[frozenset[int]] = []
    probs: list[float] = []
    seen: dict[frozenset[int], Any] = {}
    for key, subset, implied, prob in parsed:
        if implied is not None and implied != n_modalities:
            raise ValueError(
                f"boolean pattern {key!r} has length {implied} but n_modalities={n_modalities}"
            )
        out_of_range = [i for i in subset if not 0 <= i < n_modalities]
        if out_of_range:
            raise ValueError(
                f"pattern {key!r} refers to modality index {out_of_range[0]}, "
                f"outside 0..{n_modalities - 1}"
            )
        if not subset and not allow_empty:
            raise ValueError(
                f"pattern {key!r} is the empty subset (a sample with no modality); "
                "pass allow_empty=True to allow it"
            )
        if subset in seen:
            raise ValueError(f"patterns {seen[subset]!r} and {key!r} describe the same subset")
        seen[subset] = key
        try:
            prob = float(prob)
        except (TypeError, ValueError):
            raise TypeError(f"probability of pattern {key!r} must be a number") from None
        if not (math.isfinite(prob) and prob >= 0.0):
            raise ValueError(f"probability of pattern {key!r} must be >= 0, got {prob}")
        subsets.append(subset)
        probs.append(prob)

    p = np.asarray(probs, dtype=np.float64)
    total = float(p.sum())
    if abs(total - 1.0) > PROB_TOL:
        raise ValueError(
            f"pattern probabilities must sum to 1 (tolerance {PROB_TOL:g}), got {total:.8g}"
        )
    return n_modalities, subsets, p


def pattern_mask(
    n: int,
    patterns: Mapping[Any, float],
    random_state: RandomStateLike = None,
    *,
    n_modalities: int | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Availability mask drawn from a distribution over subsets of present modalities.

    Parameters
    ----------
    n : int
        Number of samples.
    patterns : mapping
        ``{subset: probability}``.  A subset is either a tuple/list/frozenset/set of modality
        indices (``(0, 2)`` = modalities 0 and 2 present) or a boolean tuple of length ``M``
        (``(True, False, True)``).  Probabilities must be >= 0 and sum to 1 within ``1e-6``
        (they are renormalised to sum exactly to 1); two keys naming the same subset are an
        error.  Subsets not listed have probability 0.
    random_state : None, int, RandomState or Generator
        Seed; see "Seeding" in :mod:`ul4m4.missingness`.
    n_modalities : int, optional
        Number of modalities ``M``.  Required when every key is an index set; inferred from
        boolean keys otherwise.
    allow_empty : bool, default False
        Whether the empty subset may appear as a key.

    Returns
    -------
    mask : ndarray of bool, shape (n, M)

    Notes
    -----
    Draw order: ``n`` uniforms, mapped to patterns by inverse CDF in the order of ``patterns``.

    Examples
    --------
    >>> mask = pattern_mask(4, {(0, 1): 0.5, (0,): 0.5}, random_state=0, n_modalities=2)
    >>> mask.shape, bool(mask[:, 0].all())
    ((4, 2), True)
    """
    n = _check_n(n)
    n_mod, subsets, p = _normalise_patterns(patterns, n_modalities, allow_empty)
    table = np.zeros((len(subsets), n_mod), dtype=bool)
    for j, subset in enumerate(subsets):
        table[j, sorted(subset)] = True
    cdf = np.cumsum(p / p.sum())
    rs = _rng(random_state)
    u = rs.random_sample(n)
    # side="right" makes zero-probability patterns unreachable.
    idx = np.minimum(np.searchsorted(cdf, u, side="right"), len(subsets) - 1)
    return table[idx]


def leads_mask(
    n: int,
    n_modalities: int,
    pm: float,
    ps: float,
    random_state: RandomStateLike = None,
) -> np.ndarray:
    """PEPSY "leads" protocol.

    ``L = max(1, floor(M * pm))`` modalities, the *leads*, are chosen uniformly at random.  The
    leads are processed one after another in that random order; each removes its modality from
    exactly ``round(ps * n)`` samples (rounded half up), chosen uniformly at random without
    replacement and independently of the other leads.  A chosen sample in which the lead is the
    last remaining modality is skipped for that lead, so no sample ever ends with zero
    modalities.  This can only happen for the last lead and only when ``L == M``; then that lead
    misses in fewer than ``round(ps * n)`` samples.

    Parameters
    ----------
    n : int
        Number of samples.
    n_modalities : int
        Number of modalities ``M``.
    pm : float
        Share of modalities that are leads, in ``[0, 1]``.  ``floor`` is taken after adding
        ``1e-9`` so that e.g. ``100 * 0.29`` counts as 29 despite rounding.
    ps : float
        Share of samples in which each lead is missing, in ``[0, 1]``.
    random_state : None, int, RandomState or Generator
        Seed; see "Seeding" in :mod:`ul4m4.missingness`.

    Returns
    -------
    mask : ndarray of bool, shape (n, M)

    Notes
    -----
    Draw order: ``M`` uniforms whose ascending argsort orders the modalities (the first ``L``
    are the leads, in processing order), then ``n`` uniforms per lead whose argsort picks its
    samples.

    Examples
    --------
    >>> mask = leads_mask(10, 3, pm=1.0, ps=1.0, random_state=0)
    >>> bool(mask.any(axis=1).all()), int(mask.sum())
    (True, 10)
    """
    n = _check_n(n)
    n_mod = check_n_modalities(n_modalities)
    pm = _check_unit_interval(pm, "pm")
    ps = _check_unit_interval(ps, "ps")
    n_leads = max(1, math.floor(n_mod * pm + 1e-9))
    n_missing = math.floor(ps * n + 0.5)

    rs = _rng(random_state)
    leads = np.argsort(rs.random_sample(n_mod), kind="stable")[:n_leads]
    mask = np.ones((n, n_mod), dtype=bool)
    for lead in leads:
        chosen = np.argsort(rs.random_sample(n), kind="stable")[:n_missing]
        # A sample is skipped when removing this lead would leave it with nothing.
        keep = mask[chosen].sum(axis=1) - mask[chosen, lead] > 0
        mask[chosen[keep], lead] = False
    return mask


def _mnar_scores(arrays: list[np.ndarray], names: list[str], rs: np.random.RandomState):
    n = arrays[0].shape[0]
    scores = np.zeros((n, len(arrays)))
    for j, (name, arr) in enumerate(zip(names, arrays, strict=True)):
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"modality {name!r} must be numeric, got dtype {arr.dtype}")
        x = arr.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(
                f"modality {name!r} contains NaN or inf; mnar_mask needs the complete data"
            )
        d = x.shape[1]
        direction = rs.standard_normal(d)
        if n == 0 or d == 0:
            continue
        norm = np.linalg.norm(direction)
        direction = direction / norm if norm > 0 else direction
        # z-scores are scale-free; dividing by the column's max |x| first keeps huge embeddings
        # from overflowing in the variance.
        scale = np.abs(x).max(axis=0)
        x = x / np.where(scale > 0, scale, 1.0)
        std = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        s = z @ direction
        # Standardised so that `strength` is measured in standard deviations of the score.
        s_std = s.std()
        scores[:, j] = (s - s.mean()) / s_std if s_std > 0 else 0.0
    return scores


def _solve_offset(z: np.ndarray, target: float) -> float:
    """Offset b with mean(expit(z + b)) == target, by bisection (the mean is monotone in b)."""
    base = float(logit(target))
    spread = float(np.max(np.abs(z))) if z.size else 0.0
    if spread == 0.0:
        return base
    # At base - spread every logit is <= logit(target), at base + spread every one is >=.
    lo, hi = base - spread, base + spread
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if hi - lo <= 1e-12 * max(1.0, abs(mid)) or mid in (lo, hi):
            break
        if expit(z + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def mnar_mask(
    X: Mapping[str, np.ndarray],
    rates: Sequence[float] | Mapping[str, float] | np.ndarray,
    strength: float = 1.0,
    random_state: RandomStateLike = None,
    *,
    allow_empty: bool = False,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Missing-not-at-random mask driven by the value of each embedding.

    For each modality ``m`` the (column-wise z-scored) embedding is projected on a random unit
    direction and the projection is standardised to a score ``s_im`` (mean 0, std 1).  Modality
    ``m`` of sample ``i`` is missing with probability ``expit(strength * s_im + b_m)``, where
    the offset ``b_m`` is found by bisection so that the mean missing probability over the
    samples equals ``1 - rates[m]`` exactly.  Positive ``strength`` makes samples with a high
    score more likely to miss; ``strength=0`` is missing completely at random.

    Parameters
    ----------
    X : dict {name: ndarray (n, d_m)}
        Complete data (no NaN); insertion order is the modality order.
    rates : sequence of float or mapping {name: float}
        Target presence rate of each modality, in ``[0, 1]``.
    strength : float, default 1.0
        Dependence of missingness on the score, on the logit scale per score standard deviation.
    random_state : None, int, RandomState or Generator
        Seed; see "Seeding" in :mod:`ul4m4.missingness`.
    allow_empty : bool, default False
        Keep samples with no modality.  When False they are redrawn from the exact conditional
        law given at least one modality present (as in :func:`independent_mask`), which raises
        the realised presence rates slightly above ``rates``.
    return_scores : bool, default False
        Also return the ``(n, M)`` score matrix ``s``.

    Returns
    -------
    mask : ndarray of bool, shape (n, M)
    scores : ndarray of float, shape (n, M)
        Only when ``return_scores`` is True.

    Notes
    -----
    Draw order: one standard-normal direction per modality (in modality order), one ``(n, M)``
    block of uniforms, then uniforms for the samples being redrawn.

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> X = {"text": rng.normal(size=(200, 4)), "image": rng.normal(size=(200, 3))}
    >>> mask = mnar_mask(X, [0.8, 0.6], strength=2.0, random_state=0)
    >>> mask.shape, bool(mask.any(axis=1).all())
    ((200, 2), True)
    """
    names, arrays = check_data(X)
    if isinstance(rates, Mapping):
        unknown = [k for k in rates if k not in X]
        missing = [k for k in names if k not in rates]
        if unknown or missing:
            raise ValueError(
                f"rates must name exactly the modalities {names}; "
                f"unknown: {unknown}, not given: {missing}"
            )
        rates = [rates[k] for k in names]
    p_target = _check_rates(rates)
    if p_target.size != len(names):
        raise ValueError(
            f"rates has {p_target.size} entries but X has {len(names)} modalities {names}"
        )
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise TypeError(f"strength must be a real number, got {strength!r}") from None
    if not math.isfinite(strength):
        raise ValueError(f"strength must be finite, got {strength}")
    if not allow_empty and not (p_target > 0).any():
        raise ValueError(
            "all presence rates are 0, so every sample would have no modality; "
            "pass allow_empty=True to accept empty samples"
        )

    rs = _rng(random_state)
    scores = _mnar_scores(arrays, names, rs)
    n, n_mod = scores.shape
    # Presence logits; presence probability is computed as expit(+logit) rather than 1 - q so
    # that tiny probabilities keep their precision for the empty-row repair.
    present_logit = np.empty((n, n_mod))
    for m in range(n_mod):
        if p_target[m] >= 1.0:
            present_logit[:, m] = np.inf
        elif p_target[m] <= 0.0:
            present_logit[:, m] = -np.inf
        else:
            # Solved on the presence side: a tiny presence rate keeps its precision, whereas
            # 1 - rate would round to exactly 1.
            z = -strength * scores[:, m]
            present_logit[:, m] = z + _solve_offset(z, float(p_target[m]))
    p = expit(present_logit)
    mask = rs.random_sample((n, n_mod)) < p
    if not allow_empty:
        mask = _repair_empty(mask, p, rs, fallback_scores=present_logit)
    return (mask, scores) if return_scores else mask
