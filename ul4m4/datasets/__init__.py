"""Data sets: mfeat (shipped), MovieLens (built locally from packages), user folders,
and raw loaders of the paper's data sets (MM-IMDb, CMU-MOSI, Sleep-EDF; user copies)."""

from ._raw import RawMultimodalDataset, Waveform, read_wav
from .folder import load_folder
from .mfeat import MFEAT_MODALITIES, load_mfeat
from .mmimdb import MMIMDB_GENRES_23, MMIMDB_MODALITIES, load_mmimdb
from .mosi import MOSI_MODALITIES, MOSI_RANGE, load_mosi
from .movielens import (
    MOVIELENS_GENRES,
    MOVIELENS_META_COLUMNS,
    MOVIELENS_MODALITIES,
    load_movielens,
    load_movielens_ratings,
)
from .sleep_edf import SLEEP_STAGES, load_sleep_edf

__all__ = [
    "MFEAT_MODALITIES",
    "MMIMDB_GENRES_23",
    "MMIMDB_MODALITIES",
    "MOSI_MODALITIES",
    "MOSI_RANGE",
    "MOVIELENS_GENRES",
    "MOVIELENS_META_COLUMNS",
    "MOVIELENS_MODALITIES",
    "SLEEP_STAGES",
    "RawMultimodalDataset",
    "Waveform",
    "load_folder",
    "load_mfeat",
    "load_mmimdb",
    "load_mosi",
    "load_movielens",
    "load_movielens_ratings",
    "load_sleep_edf",
    "read_wav",
]
