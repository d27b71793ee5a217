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
from .rules import COMPLETION_RULES
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
        _check_completion(where, model.completion[m], model.temperature[m], model.shrinkage[m])
    for e in range(len(model.members)):
        _check_member(model, e)
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
    if mask.dtype != np.bool_ or mask.shape != (model.n_clusters, len(model.names)):
        raise ModelValueError(f"centre mask{who}: {mask.dtype}{list(mask.shape)}, expected "
                              f"bool[{model.n_clusters}, {len(model.names)}]")
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
