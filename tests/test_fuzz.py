"""Fuzzing the readers: model files, data folders, the mfeat file and the MovieLens cache.

Each reader gets random byte mutations and truncations of a valid file (and, for
model files, valid archives with random members and random meta.json edits). It
must either read the file correctly or raise one of its documented error types;
any other exception fails the test. Unpickling is replaced by a trap that fails
the test, so a reader that would execute file content is caught too.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import tokenize
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4 import UL4M4Imputer
from ul4m4.datasets import load_folder
from ul4m4.persistence import ModelFileError


class _Unpickled(BaseException):
    """Raised by the trap; a BaseException so that no reader's handler swallows it."""


@contextlib.contextmanager
def _no_unpickling():
    def trap(*args, **kwargs):
        raise _Unpickled("a reader tried to unpickle file content")

    with mock.patch.object(pickle, "loads", trap), mock.patch.object(pickle, "load", trap), \
            mock.patch.object(pickle, "Unpickler", trap):
        yield


# ------------------------------------------------------------------ mutations
@st.composite
def mutated(draw, payload: bytes) -> bytes:
    """``payload`` with random byte edits, a truncation, or inserted/deleted bytes."""
    data = bytearray(payload)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "npy-header"]))
    headers, at = [], data.find(b"{'descr'")
    while at >= 0:
        headers.append(at)
        at = data.find(b"{'descr'", at + 1)
    if kind == "npy-header" and headers:
        # Edit inside a .npy header dict, whose parser is a frequent source of odd errors.
        start = draw(st.sampled_from(headers))
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(start, min(start + 70, len(data) - 1)))] = draw(
                st.sampled_from(b"{}()[]',:0123456789 \n\x00\xff")
            )
        return bytes(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 16))
        return bytes(data[:at]) + draw(st.binary(max_size=16)) + bytes(data[at + cut:])
    for _ in range(draw(st.integers(1, 8))):
        # Headers sit at both ends of a zip; bias half of the edits there.
        if draw(st.booleans()):
            pos = draw(st.integers(0, min(63, len(data) - 1)))
            pos = pos if draw(st.booleans()) else len(data) - 1 - pos
        else:
            pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data)


def _write(tmp: Path, name: str, payload: bytes) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(payload)
    return path


# ---------------------------------------------------------------- model files
def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    X = {"text": rng.normal(size=(30, 4)), "image": rng.normal(size=(30, 3))}
    X["image"][:6] = np.nan
    X["text"][20:24] = np.nan
    return X


@lru_cache(maxsize=1)
def _model() -> tuple[UL4M4Imputer, bytes]:
    import tempfile

    imp = UL4M4Imputer(3, random_state=0).fit(_data())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.ul4m4"
        # Stored (uncompressed) and deflated archives exercise different zip paths.
        imp.save(path)
        return imp, path.read_bytes()


def _load_or_model_error(path: Path) -> UL4M4Imputer | None:
    with _no_unpickling():
        try:
            return UL4M4Imputer.load(path)
        except ModelFileError:
            return None


def _same_model(loaded: UL4M4Imputer) -> None:
    """A model that loads despite the edit must transform like the original."""
    imp, _ = _model()
    X = _data()
    expected, got = imp.transform(X), loaded.transform(X)
    for name in X:
        np.testing.assert_array_equal(got[name], expected[name])


@given(st.data())
def test_mutated_model_file(tmp_path_factory, data):
    _, payload = _model()
    path = _write(tmp_path_factory.mktemp("m"), "m.ul4m4", data.draw(mutated(payload)))
    loaded = _load_or_model_error(path)
    if loaded is not None:
        _same_model(loaded)


def _members(payload: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=8,
)


@st.composite
def edited_meta(draw, meta: dict) -> dict:
    """``meta`` with one to three values replaced, at any depth, by random JSON."""
    meta = json.loads(json.dumps(meta))
    for _ in range(draw(st.integers(1, 3))):
        node = meta
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            if draw(st.integers(0, 9)) == 0 and isinstance(node, dict):
                del node[key]
            else:
                node[key] = draw(_JSON)
            break
    return meta


@given(st.data())
def test_model_file_with_random_meta(tmp_path_factory, data):
    _, payload = _model()
    members = _members(payload)
    meta = data.draw(edited_meta(json.loads(members["meta.json"])))
    members["meta.json"] = json.dumps(meta).encode()
    path = _write(tmp_path_factory.mktemp("m"), "m.ul4m4", _zip(members))
    loaded = _load_or_model_error(path)
    if loaded is not None:
        # The edit left a usable model (e.g. renamed a modality, or touched a field
        # the transform ignores): it must fill finitely and keep observed rows.
        X = dict(zip(loaded.modalities_, _data().values(), strict=True))
        out = loaded.transform(X)
        for name, array in X.items():
            assert np.isfinite(out[name]).all()
            rows = ~np.isnan(array).all(axis=1)
            np.testing.assert_array_equal(out[name][rows], array[rows])


