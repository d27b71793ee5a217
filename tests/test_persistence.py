"""Model files: round trip, and rejection of anything else without executing it."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4.persistence import ModelFileError


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = {"text": rng.normal(size=(40, 6)), "image": rng.normal(size=(40, 3)).astype(np.float32)}
    X["text"][8:][rng.random(32) < 0.3] = np.nan
    X["image"][:8] = np.nan
    return X


@pytest.fixture
def model_file(tmp_path):
    imp = UL4M4Imputer(4, random_state=0).fit(_data())
    path = tmp_path / "model.ul4m4"
    imp.save(path)
    return imp, path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_identical(tmp_path, dtype):
    X = _data(1)
    imp = UL4M4Imputer(5, random_state=2, dtype=dtype, empty="mean").fit(X)
    imp.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4")
    assert loaded.get_params() == imp.get_params() | {"dtype": np.dtype(dtype).name}
    new = _data(7)
    a, src_a = imp.transform(new, return_sources=True)
    b, src_b = loaded.transform(new, return_sources=True)
    for name in new:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(src_a[name], src_b[name])
        np.testing.assert_array_equal(imp.cluster_centers_[name], loaded.cluster_centers_[name])
        np.testing.assert_array_equal(imp.mean_[name], loaded.mean_[name])
    np.testing.assert_array_equal(imp.labels_, loaded.labels_)
    np.testing.assert_array_equal(imp.predict(new), loaded.predict(new))
    assert (loaded.n_iter_, loaded.inertia_, loaded.converged_) == (
        imp.n_iter_, imp.inertia_, imp.converged_)


def test_save_unfitted_raises(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        UL4M4Imputer().save(tmp_path / "x.ul4m4")


def _rewrite(path, mutate):
    """Rewrite a model archive, letting ``mutate`` edit the {member: bytes} map."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    mutate(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _edit_meta(members, **changes):
    meta = json.loads(members["meta.json"])
    meta.update(changes)
    members["meta.json"] = json.dumps(meta).encode()


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    ("header_dtype", "match"),
    [("object", "disallowed dtype 'object'"), (None, "unreadable")],
    ids=["honest-header", "lying-header"],
)
def test_pickle_payload_is_rejected_without_executing(model_file, tmp_path, header_dtype, match):
    _, path = model_file
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    np.save(payload, np.array([_Exploit(str(marker))], dtype=object), allow_pickle=True)

    def plant(members):
        members["arrays/labels.npy"] = payload.getvalue()
        meta = json.loads(members["meta.json"])
        meta["arrays"]["labels"]["sha256"] = hashlib.sha256(payload.getvalue()).hexdigest()
        if header_dtype is not None:
            meta["arrays"]["labels"]["dtype"] = header_dtype
        members["meta.json"] = json.dumps(meta).encode()

    _rewrite(path, plant)
    with pytest.raises(ModelFileError, match=match):
        UL4M4Imputer.load(path)
    assert not marker.exists()


def test_whole_file_pickle_is_rejected(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ul4m4"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelFileError, match="cannot be read as a ul4m4 model file"):
        UL4M4Imputer.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: _edit_meta(m, format_version=99), "format version 99 is not supported"),
        (lambda m: _edit_meta(m, format="something-else"), "not a ul4m4 imputer file"),
        (lambda m: m.pop("meta.json"), "no meta.json"),
        (lambda m: m.__setitem__("meta.json", b"{not json"), "not valid JSON"),
        (lambda m: m.pop("arrays/center_modalities.npy"), "'center_modalities' is missing"),
        (lambda m: m.__setitem__("arrays/mean/0.npy", m["arrays/mean/0.npy"][:-8]),
         "fails its checksum"),
        (lambda m: _edit_meta(m, modalities=["text"]), "do not match"),
        (lambda m: _edit_meta(m, params={"n_clusters": -1}), "malformed model file"),
    ],
)
def test_malformed_files_are_rejected(model_file, mutate, match):
    _, path = model_file
    _rewrite(path, mutate)
    with pytest.raises(ModelFileError, match=match):
        UL4M4Imputer.load(path)


