"""Data sets: mfeat (shipped), MovieLens (built locally from packages), user folders."""

from .folder import load_folder
from .mfeat import MFEAT_MODALITIES, load_mfeat
from .movielens import (
    MOVIELENS_GENRES,
    MOVIELENS_META_COLUMNS,
    MOVIELENS_MODALITIES,
    load_movielens,
    load_movielens_ratings,
)

__all__ = [
    "MFEAT_MODALITIES",
    "MOVIELENS_GENRES",
    "MOVIELENS_META_COLUMNS",
    "MOVIELENS_MODALITIES",
    "load_folder",
    "load_mfeat",
    "load_movielens",
    "load_movielens_ratings",
]