@given(st.data())
def test_model_file_with_random_members(tmp_path_factory, data):
    _, payload = _model()
    original = _members(payload)
    members = dict(original)
    names = list(members)
    for name in data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        action = data.draw(st.sampled_from(["drop", "garbage", "swap"]))
        if action == "drop":
            members.pop(name)
        elif action == "garbage":
            members[name] = data.draw(st.binary(max_size=200))
        else:
            members[name] = original[data.draw(st.sampled_from(names))]
    # zipfile itself cannot write names with NUL bytes, so the extra names are plain.
    extra = st.text(alphabet="abcxyz019_./-", min_size=1, max_size=20).map(lambda t: "x" + t)
    for name in data.draw(st.lists(extra, max_size=2)):
        members[name] = data.draw(st.binary(max_size=64))
    path = _write(tmp_path_factory.mktemp("m"), "m.ul4m4", _zip(members))
    loaded = _load_or_model_error(path)
    if loaded is not None:
        _same_model(loaded)


# ---------------------------------------------------------------- data folders
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_FOLDER = {
    "a.npy": _npy(np.arange(24.0).reshape(8, 3)),
    "b.npy": _npy(np.vstack([np.full((2, 2), np.nan), np.ones((6, 2))]).astype(np.float32)),
    "labels.npy": _npy(np.arange(8) % 2),
}


@given(st.data(), st.sampled_from(sorted(_FOLDER)), st.booleans())
def test_mutated_folder_file(tmp_path_factory, data, name, mmap):
    folder = tmp_path_factory.mktemp("d")
    for file, payload in _FOLDER.items():
        (folder / file).write_bytes(payload)
    (folder / name).write_bytes(data.draw(mutated(_FOLDER[name])))
    with _no_unpickling():
        try:
            X, y = load_folder(folder, mmap=mmap)
        except (ValueError, FileNotFoundError):
            return
    # Whatever loads must honour the documented contract.
    assert list(X) == ["a", "b"]
    n = y.shape[0]
    for array in X.values():
        assert array.ndim == 2 and array.shape[0] == n and array.dtype.kind == "f"
        nan = np.isnan(np.asarray(array))
        assert not np.isinf(np.asarray(array)).any()
        assert (nan.all(axis=1) | ~nan.any(axis=1)).all()


# -------------------------------------------------------------------- mfeat
@lru_cache(maxsize=1)
def _mfeat_payload() -> bytes:
    from ul4m4.datasets import mfeat

    return (Path(mfeat.__file__).parent / "data" / "mfeat.npz").read_bytes()


@pytest.fixture(scope="module")
def mfeat_reference():
    from ul4m4.datasets import load_mfeat

    return load_mfeat()


@settings(max_examples=min(20, settings().max_examples))  # a 10 MB file per example
@given(st.data())
def test_mutated_mfeat_file(tmp_path_factory, mfeat_reference, data):
    from ul4m4.datasets import mfeat

    package = tmp_path_factory.mktemp("pkg")
    _write(package / "data", "mfeat.npz", data.draw(mutated(_mfeat_payload())))
    with _no_unpickling(), mock.patch.object(mfeat.resources, "files", lambda _: package):
        try:
            X, y = mfeat.load_mfeat()
        except RuntimeError as exc:
            assert "mfeat.npz" in str(exc)
            return
    X_ref, y_ref = mfeat_reference
    np.testing.assert_array_equal(y, y_ref)
    for name in X_ref:
        np.testing.assert_array_equal(X[name], X_ref[name])


# ----------------------------------------------------------- MovieLens cache
@lru_cache(maxsize=1)
def _movielens_cache() -> tuple[bytes, dict, dict]:
    import tempfile

    import pandas as pd

    from ul4m4.datasets import movielens

    rows = [(m, f"Film {m} (1999)", 1999.0, "Comedy|Drama", u, float(1 + (m * u) % 5))
            for m in range(1, 6) for u in range(1, 4)]
    frame = pd.DataFrame(rows, columns=["movieId", "title", "year", "genres", "userId", "rating"])

    class Encoder:
        cache_id = "fuzz-fake-v1"

        def encode(self, texts):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    encoder = Encoder()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = movielens._load_arrays(cache_dir=tmp, rebuild=False, progress=False,
                                        encoder=encoder, frame=frame)
        (path,) = Path(tmp).glob("movielens-*.npz")
        return path.read_bytes(), movielens._cache_key(frame, encoder), arrays


#: What movielens._load_arrays catches before it rebuilds the cache.
_CACHE_ERRORS = (OSError, ValueError, KeyError, EOFError, SyntaxError, tokenize.TokenError,
                 zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


@given(st.data())
def test_mutated_movielens_cache(tmp_path_factory, data):
    from ul4m4.datasets import movielens

    payload, key, arrays = _movielens_cache()
    path = _write(tmp_path_factory.mktemp("c"), "movielens-x.npz", data.draw(mutated(payload)))
    with _no_unpickling():
        try:
            read = movielens._read_cache(path, key)
        except _CACHE_ERRORS:
            return  # the loader warns and rebuilds
    for name, value in arrays.items():
        np.testing.assert_array_equal(read[name], value)
