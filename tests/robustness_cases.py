"""The bad inputs tried against every entry point, and what each must get.

One list, :data:`CASES`, drives both ``tests/test_robustness.py`` (every case is
run) and ``scripts/robustness_table.py`` (which renders ``docs/robustness.md``),
so the document and the tests cannot drift apart.

A case builds its input in a temporary folder and returns a thunk. It expects
either an exception (type and message regex) or a documented fallback (a check
on the returned value and the warnings raised). CLI cases run
:func:`ul4m4.cli.main` in-process and expect a non-zero status with a one-line
message on stderr and no traceback.

``before`` records what the case got from the code as it was before the
robustness work (measured by running this list against it): ``"ok"``, ``"ok (...)"``
for a helpful but costly result, ``"n/a (...)"`` for a feature that did not exist, or a
short description of the unhelpful result.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import signal
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from ul4m4 import UL4M4Imputer
from ul4m4.adapter import ModalityImputer
from ul4m4.datasets import load_folder
from ul4m4.missingness import (
    apply_mask,
    independent_mask,
    mask_from_data,
    mnar_mask,
    parse_config,
    pattern_mask,
)
from ul4m4.persistence import ModelFileError

#: Seconds after which a case counts as hanging.
TIME_LIMIT_S = 20

Thunk = Callable[[], Any]
Check = Callable[[Any, list], None]


@dataclass(frozen=True)
class Case:
    """One bad input, where it goes and what it must get.

    Exactly one of ``raises`` (with ``match``) and ``check`` (with ``fallback``)
    is set; CLI cases set ``exit_match`` (status != 0, one line on stderr).
    """

    id: str
    entry: str
    bad_input: str
    build: Callable[[Path], Thunk]
    raises: type[BaseException] | None = None
    match: str = ""
    fallback: str = ""
    check: Check | None = None
    exit_match: str = ""
    before: str = "ok"


# ------------------------------------------------------------------ shared data
def _train(n: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Two modalities, 'a' (2 wide) and 'b' (3 wide); 'b' missing in rows 0 and 3."""
    rng = np.random.default_rng(seed)
    X = {"a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 3))}
    X["b"][[0, 3]] = np.nan
    return X


def _fitted(**params: Any) -> UL4M4Imputer:
    params.setdefault("random_state", 0)
    return UL4M4Imputer(2, **params).fit(_train())


def _fit(X: Any, k: int = 2, **params: Any) -> Thunk:
    params.setdefault("random_state", 0)
    return lambda: UL4M4Imputer(k, **params).fit(X)


def _fit_transform(X: Any, k: int = 2, **params: Any) -> Thunk:
    def run():
        imp = UL4M4Imputer(k, random_state=0, **params).fit(X)
        return imp, imp.transform(X)

    return run


def _with(name: str, value: Any, base: dict | None = None) -> dict[str, Any]:
    X = dict(_train() if base is None else base)
    X[name] = value
    return X


def _shuffled_frames() -> dict[str, Any]:
    """_train() as DataFrames, 'b' with its rows (and index labels) in reverse order."""
    import pandas as pd  # a test dependency, not one of the library

    X = {name: pd.DataFrame(a) for name, a in _train().items()}
    X["b"] = X["b"].iloc[::-1]
    return X


def _rows_set(array: np.ndarray, rows: list[int], value: Any, cols: Any = slice(None)):
    out = np.array(array, copy=True)
    out[rows, cols] = value
    return out


def _finite_output(result: Any, caught: list) -> None:
    imp, filled = result
    for name, array in filled.items():
        assert np.isfinite(array).all(), f"modality {name!r} has non-finite output"
    for array in imp.cluster_centers_.values():
        rows = ~np.isnan(array).all(axis=1)
        assert np.isfinite(array[rows]).all()


def _observed_kept(X: dict[str, np.ndarray]) -> Check:
    def check(result: Any, caught: list) -> None:
        _finite_output(result, caught)
        _, filled = result
        for name, array in X.items():
            rows = ~np.isnan(array).all(axis=1)
            np.testing.assert_array_equal(filled[name][rows], array[rows])

    return check


def _warned(pattern: str, category: type[Warning]) -> Check:
    def check(result: Any, caught: list) -> None:
        hits = [w for w in caught if issubclass(w.category, category)
                and re.search(pattern, str(w.message))]
        assert hits, f"no {category.__name__} matching {pattern!r} in {caught}"

    return check


def _both(*checks: Check) -> Check:
    def check(result: Any, caught: list) -> None:
        for c in checks:
            c(result, caught)

    return check


# ------------------------------------------------------------ imputer inputs
_HUGE = 1e200          # its square overflows float64
_ABOVE_F32 = 1e39      # beyond float32's range
_F32_EDGE = 3.0e38     # within float32, but differences of two such values overflow


def _huge(value: float, dtype=np.float64) -> dict[str, np.ndarray]:
    X = _train()
    X["a"] = (X["a"] * value).astype(dtype)
    return X


def _constant_modality() -> dict[str, np.ndarray]:
    X = _train()
    X["a"] = np.full((12, 2), 7.5)
    return X


def _duplicates() -> dict[str, np.ndarray]:
    return {"a": np.repeat(np.array([[0.0, 1.0], [2.0, 3.0]]), 6, axis=0)}


def _tie_case() -> Thunk:
    # Sample [1] is at squared distance 1 from both centres [0] and [2]: the label
    # is the lowest centre index, as documented for predict.
    X = {"a": np.array([[0.0], [2.0], [0.0], [2.0], [1.0]])}

    def run():
        imp = UL4M4Imputer(2, init={"a": np.array([[0.0], [2.0]])}, max_iter=1).fit(X)
        return imp.predict({"a": np.array([[1.0]])})

    return run


def _tie_check(result: Any, caught: list) -> None:
    assert result.tolist() == [0], result


def _label_rows(X: dict[str, np.ndarray]) -> Check:
    def check(result: Any, caught: list) -> None:
        imp, filled = result
        assert set(filled) == set(X)
        for array in filled.values():
            assert np.isfinite(array).all()

    return check


def _subnormal() -> dict[str, np.ndarray]:
    X = _train()
    X["a"] = X["a"] * 1e-310
    return X


def _tiny_scale() -> dict[str, np.ndarray]:
    X = _train()
    X["a"] = X["a"] * 1e-9
    return X


def _scaled_by_own_spread(result: Any, caught: list) -> None:
    imp, _ = result
    spread = _tiny_scale()["a"].std(axis=0, ddof=1)
    np.testing.assert_allclose(imp.scale_["a"], spread, rtol=1e-12)
    assert not [w for w in caught if "constant" in str(w.message)]


def _float16() -> dict[str, np.ndarray]:
    X = _train()
    return {n: a.astype(np.float16) for n, a in X.items()}


def _transform(X_builder: Callable[[], Any], **params: Any) -> Callable[[Path], Thunk]:
    def build(tmp: Path) -> Thunk:
        imp = _fitted(**params)
        X = X_builder()
        return lambda: imp.transform(X)

    return build


def _reordered() -> dict[str, np.ndarray]:
    X = _train()
    return {"b": X["b"], "a": X["a"]}


def _reordered_check(result: Any, caught: list) -> None:
    X = _train()
    expected = _fitted().transform(X)
    assert list(result) == ["b", "a"]
    for name in X:
        np.testing.assert_array_equal(result[name], expected[name])


def _empty_row(**params: Any) -> dict[str, np.ndarray]:
    X = _train()
    X["a"] = _rows_set(X["a"], [0], np.nan)
    return X


def _empty_mean_check(result: Any, caught: list) -> None:
    imp = _fitted(empty="mean")
    for name in ("a", "b"):
        np.testing.assert_array_equal(result[name][0], imp.mean_[name].astype(result[name].dtype))


def _one_row_check(result: Any, caught: list) -> None:
    assert result["a"].shape == (1, 2) and np.isfinite(result["b"]).all()


# ----------------------------------------------------------- adapter inputs
def _flat(n: int = 12, seed: int = 0) -> np.ndarray:
    X = _train(n, seed)
    return np.hstack([X["a"], X["b"]])


_COLUMNS = {"a": slice(0, 2), "b": slice(2, 5)}


def _adapter_fit(X: Any, modalities: Any = None, **params: Any) -> Thunk:
    modalities = _COLUMNS if modalities is None else modalities
    return lambda: ModalityImputer(modalities, 2, random_state=0, **params).fit(X)


def _adapter_transform(X: Any) -> Thunk:
    model = ModalityImputer(_COLUMNS, 2, random_state=0).fit(_flat())
    return lambda: model.transform(X)


# ------------------------------------------------------- loader inputs
def _folder(tmp: Path, n: int = 12, **files: Any) -> Path:
    """A folder with modalities 'a', 'b' and labels; ``files`` replace or add entries.

    A value of bytes is written raw; None deletes the file.
    """
    folder = tmp / "data"
    folder.mkdir(parents=True, exist_ok=True)
    X = _train(n)
    base = {"a.npy": X["a"], "b.npy": X["b"], "labels.npy": np.arange(n) % 3}
    base.update(files)
    for name, value in base.items():
        path = folder / name
        if value is None:
            continue
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            np.save(path, value)
    return folder


def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _truncated_npy() -> bytes:
    return _npy_bytes(np.ones((12, 2)))[:-40]


def _bad_header_npy() -> bytes:
    raw = _npy_bytes(np.ones((12, 2)))
    return raw.replace(b"'shape': (12, 2)", b"'shape': (12, x)")


def _object_npy() -> bytes:
    return _npy_bytes(np.array([{"x": 1}] * 12, dtype=object).reshape(12, 1), allow_pickle=True)


def _load_folder(tmp: Path, *, mmap: bool = False, **files: Any) -> Thunk:
    folder = _folder(tmp, **files)
    return lambda: load_folder(folder, mmap=mmap)


def _broken_link(tmp: Path) -> Thunk:
    folder = _folder(tmp)
    (folder / "c.npy").symlink_to(folder / "no-such-target.npy")
    return lambda: load_folder(folder, modalities=["a", "c"])


def _mfeat_with(tmp: Path, payload: bytes) -> Thunk:
    """load_mfeat reading ``payload`` as its packaged file."""
    from ul4m4.datasets import mfeat

    package = tmp / "pkg"
    (package / "data").mkdir(parents=True)
    (package / "data" / "mfeat.npz").write_bytes(payload)

    def run():
        original = mfeat.resources.files
        mfeat.resources.files = lambda _name: package
        try:
            return mfeat.load_mfeat()
        finally:
            mfeat.resources.files = original

    return run


def _npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _mfeat_payload() -> bytes:
    from ul4m4.datasets import mfeat

    path = Path(mfeat.__file__).parent / "data" / "mfeat.npz"
    return path.read_bytes()


def _movielens_cache(tmp: Path, corrupt: Callable[[Path], None]) -> Thunk:
    """A MovieLens build from a tiny table and fake encoder, then its cache corrupted."""
    import pandas as pd

    from ul4m4.datasets import load_movielens

    rows = []
    for mid, title in enumerate(["Toy Story (1995)", "Heat (1995)", "Up (2009)",
                                 "Alien (1979)", "Big (1988)", "Jaws (1975)"], start=1):
        for user in range(1, 5):
            rows.append((mid, title, 1990.0, "Comedy|Drama", user, float(1 + (mid * user) % 5)))
    frame = pd.DataFrame(rows, columns=["movieId", "title", "year", "genres", "userId", "rating"])

    class Encoder:
        cache_id = "robustness-fake-v1"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.array([[len(t), t.count("o"), 1.0] for t in texts], dtype=np.float32)

    cache = tmp / "cache"
    kwargs = {"frame": frame, "encoder": Encoder(), "cache_dir": cache, "progress": False,
              "n_components": 2}
    reference = load_movielens(**kwargs)
    (path,) = cache.glob("movielens-*.npz")
    corrupt(path)
    return lambda: (reference, load_movielens(**kwargs))


def _same_movielens(result: Any, caught: list) -> None:
    (X_ref, y_ref), (X, y) = result
    np.testing.assert_array_equal(y, y_ref)
    for name in X_ref:
        np.testing.assert_allclose(X[name], X_ref[name])
    _warned("unusable", UserWarning)(result, caught)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickled_member(path: Path) -> None:
    # A second member of the same name shadows the first for readers (zipfile warns).
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as archive:
        warnings.simplefilter("ignore", UserWarning)
        archive.writestr("labels.npy", _npy_bytes(np.array([object()] * 2, dtype=object),
                                                  allow_pickle=True))


def _claim_zip_version(path: Path) -> None:
    """Set 'version needed to extract' of the first central-directory entry to 6.4."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at + 6:at + 8] = b"\x40\x00"
    path.write_bytes(bytes(data))


def _break_member_header(path: Path) -> None:
    """Damage the signature of the second member's local header."""
    data = path.read_bytes()
    at = data.find(b"PK\x03\x04", 1)
    path.write_bytes(data[:at] + b"\x00" + data[at + 1:])


_MFEAT_LIKE = {name: np.ones((3, 2)) for name in ("fou", "fac", "kar", "pix", "zer", "mor", "y")}


def _dir_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


# ---------------------------------------------------------- persistence inputs
def _model_file(tmp: Path) -> Path:
    path = tmp / "model.ul4m4"
    _fitted().save(path)
    return path


def _load(tmp: Path, mutate: Callable[[Path], None]) -> Thunk:
    path = _model_file(tmp)
    mutate(path)
    return lambda: UL4M4Imputer.load(path)


def _rewrite_meta(path: Path, edit: Callable[[dict], Any]) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members["meta.json"])
    members["meta.json"] = json.dumps(edit(meta)).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _drop(meta: dict, key: str) -> dict:
    del meta[key]
    return meta


