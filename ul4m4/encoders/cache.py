"""Run any encoder over a modality with missing items, batched, with a resumable disk cache.

:func:`encode_modality` is the common entry point: it returns an ``(n, dim)``
array with an all-NaN row for every missing item (``None``) and calls the encoder
only on the items that are present. With ``cache_dir`` every embedding is stored
as its own small file, keyed by the encoder's ``cache_id`` (model, weights,
version and preprocessing) and a hash of the item's *content*; an interrupted
job therefore resumes where it stopped.

Entry files are written to a temporary name and moved into place with
``os.replace``, so a reader never sees a half-written entry. Each entry carries a
SHA-256 checksum of its key and payload; an entry that fails it (a truncated file
after a power loss, a disk error, an entry copied under the wrong name) is
reported with a :class:`CacheWarning` and recomputed. Entries are not fsynced:
durability against power loss comes from the checksum, not from the file system.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import TEMP_GLOB, write_bytes_atomic, write_text_atomic
from .._utils.progress import progress_bar
from ._common import check_positive, file_sha256

__all__ = ["CacheWarning", "EmbeddingCache", "content_key", "encode_modality", "item_hash"]

_MAGIC = b"UL4M4EMB"
_VERSION = 1
# magic, format version, embedding width, SHA-256 of (key + payload)
_HEADER = struct.Struct("<8sII32s")
_SUFFIX = ".emb"
# Temporary entries: the shared atomic writer's names, and those of earlier releases.
_TMP_GLOBS = (TEMP_GLOB, ".tmp-*")


class CacheWarning(UserWarning):
    """A cache entry was unreadable or failed its checksum; it is recomputed."""


# --------------------------------------------------------------------------- content keys


def pil_image_key(image: Any) -> bytes:
    """Content key bytes of a PIL image: its mode, size, pixels, palette and transparency."""
    parts = [b"pil", image.mode.encode(), struct.pack("<II", *image.size), image.tobytes()]
    palette = image.getpalette() if image.mode in ("P", "PA") else None
    if palette is not None:
        parts.append(bytes(palette))
    if "transparency" in image.info:
        parts.append(repr(image.info["transparency"]).encode())
    return join_key_parts(parts)


def join_key_parts(parts: Iterable[bytes]) -> bytes:
    """One content key from its parts, each length-prefixed so that no two splits collide."""
    return b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def content_key(item: Any) -> bytes:
    """Bytes that identify an item's content, for the default cache key.

    ``str`` is text (its UTF-8 bytes); a :class:`pathlib.Path` is a file (the
    SHA-256 of its bytes, so a renamed or moved file keeps its key and an edited
    one gets a new key); ``bytes`` are taken as is; a NumPy array contributes its
    dtype, shape and values; a PIL image its mode, size, pixels and palette; a
    tuple or list the keys of its elements. Encoders whose items need another
    reading (an image encoder treats ``str`` as a file path) define their own
    ``content_key`` method, which :func:`encode_modality` uses instead.

    Parameters
    ----------
    item : str, bytes, os.PathLike, ndarray, PIL.Image.Image, tuple or list

    Returns
    -------
    bytes

    Raises
    ------
    TypeError
        For other item types.

    Examples
    --------
    >>> content_key("a") == content_key("a") != content_key("b")
    True
    """
    if isinstance(item, str):
        return join_key_parts([b"str", item.encode("utf-8")])
    if isinstance(item, (bytes, bytearray, memoryview)):
        return join_key_parts([b"bytes", bytes(item)])
    if isinstance(item, os.PathLike):
        return join_key_parts([b"file", file_sha256(item).encode()])
    if isinstance(item, np.ndarray) or np.isscalar(item):
        arr = np.ascontiguousarray(item)
        return join_key_parts(
            [b"array", arr.dtype.str.encode(), repr(arr.shape).encode(), arr.tobytes()]
        )
    if hasattr(item, "mode") and hasattr(item, "tobytes") and hasattr(item, "size"):
        return pil_image_key(item)
    if isinstance(item, (tuple, list)):
        return join_key_parts([b"seq", *(content_key(x) for x in item)])
    raise TypeError(
        f"cannot derive a cache key from an item of type {type(item).__name__}; "
        "give the encoder a content_key(item) -> bytes method"
    )


def item_hash(item: Any, key_fn: Callable[[Any], bytes] | None = None) -> str:
    """Hex SHA-256 of an item's content key (``key_fn`` or :func:`content_key`)."""
    return hashlib.sha256((key_fn or content_key)(item)).hexdigest()


# --------------------------------------------------------------------------- the cache


