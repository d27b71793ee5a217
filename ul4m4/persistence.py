"""Pickle-free, versioned model files: a :class:`~ul4m4.model.FittedModel` and its parameters.

Format ``ul4m4-imputer`` version 2 (version 1, written by release 0.1, is read
too): a ZIP archive holding

* ``meta.json`` — format name and version, library version, constructor
  parameters, modality names and widths, scalar fitted attributes, and for every
  array its dtype, shape and SHA-256;
* one ``arrays/<name>.npy`` per array, written with ``allow_pickle=False``.

Arrays: ``mean/<m>``, ``scale/<m>`` (float64, (d_m,)), ``centers/<m>`` (raw,
working dtype, (k, d_m)), ``centers_z/<m>`` (z-space, working dtype, (k, d_m)),
``center_modalities`` (bool, (k, M)), ``labels`` (int64, (n,)) and ``history``
(float64). Modalities are indexed by position ``m`` so names need no escaping.

Version 2 adds the ``partial`` parameter (files of version 1 load with
``partial="raise"``, the only behaviour release 0.1 had) and, in the selection
table, per-candidate standard errors and the k values scored.

Format ``ul4m4-modality-imputer`` (same version) is the same archive for a
:class:`~ul4m4.ModalityImputer`: an extra ``adapter`` section in ``meta.json``
holds its column layout (``modalities`` parameter as resolved columns,
pass-through columns, ``n_features_in_`` and ``feature_names_in_``); the model
and parameters are stored exactly as for the imputer. Each reader refuses the
other's format.

Reading never unpickles: only whitelisted dtypes are accepted, every array is
checked against its recorded shape, dtype and checksum, and any mismatch raises
:class:`ModelFileError` (a path with no file raises :class:`FileNotFoundError`). Writes go to a temporary file in the target folder,
then replace the target atomically.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from ._utils.files import atomic_write
from ._version import __version__
from .centers import Centers
from .model import FittedModel, Member, RunInfo
from .plan import CompletionPlan
from .rules import COMPLETION_RULES
from .selection import Selection
from .settings import PARAMETER_CONSTRAINTS, resolve_settings

__all__ = [
    "ADAPTER_FORMAT_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelFileError",
    "load_model",
    "save_model",
]

FORMAT_NAME = "ul4m4-imputer"
#: Format of a saved :class:`~ul4m4.ModalityImputer` (the imputer's, plus its column layout).
ADAPTER_FORMAT_NAME = "ul4m4-modality-imputer"
FORMAT_VERSION = 2
#: Versions this library reads.
_READABLE_VERSIONS = (1, 2)
_META = "meta.json"
_MAX_META_BYTES = 16 * 2**20
_ALLOWED_DTYPES = {"float32", "float64", "bool", "int64"}
#: Parameters stored as JSON: all but explicit initial centres, which the model does not need.
_PARAMS = tuple(name for name in PARAMETER_CONSTRAINTS if name != "init")
#: Parameters added after format version 1 was first written, with the value that files
#: lacking them were fitted under.
_ADDED_PARAMS = {"partial": "raise"}


class ModelFileError(ValueError):
    """A model file is unreadable, corrupt, of another format or version."""


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _json_param(name: str, value: Any) -> Any:
    if name == "dtype":
        return np.dtype(value).name
    if name == "random_state" and not (value is None or isinstance(value, int)):
        # A RandomState object has no faithful JSON form; the fitted model does
        # not need it, so only its absence is recorded.
        return None
    if name == "k_grid":
        return [int(k) for k in value]
    if name == "device" and value is not None:
        return str(value)  # a torch.device is stored as its name, e.g. "cuda:0"
    if isinstance(value, np.generic):
        return value.item()
    return value


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _selection_meta(selection) -> dict[str, Any] | None:
    if selection is None:
        return None
    table = [_finite_or_none(row) for row in selection.table]
    return {"n_clusters": int(selection.n_clusters), "completion": selection.completion,
            "temperature": selection.temperature, "shrinkage": selection.shrinkage,
            "table": table, "k_grid": [int(k) for k in selection.k_grid],
            "k_added": [int(k) for k in selection.k_added], "k_limit": selection.k_limit}


def _fitted_arrays(model: FittedModel) -> dict[str, np.ndarray]:
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
    arrays["labels"] = np.asarray(model.labels, dtype=np.int64)
    arrays["history"] = np.asarray(model.history, dtype=np.float64)
    return arrays


def save_model(model: FittedModel, params: dict[str, Any], path: str | os.PathLike, *,
               adapter: dict[str, Any] | None = None) -> None:
    """Write a fitted model and its estimator's parameters to ``path`` atomically.

    ``adapter`` (JSON-ready) makes it a :data:`ADAPTER_FORMAT_NAME` file holding
    that section too.
    """
    arrays = _fitted_arrays(model)
    payloads = {name: _array_bytes(a) for name, a in arrays.items()}
    init = params.get("init")
    meta = {
        "format": FORMAT_NAME if adapter is None else ADAPTER_FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "params": {p: _json_param(p, params[p]) for p in _PARAMS},
        "init": init if isinstance(init, str) else "explicit",
        "modalities": list(model.names),
        "n_features": [int(d) for d in model.dims],
        "n_iter": int(model.n_iter),
        "inertia": float(model.inertia),
        "converged": bool(model.converged),
        "n_clusters_fitted": int(model.n_clusters),
        "n_ensemble_fitted": len(model.members),
        "completion": list(model.completion),
        "temperature": list(model.temperature),
        "shrinkage": [float(v) for v in model.shrinkage],
        "selection": _selection_meta(model.selection),
        "runs": [vars(run) for run in model.runs],
        **({} if adapter is None else {"adapter": adapter}),
        "arrays": {
            name: {
                "dtype": arrays[name].dtype.name,
                "shape": list(arrays[name].shape),
                "sha256": hashlib.sha256(payloads[name]).hexdigest(),
            }
            for name in arrays
        },
    }
    with atomic_write(path) as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_META, json.dumps(meta, indent=1, sort_keys=True))
            for name, payload in payloads.items():
                archive.writestr(f"arrays/{name}.npy", payload)


def _read_meta(archive: zipfile.ZipFile, path: str, format_name: str) -> dict[str, Any]:
    try:
        info = archive.getinfo(_META)
    except KeyError:
        raise ModelFileError(f"{path}: not a ul4m4 model file (no {_META})") from None
    if info.file_size > _MAX_META_BYTES:
        raise ModelFileError(f"{path}: {_META} is implausibly large ({info.file_size} bytes)")
    try:
        meta = json.loads(archive.read(_META).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: {_META} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        if not isinstance(meta, dict):
            raise ModelFileError(f"{path}: malformed {_META}")
        hint = {FORMAT_NAME: " (load it with UL4M4Imputer.load)",
                ADAPTER_FORMAT_NAME: " (load it with ModalityImputer.load)"}
        kind = "imputer" if format_name == FORMAT_NAME else "ModalityImputer"
        raise ModelFileError(f"{path}: not a ul4m4 {kind} file (format "
                             f"{meta.get('format')!r}){hint.get(meta.get('format'), '')}")
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise ModelFileError(
            f"{path}: format version {version!r} is not supported (this library reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))}); re-save the model with a matching "
            "ul4m4 version"
        )
    return meta


def _read_array(archive: zipfile.ZipFile, name: str, spec: dict[str, Any], path: str) -> np.ndarray:
    member = f"arrays/{name}.npy"
    try:
        payload = archive.read(member)
    except KeyError:
        raise ModelFileError(f"{path}: array {name!r} is missing") from None
    if hashlib.sha256(payload).hexdigest() != spec.get("sha256"):
        raise ModelFileError(f"{path}: array {name!r} fails its checksum (corrupt file)")
    if spec.get("dtype") not in _ALLOWED_DTYPES:
        raise ModelFileError(f"{path}: array {name!r} has a disallowed dtype {spec.get('dtype')!r}")
    try:
        array = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError as exc:
        raise ModelFileError(f"{path}: array {name!r} is unreadable ({exc})") from None
    if array.dtype.name != spec["dtype"] or list(array.shape) != list(spec.get("shape", [])):
        raise ModelFileError(
            f"{path}: array {name!r} is {array.dtype.name}{list(array.shape)}, the header says "
            f"{spec['dtype']}{spec.get('shape')}"
        )
    return array


def load_model(path: str | os.PathLike, *, adapter: bool = False
               ) -> tuple[dict[str, Any], FittedModel] | tuple[dict[str, Any], FittedModel,
                                                             dict[str, Any]]:
    """Read a model written by :func:`save_model`, checking everything it reads.

    Returns the estimator's parameters and the fitted model; with ``adapter=True``
    it reads a :data:`ADAPTER_FORMAT_NAME` file and also returns its ``adapter``
    section (as stored: the caller checks it). Raises :class:`FileNotFoundError`
    (naming the path) where there is no file, and :class:`ModelFileError` for a
    file that is not a sound ul4m4 model.
    """
    where = os.fspath(path)
    try:
        archive = zipfile.ZipFile(where)
    except FileNotFoundError:
        # Not a damaged file but no file: the caller's path is wrong.
        raise FileNotFoundError(errno.ENOENT, "no such model file", where) from None
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError) as exc:
        # NotImplementedError: a damaged header claiming an unsupported zip feature.
        raise ModelFileError(f"{where}: cannot be read as a ul4m4 model file ({exc})") from None
    with archive:
        try:
            meta = _read_meta(archive, where, ADAPTER_FORMAT_NAME if adapter else FORMAT_NAME)
            layout = meta["adapter"] if adapter else None
            if adapter and not isinstance(layout, dict):
                raise ValueError("the adapter section is not a mapping")
            names = [str(n) for n in meta["modalities"]]
            dims = [int(d) for d in meta["n_features"]]
            specs = meta["arrays"]
            arrays = {name: _read_array(archive, name, specs[name], where) for name in specs}
            params = {**_ADDED_PARAMS, **meta["params"]}
            if isinstance(params.get("k_grid"), list):
                params["k_grid"] = tuple(params["k_grid"])
            # Explicit initial centres are not stored; the fitted model does not need them.
            params["init"] = meta["init"] if meta.get("init") in ("k-means++", "random") \
                else "k-means++"
            dtype = resolve_settings(params).dtype
            k = int(meta["n_clusters_fitted"])
            completion = [str(c) for c in meta["completion"]]
            temperature = [None if t is None else float(t) for t in meta["temperature"]]
            shrinkage = [float(v) for v in meta["shrinkage"]]
            if len(shrinkage) != len(names) or not all(0 <= v < 1 for v in shrinkage):
                raise ValueError("shrinkage settings do not match the modalities")
            if len(completion) != len(names) or len(temperature) != len(names) or not set(
                    completion) <= set(COMPLETION_RULES):
                raise ValueError("completion settings do not match the modalities")
            selection = _selection_from_meta(meta.get("selection"))
            n_iter, inertia = int(meta["n_iter"]), float(meta["inertia"])
            converged = bool(meta["converged"])
            n_members = int(meta.get("n_ensemble_fitted", 1))
            runs = [RunInfo(**run) for run in meta.get("runs", [])]
            if not 1 <= n_members <= 10_000:
                raise ValueError(f"n_ensemble_fitted={n_members} is out of range")
        except ModelFileError:
            raise
        except (LookupError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ModelFileError(f"{where}: malformed model file ({exc!r})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError) as exc:
            # A damaged archive: bad member headers or CRC, a corrupt deflate stream, an
            # unsupported compression method or an encryption flag (zipfile's own types).
            raise ModelFileError(f"{where}: damaged model file ({type(exc).__name__}: "
                                 f"{exc})") from None
    _check_consistent(arrays, names, dims, k, dtype.name, where)
    _check_members(arrays, dims, k, dtype.name, n_members, where)
    means = [arrays[f"mean/{m}"] for m in range(len(names))]
    scales = [arrays[f"scale/{m}"] for m in range(len(names))]
    first = Centers([arrays[f"centers_z/{m}"].copy() for m in range(len(names))],
                    arrays["center_modalities"].copy())
    members = [Member(first, CompletionPlan.from_centers(first),
                      [arrays[f"centers/{m}"] for m in range(len(names))])]
    for e in range(1, n_members):
        centers = Centers(
            [arrays[f"ensemble/{e}/centers_z/{m}"].copy() for m in range(len(names))],
            arrays[f"ensemble/{e}/center_modalities"].copy())
        members.append(Member.of(centers, means, scales, dtype))
    if not runs:  # files of release 0.1 record the first member's run only
        runs = [RunInfo(n_iter, converged, inertia)]
    model = FittedModel(
        names, dims, means, scales, dtype, members, completion, temperature, shrinkage,
        arrays["labels"], arrays["history"].tolist(), n_iter, inertia, converged, k, selection,
        runs,
    )
    return (params, model, layout) if adapter else (params, model)


def _check_members(arrays, dims, k, dtype, n_members, where) -> None:
    """Every ensemble member beyond the first must be stored whole, with the model's shapes."""
    expected = {}
    for e in range(1, n_members):
        expected[f"ensemble/{e}/center_modalities"] = ("bool", (k, len(dims)))
        for m, d in enumerate(dims):
            expected[f"ensemble/{e}/centers_z/{m}"] = (dtype, (k, d))
    for name, (want_dtype, want_shape) in expected.items():
        got = arrays.get(name)
        if got is None:
            raise ModelFileError(f"{where}: array {name!r} is missing")
        if got.dtype.name != want_dtype or got.shape != want_shape:
            raise ModelFileError(
                f"{where}: array {name!r} is {got.dtype.name}{list(got.shape)}, expected "
                f"{want_dtype}{list(want_shape)} for this model"
            )
    stray = [n for n in arrays if n.startswith("ensemble/") and n not in expected]
    if stray:
        raise ModelFileError(f"{where}: unexpected arrays {stray[:3]} for {n_members} members")