def _set(meta: dict, key: str, value: Any) -> dict:
    meta[key] = value
    return meta


# ------------------------------------------------------------------ CLI inputs
def _cli(argv: list[str]) -> Thunk:
    from ul4m4.cli import main

    def run():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        return code, stderr.getvalue()

    return run


def _bench(tmp: Path, folder: Path | str, *extra: str) -> Thunk:
    argv = ["benchmark", "--dataset", str(folder), "--methods", "mean", "--k", "2",
            "--seeds", "1", "--missing", "0.3", "--no-progress", "--quiet",
            "--memory", "none", "--out", str(tmp / "out"), *extra]
    return _cli(argv)


def _cli_folder(tmp: Path, n: int = 30, **files: Any) -> Path:
    return _folder(tmp, n=n, **files)


def _fit_cli(tmp: Path, data: Path, out: Path, *extra: str) -> Thunk:
    return _cli(["fit", str(data), "--out", str(out), "--quiet", "--param", "n_clusters=2",
                 *extra])


def _impute_cli(tmp: Path, out: Path, model: Path | None = None) -> Thunk:
    """``ul4m4 impute`` of the standard folder with a model fitted on it (in ``tmp``)."""
    data = _folder(tmp)
    model = model if model is not None else tmp / "m.ul4m4"
    code, stderr = _fit_cli(tmp, data, model)()
    assert code == 0, stderr
    return _cli(["impute", str(model), str(data), "--out", str(out), "--quiet"])


def _in(folder: Path, name: str, text: str = "mine") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def _npy_shape(shape: str) -> bytes:
    return _npy_bytes(np.ones((12, 2))).replace(b"'shape': (12, 2)", f"'shape': {shape}".encode())


def _parquet(path: Path, frame: Any) -> Path:
    frame.to_parquet(path)
    return path


def _with_empty_parquet(tmp: Path) -> Path:
    import pandas as pd

    folder = _folder(tmp)
    _parquet(folder / "c.parquet", pd.DataFrame(index=range(12)))
    return folder


def _indexed_parquets(tmp: Path) -> Path:
    import pandas as pd

    folder = _folder(tmp, **{"a.npy": None, "b.npy": None})
    X = _train()
    _parquet(folder / "a.parquet", pd.DataFrame(X["a"], index=range(100, 112)).add_prefix("a"))
    _parquet(folder / "b.parquet", pd.DataFrame(X["b"], index=range(12)[::-1]).add_prefix("b"))
    return folder


def _exit_ok(result: Any) -> None:
    code, stderr = result
    assert code == 0, stderr