class EmbeddingCache:
    """One embedding per file on disk, for one encoder (one ``cache_id``).

    Entries live under ``directory / <sha256(cache_id)[:24]> / <2 hex> /
    <item hash>.emb``; a small ``encoder.json`` in the encoder's folder records
    the full ``cache_id`` and width for people browsing the cache. Two encoders
    (or two versions, or two preprocessings of one model) never share entries.

    Parameters
    ----------
    directory : str or path-like
        Root folder; created on first write.
    cache_id : str
        Identifier of the embedding function (the encoder's ``cache_id``).
    dim : int
        Embedding width; an entry of another width counts as corrupt.

    Attributes
    ----------
    root : pathlib.Path
        Folder of this encoder's entries.
    n_corrupt : int
        Entries found corrupt (and reported) so far by this object.

    Examples
    --------
    >>> import tempfile
    >>> cache = EmbeddingCache(tempfile.mkdtemp(), "my-encoder-v1", dim=2)
    >>> key = item_hash("hello")
    >>> cache.put(key, np.array([1.0, 2.0]))
    >>> cache.get(key)
    array([1., 2.], dtype=float32)
    """

    def __init__(self, directory: str | os.PathLike[str], cache_id: str, dim: int) -> None:
        if not isinstance(cache_id, str) or not cache_id:
            raise ValueError(f"cache_id must be a non-empty string, got {cache_id!r}")
        self.directory = Path(directory)
        self.cache_id = cache_id
        self.dim = check_positive("dim", dim)
        self.root = self.directory / hashlib.sha256(cache_id.encode("utf-8")).hexdigest()[:24]
        self.n_corrupt = 0
        self._described = False

    def path(self, key: str) -> Path:
        """File of the entry for ``key`` (a hex item hash)."""
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are lower-case hex digests, got {key!r}")
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def _describe(self) -> None:
        if self._described:
            return
        meta = self.root / "encoder.json"
        if not meta.is_file():
            text = json.dumps({"cache_id": self.cache_id, "dim": self.dim}, indent=1)
            meta.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(meta, text, fsync=False)
        self._described = True

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store one embedding (converted to float32) atomically."""
        payload = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
        if payload.size != self.dim:
            raise ValueError(
                f"embedding for cache key {key} has {payload.size} values, expected {self.dim}"
            )
        data = payload.tobytes()
        digest = hashlib.sha256(key.encode() + data).digest()
        self._describe()
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, _HEADER.pack(_MAGIC, _VERSION, self.dim, digest) + data,
                           fsync=False)

    def get(self, key: str) -> np.ndarray | None:
        """The stored embedding for ``key``, or ``None`` if absent or corrupt (then warned)."""
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._corrupt(path, f"unreadable ({exc})")
        problem = self._check(key, raw)
        if problem:
            return self._corrupt(path, problem)
        return np.frombuffer(raw, dtype="<f4", offset=_HEADER.size).astype(np.float32)

    def _check(self, key: str, raw: bytes) -> str:
        if len(raw) < _HEADER.size:
            return f"truncated ({len(raw)} bytes)"
        magic, version, dim, digest = _HEADER.unpack_from(raw)
        if magic != _MAGIC or version != _VERSION:
            return "not an entry of this format"
        if dim != self.dim:
            return f"holds width {dim}, expected {self.dim}"
        if len(raw) != _HEADER.size + 4 * dim:
            return f"has {len(raw)} bytes, expected {_HEADER.size + 4 * dim}"
        if hashlib.sha256(key.encode() + raw[_HEADER.size :]).digest() != digest:
            return "fails its checksum"
        return ""

    def _corrupt(self, path: Path, problem: str) -> None:
        self.n_corrupt += 1
        warnings.warn(
            f"cache entry {path} is {problem}; recomputing it", CacheWarning, stacklevel=3
        )
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of those ``keys`` that have a valid entry."""
        found = {}
        for key in keys:
            vector = self.get(key)
            if vector is not None:
                found[key] = vector
        return found

    def keys(self) -> list[str]:
        """Keys of the entry files present (not checked; temporary files excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(_SUFFIX)] for p in self.root.glob(f"??/*{_SUFFIX}"))

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by killed writers; returns how many were removed.

        Only call this when no other process is writing to the same cache.
        """
        if not self.root.is_dir():
            return 0
        stale = {tmp for pattern in _TMP_GLOBS for tmp in self.root.glob(f"*/{pattern}")}
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)


# --------------------------------------------------------------------------- entry point


def _is_missing(item: Any) -> bool:
    # None is the documented marker; a float NaN is how pandas stores a missing string.
    return item is None or (isinstance(item, float) and math.isnan(item))


def _call_encoder(
    encoder: Any, batch: list[Any], indices: Sequence[int], dim: int | None
) -> np.ndarray:
    out = np.asarray(encoder(batch), dtype=np.float32)
    expected = (len(batch), dim if dim is not None else (out.shape[1] if out.ndim == 2 else -1))
    if out.shape != expected:
        raise ValueError(
            f"encoder {_encoder_name(encoder)} returned shape {out.shape} for {len(batch)} items "
            f"(rows {list(indices)[:5]}...); expected {expected}"
        )
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        rows = [int(indices[i]) for i in np.flatnonzero(bad)[:5]]
        raise ValueError(
            f"encoder {_encoder_name(encoder)} returned non-finite values for rows {rows}"
        )
    return out


def _encoder_name(encoder: Any) -> str:
    return str(getattr(encoder, "cache_id", None) or type(encoder).__name__)


def _key_function(encoder: Any) -> Callable[[Any], bytes]:
    own = getattr(encoder, "content_key", None)
    return own if callable(own) else content_key


