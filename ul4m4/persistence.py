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

Version 3 adds per-member models (``members`` in ``meta.json``: each member's
k, completion rule, temperature, mixture rank, and whether its centre spread
is stored), ``ensemble/<e>/spread`` ((k, M) float64; ``spread`` for the first
member), the conditional mixtures ``mixture/<e>/log_weights`` (K,),
``mixture/<e>/means/<m>`` (K, d_m), ``mixture/<e>/loadings/<m>`` (d_m, r) and
``mixture/<e>/noise/<m>`` (d_m,) (float64, z-space), the ensemble ``weights``
((n_members, M) float64) and the per-modality ``calibration`` of the predicted
error; and the ensemble selection's fields. Files of versions 1 and 2 load as
members of one k filled by the model-wide rule, without spreads.

Format ``ul4m4-modality-imputer`` (same version) is the same archive for a
:class:`~ul4m4.ModalityImputer`: an extra ``adapter`` section in ``meta.json``
holds its column layout (``modalities`` parameter as resolved columns,
pass-through columns, ``n_features_in_`` and ``feature_names_in_``); the model
and parameters are stored exactly as for the imputer. Each reader refuses the
other's format.

Reading never unpickles and trusts nothing it has not checked, in this order:
``meta.json`` (read with a bound) and its fields' types and ranges; the arrays
the model's shape calls for, each with a whitelisted dtype, the expected shape
and a size under :data:`_MAX_ARRAY_BYTES`; each member's sizes in the archive
against that shape (no more compressed bytes than the file holds, no ratio
beyond deflate's, stored or deflated only), all before any member is read;
then each member in chunks, hashed before anything is allocated for it; its
``.npy`` header against ``meta.json``; and finally the values
(:func:`ul4m4.model_checks.check_fitted_model`). Memory stays O(chunk) until a
member's checksum has matched, whatever the archive declares. Any failure
raises :class:`ModelFileError` naming the file (a path with no file raises
:class:`FileNotFoundError`). Writes go to a temporary file in the target
folder, then replace the target atomically.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from ._utils.files import atomic_write
from ._utils.npy import read_npy_header
from ._version import __version__
from .centers import Centers
from .members import Member, ModelKey
from .mixture import Mixture
from .model import FittedModel, RunInfo
from .model_checks import ModelValueError, check_fitted_model
from .plan import CompletionPlan
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
FORMAT_VERSION = 3
#: Versions this library reads.
_READABLE_VERSIONS = (1, 2, 3)
_META = "meta.json"
_MAX_META_BYTES = 16 * 2**20
_ALLOWED_DTYPES = {"float32", "float64", "bool", "int64"}
#: Largest array a model file may hold (16 GiB; labels of 2e9 samples).
_MAX_ARRAY_BYTES = 2**34
#: Bytes of a ``.npy`` header around an array's data (ours take 64 or 128).
_MIN_NPY_HEADER, _MAX_NPY_HEADER = 10, 4096
#: Largest uncompressed-to-compressed ratio of a member: deflate cannot pass ~1032.
_MAX_RATIO = 1100
#: Bytes read (and decompressed) at a time.
_READ_CHUNK = 2**20
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
            "k_added": [int(k) for k in selection.k_added], "k_limit": selection.k_limit,
            "ensemble": {n: [[int(r), float(w)] for r, w in pairs]
                         for n, pairs in selection.ensemble.items()},
            "ensemble_scores": _finite_or_none({n: list(v) for n, v in
                                                selection.ensemble_scores.items()}),
            "calibration": selection.calibration, "n_rows": int(selection.n_rows),
            "n_hidden": int(selection.n_hidden),
            "models": [[int(key.k), key.rank] for key in selection.models]}


def _member_meta(member: Member) -> dict[str, Any]:
    state = member.state
    return {"k": int(member.centers.k), "rule": member.rule,
            "temperature": member.temperature,
            "rank": None if state is None else int(state.rank),
            "spread": member.spread is not None}


def _member_arrays(e: int, member: Member, n_mod: int) -> dict[str, np.ndarray]:
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
    for e, member in enumerate(model.members):
        arrays.update(_member_arrays(e, member, len(model.names)))
    if model.weights is not None:
        arrays["weights"] = np.asarray(model.weights, dtype=np.float64)
    arrays["labels"] = np.asarray(model.labels, dtype=np.int64)
    arrays["history"] = np.asarray(model.history, dtype=np.float64)
    return {name: np.asarray(a, dtype=np.float64) if "spread" in name or "mixture/" in name
            else a for name, a in arrays.items()}


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
        "members": [_member_meta(member) for member in model.members],
        "calibration": model.calibration,
        "weighted": model.weights is not None,
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


