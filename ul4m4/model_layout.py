"""Tier 2: what a model file holds, as arrays and fields, and the model built back from them.

:func:`fitted_arrays` lists the arrays of a :class:`~ul4m4.model.FittedModel`
(statistics, every member's centres, spread and mixture, the ensemble weights),
:func:`array_layout` the arrays (dtype and shape) a model of given members must store,
:func:`model_from_arrays` rebuilds the model from checked arrays, and the selection
goes to and from JSON. :mod:`ul4m4.persistence` reads and writes the archive and
checks everything before these run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .centers import Centers
from .members import Member, ModelKey
from .mixture import Mixture
from .model import FittedModel, RunInfo
from .plan import CompletionPlan
from .selection import Selection

__all__ = [
    "array_count",
    "array_layout",
    "finite_or_none",
    "fitted_arrays",
    "integer_field",
    "member_arrays",
    "member_extras",
    "member_meta",
    "members_from_meta",
    "model_from_arrays",
    "number_field",
    "selection_from_meta",
    "selection_meta",
]


def finite_or_none(value: Any) -> Any:
    """``value`` with non-finite floats (also inside a dict) as None, for JSON."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value


def selection_meta(selection: Selection | None) -> dict[str, Any] | None:
    """The selection as JSON-ready fields (None without one)."""
    if selection is None:
        return None
    table = [finite_or_none(row) for row in selection.table]
    return {"n_clusters": int(selection.n_clusters), "completion": selection.completion,
            "temperature": selection.temperature, "shrinkage": selection.shrinkage,
            "table": table, "k_grid": [int(k) for k in selection.k_grid],
            "k_added": [int(k) for k in selection.k_added], "k_limit": selection.k_limit,
            "ensemble": {n: [[int(r), float(w)] for r, w in pairs]
                         for n, pairs in selection.ensemble.items()},
            "ensemble_scores": finite_or_none({n: list(v) for n, v in
                                                selection.ensemble_scores.items()}),
            "calibration": selection.calibration, "n_rows": int(selection.n_rows),
            "n_hidden": int(selection.n_hidden),
            "models": [[int(key.k), key.rank] for key in selection.models]}


def member_meta(member: Member) -> dict[str, Any]:
    """A member's JSON fields: its k, rule, temperature, mixture rank and spread flag."""
    state = member.state
    return {"k": int(member.centers.k), "rule": member.rule,
            "temperature": member.temperature,
            "rank": None if state is None else int(state.rank),
            "spread": member.spread is not None}


def member_arrays(e: int, member: Member, n_mod: int) -> dict[str, np.ndarray]:
    """Member e's spread and mixture arrays (its centres are written by the caller)."""
    arrays = {}
    if member.spread is not None:
        arrays["spread" if e == 0 else f"ensemble/{e}/spread"] = member.spread
    if member.state is not None:
        mix = member.state
        arrays[f"mixture/{e}/log_weights"] = mix.log_weights
        for m in range(n_mod):
            arrays[f"mixture/{e}/means/{m}"] = mix.means[m]
            arrays[f"mixture/{e}/loadings/{m}"] = mix.loadings[m]
            arrays[f"mixture/{e}/noise/{m}"] = mix.noise[m]
    return arrays


def fitted_arrays(model: FittedModel) -> dict[str, np.ndarray]:
    """Every array a model file stores, by name (see :mod:`ul4m4.persistence`)."""
    arrays: dict[str, np.ndarray] = {}
    first = model.members[0]
    for m in range(len(model.names)):
        arrays[f"mean/{m}"] = np.asarray(model.means[m], dtype=np.float64)
        arrays[f"scale/{m}"] = np.asarray(model.scales[m], dtype=np.float64)
        arrays[f"centers/{m}"] = first.raw[m]
        arrays[f"centers_z/{m}"] = first.centers.blocks[m]
    arrays["center_modalities"] = first.centers.mask
    for e, member in enumerate(model.members[1:], start=1):
        for m in range(len(model.names)):
            arrays[f"ensemble/{e}/centers_z/{m}"] = member.centers.blocks[m]
        arrays[f"ensemble/{e}/center_modalities"] = member.centers.mask
    for e, member in enumerate(model.members):
        arrays.update(member_arrays(e, member, len(model.names)))
    if model.weights is not None:
        arrays["weights"] = np.asarray(model.weights, dtype=np.float64)
    arrays["labels"] = np.asarray(model.labels, dtype=np.int64)
    arrays["history"] = np.asarray(model.history, dtype=np.float64)
    return {name: np.asarray(a, dtype=np.float64) if "spread" in name or "mixture/" in name
            else a for name, a in arrays.items()}



