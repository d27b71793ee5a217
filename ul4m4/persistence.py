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
from .model import FittedModel, RunInfo
from .model_checks import ModelValueError, check_fitted_model
from .model_layout import (
    array_count,
    array_layout,
    fitted_arrays,
    integer_field,
    member_meta,
    members_from_meta,
    model_from_arrays,
    number_field,
    selection_from_meta,
    selection_meta,
)
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


def save_model(model: FittedModel, params: dict[str, Any], path: str | os.PathLike, *,
               adapter: dict[str, Any] | None = None) -> None:
    """Write a fitted model and its estimator's parameters to ``path`` atomically.

    ``adapter`` (JSON-ready) makes it a :data:`ADAPTER_FORMAT_NAME` file holding
    that section too.
    """
    arrays = fitted_arrays(model)
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
        "selection": selection_meta(model.selection),
        "runs": [vars(run) for run in model.runs],
        "members": [member_meta(member) for member in model.members],
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
        model = model_from_arrays(arrays, fields)
        check_fitted_model(model)
    except ModelValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    params = fields["params"]
    return (params, model, fields["layout"]) if adapter else (params, model)


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
    dims = [integer_field(d, "n_features", 1, 2**31) for d in lists["n_features"]]
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
    temperature = [None if t is None else number_field(t, "temperature")
                   for t in lists["temperature"]]
    shrinkage = [number_field(v, "shrinkage") for v in lists["shrinkage"]]
    if not len(completion) == len(temperature) == len(shrinkage) == len(names):
        raise ValueError("completion settings do not match the modalities")
    if not isinstance(meta["converged"], bool):
        raise ValueError(f"converged={meta['converged']!r} is not a boolean")
    runs = meta.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ValueError("runs is not a list of mappings")
    k = integer_field(meta["n_clusters_fitted"], "n_clusters_fitted", 1, 2**31)
    n_members = integer_field(meta.get("n_ensemble_fitted", 1), "n_ensemble_fitted", 1, 10_000)
    calibration = meta.get("calibration")
    if calibration is not None:
        if not isinstance(calibration, list) or len(calibration) != len(names):
            raise ValueError("calibration does not match the modalities")
        calibration = [number_field(c, "calibration") for c in calibration]
    weighted = meta.get("weighted", False)
    if not isinstance(weighted, bool):
        raise ValueError(f"weighted={weighted!r} is not a boolean")
    return {
        "layout": layout, "params": params, "names": names, "dims": dims,
        "dtype": resolve_settings(params).dtype,
        "k": k, "n_members": n_members,
        "members": members_from_meta(meta.get("members"), k, n_members),
        "calibration": calibration, "weighted": weighted,
        "completion": completion, "temperature": temperature, "shrinkage": shrinkage,
        "selection": selection_from_meta(meta.get("selection")),
        "n_iter": integer_field(meta["n_iter"], "n_iter", 0),
        "inertia": number_field(meta["inertia"], "inertia"), "converged": meta["converged"],
        "runs": [RunInfo(**run) for run in runs],
    }


def _read_arrays(archive: zipfile.ZipFile, specs: Any, fields: dict[str, Any],
                 where: str) -> dict[str, np.ndarray]:
    """Every array the model needs, each checked against ``meta.json`` before it is read."""
    if not isinstance(specs, dict):
        raise ValueError("the array table is not a mapping")
    dims, n_members = fields["dims"], fields["n_members"]
    # Counted before the table is built: a crafted count must not build a huge one.
    count = array_count(len(dims), fields["members"], fields["weighted"])
    if count > len(archive.infolist()):
        raise ModelFileError(f"{where}: a model of {len(dims)} modalities and {n_members} "
                             f"members stores {count} arrays, the archive holds fewer")
    want = array_layout(dims, fields["members"], fields["dtype"].name, fields["weighted"])
    for name in want:
        if name not in specs:
            raise ModelFileError(f"{where}: array {name!r} is missing")
    stray = [n for n in specs if n not in want]
    if stray:
        raise ModelFileError(f"{where}: unexpected arrays {stray[:3]} for {n_members} "
                             "members")
    checked = {name: _array_spec(name, specs[name], want[name], where) for name in want}
    return {name: _read_array(archive, name, spec, where) for name, spec in checked.items()}
