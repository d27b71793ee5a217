"""Tier 2: the values of a fitted model read from outside, checked before it is used.

A model file can pass every structural and checksum test of
:mod:`ul4m4.persistence` and still hold values no fit produces (a crafted file
whose checksums were recomputed, or a writer's bug): NaN centres or statistics
give NaN rows, a soft temperature of 0 gives NaN weights, a label out of range
points at no centre. :func:`check_fitted_model` refuses such a model with a
:class:`ModelValueError` naming the modality, the ensemble member or the field.
"""

from __future__ import annotations

import numpy as np

from .complete import OBSERVED
from .model import FittedModel
from .rules import COMPLETION_RULES, ENSEMBLE
from .statistics import MIN_STD

__all__ = ["ModelValueError", "check_fitted_model"]


class ModelValueError(ValueError):
    """A fitted model holds a value that no fit produces."""


def check_fitted_model(model: FittedModel) -> None:
    """Raise :class:`ModelValueError` unless every value of ``model`` is one a fit gives.

    Checked: per modality, a mean and a scale (above ``MIN_STD``) that fit the
    working dtype, as the fit's own magnitude checks guarantee, a known
    completion rule, a finite positive temperature where the rule is soft (None
    or finite positive elsewhere) and a shrinkage in [0, 1); per ensemble
    member, a (k, M) boolean centre mask and finite, bounded centres wherever a
    centre carries the modality (entries it lacks are never read); labels in
    ``[-1, k)`` (-1: a training sample with no modality); no NaN in the history
    and inertia.
    """
    names = model.names
    # A fit refuses data whose values or spread overflow the working dtype, and
    # gives a constant dimension (standard deviation <= MIN_STD at least) the scale 1.
    largest = float(np.finfo(model.dtype).max)
    for m, name in enumerate(names):
        where = f"modality {name!r}"
        if not (np.abs(model.means[m]) <= largest).all():  # False for NaN as well
            raise ModelValueError(f"{where}: the training mean holds NaN, inf or values "
                                  f"beyond the working dtype {model.dtype.name}")
        if not ((model.scales[m] > MIN_STD) & (model.scales[m] <= largest)).all():
            raise ModelValueError(f"{where}: the scale (training standard deviation) is not "
                                  f"in ({MIN_STD:g}, {largest:.3g}] everywhere")
        if model.completion[m] == ENSEMBLE and model.weights is not None:
            _check_completion(where, "mean", None, model.shrinkage[m])
        else:
            _check_completion(where, model.completion[m], model.temperature[m],
                              model.shrinkage[m])
    for e in range(len(model.members)):
        _check_member(model, e)
        _check_rule_state(model, e)
    _check_weights(model)
    labels = np.asarray(model.labels)
    if labels.size and not (labels.min() >= OBSERVED and labels.max() < model.n_clusters):
        raise ModelValueError(f"labels: values from {labels.min()} to {labels.max()} are not "
                              f"centres of k={model.n_clusters} (nor -1)")
    # Diagnostics only, and inf where a sample shared no modality with its first
    # centre: NaN is the one value no fit records.
    if np.isnan(model.history).any() or np.isnan(model.inertia):
        raise ModelValueError("the k-means history or inertia holds NaN")


def _check_completion(where: str, rule: str, temperature, shrinkage: float) -> None:
    if rule not in COMPLETION_RULES:
        raise ModelValueError(f"{where}: unknown completion rule {rule!r}")
    if temperature is None:
        if rule == "soft":
            raise ModelValueError(f"{where}: soft completion without a temperature")
    elif not (np.isfinite(temperature) and temperature > 0):
        # 0 makes every softmax weight 0/0; NaN poisons every filled row.
        raise ModelValueError(f"{where}: temperature {temperature!r} is not finite and "
                              "positive")
    if not 0 <= shrinkage < 1:  # False for NaN as well
        raise ModelValueError(f"{where}: shrinkage {shrinkage!r} is not in [0, 1)")