def test_truncated_and_foreign_files(model_file, tmp_path):
    _, path = model_file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        UL4M4Imputer.load(path)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(ModelFileError, match="no meta.json"):
        UL4M4Imputer.load(other)


def test_a_missing_file_is_file_not_found(tmp_path):
    # No file is not a damaged file: FileNotFoundError, with the path, and not a
    # ModelFileError (which is a ValueError).
    missing = tmp_path / "does-not-exist.ul4m4"
    with pytest.raises(FileNotFoundError, match="does-not-exist.ul4m4") as caught:
        UL4M4Imputer.load(missing)
    assert not isinstance(caught.value, ModelFileError)
    assert caught.value.filename == str(missing)
    # A folder is still no model file.
    with pytest.raises(ModelFileError, match="cannot be read as a ul4m4 model file"):
        UL4M4Imputer.load(tmp_path)


def test_a_shape_lie_is_rejected(model_file):
    _, path = model_file

    def swap(members):
        # A valid array of the wrong shape, with a matching checksum and header.
        wrong = io.BytesIO()
        np.lib.format.write_array(wrong, np.zeros((4, 5)), allow_pickle=False)
        members["arrays/mean/0.npy"] = wrong.getvalue()
        meta = json.loads(members["meta.json"])
        meta["arrays"]["mean/0"] = {
            "dtype": "float64", "shape": [4, 5],
            "sha256": hashlib.sha256(wrong.getvalue()).hexdigest(),
        }
        members["meta.json"] = json.dumps(meta).encode()

    _rewrite(path, swap)
    with pytest.raises(ModelFileError, match=r"'mean/0' is float64\[4, 5\], expected"):
        UL4M4Imputer.load(path)


