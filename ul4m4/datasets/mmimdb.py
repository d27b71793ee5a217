"""MM-IMDb (Arevalo et al., 2017) as raw plots and poster paths with multi-label genres.

The data are not redistributable; point ``data_dir`` at a copy in the layout of
the public release (``mmimdb.tar.gz``)::

    mmimdb/
    ├── split.json              # {"train": [ids], "dev": [ids], "test": [ids]}
    └── dataset/
        ├── 0000008.json        # one JSON object per movie, "plot" and "genres" used
        ├── 0000008.jpeg        # its poster
        └── ...

``data_dir`` may be the ``mmimdb`` folder itself or its parent. The per-movie files
may also sit next to ``split.json`` (no ``dataset`` sub-folder).

Modalities
----------
``text``
    The movie's plot. The release stores ``"plot"`` as a list of plot summaries;
    SPEC does not fix which one the text encoder sees, so the default
    (``plot="longest"``) takes the longest one, the convention of the MMBT
    preprocessing of this data set; ``"first"`` takes the first and ``"join"``
    joins them with a blank line. ``None`` when ``"plot"`` is absent, empty or
    blank.
``image``
    The path of ``<id>.jpeg`` (a ``str``). ``None`` when the file is absent or,
    with ``verify_images=True``, when pillow cannot identify and verify it.

No movie is dropped for a missing modality: it is kept with ``None`` and
counted in :meth:`~ul4m4.datasets.RawMultimodalDataset.summary`. When no poster
is found at all a ``UserWarning`` names the folder searched.

Labels
------
``y`` is an ``(n, C)`` 0/1 int64 matrix over a genre vocabulary:

* ``genres="train"`` (default): every genre that occurs in the training split,
  in sorted order (26-27 genres on the release; SPEC §5 says 23-27);
* ``genres="mmimdb23"``: the 23 genres of the release paper,
  :data:`MMIMDB_GENRES_23`;
* or an explicit sequence of names.

Genres outside the vocabulary are ignored and counted per genre in the notes; a
movie left with no genre gets an all-zero row (counted too). Splits ``dev`` is
reported as ``val``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._raw import (
    RawMultimodalDataset,
    check_folder,
    image_is_readable,
    progress_bar,
    read_json,
    read_split_file,
    require_pil,
    select_splits,
    shown,
    warn_absent_modalities,
)

__all__ = ["MMIMDB_GENRES_23", "MMIMDB_MODALITIES", "load_mmimdb"]

MMIMDB_MODALITIES: tuple[str, ...] = ("text", "image")

#: The 23 genres of the MM-IMDb paper (Arevalo et al., 2017), most frequent first.
MMIMDB_GENRES_23: tuple[str, ...] = (
    "Drama",
    "Comedy",
    "Romance",
    "Thriller",
    "Crime",
    "Action",
    "Adventure",
    "Horror",
    "Documentary",
    "Mystery",
    "Sci-Fi",
    "Fantasy",
    "Family",
    "Biography",
    "War",
    "History",
    "Music",
    "Animation",
    "Musical",
    "Western",
    "Sport",
    "Short",
    "Film-Noir",
)

PlotChoice = Literal["longest", "first", "join"]
_NAME = "MM-IMDb"


@dataclass(frozen=True)
class _Movie:
    plot: str | None
    genres: tuple[str, ...]


def _find_root(folder: Path) -> Path:
    """The folder holding ``split.json``: ``data_dir`` itself or its ``mmimdb`` child."""
    if not (folder / "split.json").exists() and (folder / "mmimdb" / "split.json").exists():
        return folder / "mmimdb"
    return folder


def _choose_plot(value: Any, how: PlotChoice, path: Path) -> str | None:
    if value is None:
        return None
    plots = [value] if isinstance(value, str) else value
    if not isinstance(plots, list) or not all(isinstance(p, str) for p in plots):
        raise ValueError(f'{path}: "plot" must be a string or a list of strings')
    plots = [p.strip() for p in plots if p.strip()]
    if not plots:
        return None
    if how == "first":
        return plots[0]
    if how == "join":
        return "\n\n".join(plots)
    # max keeps the first of equally long plots, so the choice is deterministic.
    return max(plots, key=len)


def _read_movie(path: Path, how: PlotChoice) -> _Movie:
    record = read_json(path, 'a movie record with "plot" and "genres"')
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    genres = record.get("genres")
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise ValueError(f'{path}: "genres" must be a list of genre names')
    return _Movie(plot=_choose_plot(record.get("plot"), how, path), genres=tuple(genres))


def _check_ids_known(movie_dir: Path, ids: list[str], split_path: Path) -> None:
    unknown = [i for i in ids if not (movie_dir / f"{i}.json").is_file()]
    if unknown:
        raise FileNotFoundError(
            f"{split_path}: {len(unknown)} listed ids have no <id>.json in {movie_dir}: "
            f"{shown(unknown)}"
        )


def _vocabulary(
    genres: str | Sequence[str],
    train_genres: list[tuple[str, ...]] | None,
) -> tuple[str, ...]:
    if isinstance(genres, str):
        if genres == "mmimdb23":
            return MMIMDB_GENRES_23
        if genres != "train":
            raise ValueError(
                f"genres must be 'train', 'mmimdb23' or a sequence of names, got {genres!r}"
            )
        if not train_genres:
            raise ValueError(f"{_NAME}: genres='train' needs a non-empty training split")
        return tuple(sorted({g for movie in train_genres for g in movie}))
    vocabulary = tuple(str(g) for g in genres)
    if not vocabulary or len(set(vocabulary)) != len(vocabulary):
        raise ValueError(f"genres must be a non-empty sequence of distinct names: {vocabulary}")
    return vocabulary


def _labels(
    movies: list[_Movie], vocabulary: tuple[str, ...]
) -> tuple[np.ndarray, Counter[str], int]:
    column = {g: j for j, g in enumerate(vocabulary)}
    y = np.zeros((len(movies), len(vocabulary)), dtype=np.int64)
    outside: Counter[str] = Counter()
    for i, movie in enumerate(movies):
        for genre in movie.genres:
            if genre in column:
                y[i, column[genre]] = 1
            else:
                outside[genre] += 1
    return y, outside, int((y.sum(axis=1) == 0).sum())


def _image_items(
    movie_dir: Path, ids: list[str], verify: bool, progress: bool
) -> tuple[list[str | None], list[str], list[str]]:
    items: list[str | None] = []
    absent: list[str] = []
    unreadable: list[str] = []
    for movie_id in progress_bar(ids, enabled=progress, desc="MM-IMDb posters", total=len(ids)):
        path = movie_dir / f"{movie_id}.jpeg"
        if not path.is_file():
            absent.append(movie_id)
            items.append(None)
        elif verify and not image_is_readable(path):
            unreadable.append(movie_id)
            items.append(None)
        else:
            items.append(str(path))
    return items, absent, unreadable


def load_mmimdb(
    data_dir: str | os.PathLike[str],
    *,
    split: str | Sequence[str] | None = None,
    genres: str | Sequence[str] = "train",
    plot: PlotChoice = "longest",
    verify_images: bool = True,
    progress: bool = True,
) -> RawMultimodalDataset:
    """Load MM-IMDb plots and poster paths with multi-label genres.

    See the module documentation for the layout, the plot choice and the
    genre vocabulary.

    Parameters
    ----------
    data_dir : str or path-like
        The ``mmimdb`` folder of the release (holding ``split.json``) or its parent.
    split : str or sequence of str, optional
        Load only these splits (``"train"``, ``"val"``/``"dev"``, ``"test"``);
        default all. The genre vocabulary still comes from the training split.
    genres : {"train", "mmimdb23"} or sequence of str, default="train"
        Label vocabulary (columns of ``y``).
    plot : {"longest", "first", "join"}, default="longest"
        Which entry of the ``"plot"`` list becomes the text.
    verify_images : bool, default=True
        Open every poster with pillow and mark unreadable ones missing; with
        False only the file's existence is checked.
    progress : bool, default=True
        Show tqdm bars (when tqdm is installed).

    Returns
    -------
    RawMultimodalDataset
        Modalities ``text`` (str) and ``image`` (path str), ``task="multilabel"``,
        ``label_names`` the genre vocabulary, splits ``train``/``val``/``test``.

    Raises
    ------
    FileNotFoundError
        If the folder or ``split.json`` is absent, or a listed id has no
        ``<id>.json``.
    ValueError
        If a JSON file is malformed or lacks ``"genres"``, or ``split.json`` is
        not a mapping of split names to id lists; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from ul4m4.datasets._fixtures import write_mmimdb_fixture
    >>> root = write_mmimdb_fixture(tempfile.mkdtemp(), n=20, seed=0)
    >>> ds = load_mmimdb(root)
    >>> ds.task, ds.modality_names, ds.y.shape[0] == ds.n_samples
    ('multilabel', ('text', 'image'), True)
    """
    if plot not in ("longest", "first", "join"):
        raise ValueError(f"plot must be 'longest', 'first' or 'join', got {plot!r}")
    root = _find_root(check_folder(data_dir, _NAME))
    split_path = root / "split.json"
    all_splits = read_split_file(
        split_path, 'the MM-IMDb split {"train": [ids], "dev": ..., "test": ...}'
    )
    wanted = select_splits(all_splits, split, split_path)
    movie_dir = root / "dataset" if (root / "dataset").is_dir() else root
    ids = [i for members in wanted.values() for i in members]
    _check_ids_known(movie_dir, ids, split_path)
    if verify_images:
        require_pil(_NAME)

    movies = [
        _read_movie(movie_dir / f"{i}.json", plot)
        for i in progress_bar(ids, enabled=progress, desc="MM-IMDb records", total=len(ids))
    ]
    train_genres = None
    if isinstance(genres, str) and genres == "train":
        if "train" in wanted:
            train_genres = [m.genres for m in movies[: len(wanted["train"])]]
        else:
            _check_ids_known(movie_dir, all_splits.get("train", []), split_path)
            train_genres = [
                _read_movie(movie_dir / f"{i}.json", plot).genres
                for i in all_splits.get("train", [])
            ]
    vocabulary = _vocabulary(genres, train_genres)
    y, outside, no_genre = _labels(movies, vocabulary)
    images, absent, unreadable = _image_items(movie_dir, ids, verify_images, progress)

    bounds = np.cumsum([0] + [len(m) for m in wanted.values()])
    splits = {s: np.arange(bounds[k], bounds[k + 1]) for k, s in enumerate(wanted)}
    notes: dict[str, Any] = {
        "plot missing": sum(m.plot is None for m in movies),
        "poster file absent": f"{len(absent)} {shown(absent)}" if absent else 0,
        "poster unreadable": f"{len(unreadable)} {shown(unreadable)}" if unreadable else 0,
        "genre labels outside the vocabulary": dict(sorted(outside.items())),
        "movies with no genre in the vocabulary": no_genre,
    }
    dataset = RawMultimodalDataset(
        name=_NAME,
        modalities={"text": [m.plot for m in movies], "image": images},
        y=y,
        task="multilabel",
        splits=splits,
        ids=ids,
        label_names=vocabulary,
        notes=notes,
    )
    warn_absent_modalities(dataset, {"image": f"<id>.jpeg files in {movie_dir}"})
    return dataset