def _check_member(model: FittedModel, e: int) -> None:
    member = model.members[e]
    who = "" if len(model.members) == 1 else f", ensemble member {e + 1}"
    mask = member.centers.mask
    k = member.centers.blocks[0].shape[0]
    if mask.dtype != np.bool_ or mask.shape != (k, len(model.names)):
        raise ModelValueError(f"centre mask{who}: {mask.dtype}{list(mask.shape)}, expected "
                              f"bool[{k}, {len(model.names)}]")
    # A centre is a mean of z-scored training rows, far inside this bound; beyond it
    # the squared distance between two centres would overflow the working dtype.
    bound = float(np.sqrt(np.finfo(model.dtype).max / (4 * sum(model.dims))))
    for m, name in enumerate(model.names):
        carried = mask[:, m]
        z = member.centers.blocks[m][carried]
        if not np.isfinite(z).all():
            raise ModelValueError(f"modality {name!r}{who}: a centre holds NaN or inf")
        if z.size and np.abs(z).max() > bound:
            raise ModelValueError(f"modality {name!r}{who}: a centre holds the z-score "
                                  f"{np.abs(z).max():.3g}, beyond {bound:.3g}")
        if not np.isfinite(member.raw[m][carried]).all():
            raise ModelValueError(f"modality {name!r}{who}: a raw-space centre holds NaN or "
                                  "inf")


def _check_rule_state(model: FittedModel, e: int) -> None:
    """Member e's own rule, temperature, centre spread and mixture."""
    member = model.members[e]
    who = f"ensemble member {e + 1}"
    if member.rule is not None:
        _check_completion(who, member.rule, member.temperature, 0.0)
        if (member.rule == "mixture") != (member.state is not None):
            raise ModelValueError(f"{who}: rule {member.rule!r} with"
                                  f"{'out' if member.state is None else ''} a mixture")
    spread = member.spread
    if spread is not None and not (np.isfinite(spread) & (spread >= 0)).all():
        raise ModelValueError(f"{who}: the centre spread holds NaN, inf or negative values")
    mix = member.state
    if mix is None:
        return
    if np.isnan(mix.log_weights).any() or (mix.log_weights == np.inf).any() \
            or not np.isfinite(mix.log_weights).any():
        raise ModelValueError(f"{who}: the mixture's log weights hold NaN, +inf or no "
                              "finite value")
    for m, name in enumerate(model.names):
        if not (np.isfinite(mix.means[m]).all() and np.isfinite(mix.loadings[m]).all()):
            raise ModelValueError(f"modality {name!r}, {who}: the mixture's means or "
                                  "loadings hold NaN or inf")
        if not (np.isfinite(mix.noise[m]) & (mix.noise[m] > 0)).all():
            raise ModelValueError(f"modality {name!r}, {who}: the mixture's noise "
                                  "variances are not finite and positive")


def _check_weights(model: FittedModel) -> None:
    """Ensemble weights in [0, 1] whose per-modality sum is at most 1; calibration > 0."""
    w = model.weights
    if w is not None:
        if w.shape != (len(model.members), len(model.names)):
            raise ModelValueError(f"ensemble weights of shape {list(w.shape)}, expected "
                                  f"[{len(model.members)}, {len(model.names)}]")
        if not ((w >= 0) & (w <= 1)).all() or (w.sum(axis=0) > 1 + 1e-9).any():
            raise ModelValueError("ensemble weights are not in [0, 1] with sums at most 1")
        if any(member.rule is None for member in model.members):
            raise ModelValueError("an ensemble member has no completion rule")
    for m, factor in enumerate(model.calibration or []):
        if not (np.isfinite(factor) and factor > 0):
            raise ModelValueError(f"modality {model.names[m]!r}: calibration factor "
                                  f"{factor!r} is not finite and positive")