def _damaged_run_file(tmp: Path) -> Thunk:
    """A finished run of 3 rows (complete + mean + ul4m4), then one row file truncated."""
    bench = _bench(tmp, _cli_folder(tmp), "--methods", "mean,ul4m4")
    _exit_ok(bench())
    files = sorted((tmp / "out" / "runs").glob("*-mean-*.json"))
    files[0].write_text(files[0].read_text()[:50])
    return lambda: (*bench(), files[0])


def _resumed(result: Any, reused: int) -> None:
    code, stderr, damaged = result
    assert code == 0, stderr
    assert f"({reused} reused" in stderr, stderr
    assert json.loads(damaged.read_text())["row"]["method"] == "mean"


# --------------------------------------------------- raw data sets (new loaders)
def _fixture(tmp: Path, dataset: str) -> Path:
    """A tiny valid copy of ``dataset`` ('mmimdb', 'mosi' or 'sleep-edf') in ``tmp``."""
    from ul4m4.datasets import _fixtures

    root = tmp / dataset
    if dataset == "mmimdb":
        return _fixtures.write_mmimdb_fixture(root, n=10, seed=0)
    if dataset == "mosi":
        return _fixtures.write_mosi_fixture(root, n_videos=3, segments_per_video=2, seed=0)
    return _fixtures.write_sleep_edf_fixture(root, n_subjects=3, epochs_per_subject=2,
                                             seed=0, length=50)


def _raw_loader(dataset: str) -> Callable[..., Any]:
    from ul4m4.datasets import load_mmimdb, load_mosi, load_sleep_edf

    return {"mmimdb": load_mmimdb, "mosi": load_mosi, "sleep-edf": load_sleep_edf}[dataset]


def _load_raw(dataset: str, damage: Callable[[Path], None] | None = None) -> Callable[[Path], Thunk]:
    """Build the fixture of ``dataset``, apply ``damage`` to its folder, then load it."""
    def build(tmp: Path) -> Thunk:
        root = _fixture(tmp, dataset)
        if damage is not None:
            damage(root)
        return lambda: _raw_loader(dataset)(root, progress=False)

    return build


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _garble(pattern: str) -> Callable[[Path], None]:
    """Cut the first file matching ``pattern`` in the middle of its JSON text."""
    def damage(root: Path) -> None:
        path = _first(root, pattern)
        path.write_text(path.read_text()[:-3])

    return damage


def _cut(pattern: str, keep: int) -> Callable[[Path], None]:
    """Keep only the first ``keep`` bytes of the first file matching ``pattern``."""
    def damage(root: Path) -> None:
        path = _first(root, pattern)
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).unlink()


