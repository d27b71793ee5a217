"""Hostile and damaged model files: each is refused with a ModelFileError naming the file.

The crafted files recompute every checksum, as an attacker would: what stops
them is the reader's own checks of sizes (before any member is read, in bounded
memory), of ``.npy`` headers against ``meta.json``, of ``meta.json``'s fields,
and of the loaded values (:mod:`ul4m4.model_checks`).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import _no_unpickling, mutated

from ul4m4 import ModalityImputer, UL4M4Imputer
from ul4m4.cli import main
from ul4m4.persistence import ModelFileError


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    """Two modalities; the first 10 samples, far off in text and without image, make a
    centre that lacks the image modality (absent centre entries are legitimate)."""
    rng = np.random.default_rng(seed)
    X = {"text": rng.normal(size=(60, 4)), "image": rng.normal(size=(60, 3))}
    X["text"][:10] += 50.0
    X["image"][:10] = np.nan
    X["text"][40:45] = np.nan
    return X


_FITTED: dict[str, UL4M4Imputer] = {}


def _fitted(kind: str = "soft") -> UL4M4Imputer:
    """A fitted imputer, fitted once per kind: soft completion, or an ensemble of two."""
    if kind not in _FITTED:
        params = {"soft": {"completion": "soft", "temperature": 0.1},
                  "ensemble": {"n_ensemble": 2},
                  "auto": {"completion": "auto", "k_grid": (2, 3)}}[kind]
        data = _low_rank() if kind == "auto" else _data()
        _FITTED[kind] = UL4M4Imputer(3, random_state=0, **params).fit(data)
    return _FITTED[kind]


def _low_rank(n: int = 300) -> dict[str, np.ndarray]:
    """Two modalities of one 2-d factor: auto's ensembles then include a mixture."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 2))
    X = {"text": z @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(n, 4)),
         "image": z @ rng.normal(size=(2, 3)) + 0.1 * rng.normal(size=(n, 3))}
    X["text"][: n // 3] = np.nan
    X["image"][n // 3: 2 * n // 3] = np.nan
    return X


def _saved(tmp_path: Path, kind: str = "soft") -> Path:
    path = tmp_path / f"{kind}.ul4m4"
    _fitted(kind).save(path)
    return path


# ------------------------------------------------------------------ crafting
def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _header(shape: tuple[int, ...], dtype=np.int64) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _plant(members: dict[str, bytes], name: str, payload: bytes, *,
           shape: list[int] | None = None, dtype: str | None = None) -> None:
    """Store ``payload`` as array ``name`` with a recomputed checksum (what an attacker does)."""
    members[f"arrays/{name}.npy"] = payload
    meta = json.loads(members["meta.json"])
    spec = meta["arrays"][name]
    spec["sha256"] = hashlib.sha256(payload).hexdigest()
    if shape is not None:
        spec["shape"] = shape
    if dtype is not None:
        spec["dtype"] = dtype
    members["meta.json"] = json.dumps(meta).encode()


def _edit_array(path: Path, name: str, edit) -> None:
    members = _members(path)
    array = np.load(io.BytesIO(members[f"arrays/{name}.npy"]))
    edit(array)
    _plant(members, name, _npy(array))
    _write(path, members)


def _edit_meta(path: Path, edit) -> None:
    members = _members(path)
    meta = json.loads(members["meta.json"])
    edit(meta)
    members["meta.json"] = json.dumps(meta).encode()
    _write(path, members)


def _refused(path: Path, *words: str, loader=UL4M4Imputer.load) -> str:
    """Load ``path``: it must raise ModelFileError naming the file and each of ``words``."""
    with _no_unpickling(), pytest.raises(ModelFileError) as caught:
        loader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    return message


def _zeros_deflated(header: bytes, n_mib: int) -> bytes:
    """A raw deflate stream of ``header`` then ``n_mib`` MiB of zeros, built in O(1 MiB).

    A full flush resets the compressor, so every MiB of zeros compresses to the
    same bytes: the stream is the first block repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == block
    return head + block * n_mib + compressor.flush()


def _declare(data: bytes, member: str, *, size: int, crc: int) -> bytes:
    """Mark the stored ``member`` as deflated, of ``size`` bytes and CRC ``crc``, in both
    its local header and its central-directory entry."""
    data = bytearray(data)
    name = member.encode()
    # (signature, offset of the name, of the method, of the CRC, of the size) of the
    # local header and of the central-directory entry
    for signature, at_name, at_method, at_crc, at_size in ((b"PK\x03\x04", 30, 8, 14, 22),
                                                          (b"PK\x01\x02", 46, 10, 16, 24)):
        start = data.find(signature)
        while data[start + at_name:start + at_name + len(name)] != name:
            start = data.find(signature, start + 1)
        struct.pack_into("<H", data, start + at_method, zipfile.ZIP_DEFLATED)
        struct.pack_into("<I", data, start + at_crc, crc)
        struct.pack_into("<I", data, start + at_size, size)
    return bytes(data)


def _zip_bomb(path: Path, n_mib: int, declared_mib: int) -> None:
    """Replace the labels by ``n_mib`` MiB of deflated zeros declaring ``declared_mib`` MiB,
    with ``meta.json`` agreeing (shape, checksum of the declared content: none matches)."""
    members = _members(path)
    shape = (declared_mib * 2**20 // 8,)
    header = _header(shape)
    stream = _zeros_deflated(header, n_mib)
    crc = zlib.crc32(header)
    for _ in range(n_mib):
        crc = zlib.crc32(bytes(2**20), crc)
    _plant(members, "labels", b"", shape=list(shape))
    meta = json.loads(members["meta.json"])
    meta["arrays"]["labels"]["sha256"] = "0" * 64
    members["meta.json"] = json.dumps(meta).encode()
    members["arrays/labels.npy"] = stream
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # stored: the stream goes in as is
        for name, payload in members.items():
            archive.writestr(name, payload)
    path.write_bytes(_declare(buffer.getvalue(), "arrays/labels.npy",
                              size=len(header) + declared_mib * 2**20, crc=crc))


def _peak_while(load) -> int:
    tracemalloc.start()
    try:
        load()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _same(a: UL4M4Imputer, b: UL4M4Imputer) -> None:
    """Two imputers hold the same model, bit for bit."""
    X = _data(1)
    for name in X:
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])
        np.testing.assert_array_equal(a.mean_[name], b.mean_[name])
    np.testing.assert_array_equal(a.labels_, b.labels_)
    got, want = a.transform(X), b.transform(X)
    for name in X:
        np.testing.assert_array_equal(got[name], want[name])


# ------------------------------------------------------------ sizes and memory
def test_a_1mb_file_declaring_2gib_is_refused_before_reading(tmp_path):
    # About 1 MiB of deflate holding 1 GiB of zeros, declared as 2 GiB, meta.json
    # agreeing: the ratio alone refuses it, before one byte is decompressed.
    path = _saved(tmp_path)
    _zip_bomb(path, n_mib=1024, declared_mib=2048)
    assert path.stat().st_size < 2**21
    peak = _peak_while(lambda: _refused(path, "'labels'", "declares"))
    assert peak < 16 * 2**20


def test_a_deflate_bomb_within_the_ratio_is_refused_in_bounded_memory(tmp_path):
    # 256 MiB of zeros honestly deflated (ratio ~1000) whose checksum does not
    # match: hashed a chunk at a time and refused, never held whole.
    path = _saved(tmp_path)
    _zip_bomb(path, n_mib=256, declared_mib=256)
    peak = _peak_while(lambda: _refused(path, "'labels'", "fails its checksum"))
    assert peak < 16 * 2**20


@pytest.mark.parametrize("where", ["meta", "npy-header"])
def test_a_2_to_the_40_element_array_is_refused(tmp_path, where):
    path = _saved(tmp_path)
    members = _members(path)
    n = len(_fitted().labels_)
    if where == "meta":  # meta.json and the .npy header agree on 2**40 elements
        _plant(members, "labels", _header((2**40,)), shape=[2**40])
        words = ("'labels'", "more than a model file may hold")
    else:  # meta.json honest, the header lies (the payload has the right size)
        _plant(members, "labels", _header((2**40,)) + bytes(8 * n))
        words = ("'labels'", "header says int64[1099511627776]")
    _write(path, members)
    _refused(path, *words)


@pytest.mark.parametrize("shape", [[-1], [3, -4], [2.5], ["3"], [True], 7, None, [1, 2, 3]])
def test_an_invalid_shape_in_meta_is_refused(tmp_path, shape):
    path = _saved(tmp_path)
    _edit_meta(path, lambda meta: meta["arrays"]["mean/0"].__setitem__("shape", shape))
    _refused(path, "'mean/0'")


def test_a_negative_shape_in_the_npy_header_is_refused(tmp_path):
    path = _saved(tmp_path)
    members = _members(path)
    payload = members["arrays/mean/0.npy"].replace(b"(4,)", b"(-4,)", 1)
    _plant(members, "mean/0", payload)
    _write(path, members)
    _refused(path, "'mean/0'", "unreadable")


def test_a_member_larger_than_meta_implies_is_refused_unread(tmp_path):
    path = _saved(tmp_path)
    members = _members(path)
    _plant(members, "labels", _npy(np.zeros(2**17, dtype=np.int64)))
    meta = json.loads(members["meta.json"])
    meta["arrays"]["labels"]["shape"] = [len(_fitted().labels_)]
    members["meta.json"] = json.dumps(meta).encode()
    _write(path, members)
    _refused(path, "'labels'", "the archive declares 1048704 bytes")


def test_bytes_after_an_arrays_data_are_refused(tmp_path):
    # np.load ignores trailing bytes; a member must be exactly header + data.
    path = _saved(tmp_path)
    members = _members(path)
    _plant(members, "mean/0", members["arrays/mean/0.npy"] + bytes(64))
    _write(path, members)
    _refused(path, "'mean/0'", "take 160 bytes, the member holds 224")


def test_members_claiming_more_bytes_than_the_file_are_refused(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 20, len(data) * 4)  # compressed size
    path.write_bytes(bytes(data))
    _refused(path, "damaged model file")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_are_refused(tmp_path, method):
    path = _saved(tmp_path)
    members = _members(path)
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    _refused(path, "compression method")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_and_garbled_files(tmp_path, cut):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    _refused(path)
    garbled = bytearray(data)
    garbled[int(len(data) * cut)] ^= 0xFF
    path.write_bytes(bytes(garbled))
    try:
        loaded = UL4M4Imputer.load(path)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:  # a byte no reader looks at (a timestamp, a comment)
        _same(loaded, _fitted())


def test_meta_json_is_read_with_a_bound(tmp_path):
    path = _saved(tmp_path)
    members = _members(path)
    members["meta.json"] = b" " * (17 * 2**20)
    _write(path, members)
    _refused(path, "meta.json is implausibly large")


def test_other_writers_layouts_of_the_same_arrays_load_the_same(tmp_path):
    # Not hostile: a stored archive, a Fortran-order centre block and a big-endian
    # mean are the same arrays, and read as such (checksums over the new bytes).
    path = _saved(tmp_path)
    members = _members(path)
    centres = np.load(io.BytesIO(members["arrays/centers_z/0.npy"]))
    _plant(members, "centers_z/0", _npy(np.asfortranarray(centres)))
    mean = np.load(io.BytesIO(members["arrays/mean/0.npy"]))
    _plant(members, "mean/0", _npy(mean.astype(mean.dtype.newbyteorder(">"))))
    with zipfile.ZipFile(path, "w") as archive:  # stored
        for name, payload in members.items():
            archive.writestr(name, payload)
    loaded = UL4M4Imputer.load(path)
    assert loaded.mean_["text"].dtype == np.float64
    _same(loaded, _fitted())


def test_edge_values_a_fit_produces_still_load(tmp_path):
    # A constant dimension (scale 1), an all-constant modality, and a first
    # iteration of inertia inf (a sample sharing no modality with its seed).
    X = {"m0": np.array([[0.0]] * 11 + [[np.nan]]),
         "m1": np.array([[0.0], [0.0]] + [[np.nan]] * 9 + [[0.0]])}
    imp = UL4M4Imputer(1, random_state=0).fit(X)
    assert imp.history_[0] == np.inf
    path = tmp_path / "edge.ul4m4"
    imp.save(path)
    loaded = UL4M4Imputer.load(path)
    assert loaded.history_ == imp.history_
    for name in X:
        np.testing.assert_array_equal(loaded.transform(X)[name], imp.transform(X)[name])


# ------------------------------------------------------------- meta.json fields
@pytest.mark.parametrize(
    ("key", "value"),
    [("n_clusters_fitted", "3"), ("n_clusters_fitted", 3.0), ("n_clusters_fitted", True),
     ("n_clusters_fitted", 0), ("n_features", [4.0, 3]), ("n_features", [4, 0]),
     ("n_iter", -1), ("n_iter", "5"), ("converged", "yes"), ("inertia", "12"),
     ("n_ensemble_fitted", 10**9), ("modalities", "ab"), ("temperature", [0.1, "0.1"]),
     ("shrinkage", [0.0, None])],
)
def test_meta_fields_of_the_wrong_type_or_range_are_refused(tmp_path, key, value):
    path = _saved(tmp_path)
    _edit_meta(path, lambda meta: meta.__setitem__(key, value))
    _refused(path, "malformed model file")


def test_an_unknown_parameter_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_meta(path, lambda meta: meta["params"].__setitem__("evil", 1))
    _refused(path, "malformed model file", "parameters")


def test_a_huge_member_count_is_refused_before_the_table_is_built(tmp_path):
    path = _saved(tmp_path)

    def many(meta):
        meta["n_ensemble_fitted"] = 10_000
        meta["members"] = meta["members"] * 10_000

    _edit_meta(path, many)
    # 4 per modality + 3, 3 per extra member, a spread per member
    _refused(path, "stores 40008 arrays, the archive holds fewer")


def _mixture_member(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
    return next(e for e, spec in enumerate(meta["members"]) if spec["rank"] is not None)


@pytest.mark.parametrize(
    ("array", "edit", "words"),
    [
        ("mixture/{e}/noise/0", lambda a: a.__setitem__(0, 0.0), ("noise variances",)),
        ("mixture/{e}/noise/1", lambda a: a.__setitem__(0, np.nan), ("noise variances",)),
        ("mixture/{e}/loadings/0", lambda a: a.flat.__setitem__(0, np.inf),
         ("means or loadings",)),
        ("mixture/{e}/log_weights", lambda a: a.__setitem__(0, np.nan), ("log weights",)),
        ("weights", lambda a: a.__setitem__((0, 0), 2.0), ("ensemble weights",)),
    ],
)
def test_planted_mixture_and_ensemble_values_are_refused(tmp_path, array, edit, words):
    """An auto model's mixture, spread and weights are checked like the centres."""
    path = _saved(tmp_path, "auto")
    _edit_array(path, array.format(e=_mixture_member(path)), edit)
    _refused(path, *words)


def test_a_member_whose_rule_is_unknown_is_refused(tmp_path):
    path = _saved(tmp_path, "auto")
    _edit_meta(path, lambda meta: meta["members"][0].__setitem__("rule", "telepathy"))
    _refused(path, "unknown completion rule 'telepathy'")


# ---------------------------------------------------------------------- values
def _nan_first(array):
    array.flat[0] = np.nan


@pytest.mark.parametrize(
    ("array", "edit", "words"),
    [
        ("mean/0", _nan_first, ("modality 'text'", "mean holds NaN")),
        ("mean/0", lambda a: a.__setitem__(1, 1e39), ("modality 'text'", "float32")),
        ("mean/1", lambda a: a.__setitem__(0, np.inf), ("modality 'image'", "mean")),
        ("scale/0", _nan_first, ("modality 'text'", "scale")),
        ("scale/1", lambda a: a.__setitem__(1, 0.0), ("modality 'image'", "scale")),
        ("scale/1", lambda a: a.__setitem__(1, -1.0), ("modality 'image'", "scale")),
        ("scale/1", lambda a: a.__setitem__(2, 1e-39), ("modality 'image'", "scale")),
        ("centers_z/0", _nan_first, ("modality 'text'", "a centre holds NaN")),
        ("centers_z/1", lambda a: a.__setitem__((0, 0), np.inf), ("modality 'image'", "inf")),
        ("centers_z/0", lambda a: a.__setitem__((0, 0), 1e30), ("modality 'text'",
                                                                "z-score 1e+30, beyond")),
        ("centers/0", lambda a: a.__setitem__((2, 1), np.inf), ("modality 'text'",
                                                                "raw-space centre")),
        ("labels", lambda a: a.__setitem__(0, 3), ("labels", "k=3")),
        ("labels", lambda a: a.__setitem__(0, -2), ("labels", "k=3")),
        ("history", _nan_first, ("history",)),
    ],
)
def test_values_no_fit_produces_are_refused(tmp_path, array, edit, words):
    path = _saved(tmp_path)
    _edit_array(path, array, edit)
    _refused(path, *words)


def test_absent_centre_entries_may_hold_anything(tmp_path):
    # The first centre lacks the image modality (see _data): its entries are never read.
    imp = _fitted()
    absent = ~imp._check_fitted().members[0].centers.mask[:, 1]
    assert absent.any()
    path = _saved(tmp_path)
    _edit_array(path, "centers_z/1", lambda a: a.__setitem__(absent, np.nan))
    _edit_array(path, "centers/1", lambda a: a.__setitem__(absent, 7.0))
    _same(UL4M4Imputer.load(path), imp)


def test_an_ensemble_members_nan_centre_is_refused(tmp_path):
    path = _saved(tmp_path, "ensemble")
    _edit_array(path, "ensemble/1/centers_z/0", _nan_first)
    _refused(path, "modality 'text', ensemble member 2", "NaN")


@pytest.mark.parametrize("temperature", [float("nan"), 0.0, -0.1, float("inf"), None])
def test_a_soft_temperature_that_is_not_positive_and_finite_is_refused(tmp_path, temperature):
    path = _saved(tmp_path)
    _edit_meta(path, lambda meta: meta["temperature"].__setitem__(0, temperature))
    _refused(path, "modality 'text'", "temperature")


def test_a_modality_imputer_file_is_checked_the_same(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    X[:8, 3:] = np.nan
    model = ModalityImputer({"a": [0, 1, 2], "b": [3, 4]}, 3, random_state=0,
                            partial="missing").fit(X)
    path = tmp_path / "adapter.ul4m4"
    model.save(path)
    _edit_array(path, "centers_z/1", _nan_first)
    _refused(path, "modality 'b'", loader=ModalityImputer.load)


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = _saved(tmp_path)
    _edit_array(path, "centers_z/0", _nan_first)
    folder = tmp_path / "data"
    folder.mkdir()
    for name, array in _data().items():
        np.save(folder / f"{name}.npy", array)
    assert main(["impute", str(path), str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "modality 'text'" in err, err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ properties
@given(st.data())
def test_random_corruption_loads_the_same_model_or_raises_model_file_error(
        tmp_path_factory, data):
    source = _saved(tmp_path_factory.mktemp("m"), "ensemble")
    path = source.with_name("corrupt.ul4m4")
    path.write_bytes(data.draw(mutated(source.read_bytes())))
    try:
        with _no_unpickling():
            loaded = UL4M4Imputer.load(path)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        _same(loaded, _fitted("ensemble"))


_ARRAYS = ["mean/0", "mean/1", "scale/0", "scale/1", "centers/0", "centers/1", "centers_z/0",
           "centers_z/1", "history"]
_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, -1e300, 5e-324]) | \
    st.floats(allow_nan=True, allow_infinity=True)


@given(st.data())
def test_crafted_values_are_refused_or_complete_finitely(tmp_path_factory, data):
    # Any value planted anywhere, checksum recomputed: the model is refused, or it
    # fills every missing entry with a finite value and keeps observed rows (or the
    # transform refuses data too far from the model's training mean).
    path = _saved(tmp_path_factory.mktemp("m"))
    name = data.draw(st.sampled_from(_ARRAYS))
    value = data.draw(_VALUES)

    def plant(array):
        with np.errstate(over="ignore"):  # a float32 array turns 1e300 into inf
            array.flat[data.draw(st.integers(0, array.size - 1))] = value

    _edit_array(path, name, plant)
    try:
        loaded = UL4M4Imputer.load(path)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}: ")
        return
    X = _data(1)
    try:
        out = loaded.transform(X)
    except ValueError as exc:
        # A plausible model (a mean of 1e20, say) far from these data: the transform's
        # own magnitude check says so, as it would for a model really fitted there.
        assert "from the training mean" in str(exc) or "do not fit" in str(exc), exc
        return
    for modality, array in X.items():
        assert np.isfinite(out[modality]).all(), (name, value)
        rows = ~np.isnan(array).all(axis=1)
        np.testing.assert_array_equal(out[modality][rows], array[rows])