def test_save_is_atomic(model_file, monkeypatch):
    imp, path = model_file
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("ul4m4.persistence.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        imp.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# Files written by ul4m4 0.1.0 (format 1), committed with the inputs and outputs they
# gave then (tests/data/make_model_v1.py wrote them). Later releases must read them and
# complete new data to the same bits, except soft-filled blocks: since the soft
# distances are fixed-order float64 sums (a row's fill no longer depends on its
# batch) instead of GEMMs in the working dtype, those agree to the GEMM's rounding.
_DATA = __import__("pathlib").Path(__file__).parent / "data"
#: Relative agreement of 0.1.0's soft fills with today's, per working dtype: the
#: GEMM distances' rounding (about d * eps) carried through the softmax.
_SOFT_RTOL = {"float32": 1e-6, "float64": 1e-13}


def _assert_fills(imp, out: dict, expected: dict, dtype: str) -> None:
    """Greedy blocks bit for bit; soft ones within the 0.1.0 GEMM's rounding."""
    for name, want in expected.items():
        if imp.completion_[name] == "soft":
            np.testing.assert_allclose(out[name], want, rtol=_SOFT_RTOL[dtype], atol=0)
        else:
            np.testing.assert_array_equal(out[name], want)


def _expected(prefix: str) -> dict[str, np.ndarray]:
    with np.load(_DATA / "model_v1_expected.npz") as saved:
        return {k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith(prefix + "/")}


def test_release_0_1_auto_ensemble_file_still_loads_and_completes_the_same():
    imp = UL4M4Imputer.load(_DATA / "model_v1_auto.ul4m4")
    assert imp.n_ensemble_ == 3 and imp.n_clusters_ == 4
    assert imp.completion_ == {"text": "soft", "image": "soft", "audio": "greedy"}
    new = _expected("new")
    out = imp.transform(new)
    _assert_fills(imp, out, _expected("auto"), "float32")
    with np.load(_DATA / "model_v1_expected.npz") as saved:
        np.testing.assert_array_equal(imp.predict(new), saved["auto_labels"])


def test_release_0_1_soft_float64_file_still_loads_and_completes_the_same():
    imp = UL4M4Imputer.load(_DATA / "model_v1_soft64.ul4m4")
    out, sources, weights = imp.transform(_expected("new"), return_sources=True,
                                          return_weights=True)
    _assert_fills(imp, out, _expected("soft64"), "float64")
    for name, want in _expected("soft64_sources").items():
        np.testing.assert_array_equal(sources[name], want)
    for name, want in _expected("soft64_weights").items():
        np.testing.assert_allclose(weights[name], want, rtol=_SOFT_RTOL["float64"], atol=0)


def test_per_member_runs_are_kept(tmp_path):
    from test_cluster import cycling_data

    imp = UL4M4Imputer(7, random_state=17, n_ensemble=3, dtype=np.float64)
    imp.fit(cycling_data())  # member 2 cycles and is reseeded
    single = UL4M4Imputer(7, random_state=364, dtype=np.float64)
    with pytest.warns(Warning, match="cycle of period 2"):
        single.fit(cycling_data())
    for fitted in (imp, single):
        fitted.save(tmp_path / "m.ul4m4")
        loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4")
        assert loaded.runs_ == fitted.runs_ and loaded.converged_ == fitted.converged_
    assert imp.runs_[1].n_reseeds == 1 and imp.converged_
    assert loaded.runs_[0].stopped_by == "cycle" and loaded.runs_[0].cycle_period == 2
    assert not loaded.converged_


def test_runs_of_files_without_n_reseeds_load(tmp_path):
    """Files written before runs recorded reseeding lack the field: it reads as 0."""
    import json
    import zipfile

    from test_cluster import cycling_data

    imp = UL4M4Imputer(7, random_state=17, n_ensemble=3, dtype=np.float64).fit(cycling_data())
    imp.save(tmp_path / "new.ul4m4")
    with zipfile.ZipFile(tmp_path / "new.ul4m4") as new, \
            zipfile.ZipFile(tmp_path / "old.ul4m4", "w") as old:
        for item in new.infolist():
            payload = new.read(item)
            if item.filename.endswith(".json"):
                meta = json.loads(payload)
                assert [run.pop("n_reseeds") for run in meta["runs"]] == [0, 1, 0]
                payload = json.dumps(meta).encode()
            old.writestr(item, payload)
    loaded = UL4M4Imputer.load(tmp_path / "old.ul4m4")
    assert [r.n_reseeds for r in loaded.runs_] == [0, 0, 0]
    assert [r.stopped_by for r in loaded.runs_] == [r.stopped_by for r in imp.runs_]


# Files written by ul4m4 0.2.0 (format 3) before the engine was narrowed, committed with
# the fills they gave then (tests/data/make_model_v3.py wrote them): an auto model whose
# ensembles are conditional mixtures, and a float64 greedy model. Both complete new
# rows to the same bits, predicted errors and labels included.
def _expected_v3(prefix: str) -> dict[str, np.ndarray]:
    with np.load(_DATA / "model_v3_expected.npz") as saved:
        return {k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith(prefix + "/")}


def test_release_0_2_mixture_ensemble_file_completes_to_the_same_bits():
    imp = UL4M4Imputer.load(_DATA / "model_v3_auto.ul4m4")
    assert {member.rule for member in imp.model_.members} >= {"mixture"}
    new = _expected_v3("new")
    out, std = imp.transform(new, return_std=True)
    for name, want in _expected_v3("auto").items():
        np.testing.assert_array_equal(out[name], want)
    for name, want in _expected_v3("auto_std").items():
        np.testing.assert_array_equal(std[name], want)
    with np.load(_DATA / "model_v3_expected.npz") as saved:
        np.testing.assert_array_equal(imp.predict(new), saved["auto_labels"])


def test_release_0_2_greedy_float64_file_completes_to_the_same_bits():
    imp = UL4M4Imputer.load(_DATA / "model_v3_greedy.ul4m4")
    out, sources = imp.transform(_expected_v3("new"), return_sources=True)
    for name, want in _expected_v3("greedy").items():
        np.testing.assert_array_equal(out[name], want)
    for name, want in _expected_v3("greedy_sources").items():
        np.testing.assert_array_equal(sources[name], want)