def encode_modality(
    encoder: Any,
    items: Sequence[Any],
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    *,
    desc: str | None = None,
) -> np.ndarray:
    """Embed one modality of ``n`` samples, some of which may be missing.

    The encoder is called only on the present items, in batches of
    ``batch_size``; a missing item (``None``, or a float NaN as pandas stores
    missing strings) gets an all-NaN row, the library's marker for a missing
    modality. With ``cache_dir`` each embedding is stored on disk as soon as
    its batch is done, keyed by ``(encoder.cache_id, hash of the item's
    content)``: a rerun (also after a crash or a kill) computes only what is not
    stored yet, and identical items are encoded once.

    Parameters
    ----------
    encoder : callable
        ``encoder(list_of_items) -> array (len, dim)``; must have ``.dim``
        (int) and, when a cache is used, ``.cache_id`` (str). An optional
        ``content_key(item) -> bytes`` method overrides :func:`content_key`.
    items : sequence
        One item per sample (text, image path, waveform, ...) or ``None``.
    cache_dir : str or path-like, optional
        Root folder of the cache (see :class:`EmbeddingCache`). Default: no cache.
    batch_size : int, default=64
        Items per encoder call (and per cache write-out).
    progress : bool, default=True
        Show a tqdm bar over the items to compute.
    desc : str, optional
        Label of the progress bar (default: the encoder's class name).

    Returns
    -------
    ndarray of shape (n, dim), dtype float32
        Row ``i`` embeds ``items[i]``; all-NaN where it is missing.

    Raises
    ------
    ValueError
        If the encoder returns a wrong shape or non-finite values (naming rows).
    AttributeError
        If a cache is asked for but the encoder has no ``cache_id``.

    Examples
    --------
    >>> class Length:
    ...     dim, cache_id = 1, "length-v1"
    ...     def __call__(self, texts):
    ...         return np.array([[len(t)] for t in texts], dtype=np.float32)
    >>> encode_modality(Length(), ["ab", None, "abc"], progress=False)
    array([[ 2.],
           [nan],
           [ 3.]], dtype=float32)
    """
    batch_size = check_positive("batch_size", batch_size)
    items = list(items)
    present = [i for i, item in enumerate(items) if not _is_missing(item)]
    dim = getattr(encoder, "dim", None)
    dim = None if dim is None else check_positive("encoder.dim", dim)
    label = desc or type(encoder).__name__
    if cache_dir is None:
        rows = _encode_uncached(encoder, items, present, dim, batch_size, progress, label)
    else:
        rows = _encode_cached(encoder, items, present, dim, batch_size, progress, label, cache_dir)
    width = dim if dim is not None else (next(iter(rows.values())).shape[0] if rows else None)
    if width is None:
        raise ValueError(
            f"every item is missing and encoder {type(encoder).__name__} has no .dim: "
            "the embedding width is unknown"
        )
    out = np.full((len(items), width), np.nan, dtype=np.float32)
    for i, row in rows.items():
        out[i] = row
    return out


def _batches(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _encode_uncached(
    encoder: Any,
    items: list[Any],
    present: list[int],
    dim: int | None,
    batch_size: int,
    progress: bool,
    label: str,
) -> dict[int, np.ndarray]:
    rows: dict[int, np.ndarray] = {}
    bar = progress_bar(progress, len(present), label, "item")
    try:
        for idx in _batches(present, batch_size):
            out = _call_encoder(encoder, [items[i] for i in idx], idx, dim)
            dim = out.shape[1]
            rows.update(zip(idx, out, strict=True))
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return rows


def _encode_cached(
    encoder: Any,
    items: list[Any],
    present: list[int],
    dim: int | None,
    batch_size: int,
    progress: bool,
    label: str,
    cache_dir: str | os.PathLike[str],
) -> dict[int, np.ndarray]:
    cache_id = getattr(encoder, "cache_id", None)
    if not isinstance(cache_id, str) or not cache_id:
        raise AttributeError(
            f"encoder {type(encoder).__name__} has no cache_id string; it cannot use a cache"
        )
    if dim is None:
        raise AttributeError(f"encoder {type(encoder).__name__} has no .dim; it cannot use a cache")
    cache = EmbeddingCache(cache_dir, cache_id, dim)
    key_fn = _key_function(encoder)
    first_row: dict[str, int] = {}  # content hash -> first row holding that content
    keys = {}
    for i in present:
        keys[i] = item_hash(items[i], key_fn)
        first_row.setdefault(keys[i], i)
    found = cache.get_many(first_row)
    todo = [row for key, row in first_row.items() if key not in found]
    bar = progress_bar(progress, len(first_row), label, "item", initial=len(first_row) - len(todo))
    try:
        for idx in _batches(todo, batch_size):
            out = _call_encoder(encoder, [items[i] for i in idx], idx, dim)
            for i, row in zip(idx, out, strict=True):
                # Written per batch, so a killed job keeps every finished batch.
                cache.put(keys[i], row)
                found[keys[i]] = row
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return {i: found[keys[i]] for i in present}