def _wav_truncated(root: Path) -> None:
    """Drop half of a clip's sample bytes; the header still announces them all."""
    path = _first(root, "Raw/Audio/WAV_16000/Segmented/*.wav")
    path.write_bytes(path.read_bytes()[: 44 + (path.stat().st_size - 44) // 2])


# ------------------------------------------------------------ encoder inputs
class _Fake:
    """An encoder of width ``dim``: row = (length of the text, 1, ...); ``bad`` edits it."""

    def __init__(self, dim: int = 3, bad: Callable[[np.ndarray], np.ndarray] | None = None):
        self.dim, self.cache_id, self.bad, self.calls = dim, "robustness-fake-v1", bad, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.extend(texts)
        out = np.ones((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = [len(t) for t in texts]
        return out if self.bad is None else self.bad(out)


_TEXTS = ["alpha", None, "be", "gamma!"]


def _encode(encoder: _Fake, items: list[Any] = _TEXTS, **kwargs: Any) -> Thunk:
    from ul4m4.encoders import encode_modality

    return lambda: encode_modality(encoder, items, progress=False, **kwargs)


def _nan_in_last(out: np.ndarray) -> np.ndarray:
    out[-1, 1] = np.nan
    return out


def _corrupt_cache_entry(tmp: Path) -> Thunk:
    """Encode with a cache, damage one entry file, encode again."""
    from ul4m4.encoders import encode_modality

    first = encode_modality(_Fake(), _TEXTS, cache_dir=tmp / "cache", progress=False)
    entry = sorted(p for p in (tmp / "cache").rglob("*") if p.is_file()
                   and p.suffix not in (".json", ".txt"))[0]
    entry.write_bytes(entry.read_bytes()[:-4])
    again = _Fake()

    def run():
        second = encode_modality(again, _TEXTS, cache_dir=tmp / "cache", progress=False)
        return first, second, again.calls

    return run


def _recomputed(result: Any, caught: list) -> None:
    from ul4m4.encoders.cache import CacheWarning

    first, second, calls = result
    np.testing.assert_array_equal(second, first)
    assert len(calls) == 1, f"expected one item recomputed, got {calls}"
    _warned(r"cache entry .* is .*; recomputing it", CacheWarning)(result, caught)


def _image_encoder(tmp: Path, payload: bytes | Callable[[Path], bytes] | None) -> Thunk:
    """EfficientNet-Lite0 (real weights) on a valid poster and ``poster.jpeg``.

    ``poster.jpeg`` holds ``payload`` (bytes, or a function of the valid poster's path);
    with None it is not written at all.
    """
    from ul4m4.encoders import EfficientNetLite0Encoder

    root = _fixture(tmp, "mmimdb")
    good = next(p for p in sorted(root.glob("dataset/*.jpeg")) if p.stat().st_size > 200)
    bad = tmp / "poster.jpeg"
    if payload is not None:
        bad.write_bytes(payload(good) if callable(payload) else payload)
    encoder = EfficientNetLite0Encoder(progress=False, num_threads=1)
    return lambda: encoder([good, bad])


def _signals(shapes: dict[str, tuple[int, ...]]) -> Thunk:
    from ul4m4.encoders import encode_signals

    rng = np.random.default_rng(0)
    X = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    observed = {name: np.ones(shape[0], dtype=bool) for name, shape in shapes.items()}
    return lambda: encode_signals(X, observed, np.arange(10), code_dim=2, epochs=1,
                                  progress=False)


# ---------------------------------------------------------- experiment CLI inputs
def _experiment(tmp: Path, dataset: str, data_dir: Path | str | None, *extra: str) -> Thunk:
    argv = ["experiment", dataset, "--seeds", "1", "--epochs", "1", "--no-progress",
            "--quiet", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "out"), *extra]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    return _cli(argv)


def _mosi_run(*extra: str) -> Callable[[Path], Thunk]:
    return lambda t: _experiment(t, "mosi", _fixture(t, "mosi"), *extra)


# ----------------------------------------------------------------- the cases
_I, _T, _A, _M, _F, _P, _C = (
    "UL4M4Imputer.fit", "UL4M4Imputer.transform / predict", "ModalityImputer",
    "missingness", "loaders", "UL4M4Imputer.load", "ul4m4 benchmark",
)
_R, _N, _E = "raw data set loaders", "encoders", "ul4m4 experiment"
_FC = "ul4m4 fit / impute"

CASES: list[Case] = [
    # ----------------------------------------------------------- imputer: types
    Case("fit-none", _I, "X is None", lambda t: _fit(None), TypeError, r"X must be a mapping"),
    Case("fit-2d-array", _I, "X is one 2-D array instead of a mapping",
         lambda t: _fit(np.ones((4, 2))), TypeError, r"X must be a mapping"),
    Case("fit-ragged", _I, "a modality is a ragged nested list",
         lambda t: _fit(_with("a", [[1.0, 2.0], [3.0]])), TypeError,
         r"modality 'a': cannot be read as a numeric array"),
    Case("fit-object", _I, "a modality has object dtype",
         lambda t: _fit(_with("a", np.ones((12, 2)).astype(object))), TypeError,
         r"modality 'a': expected a real numeric dtype"),
    Case("fit-strings", _I, "a modality holds strings",
         lambda t: _fit(_with("a", np.full((12, 2), "x"))), TypeError,
         r"modality 'a': expected a real numeric dtype"),
    Case("fit-bool", _I, "a modality has bool dtype",
         lambda t: _fit(_with("a", np.ones((12, 2), dtype=bool))), TypeError,
         r"modality 'a': expected a real numeric dtype"),
    Case("fit-sparse", _I, "a modality is a scipy.sparse matrix",
         lambda t: _fit(_with("a", sparse.csr_matrix(np.ones((12, 2))))), TypeError,
         r"modality 'a': .*sparse.*dense",
         before="ValueError 'reading rows 0:12 gave shape ()', no modality named"),
    Case("fit-frame-index", _I, "DataFrames whose indexes differ (rows shuffled in one)",
         lambda t: _fit(_shuffled_frames()), ValueError,
         r"DataFrames with different indexes.*align them first",
         before="silent: rows paired by position, wrong samples joined"),
    Case("fit-dup-names", _I, "modality keys 0 and '0' (equal as strings)",
         lambda t: _fit({0: np.ones((4, 1)), "0": np.ones((4, 1))}), ValueError,
         r"unique as strings"),
    Case("fit-bad-seed", _I, "random_state='seed'",
         lambda t: _fit(_train(), random_state="seed"), ValueError,
         r"random_state must be None, an int or a RandomState"),
    # ----------------------------------------------------------- imputer: shapes
    Case("fit-3d", _I, "a modality is 3-D", lambda t: _fit(_with("a", np.ones((12, 2, 2)))),
         ValueError, r"modality 'a': expected a 2-D array"),
    Case("fit-1d", _I, "a modality is 1-D", lambda t: _fit(_with("a", np.ones(12))),
         ValueError, r"modality 'a': expected a 2-D array"),
    Case("fit-zero-rows", _I, "empty data (0 rows)",
         lambda t: _fit({"a": np.ones((0, 2))}), ValueError, r"zero rows"),
    Case("fit-zero-width", _I, "a modality with 0 features",
         lambda t: _fit(_with("a", np.ones((12, 0)))), ValueError, r"zero features"),
    Case("fit-no-modality", _I, "X = {} (no modality)", lambda t: _fit({}), ValueError,
         r"no modality"),
    Case("fit-row-mismatch", _I, "modalities with different row counts",
         lambda t: _fit(_with("a", np.ones((11, 2)))), ValueError,
         r"different numbers of rows"),
    Case("fit-one-sample", _I, "one sample", lambda t: _fit({"a": np.ones((1, 2))}, k=1),
         ValueError, r"n_samples=1: UL4M4 needs at least 2"),
    Case("fit-k-gt-n", _I, "n_clusters larger than n_samples",
         lambda t: _fit(_train(), k=13), ValueError, r"n_samples=12 should be >= n_clusters=13"),
    Case("fit-auto-grid", _I, "n_clusters='auto' with every k_grid entry above n_samples",
         lambda t: _fit(_train(), k="auto", k_grid=(20, 40)), ValueError,
         r"smaller than every k_grid entry"),
    # ------------------------------------------------------ imputer: NaN and inf
    Case("fit-partial-nan", _I, "a partly NaN row",
         lambda t: _fit(_with("a", _rows_set(_train()["a"], [4], np.nan, 0))), ValueError,
         r"modality 'a': rows \[4\] have some but not all values NaN"),
    Case("fit-inf", _I, "+inf in a row",
         lambda t: _fit(_with("a", _rows_set(_train()["a"], [5], np.inf, 1))), ValueError,
         r"modality 'a': rows \[5\] contain infinite values"),
    Case("fit-neg-inf-f32", _I, "-inf in a float32 row",
         lambda t: _fit(_with("b", _rows_set(_train()["b"], [7], -np.inf, 0)
                              .astype(np.float32))), ValueError,
         r"modality 'b': rows \[7\] contain infinite values"),
    Case("fit-empty-sample", _I, "a sample with no observed modality (empty='raise')",
         lambda t: _fit(_empty_row()), ValueError, r"samples \[0\] have no observed modality"),
    Case("fit-observed-once", _I, "a modality observed in only one sample",
         lambda t: _fit(_with("b", _rows_set(_train()["b"], list(range(2, 12)), np.nan))),
         ValueError, r"at least 2 training samples.*'b' \(1\)"),
    Case("fit-never-observed", _I, "a modality missing in every sample",
         lambda t: _fit(_with("b", np.full((12, 3), np.nan))), ValueError,
         r"at least 2 training samples.*'b' \(0\)"),
    # ------------------------------------------------------- imputer: magnitudes
    Case("fit-huge-f64", _I, "values ~1e200 (their squares overflow float64)",
         lambda t: _fit(_huge(_HUGE)), ValueError,
         r"modality 'a'.*too large.*rescale",
         before="silent: scale inf, NaN centres (NaN fill for missing rows)"),
    Case("fit-above-f32", _I, "float64 values ~1e39 with dtype=float32 (beyond float32)",
         lambda t: _fit_transform(_huge(_ABOVE_F32)), ValueError,
         r"modality 'a'.*float32.*dtype=numpy.float64",
         before="silent: NaN centres, every sample in cluster 0"),
    Case("fit-f32-edge", _I, "float32 values ~3e38 whose differences overflow float32",
         lambda t: _fit_transform(_huge(_F32_EDGE / 3, np.float32)),
         fallback="z-scored finitely (mean and scale are float64); output finite",
         check=_finite_output),
    Case("fit-huge-f64-dtype64", _I, "values ~1e150 with dtype=float64 (squares just overflow)",
         lambda t: _fit(_huge(1e155), dtype=np.float64), ValueError,
         r"modality 'a'.*too large.*rescale", before="silent: scale inf, NaN centres"),
    Case("fit-subnormal", _I, "subnormal values (~1e-310)",
         lambda t: _fit_transform(_subnormal()),
         fallback="a std below 1.2e-38 (float32's smallest normal) gives scale 1, with "
                  "a UserWarning; output finite, observed rows kept",
         check=_both(_warned(r"modality 'a': 2 of 2 dimensions are constant", UserWarning),
                     _observed_kept(_subnormal()))),
    Case("fit-tiny-scale", _I, "a modality of tiny values (x 1e-9, std ~1e-9)",
         lambda t: _fit_transform(_tiny_scale()),
         fallback="scaled by its own spread (constant only below 1e-8 of the modality's "
                  "magnitude); no warning, observed rows kept",
         check=_both(_scaled_by_own_spread, _observed_kept(_tiny_scale())),
         before="silent: scale 1, the modality weighs nothing in the distance"),
    Case("fit-float16", _I, "float16 input", lambda t: _fit_transform(_float16()),
         fallback="accepted; output stays float16, finite, observed rows kept",
         check=_observed_kept(_float16())),
    # ---------------------------------------------------- imputer: degenerate data
    Case("fit-duplicates", _I, "k larger than the number of distinct points",
         lambda t: _fit_transform(_duplicates(), k=4),
         fallback="ConvergenceWarning 'distinct clusters'; duplicate centres dropped, "
                  "output finite",
         check=_both(_warned("distinct clusters", ConvergenceWarning), _finite_output)),
    Case("fit-constant-modality", _I, "a constant modality (zero variance)",
         lambda t: _fit_transform(_constant_modality()),
         fallback="scale 1 for constant dimensions, with a UserWarning naming the modality "
                  "and their count; output finite, observed rows kept",
         check=_both(_warned(r"modality 'a': 2 of 2 dimensions are constant", UserWarning),
                     _observed_kept(_constant_modality()))),
    Case("predict-tie", _I, "a sample equidistant from two centres (tie)",
         lambda t: _tie_case(), fallback="label = lowest centre index (0)", check=_tie_check),
    Case("fit-init-partial-nan", _I, "explicit init centre with a partly NaN row",
         lambda t: _fit(_train(), init={"a": [[0.0, np.nan], [1.0, 1.0]],
                                        "b": np.zeros((2, 3))}),
         ValueError, r"modality 'a': rows \[0\] have some but not all values NaN"),
    Case("fit-init-unknown", _I, "explicit init with an unknown modality",
         lambda t: _fit(_train(), init={"a": np.zeros((2, 2)), "c": np.zeros((2, 3))}),
         ValueError, r"unknown modalities \['c'\]"),
    # ------------------------------------------------------------ transform
    Case("transform-unfitted", _T, "transform before fit",
         lambda t: (lambda: UL4M4Imputer(2).transform(_train())), NotFittedError,
         r"not fitted yet"),
    Case("transform-unknown", _T, "an unknown modality name",
         _transform(lambda: _with("c", np.ones((12, 1)))), ValueError,
         r"unknown modalities \['c'\]"),
    Case("transform-missing", _T, "a fitted modality left out",
         _transform(lambda: {"a": np.ones((3, 2))}), ValueError, r"missing modalities \['b'\]"),
    Case("transform-order", _T, "modalities in another order (mapping)",
         _transform(_reordered),
         fallback="matched by name; output keys in the input's order, values identical",
         check=_reordered_check),
    Case("transform-list-count", _T, "a list with the wrong number of modalities",
         _transform(lambda: [np.ones((3, 2))]), ValueError, r"X has 1 modalities, expected 2"),
    Case("transform-width", _T, "a modality of the wrong width",
         _transform(lambda: _with("a", np.ones((12, 4)))), ValueError,
         r"modality 'a': expected 2 features, got 4"),
    Case("transform-partial-nan", _T, "a partly NaN row",
         _transform(lambda: _with("b", _rows_set(_train()["b"], [2], np.nan, 1))), ValueError,
         r"modality 'b': rows \[2\] have some but not all values NaN"),
    Case("transform-inf", _T, "inf in a row",
         _transform(lambda: _with("a", _rows_set(_train()["a"], [1], np.inf))), ValueError,
         r"modality 'a': rows \[1\] contain infinite values"),
    Case("transform-above-f32", _T, "values ~1e39 sent to a float32 model",
         _transform(lambda: _huge(_ABOVE_F32)), ValueError,
         r"modality 'a'.*float32", before="silent: wrong labels (inf z-scores)"),
    Case("transform-far-f32", _T, "values ~1e20 sent to a float32 model trained on N(0, 1) "
         "(squared distances overflow float32)",
         _transform(lambda: _huge(1e20)), ValueError,
         r"modality 'a'.*standard deviations.*overflow squared distances",
         before="silent: RuntimeWarnings (inf - inf), every label 0"),
    Case("transform-empty-raise", _T, "a sample with no modality (empty='raise')",
         _transform(_empty_row), ValueError, r"samples \[0\] have no observed modality"),
    Case("transform-empty-mean", _T, "a sample with no modality (empty='mean')",
         _transform(_empty_row, empty="mean"),
         fallback="every modality filled with its training mean", check=_empty_mean_check),
    Case("transform-zero-rows", _T, "0 rows", _transform(lambda: {"a": np.ones((0, 2)),
                                                                  "b": np.ones((0, 3))}),
         ValueError, r"zero rows"),
    Case("transform-one-row", _T, "one sample",
         _transform(lambda: {"a": np.ones((1, 2)), "b": np.full((1, 3), np.nan)}),
         fallback="filled like any other sample", check=_one_row_check),
    # --------------------------------------------------------------- adapter
    Case("adapter-1d", _A, "X is 1-D", lambda t: _adapter_fit(np.ones(12)), ValueError,
         r"Expected 2D array"),
    Case("adapter-strings", _A, "X holds strings",
         lambda t: _adapter_fit(np.full((12, 5), "x")), ValueError,
         r"could not convert|dtype"),
    Case("adapter-inf", _A, "inf in X", lambda t: _adapter_fit(_rows_set(_flat(), [0], np.inf, 1)),
         ValueError, r"infinity"),
    Case("adapter-sparse", _A, "a scipy.sparse X",
         lambda t: _adapter_fit(sparse.csr_matrix(np.ones((12, 5)))), TypeError,
         r"[Ss]parse"),
    Case("adapter-empty", _A, "0 rows", lambda t: _adapter_fit(np.ones((0, 5))), ValueError,
         r"0 sample"),
    Case("adapter-one-sample", _A, "one sample", lambda t: _adapter_fit(np.ones((1, 5))),
         ValueError, r"n_samples=1"),
    Case("adapter-partial-nan", _A, "a partly NaN row inside one modality's columns",
         lambda t: _adapter_fit(_rows_set(_flat(), [4], np.nan, 2)), ValueError,
         r"modality 'b': rows \[4\] have some but not all values NaN"),
    Case("adapter-overlap", _A, "overlapping column selectors",
         lambda t: _adapter_fit(_flat(), {"a": slice(0, 3), "b": slice(2, 5)}), ValueError,
         r"overlap on columns \[2\]"),
    Case("adapter-out-of-range", _A, "a slice beyond the number of columns",
         lambda t: _adapter_fit(_flat(), {"a": slice(0, 2), "b": slice(2, 9)}), ValueError,
         r"out of range for X with 5 columns"),
    Case("adapter-names-no-frame", _A, "column names with a plain array",
         lambda t: _adapter_fit(_flat(), {"a": ["x0"], "b": slice(2, 5)}), ValueError,
         r"only be used when X is a DataFrame"),
    Case("adapter-not-mapping", _A, "modalities given as a list",
         lambda t: _adapter_fit(_flat(), [slice(0, 2)]), ValueError,
         r"modalities must be None or a mapping"),
    Case("adapter-width", _A, "transform with a different number of columns",
         lambda t: _adapter_transform(np.ones((3, 4))), ValueError,
         r"X has 4 features, but ModalityImputer is expecting 5"),
    Case("adapter-huge", _A, "values ~1e200", lambda t: _adapter_fit(_flat() * _HUGE),
         ValueError, r"too large.*rescale", before="silent: NaN centres"),
    # ----------------------------------------------------------- missingness
    Case("mask-nan-rate", _M, "independent_mask with a NaN rate",
         lambda t: (lambda: independent_mask(5, [0.5, np.nan], 0)), ValueError,
         r"rates\[1\] = nan is not a probability"),
    Case("mask-negative-n", _M, "independent_mask with n=-1",
         lambda t: (lambda: independent_mask(-1, [0.5], 0)), ValueError, r"non-negative"),
    Case("mask-float-n", _M, "independent_mask with n=2.5",
         lambda t: (lambda: independent_mask(2.5, [0.5], 0)), TypeError, r"non-negative integer"),
    Case("mask-2d-rates", _M, "rates given as a 2-D array",
         lambda t: (lambda: independent_mask(5, [[0.5]], 0)), ValueError, r"1-D sequence"),
    Case("mask-zero-n", _M, "independent_mask with n=0",
         lambda t: (lambda: independent_mask(0, [0.5, 0.5], 0)),
         fallback="an empty (0, M) mask",
         check=lambda r, c: (r.shape == (0, 2) and r.dtype == bool) or (_ for _ in ()).throw(
             AssertionError(r.shape))),
    Case("mask-bad-seed", _M, "random_state='x'",
         lambda t: (lambda: independent_mask(5, [0.5], "x")), ValueError,
         r"cannot be used to seed"),
    Case("pattern-sum", _M, "pattern probabilities not summing to 1",
         lambda t: (lambda: pattern_mask(5, {(0,): 0.5, (1,): 0.2}, 0, n_modalities=2)),
         ValueError, r"must sum to 1"),
    Case("config-unknown", _M, "an unknown configuration name",
         lambda t: (lambda: parse_config("sometimes_50", ["a", "b"])), ValueError,
         r"sometimes_50"),
    Case("apply-rows", _M, "apply_mask with a mask of another row count",
         lambda t: (lambda: apply_mask(_train(), np.ones((5, 2), dtype=bool))), ValueError,
         r"mask has 5 rows"),
    Case("apply-columns", _M, "apply_mask with a mask of another column count",
         lambda t: (lambda: apply_mask(_train(), np.ones((12, 3), dtype=bool))), ValueError,
         r"mask has 3 columns but X has 2 modalities"),
    Case("apply-values", _M, "apply_mask with a mask holding 2",
         lambda t: (lambda: apply_mask(_train(), np.full((12, 2), 2))), ValueError,
         r"mask must be boolean"),
    Case("mnar-nan", _M, "mnar_mask on data with NaN rows",
         lambda t: (lambda: mnar_mask(_train(), [0.5, 0.5], 1.0, 0)), ValueError, r"NaN"),
    Case("mnar-inf", _M, "mnar_mask on data with inf",
         lambda t: (lambda: mnar_mask({"a": _rows_set(np.ones((6, 2)), [0], np.inf)}, [0.5],
                                      1.0, 0)), ValueError, r"modality 'a' contains NaN or inf"),
    Case("mnar-nan-strength", _M, "mnar_mask with strength=NaN",
         lambda t: (lambda: mnar_mask({"a": np.random.default_rng(0).normal(size=(6, 2))},
                                      [0.5], float("nan"), 0)), ValueError, r"strength"),
    Case("mask-from-partial", _M, "mask_from_data on a partly NaN row",
         lambda t: (lambda: mask_from_data({"a": np.array([[1.0, np.nan], [1.0, 2.0]])})),
         fallback="documented: the row counts as present",
         check=lambda r, c: np.testing.assert_array_equal(r, [[True], [True]])),
    # ----------------------------------------------------------------- loaders
    Case("folder-missing", _F, "load_folder on a missing folder",
         lambda t: (lambda: load_folder(t / "nope")), FileNotFoundError, r"is not a folder"),
    Case("folder-is-file", _F, "load_folder on a file",
         lambda t: (lambda: load_folder(_folder(t) / "a.npy")), FileNotFoundError,
         r"a.npy is not a folder"),
    Case("folder-empty", _F, "an empty folder",
         lambda t: (lambda: load_folder(Path(t))), FileNotFoundError, r"holds no modality file"),
    Case("folder-truncated", _F, "a truncated .npy",
         lambda t: _load_folder(t, **{"a.npy": _truncated_npy()}), ValueError,
         r"a\.npy: cannot be read as a \.npy array"),
    Case("folder-truncated-mmap", _F, "a truncated .npy read with mmap=True",
         lambda t: _load_folder(t, mmap=True, **{"a.npy": _truncated_npy()}), ValueError,
         r"a\.npy: cannot be read as a \.npy array"),
    Case("folder-garbage", _F, "random bytes named .npy",
         lambda t: _load_folder(t, **{"a.npy": os.urandom(64)}), ValueError,
         r"a\.npy: cannot be read"),
    Case("folder-zero-bytes", _F, "a zero-byte .npy",
         lambda t: _load_folder(t, **{"a.npy": b""}), ValueError, r"a\.npy: cannot be read"),
    Case("folder-bad-header", _F, "a .npy with a corrupt header",
         lambda t: _load_folder(t, **{"a.npy": _bad_header_npy()}), ValueError,
         r"a\.npy: cannot be read"),
    Case("folder-pickle", _F, "a pickled object array in a .npy (never unpickled)",
         lambda t: _load_folder(t, **{"a.npy": _object_npy()}), ValueError,
         r"a\.npy: cannot be read"),
    Case("folder-broken-link", _F, "a requested modality file that cannot be opened "
         "(dangling link)", _broken_link, FileNotFoundError, r"no file for modalities \['c'\]"),
    Case("folder-labels-truncated", _F, "a truncated labels.npy",
         lambda t: _load_folder(t, **{"labels.npy": _npy_bytes(np.arange(12))[:-10]}),
         ValueError, r"labels\.npy: cannot be read"),
    Case("folder-rows", _F, "files with different row counts",
         lambda t: _load_folder(t, **{"b.npy": np.ones((11, 3))}), ValueError,
         r"different numbers of rows"),
    Case("folder-inf", _F, "inf in a modality file",
         lambda t: _load_folder(t, **{"a.npy": _rows_set(np.ones((12, 2)), [3], np.inf)}),
         ValueError, r"a\.npy: rows \[3\] .*contain infinite"),
    Case("mfeat-truncated", _F, "a truncated packaged mfeat.npz",
         lambda t: _mfeat_with(t, _mfeat_payload()[:5000]), RuntimeError,
         r"mfeat\.npz.*corrupt.*reinstall", before="raw zipfile.BadZipFile, no file named"),
    Case("mfeat-garbage", _F, "random bytes as the packaged mfeat.npz",
         lambda t: _mfeat_with(t, os.urandom(256)), RuntimeError,
         r"mfeat\.npz.*corrupt.*reinstall",
         before="raw numpy ValueError about pickled data, no file named"),
    Case("mfeat-pickle", _F, "mfeat.npz with pickled object arrays",
         lambda t: _mfeat_with(t, _npz_bytes(**{m: np.array([object()]) for m in
                                                ("fou", "fac", "kar", "pix", "zer", "mor", "y")})),
         RuntimeError, r"mfeat\.npz.*corrupt.*reinstall",
         before="raw numpy ValueError about allow_pickle"),
    Case("mfeat-bad-crc", _F, "mfeat.npz with an edited member (fails its CRC-32)",
         lambda t: _mfeat_with(t, _npz_bytes(**_MFEAT_LIKE).replace(b"'shape': (3, 2)",
                                                                    b"'shape': ((3,2)")),
         RuntimeError, r"mfeat\.npz.*corrupt.*reinstall",
         before="raw zipfile.BadZipFile (Bad CRC-32), no remedy given"),
    Case("mfeat-missing-arrays", _F, "mfeat.npz lacking arrays",
         lambda t: _mfeat_with(t, _npz_bytes(fou=np.ones((2, 2)))), RuntimeError,
         r"missing arrays"),
    Case("movielens-truncated", _F, "a truncated MovieLens cache",
         lambda t: _movielens_cache(t, _truncate),
         fallback="UserWarning 'unusable', rebuilt, same arrays", check=_same_movielens),
    Case("movielens-pickle", _F, "a MovieLens cache holding a pickled member",
         lambda t: _movielens_cache(t, _pickled_member),
         fallback="UserWarning 'unusable', rebuilt, same arrays", check=_same_movielens),
    Case("movielens-dir", _F, "a folder where the MovieLens cache file should be",
         lambda t: _movielens_cache(t, _dir_instead),
         fallback="UserWarnings (unusable, cannot write); the data are rebuilt and returned",
         check=_same_movielens),
    Case("movielens-zip-version", _F, "a MovieLens cache claiming an unsupported zip version",
         lambda t: _movielens_cache(t, _claim_zip_version),
         fallback="UserWarning 'unusable', rebuilt, same arrays", check=_same_movielens,
         before="raw NotImplementedError, no rebuild"),
    # ------------------------------------------------------------ persistence
    Case("load-missing", _P, "a missing model file",
         lambda t: (lambda: UL4M4Imputer.load(t / "none.ul4m4")), FileNotFoundError,
         r"no such model file: .*none\.ul4m4",
         before="ModelFileError 'cannot be read as a ul4m4 model file'"),
    Case("load-dir", _P, "a folder instead of a model file",
         lambda t: (lambda: UL4M4Imputer.load(t)), ModelFileError,
         r"cannot be read as a ul4m4 model file"),
    Case("load-truncated", _P, "a truncated model file",
         lambda t: _load(t, _truncate), ModelFileError, r"model\.ul4m4"),
    Case("load-pickle", _P, "a pickle instead of a model file (never unpickled)",
         lambda t: _load(t, lambda p: p.write_bytes(pickle.dumps({"x": 1}))), ModelFileError,
         r"cannot be read as a ul4m4 model file"),
    Case("load-meta-list", _P, "meta.json holding a JSON list",
         lambda t: _load(t, lambda p: _rewrite_meta(p, lambda m: [m])), ModelFileError,
         r"malformed meta\.json"),
    Case("load-meta-types", _P, "meta.json with a string for n_features",
         lambda t: _load(t, lambda p: _rewrite_meta(p, lambda m: _set(m, "n_features", "ab"))),
         ModelFileError, r"malformed model file|do not match"),
    Case("load-meta-params", _P, "meta.json with a bad parameter (n_clusters=-1)",
         lambda t: _load(t, lambda p: _rewrite_meta(
             p, lambda m: _set(m, "params", {**m["params"], "n_clusters": -1}))),
         ModelFileError, r"malformed model file"),
    Case("load-member-header", _P, "a damaged member header inside the archive",
         lambda t: _load(t, _break_member_header), ModelFileError,
         r"damaged model file \(BadZipFile", before="raw zipfile.BadZipFile"),
    Case("load-zip-version", _P, "a header claiming an unsupported zip version",
         lambda t: _load(t, _claim_zip_version), ModelFileError,
         r"cannot be read as a ul4m4 model file", before="raw NotImplementedError"),
    Case("load-meta-no-n-iter", _P, "meta.json without its n_iter entry",
         lambda t: _load(t, lambda p: _rewrite_meta(p, lambda m: _drop(m, "n_iter"))),
         ModelFileError, r"malformed model file \(KeyError\('n_iter'\)",
         before="raw KeyError: 'n_iter'"),
    Case("load-meta-arrays-list", _P, "meta.json listing its arrays as [5]",
         lambda t: _load(t, lambda p: _rewrite_meta(p, lambda m: _set(m, "arrays", [5]))),
         ModelFileError, r"model\.ul4m4: malformed model file .*array table is not a mapping",
         before="raw IndexError: list index out of range"),
    # ------------------------------------------------------------------- CLI
    Case("cli-no-folder", _C, "--dataset naming a missing folder",
         lambda t: _bench(t, t / "nope"), exit_match=r"unknown dataset"),
    Case("cli-truncated", _C, "a data folder with a truncated .npy",
         lambda t: _bench(t, _cli_folder(t, **{"a.npy": _truncated_npy()})),
         exit_match=r"a\.npy: cannot be read"),
    Case("cli-k-too-big", _C, "--k larger than the training samples",
         lambda t: _bench(t, _cli_folder(t), "--methods", "ul4m4", "--k", "50"),
         exit_match=r"k=50 exceeds the 21 training samples"),
    Case("cli-out-file", _C, "--out naming an existing file",
         lambda t: _bench(t, _cli_folder(t), "--out", str(_cli_folder(t) / "a.npy")),
         exit_match=r"cannot create output folder"),
    Case("cli-first-seed", _C, "--first-seed -1",
         lambda t: _bench(t, _cli_folder(t), "--first-seed", "-1"),
         exit_match=r"first seed must be >= 0"),
    Case("cli-blas", _C, "--blas-threads -1",
         lambda t: _bench(t, _cli_folder(t), "--blas-threads", "-1"),
         exit_match=r"blas_threads"),
    Case("cli-nan-strength", _C, "--mnar-strength nan",
         lambda t: _bench(t, _cli_folder(t), "--protocol", "mnar", "--mnar-strength", "nan"),
         exit_match=r"--mnar-strength",
         before="traceback (ValueError: strength must be finite)"),
    Case("cli-bad-param-value", _C, "--param knn.n_neighbors=0",
         lambda t: _bench(t, _cli_folder(t), "--methods", "knn", "--param", "knn.n_neighbors=0"),
         exit_match=r"knn.*n_neighbors",
         before="traceback (scikit-learn InvalidParameterError)"),
    Case("cli-bad-ul4m4-param", _C, "--param ul4m4.max_iter=0",
         lambda t: _bench(t, _cli_folder(t), "--methods", "ul4m4", "--param",
                          "ul4m4.max_iter=0"),
         exit_match=r"ul4m4 \(k=2\).*max_iter must be an integer >= 1",
         before="traceback (ValueError from the imputer)"),
    Case("cli-one-class", _C, "a folder whose labels are all one class",
         lambda t: _bench(t, _cli_folder(t, **{"labels.npy": np.zeros(30, dtype=int)})),
         exit_match=r"one class only",
         before="traceback (scikit-learn: 'needs samples of at least 2 classes')"),
    Case("cli-high-share", _C, "--missing 0.99 on 30 samples",
         lambda t: _bench(t, _cli_folder(t), "--methods", "ul4m4", "--missing", "0.99"),
         fallback="runs (each sample keeps one modality; the realised share is reported)",
         check=lambda r, c: _exit_ok(r)),
    Case("cli-corrupt-run-file", _C, "a damaged file among the finished runs (resume cache)",
         _damaged_run_file,
         fallback="the damaged run is recomputed and its file rewritten; others reused",
         before="n/a (no resume cache before this work)",
         check=lambda r, c: _resumed(r, reused=2)),
    Case("cli-nan-labels", _C, "float labels holding NaN",
         lambda t: _bench(t, _cli_folder(t, **{"labels.npy": np.full(30, np.nan)})),
         exit_match=r"labels contain NaN"),
    # ---------------------------------------------------------- ul4m4 fit / impute
    Case("files-out-is-input", _FC, "fit --out naming an input file (DATA/a.npy)",
         lambda t: _fit_cli(t, _folder(t), t / "data" / "a.npy"),
         exit_match=r"is the input file .*a\.npy: the model would replace it",
         before="the input replaced by the model, exit 0"),
    Case("files-model-as-modality", _FC, "fit --out DATA/model.npy",
         lambda t: _fit_cli(t, _folder(t), t / "data" / "model.npy"),
         exit_match=r"would be read as a modality",
         before="exit 0; the next fit of DATA failed on an archive named .npy"),
    Case("files-out-not-a-model", _FC, "fit --out naming an existing file that is no model",
         lambda t: _fit_cli(t, _folder(t), _in(t / "docs", "notes.txt") / "notes.txt"),
         exit_match=r"notes\.txt' exists and is not a ul4m4 model",
         before="the file replaced by the model, exit 0"),
    Case("files-out-holds-model", _FC, "impute --out naming the folder that holds the model",
         lambda t: _impute_cli(t, t / "models", t / "models" / "m.ul4m4"),
         exit_match=r"holds the model", before="the model replaced, exit 0"),
    Case("files-out-users-folder", _FC, "impute --out naming a folder of the user's files",
         lambda t: _impute_cli(t, _in(t / "mine", "a.npy")),
         exit_match=r"holds files that are not a ul4m4 output \(a\.npy\)",
         before="a.npy replaced, exit 0"),
    Case("files-npy-negative-shape", _FC, "an .npy header declaring shape (-5, 3)",
         lambda t: _fit_cli(t, _folder(t, **{"a.npy": _npy_shape("(-5, 3)")}), t / "m.ul4m4"),
         exit_match=r"a\.npy: cannot be read as a \.npy array of numbers",
         before="ok"),
    Case("files-npy-huge-shape", _FC, "an .npy header declaring 2**70 rows",
         lambda t: _fit_cli(t, _folder(t, **{"a.npy": _npy_shape(f"({2**70}, 2)")}),
                            t / "m.ul4m4"),
         exit_match=r"a\.npy: cannot be read as a \.npy array of numbers \(its header declares",
         before="raw OverflowError: Python int too large to convert to C long"),
    Case("files-zero-column-parquet", _FC, "a parquet table with no columns",
         lambda t: _fit_cli(t, _with_empty_parquet(t), t / "m.ul4m4"),
         exit_match=r"c\.parquet: the table has no data columns",
         before="'the files have different numbers of rows (...: 0)'"),
    Case("files-header-only-csv", _FC, "a CSV file with a header line and no row",
         lambda t: _fit_cli(t, _in(_folder(t), "c.csv", "x,y\n"), t / "m.ul4m4"),
         exit_match=r"c\.csv: the table has no rows", before="'rows 0..-1' of a column"),
    Case("files-parquet-indexes", _FC, "parquet files that stored different row indexes",
         lambda t: _fit_cli(t, _indexed_parquets(t), t / "m.ul4m4"),
         exit_match=r"a\.parquet and b\.parquet store different row indexes",
         before="rows paired by position, exit 0"),
    Case("files-duplicate-ids", _FC, "--id naming a column with an id twice",
         lambda t: _fit_cli(t, _in(t / "ids", "a.csv", "id,x\n1,0.5\n2,0.1\n1,0.3\n"),
                            t / "m.ul4m4", "--id", "id"),
         exit_match=r"a\.csv: id 1 appears twice in column 'id' \(rows 0 and 2\)",
         before="(no --id: the id column was read as a feature)"),
    Case("files-bad-param-value", _FC, "--param n_clusters=sixteen with a missing DATA folder",
         lambda t: _fit_cli(t, t / "nowhere", t / "m.ul4m4", "--param", "n_clusters=sixteen"),
         exit_match=r"--param: n_clusters must be an integer",
         before="the data read (or the missing folder named) first"),
    # ------------------------------------------------------ raw data set loaders
    Case("mmimdb-missing", _R, "load_mmimdb on a missing folder",
         lambda t: (lambda: _raw_loader("mmimdb")(t / "nope")), FileNotFoundError,
         r"MM-IMDb: data folder .*nope does not exist"),
    Case("mmimdb-no-split", _R, "an MM-IMDb folder without split.json",
         _load_raw("mmimdb", _remove("split.json")), FileNotFoundError,
         r"split\.json: missing"),
    Case("mmimdb-split-json", _R, "a cut-off split.json (malformed JSON)",
         _load_raw("mmimdb", _garble("split.json")), ValueError,
         r"split\.json: malformed JSON"),
    Case("mmimdb-record-json", _R, "a cut-off movie record dataset/<id>.json",
         _load_raw("mmimdb", _garble("dataset/*.json")), ValueError,
         r"dataset/0001000\.json: malformed JSON"),
    Case("mosi-missing", _R, "load_mosi on a missing folder",
         lambda t: (lambda: _raw_loader("mosi")(t / "nope")), FileNotFoundError,
         r"CMU-MOSI: data folder .*nope does not exist"),
    Case("mosi-labels-json", _R, "a cut-off labels.json",
         _load_raw("mosi", _garble("labels.json")), ValueError,
         r"labels\.json: malformed JSON"),
    Case("mosi-split-json", _R, "a cut-off split.json",
         _load_raw("mosi", _garble("split.json")), ValueError, r"split\.json: malformed JSON"),
    Case("mosi-truncated-wav", _R, "a .wav clip cut to half its announced frames",
         _load_raw("mosi", _wav_truncated), ValueError,
         r"5FM9TNIJ6rZ_1\.wav: .*(truncated|fewer)"),
    Case("mosi-header-only-wav", _R, "a .wav file cut inside its header",
         _load_raw("mosi", _cut("Raw/Audio/WAV_16000/Segmented/*.wav", 20)), ValueError,
         r"5FM9TNIJ6rZ_1\.wav: not a readable PCM WAV file"),
    Case("sleep-missing", _R, "load_sleep_edf on a missing folder",
         lambda t: (lambda: _raw_loader("sleep-edf")(t / "nope")), FileNotFoundError,
         r"data folder .*nope does not exist"),
    Case("sleep-metadata-json", _R, "a cut-off metadata.json",
         _load_raw("sleep-edf", _garble("metadata.json")), ValueError,
         r"metadata\.json: malformed JSON"),
    Case("sleep-truncated-npy", _R, "a truncated epoch .npy",
         _load_raw("sleep-edf", _cut("*.npy", 300)), ValueError,
         r"SC4001E0_0000\.npy: not a readable \.npy array \(truncated"),
    # ---------------------------------------------------------------- encoders
    Case("encode-wrong-width", _N, "encode_modality with an encoder returning 2 columns for dim 3",
         lambda t: _encode(_Fake(bad=lambda out: out[:, :2])), ValueError,
         r"returned shape \(3, 2\) for 3 items \(rows \[0, 2, 3\]"),
    Case("encode-wrong-rows", _N, "an encoder returning one row too few",
         lambda t: _encode(_Fake(bad=lambda out: out[1:])), ValueError,
         r"returned shape \(2, 3\) for 3 items \(rows \[0, 2, 3\]"),
    Case("encode-nan", _N, "an encoder returning NaN for one item",
         lambda t: _encode(_Fake(bad=_nan_in_last)), ValueError,
         r"non-finite values for rows \[3\]"),
    Case("encode-corrupt-cache", _N, "a damaged embedding-cache entry",
         _corrupt_cache_entry,
         fallback="CacheWarning naming the entry; only that item is recomputed, same result",
         check=_recomputed),
    Case("image-missing", _N, "EfficientNetLite0Encoder on a missing image file",
         lambda t: _image_encoder(t, None), FileNotFoundError,
         r"image file not found: .*poster\.jpeg"),
    Case("image-truncated", _N, "EfficientNetLite0Encoder on a JPEG cut to half its bytes",
         lambda t: _image_encoder(t, lambda good: good.read_bytes()[: good.stat().st_size // 2]),
         ValueError, r"cannot read image file .*poster\.jpeg"),
    Case("image-not-image", _N, "EfficientNetLite0Encoder on text named .jpeg",
         lambda t: _image_encoder(t, b"not an image at all"), ValueError,
         r"cannot read image file .*poster\.jpeg"),
    Case("signals-rows", _N, "encode_signals with channels of different row counts",
         lambda t: _signals({"eeg": (12, 16), "eog": (11, 16)}), ValueError,
         r"channel 'eog' has shape \(11, 16\), expected \(12, length\)"),
    Case("signals-1d", _N, "encode_signals with a 1-D channel",
         lambda t: _signals({"eeg": (12,)}), ValueError,
         r"channel 'eeg' has shape \(12,\), expected \(n, length\)"),
    # ---------------------------------------------------------- ul4m4 experiment
    Case("exp-no-folder", _E, "--data-dir naming a missing folder",
         lambda t: _experiment(t, "mosi", t / "nope"),
         exit_match=r"data folder .*nope.* does not exist"),
    Case("exp-unknown-dataset", _E, "an unknown data set name",
         lambda t: _experiment(t, "imdb", None), exit_match=r"invalid choice: 'imdb'"),
    Case("exp-bad-config", _E, "--config 100_20 (two shares for three modalities)",
         _mosi_run("--config", "100_20"), exit_match=r"100_20.*expected 3"),
    Case("exp-unknown-config", _E, "--config bogus",
         _mosi_run("--config", "bogus"), exit_match=r"bogus"),
    Case("exp-bad-missing", _E, "--missing 1.5",
         _mosi_run("--missing", "1.5"), exit_match=r"--missing: share 1\.5 is not in \[0, 1\)"),
    Case("exp-bad-method", _E, "--methods magic",
         _mosi_run("--methods", "magic"), exit_match=r"unknown method 'magic'"),
    Case("exp-bad-k", _E, "--k 0", _mosi_run("--k", "0"), exit_match=r"must be >= 1"),
    Case("exp-bad-encoder", _E, "--encoder audio (no =KIND)",
         _mosi_run("--encoder", "audio"), exit_match=r"MODALITY=KIND"),
    Case("exp-unknown-encoder", _E, "--encoder audio=nosuch",
         _mosi_run("--encoder", "audio=nosuch"), exit_match=r"unknown encoder 'nosuch'",
         before="ok (but only after reading the data and loading the MiniLM weights, ~4 s)"),
    Case("exp-mmimdb-no-split", _E, "an MM-IMDb folder without split.json",
         lambda t: _experiment(t, "mmimdb", _damaged(_fixture(t, "mmimdb"),
                                                     _remove("split.json"))),
         exit_match=r"split\.json: missing"),
]


def _damaged(root: Path, damage: Callable[[Path], None]) -> Path:
    damage(root)
    return root


# ------------------------------------------------------------------ running
@dataclass
class Outcome:
    """What a case got: ``ok`` and a one-line description."""

    ok: bool
    detail: str


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Hang()


def run_case(case: Case, tmp: Path) -> Outcome:
    """Build and run one case in ``tmp``; compare with what it should get."""
    thunk = case.build(tmp)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = thunk()
    except _Hang:
        return Outcome(False, f"hang (> {TIME_LIMIT_S} s)")
    except BaseException as exc:  # noqa: BLE001 - any escape is an outcome to report
        return _judge_exception(case, exc)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return _judge_result(case, result, caught)


def _judge_exception(case: Case, exc: BaseException) -> Outcome:
    got = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    if case.raises is None:
        return Outcome(False, f"raised {got}")
    if not isinstance(exc, case.raises):
        return Outcome(False, f"expected {case.raises.__name__}, got {got}")
    if not re.search(case.match, str(exc)):
        return Outcome(False, f"message does not match {case.match!r}: {got}")
    return Outcome(True, got)


def _judge_result(case: Case, result: Any, caught: list) -> Outcome:
    if case.exit_match:
        code, stderr = result[:2]
        if code == 0:
            return Outcome(False, "exit status 0")
        lines = stderr.strip().splitlines()
        if len(lines) != 1 or "Traceback" in stderr:
            return Outcome(False, f"stderr is not one line: {stderr[:200]!r}")
        if not re.search(case.exit_match, lines[0]):
            return Outcome(False, f"message does not match {case.exit_match!r}: {lines[0]}")
        return Outcome(True, f"exit {code}: {lines[0]}")
    if case.raises is not None:
        return Outcome(False, f"no exception (expected {case.raises.__name__})")
    try:
        assert case.check is not None
        case.check(result, caught)
    except AssertionError as exc:
        return Outcome(False, f"fallback check failed: {' '.join(str(exc).split())[:200]}")
    return Outcome(True, "fallback")


def expectation(case: Case) -> str:
    """The documented outcome of a case, as one table cell."""
    if case.exit_match:
        return f"exit status 2, one line matching `{case.exit_match}`"
    if case.raises is not None:
        return f"`{case.raises.__name__}` matching `{case.match}`"
    return f"fallback: {case.fallback}"