def _selection_from_meta(meta: dict[str, Any] | None):
    if meta is None:
        return None
    def restore(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: (np.nan if v is None and k not in ("temperature",) else v)
               for k, v in row.items()}
        if isinstance(out.get("se"), dict):
            out["se"] = {n: np.nan if v is None else float(v) for n, v in out["se"].items()}
        return out

    table = [restore(row) for row in meta["table"]]
    k_limit = meta.get("k_limit")
    return Selection(int(meta["n_clusters"]), dict(meta["completion"]),
                     dict(meta["temperature"]), table, dict(meta.get("shrinkage", {})),
                     k_grid=tuple(int(k) for k in meta.get("k_grid", ())),
                     k_added=tuple(int(k) for k in meta.get("k_added", ())),
                     k_limit=None if k_limit is None else int(k_limit))


def _check_consistent(arrays, names, dims, k, dtype, where) -> None:
    n_mod = len(names)
    expected = {"center_modalities": ("bool", (k, n_mod))}
    for m, d in enumerate(dims):
        expected[f"mean/{m}"] = ("float64", (d,))
        expected[f"scale/{m}"] = ("float64", (d,))
        expected[f"centers/{m}"] = (dtype, (k, d))
        expected[f"centers_z/{m}"] = (dtype, (k, d))
    if len(dims) != n_mod or len(set(names)) != n_mod:
        raise ModelFileError(f"{where}: modality names and widths do not match")
    for name, (want_dtype, want_shape) in expected.items():
        if name not in arrays:
            raise ModelFileError(f"{where}: array {name!r} is missing")
        got = arrays[name]
        if got.dtype.name != want_dtype or got.shape != want_shape:
            raise ModelFileError(
                f"{where}: array {name!r} is {got.dtype.name}{list(got.shape)}, expected "
                f"{want_dtype}{list(want_shape)} for this model"
            )
    for name in ("labels", "history"):
        if name not in arrays or arrays[name].ndim != 1:
            raise ModelFileError(f"{where}: array {name!r} is missing or not 1-D")
    if not all(np.all(arrays[f"scale/{m}"] > 0) for m in range(n_mod)):
        raise ModelFileError(f"{where}: a scale is not positive")