def _check_archive(archive: zipfile.ZipFile, path: str) -> None:
    """Refuse an archive whose members claim more compressed bytes than the file holds.

    Overlapping members (one deflate stream counted many times, a classic zip
    bomb) fail here, before any member is read.
    """
    size = os.fstat(archive.fp.fileno()).st_size
    claimed = sum(info.compress_size for info in archive.infolist())
    if claimed > size:
        raise ModelFileError(f"{path}: damaged model file (its members claim {claimed} "
                             f"compressed bytes, the file holds {size})")


def _member(archive: zipfile.ZipFile, member: str, what: str, path: str) -> zipfile.ZipInfo:
    """The entry of ``member``, refused if its declared sizes cannot be a ul4m4 writer's."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ModelFileError(f"{path}: {what} is missing") from None
    # ul4m4 writes deflated (save_model) or stored members; bzip2 and lzma would
    # allow ratios far beyond deflate's ~1032:1, so they are not accepted.
    stored = info.compress_type == zipfile.ZIP_STORED
    if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
        raise ModelFileError(f"{path}: {what} uses compression method "
                             f"{info.compress_type} (ul4m4 writes stored or deflated members)")
    if stored and info.file_size != info.compress_size:
        raise ModelFileError(f"{path}: {what} declares {info.file_size} bytes but stores "
                             f"{info.compress_size} (damaged or crafted file)")
    if info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        raise ModelFileError(
            f"{path}: {what} declares {info.file_size} bytes in {info.compress_size} "
            "compressed bytes, more than any compression reaches (damaged or crafted file)")
    return info


class _Reader:
    """A member's bytes, read and hashed a chunk at a time up to ``end`` and no further.

    numpy's ``.npy`` header parser reads from it; raising ``end`` afterwards lets
    the data through. Nothing beyond ``end`` is ever decompressed, whatever the
    archive's headers say.
    """

    def __init__(self, handle: Any, end: int) -> None:
        self.handle, self.end, self.position = handle, end, 0
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        room = self.end - self.position
        n = room if n is None or n < 0 else min(n, room)
        data = self.handle.read(min(n, _READ_CHUNK)) if n > 0 else b""
        self.position += len(data)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        """Read (and hash) the rest, up to ``end``."""
        while self.read(_READ_CHUNK):
            pass


def _read_meta(archive: zipfile.ZipFile, path: str, format_name: str) -> dict[str, Any]:
    if _META not in archive.namelist():
        raise ModelFileError(f"{path}: not a ul4m4 model file (no {_META})")
    info = _member(archive, _META, _META, path)
    if info.file_size > _MAX_META_BYTES:
        raise ModelFileError(f"{path}: {_META} is implausibly large ({info.file_size} bytes)")
    with archive.open(info) as handle:
        reader = _Reader(handle, info.file_size)
        text = b"".join(iter(lambda: reader.read(_READ_CHUNK), b""))
    if len(text) != info.file_size:
        raise ModelFileError(f"{path}: damaged model file ({_META} is truncated)")
    try:
        meta = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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


def _shape_text(dtype: str, shape: Any) -> str:
    return f"{dtype}{list(shape) if isinstance(shape, list | tuple) else shape}"


def _array_spec(name: str, spec: Any, want: tuple[str, tuple[int, ...] | None],
                path: str) -> tuple[np.dtype, tuple[int, ...], str]:
    """The dtype, shape and checksum ``meta.json`` records for one array, checked before
    any byte of it is read: whitelisted dtype, the shape this model needs (``want``;
    ``None`` for a 1-D array of any length), a size under :data:`_MAX_ARRAY_BYTES`."""
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path}: malformed {_META} (entry of array {name!r})")
    dtype, shape, digest = spec.get("dtype"), spec.get("shape"), spec.get("sha256")
    if dtype not in _ALLOWED_DTYPES:
        raise ModelFileError(f"{path}: array {name!r} has a disallowed dtype {dtype!r}")
    if not (isinstance(shape, list) and len(shape) <= 2
            and all(type(s) is int and s >= 0 for s in shape)):
        raise ModelFileError(f"{path}: array {name!r} has an invalid shape {shape!r} "
                             f"in {_META}")
    want_dtype, want_shape = want
    if dtype != want_dtype or (len(shape) != 1 if want_shape is None
                               else tuple(shape) != want_shape):
        expected = "[n]" if want_shape is None else list(want_shape)
        raise ModelFileError(
            f"{path}: array {name!r} is {_shape_text(dtype, shape)}, expected "
            f"{want_dtype}{expected} for this model"
        )
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > _MAX_ARRAY_BYTES:
        raise ModelFileError(f"{path}: array {name!r} declares {_shape_text(dtype, shape)} "
                             f"({nbytes} bytes), more than a model file may hold")
    if not isinstance(digest, str):
        raise ModelFileError(f"{path}: array {name!r} has no checksum in {_META}")
    return np.dtype(dtype), tuple(shape), digest


def _read_array(archive: zipfile.ZipFile, name: str, spec: tuple[np.dtype, tuple[int, ...], str],
                path: str) -> np.ndarray:
    """Read one array member in two bounded passes.

    The first only hashes the member, a chunk at a time, so a member whose
    content does not match its checksum is refused in O(chunk) memory however
    large it claims to be; the second parses the ``.npy`` header (which must
    repeat ``meta.json``'s dtype and shape), allocates the array exactly and
    fills it, hashing again.
    """
    dtype, shape, digest = spec
    nbytes = math.prod(shape) * dtype.itemsize
    info = _member(archive, f"arrays/{name}.npy", f"array {name!r}", path)
    if not nbytes + _MIN_NPY_HEADER <= info.file_size <= nbytes + _MAX_NPY_HEADER:
        raise ModelFileError(
            f"{path}: array {name!r} is unreadable (the archive declares {info.file_size} "
            f"bytes, its dtype and shape in {_META} imply {nbytes} plus a .npy header)")
    with archive.open(info) as handle:
        reader = _Reader(handle, info.file_size)
        reader.drain()
    if reader.position != info.file_size or reader.hash.hexdigest() != digest:
        raise ModelFileError(f"{path}: array {name!r} fails its checksum (corrupt file)")
    with archive.open(info) as handle:
        reader = _Reader(handle, min(info.file_size, _MAX_NPY_HEADER))
        try:
            # ul4m4 writes versions 1.0 and 2.0 only.
            header_shape, fortran, header_dtype = read_npy_header(
                reader, _MAX_NPY_HEADER, versions=((1, 0), (2, 0)))
        except (ValueError, TypeError, LookupError, SyntaxError, RecursionError,
                MemoryError, OverflowError) as exc:
            raise ModelFileError(f"{path}: array {name!r} is unreadable ({exc})") from None
        # A byte-swapped dtype of the same type is the same array (other writers' order).
        if header_dtype not in (dtype, dtype.newbyteorder()) or tuple(header_shape) != shape:
            raise ModelFileError(
                f"{path}: array {name!r} is unreadable (its .npy header says "
                f"{header_dtype}{list(header_shape)}, {_META} says {dtype.name}{list(shape)})")
        if reader.position + nbytes != info.file_size:
            raise ModelFileError(
                f"{path}: array {name!r} is unreadable (its header and data take "
                f"{reader.position + nbytes} bytes, the member holds {info.file_size})")
        reader.end = info.file_size
        try:
            flat = np.empty(math.prod(shape), dtype=header_dtype)
        except MemoryError:
            raise ModelFileError(f"{path}: array {name!r} ({nbytes} bytes) does not fit in "
                                 "memory") from None
        target = memoryview(flat).cast("B")
        filled = 0
        while filled < nbytes:
            chunk = reader.read(nbytes - filled)
            if not chunk:
                break
            target[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
    if filled != nbytes or reader.hash.hexdigest() != digest:
        raise ModelFileError(f"{path}: array {name!r} changed while it was read")
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return array if header_dtype == dtype else array.astype(dtype)


def load_model(path: str | os.PathLike, *, adapter: bool = False
               ) -> tuple[dict[str, Any], FittedModel] | tuple[dict[str, Any], FittedModel,
                                                             dict[str, Any]]:
    """Read a model written by :func:`save_model`, checking everything it reads.

    Returns the estimator's parameters and the fitted model; with ``adapter=True``
    it reads a :data:`ADAPTER_FORMAT_NAME` file and also returns its ``adapter``
    section (as stored: the caller checks it). Raises :class:`FileNotFoundError`
    (naming the path) where there is no file, and :class:`ModelFileError` (naming
    the path) for a file that is not a sound ul4m4 model: damaged, crafted, of
    another format, or holding values no fit produces.
    """
    where = os.fspath(path)
    try:
        archive = zipfile.ZipFile(where)
    except FileNotFoundError:
        # Not a damaged file but no file: the caller's path is wrong.
        raise FileNotFoundError(errno.ENOENT, "no such model file", where) from None
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError, EOFError,
            struct.error, MemoryError, OverflowError) as exc:
        # NotImplementedError: a damaged header claiming an unsupported zip feature.
        raise ModelFileError(f"{where}: cannot be read as a ul4m4 model file ({exc})") from None
    with archive:
        try:
            _check_archive(archive, where)
            meta = _read_meta(archive, where, ADAPTER_FORMAT_NAME if adapter else FORMAT_NAME)
            fields = _meta_fields(meta, adapter)
            arrays = _read_arrays(archive, meta["arrays"], fields, where)
        except ModelFileError:
            raise
        except (LookupError, TypeError, ValueError, AttributeError, OverflowError,
                RecursionError) as exc:
            raise ModelFileError(f"{where}: malformed model file ({exc!r})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, struct.error) as exc:
            # A damaged archive: bad member headers or CRC, a corrupt deflate stream, an
            # unsupported compression method or an encryption flag (zipfile's own types).
            raise ModelFileError(f"{where}: damaged model file ({type(exc).__name__}: "
                                 f"{exc})") from None
        except MemoryError:
            raise ModelFileError(f"{where}: the model does not fit in memory") from None
    try:
        model = _model(arrays, fields)
        check_fitted_model(model)
    except ModelValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    params = fields["params"]
    return (params, model, fields["layout"]) if adapter else (params, model)


def _integer(value: Any, what: str, low: int, high: int = 2**62) -> int:
    # JSON true/false are no counts, and int("7") or int(7.9) would hide a damaged field.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what}={value!r} is not an integer in [{low}, {high}]")
    return value


def _number(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise ValueError(f"{what}={value!r} is not a number")
    return float(value)


def _meta_fields(meta: dict[str, Any], adapter: bool) -> dict[str, Any]:
    """Every field of ``meta.json`` but the array table, type-checked and converted."""
    layout = meta["adapter"] if adapter else None
    if adapter and not isinstance(layout, dict):
        raise ValueError("the adapter section is not a mapping")
    lists = {key: meta[key] for key in ("modalities", "n_features", "completion",
                                        "temperature", "shrinkage")}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise ValueError(f"{key} is not a list")
    names = [str(n) for n in lists["modalities"]]
    dims = [_integer(d, "n_features", 1, 2**31) for d in lists["n_features"]]
    if not names or len(dims) != len(names) or len(set(names)) != len(names):
        raise ValueError("modality names and widths do not match")
    raw_params = meta["params"]
    if not isinstance(raw_params, dict) or not set(raw_params) <= set(_PARAMS):
        raise ValueError("params is not a mapping of the estimator's parameters")
    params = {**_ADDED_PARAMS, **raw_params}
    if isinstance(params.get("k_grid"), list):
        params["k_grid"] = tuple(params["k_grid"])
    # Explicit initial centres are not stored; the fitted model does not need them.
    params["init"] = meta["init"] if meta.get("init") in ("k-means++", "random") \
        else "k-means++"
    completion = [str(c) for c in lists["completion"]]
    temperature = [None if t is None else _number(t, "temperature")
                   for t in lists["temperature"]]
    shrinkage = [_number(v, "shrinkage") for v in lists["shrinkage"]]
    if not len(completion) == len(temperature) == len(shrinkage) == len(names):
        raise ValueError("completion settings do not match the modalities")
    if not isinstance(meta["converged"], bool):
        raise ValueError(f"converged={meta['converged']!r} is not a boolean")
    runs = meta.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ValueError("runs is not a list of mappings")
    k = _integer(meta["n_clusters_fitted"], "n_clusters_fitted", 1, 2**31)
    n_members = _integer(meta.get("n_ensemble_fitted", 1), "n_ensemble_fitted", 1, 10_000)
    calibration = meta.get("calibration")
    if calibration is not None:
        if not isinstance(calibration, list) or len(calibration) != len(names):
            raise ValueError("calibration does not match the modalities")
        calibration = [_number(c, "calibration") for c in calibration]
    weighted = meta.get("weighted", False)
    if not isinstance(weighted, bool):
        raise ValueError(f"weighted={weighted!r} is not a boolean")
    return {
        "layout": layout, "params": params, "names": names, "dims": dims,
        "dtype": resolve_settings(params).dtype,
        "k": k, "n_members": n_members,
        "members": _members_meta(meta.get("members"), k, n_members),
        "calibration": calibration, "weighted": weighted,
        "completion": completion, "temperature": temperature, "shrinkage": shrinkage,
        "selection": _selection_from_meta(meta.get("selection")),
        "n_iter": _integer(meta["n_iter"], "n_iter", 0),
        "inertia": _number(meta["inertia"], "inertia"), "converged": meta["converged"],
        "runs": [RunInfo(**run) for run in runs],
    }


def _members_meta(members: Any, k: int, n_members: int) -> list[dict[str, Any]]:
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
        out.append({"k": _integer(spec.get("k"), f"{who} k", 1, 2**31), "rule": rule,
                    "temperature": None if t is None else _number(t, f"{who} temperature"),
                    "rank": None if rank is None else _integer(rank, f"{who} rank", 0, 2**16),
                    "spread": spec["spread"]})
    if out[0]["k"] != k:
        raise ValueError(f"the first member has k={out[0]['k']}, n_clusters_fitted={k}")
    return out


def _array_count(n_mod: int, members: list[dict[str, Any]], weighted: bool) -> int:
    """How many arrays a model of these members stores (see :func:`_layout`)."""
    return (4 * n_mod + 3 + (len(members) - 1) * (n_mod + 1) + int(weighted)
            + sum(spec["spread"] + (spec["rank"] is not None) * (1 + 3 * n_mod)
                  for spec in members))


def _layout(dims: list[int], members: list[dict[str, Any]], dtype: str, weighted: bool
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


def _read_arrays(archive: zipfile.ZipFile, specs: Any, fields: dict[str, Any],
                 where: str) -> dict[str, np.ndarray]:
    """Every array the model needs, each checked against ``meta.json`` before it is read."""
    if not isinstance(specs, dict):
        raise ValueError("the array table is not a mapping")
    dims, n_members = fields["dims"], fields["n_members"]
    # Counted before the table is built: a crafted count must not build a huge one.
    count = _array_count(len(dims), fields["members"], fields["weighted"])
    if count > len(archive.infolist()):
        raise ModelFileError(f"{where}: a model of {len(dims)} modalities and {n_members} "
                             f"members stores {count} arrays, the archive holds fewer")
    want = _layout(dims, fields["members"], fields["dtype"].name, fields["weighted"])
    for name in want:
        if name not in specs:
            raise ModelFileError(f"{where}: array {name!r} is missing")
    stray = [n for n in specs if n not in want]
    if stray:
        raise ModelFileError(f"{where}: unexpected arrays {stray[:3]} for {n_members} "
                             "members")
    checked = {name: _array_spec(name, specs[name], want[name], where) for name in want}
    return {name: _read_array(archive, name, spec, where) for name, spec in checked.items()}


def _model(arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> FittedModel:
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
                          **_member_extras(arrays, 0, specs[0], len(names)))]
        for e in range(1, fields["n_members"]):
            centers = Centers([arrays[f"ensemble/{e}/centers_z/{m}"] for m in range(len(names))],
                              arrays[f"ensemble/{e}/center_modalities"])
            members.append(Member.of(centers, means, scales, dtype,
                                     **_member_extras(arrays, e, specs[e], len(names))))
    runs = fields["runs"] or [  # files of release 0.1 record the first member's run only
        RunInfo(fields["n_iter"], fields["converged"], fields["inertia"])]
    return FittedModel(
        names, dims, means, scales, dtype, members, fields["completion"],
        fields["temperature"], fields["shrinkage"], arrays["labels"],
        arrays["history"].tolist(), fields["n_iter"], fields["inertia"], fields["converged"],
        fields["k"], fields["selection"], runs, arrays.get("weights"), fields["calibration"],
    )


def _member_extras(arrays: dict[str, np.ndarray], e: int, spec: dict[str, Any],
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


def _selection_from_meta(meta: dict[str, Any] | None):
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