def integer_field(value: Any, what: str, low: int, high: int = 2**62) -> int:
    """``value`` if it is a JSON integer in [low, high], else ValueError naming ``what``."""
    # JSON true/false are no counts, and int("7") or int(7.9) would hide a damaged field.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what}={value!r} is not an integer in [{low}, {high}]")
    return value


def number_field(value: Any, what: str) -> float:
    """``value`` as a float if it is a JSON number, else ValueError naming ``what``."""
    if type(value) not in (int, float):
        raise ValueError(f"{what}={value!r} is not a number")
    return float(value)



def members_from_meta(members: Any, k: int, n_members: int) -> list[dict[str, Any]]:
    """Each member's k, rule, temperature, mixture rank and spread flag, type-checked
    (files before version 3: ``n_members`` members of k filled by the model-wide rule)."""
    if members is None:
        return [{"k": k, "rule": None, "temperature": None, "rank": None, "spread": False}
                for _ in range(n_members)]
    if not isinstance(members, list) or len(members) != n_members:
        raise ValueError("members does not list every ensemble member")
    out = []
    for e, spec in enumerate(members):
        who = f"member {e + 1}"
        if not isinstance(spec, dict):
            raise ValueError(f"{who} is not a mapping")
        rule, t, rank = spec.get("rule"), spec.get("temperature"), spec.get("rank")
        if rule is not None and not isinstance(rule, str):
            raise ValueError(f"{who}: rule={rule!r} is not a name")
        if not isinstance(spec.get("spread"), bool):
            raise ValueError(f"{who}: spread={spec.get('spread')!r} is not a boolean")
        out.append({"k": integer_field(spec.get("k"), f"{who} k", 1, 2**31), "rule": rule,
                    "temperature": None if t is None else number_field(t, f"{who} temperature"),
                    "rank": None if rank is None else integer_field(rank, f"{who} rank", 0, 2**16),
                    "spread": spec["spread"]})
    if out[0]["k"] != k:
        raise ValueError(f"the first member has k={out[0]['k']}, n_clusters_fitted={k}")
    return out


def array_count(n_mod: int, members: list[dict[str, Any]], weighted: bool) -> int:
    """How many arrays a model of these members stores (see :func:`array_layout`)."""
    return (4 * n_mod + 3 + (len(members) - 1) * (n_mod + 1) + int(weighted)
            + sum(spec["spread"] + (spec["rank"] is not None) * (1 + 3 * n_mod)
                  for spec in members))


def array_layout(dims: list[int], members: list[dict[str, Any]], dtype: str, weighted: bool
            ) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """The arrays a model of this shape stores: name -> (dtype, shape, None for [n])."""
    n_mod = len(dims)
    k = members[0]["k"]
    want: dict[str, tuple[str, tuple[int, ...] | None]] = {
        "center_modalities": ("bool", (k, n_mod)), "labels": ("int64", None),
        "history": ("float64", None)}
    for m, d in enumerate(dims):
        want[f"mean/{m}"] = ("float64", (d,))
        want[f"scale/{m}"] = ("float64", (d,))
        want[f"centers/{m}"] = (dtype, (k, d))
        want[f"centers_z/{m}"] = (dtype, (k, d))
    for e, spec in enumerate(members):
        k_e = spec["k"]
        if e:
            want[f"ensemble/{e}/center_modalities"] = ("bool", (k_e, n_mod))
            for m, d in enumerate(dims):
                want[f"ensemble/{e}/centers_z/{m}"] = (dtype, (k_e, d))
        if spec["spread"]:
            want["spread" if e == 0 else f"ensemble/{e}/spread"] = ("float64", (k_e, n_mod))
        if spec["rank"] is not None:
            want[f"mixture/{e}/log_weights"] = ("float64", (k_e,))
            for m, d in enumerate(dims):
                want[f"mixture/{e}/means/{m}"] = ("float64", (k_e, d))
                want[f"mixture/{e}/loadings/{m}"] = ("float64", (d, spec["rank"]))
                want[f"mixture/{e}/noise/{m}"] = ("float64", (d,))
    if weighted:
        want["weights"] = ("float64", (len(members), n_mod))
    return want




