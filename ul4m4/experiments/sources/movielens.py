"""MovieLens in the deep experiment: embedded already, with a rating SVD fitted per seed.

Not a paper data set. Its rows are split at random per seed, and the rating SVD sees
that seed's training movies only, so the embeddings, names and splits are made in
:meth:`MovieLensSource.seed_data`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..._utils.text import first_line
from .base import DatasetPreset, EmbeddedData, ExperimentError, Source, random_splits

__all__ = ["MovieLensSource", "load_movielens_data"]


class MovieLensSource(Source):
    """MovieLens (:func:`ul4m4.datasets.load_movielens`): multi-label genres, paper k 16."""

    # A mid-sized model (d=128, 4 heads, 1 layer, head 64), Adam 1e-3, batch 128, up to
    # 20 epochs, stopping after 4 without a validation micro-F1 gain.
    preset = DatasetPreset(
        "movielens",
        "multilabel",
        16,
        (4, 16, 64),
        missing=(0.3, 0.5, 0.7),
        fusion=dict(
            d=128,
            heads=4,
            layers=1,
            head_hidden=(64,),
            lr=1e-3,
            batch_size=128,
            max_epochs=20,
            patience=4,
        ),
    )

    @classmethod
    def check_data_dir(cls, data_dir: str | Path | None) -> None:
        """The folder is the embedding cache: optional, but it must exist when given."""
        if data_dir is not None and not Path(data_dir).is_dir():
            raise ExperimentError(f"MovieLens cache folder {str(data_dir)!r} does not exist")

    def seed_data(self, seed: int) -> EmbeddedData | None:
        cfg = self.config
        data = load_movielens_data(
            seed,
            cache_dir=cfg.data_dir,
            val_size=cfg.val_size,
            test_size=cfg.test_size,
            progress=cfg.progress,
            **self.loader_kwargs,
        )
        self.names = list(data.X)
        self.natural = data.natural_mask()
        self.splits = data.splits
        return data

    def embed(
        self, seed: int, mask: np.ndarray, data: EmbeddedData | None
    ) -> tuple[EmbeddedData, float]:
        if data is None:
            raise TypeError("MovieLensSource.embed needs the data of seed_data")
        return data, data.encode_s  # made once per seed (its SVD)


def load_movielens_data(
    seed: int,
    *,
    cache_dir: str | Path | None = None,
    val_size: float = 0.1,
    test_size: float = 0.2,
    progress: bool = True,
    **loader_kwargs: Any,
) -> EmbeddedData:
    """MovieLens embeddings with a seeded train/val/test split; the rating SVD sees train only.

    Task: the 19 genres as multi-label targets (genres are not an input modality: the
    modalities are ``title`` (MiniLM), ``ratings`` (rating SVD) and ``meta``).
    ``loader_kwargs`` go to :func:`ul4m4.datasets.load_movielens` (``frame``,
    ``encoder`` for offline tests).
    """
    from ...datasets.movielens import MOVIELENS_GENRES, load_movielens

    start = time.perf_counter()
    n = _movielens_size(cache_dir, progress, loader_kwargs)
    splits = random_splits(n, val_size, test_size, seed)
    try:
        X, y = load_movielens(
            cache_dir=cache_dir,
            progress=progress,
            train_idx=splits["train"],
            random_state=seed,
            **loader_kwargs,
        )
    except ImportError as exc:
        raise ExperimentError(f"MovieLens cannot be built here: {first_line(exc)}") from None
    return EmbeddedData(
        X=X,
        y=y,
        task="multilabel",
        splits=splits,
        label_names=list(MOVIELENS_GENRES),
        encode_s=time.perf_counter() - start,
    )


def _movielens_size(
    cache_dir: str | Path | None, progress: bool, loader_kwargs: Mapping[str, Any]
) -> int:
    """Number of movies (rows), read from the cache before the split is drawn."""
    from ...datasets.movielens import load_movielens_ratings

    accepted = inspect.signature(load_movielens_ratings).parameters
    kwargs = {k: v for k, v in loader_kwargs.items() if k in accepted}
    try:
        ratings, _ = load_movielens_ratings(cache_dir=cache_dir, progress=progress, **kwargs)
    except ImportError as exc:
        raise ExperimentError(f"MovieLens cannot be built here: {first_line(exc)}") from None
    return int(ratings.shape[0])