def model_from_arrays(arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> FittedModel:
    """The fitted model of checked arrays (values are checked on the result)."""
    names, dims, dtype = fields["names"], fields["dims"], fields["dtype"]
    means = [arrays[f"mean/{m}"] for m in range(len(names))]
    scales = [arrays[f"scale/{m}"] for m in range(len(names))]
    raw = [arrays[f"centers/{m}"] for m in range(len(names))]
    # Arithmetic on a crafted file's NaN or huge values must not warn before
    # check_fitted_model refuses it.
    with np.errstate(all="ignore"):
        first = Centers([arrays[f"centers_z/{m}"] for m in range(len(names))],
                        arrays["center_modalities"])
        for m, block in enumerate(raw):
            block[~first.mask[:, m]] = np.nan  # what save_model writes for absent centres
        specs = fields["members"]
        members = [Member(first, CompletionPlan.from_centers(first), raw,
                          **member_extras(arrays, 0, specs[0], len(names)))]
        for e in range(1, fields["n_members"]):
            centers = Centers([arrays[f"ensemble/{e}/centers_z/{m}"] for m in range(len(names))],
                              arrays[f"ensemble/{e}/center_modalities"])
            members.append(Member.of(centers, means, scales, dtype,
                                     **member_extras(arrays, e, specs[e], len(names))))
    runs = fields["runs"] or [  # files of release 0.1 record the first member's run only
        RunInfo(fields["n_iter"], fields["converged"], fields["inertia"])]
    return FittedModel(
        names, dims, means, scales, dtype, members, fields["completion"],
        fields["temperature"], fields["shrinkage"], arrays["labels"],
        arrays["history"].tolist(), fields["n_iter"], fields["inertia"], fields["converged"],
        fields["k"], fields["selection"], runs, arrays.get("weights"), fields["calibration"],
    )


def member_extras(arrays: dict[str, np.ndarray], e: int, spec: dict[str, Any],
                   n_mod: int) -> dict[str, Any]:
    """Member e's rule, temperature, spread and mixture, from its checked arrays."""
    state = None
    if spec["rank"] is not None:
        state = Mixture(arrays[f"mixture/{e}/log_weights"],
                        [arrays[f"mixture/{e}/means/{m}"] for m in range(n_mod)],
                        [arrays[f"mixture/{e}/loadings/{m}"] for m in range(n_mod)],
                        [arrays[f"mixture/{e}/noise/{m}"] for m in range(n_mod)])
    spread = None
    if spec["spread"]:
        spread = arrays["spread" if e == 0 else f"ensemble/{e}/spread"]
    return {"rule": spec["rule"], "temperature": spec["temperature"], "state": state,
            "spread": spread}


def selection_from_meta(meta: dict[str, Any] | None) -> Selection | None:
    """The selection stored by :func:`selection_meta` (None without one)."""
    if meta is None:
        return None
    def restore(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: (np.nan if v is None and k not in ("temperature", "rank") else v)
               for k, v in row.items()}
        if isinstance(out.get("se"), dict):
            out["se"] = {n: np.nan if v is None else float(v) for n, v in out["se"].items()}
        return out

    table = [restore(row) for row in meta["table"]]
    k_limit = meta.get("k_limit")
    scores = {n: (np.nan if v[0] is None else float(v[0]), np.nan if v[1] is None else float(v[1]))
              for n, v in dict(meta.get("ensemble_scores", {})).items()}
    return Selection(int(meta["n_clusters"]), dict(meta["completion"]),
                     dict(meta["temperature"]), table, dict(meta.get("shrinkage", {})),
                     k_grid=tuple(int(k) for k in meta.get("k_grid", ())),
                     k_added=tuple(int(k) for k in meta.get("k_added", ())),
                     k_limit=None if k_limit is None else int(k_limit),
                     ensemble={n: [(int(r), float(w)) for r, w in pairs]
                               for n, pairs in dict(meta.get("ensemble", {})).items()},
                     ensemble_scores=scores,
                     calibration={n: float(v) for n, v in
                                  dict(meta.get("calibration", {})).items()},
                     n_rows=int(meta.get("n_rows", 0)), n_hidden=int(meta.get("n_hidden", 0)),
                     models=[ModelKey(int(k), None if r is None else int(r))
                             for k, r in meta.get("models", [])])
