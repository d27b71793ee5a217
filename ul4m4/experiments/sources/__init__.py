"""The data sets of the deep experiment: one :class:`Source` subclass each, one registry.

:data:`SOURCES` maps the command-line name to the class; its :attr:`Source.preset`
holds the per-data-set settings of SPEC §5 (task, paper k, clean k sweep, default
missingness, fusion model). To add a data set, write a module with a ``Source``
subclass and list it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    SPLITS,
    DatasetPreset,
    EmbeddedData,
    ExperimentError,
    Source,
    check_setting,
    check_splits,
    complete_splits,
    default_embedding_cache,
    natural_availability,
    random_splits,
)
from .mmimdb import MMIMDbSource
from .mosi import MosiSource
from .movielens import MovieLensSource, load_movielens_data
from .raw import EncodedSource, RawSource, embed_dataset, stack_vectors
from .sleep_edf import SleepEDFSource, embed_signals

__all__ = [
    "DEEP_DATASETS",
    "SOURCES",
    "SPLITS",
    "DatasetPreset",
    "EmbeddedData",
    "EncodedSource",
    "ExperimentError",
    "MMIMDbSource",
    "MosiSource",
    "MovieLensSource",
    "RawSource",
    "SleepEDFSource",
    "Source",
    "check_setting",
    "check_splits",
    "complete_splits",
    "default_embedding_cache",
    "embed_dataset",
    "embed_signals",
    "load_movielens_data",
    "load_raw",
    "natural_availability",
    "random_splits",
    "stack_vectors",
]

#: The data sets of the deep experiment, by command-line name, in table order.
SOURCES: dict[str, type[Source]] = {
    cls.preset.name: cls for cls in (MMIMDbSource, MosiSource, SleepEDFSource, MovieLensSource)
}
DEEP_DATASETS = tuple(SOURCES)


def load_raw(dataset: str, data_dir: str | Path, *, progress: bool = False) -> Any:
    """The raw data set (:class:`ul4m4.datasets.RawMultimodalDataset`) of a paper data set."""
    cls = SOURCES.get(dataset)
    if cls is None or not issubclass(cls, RawSource):
        raw = [name for name, c in SOURCES.items() if issubclass(c, RawSource)]
        raise ExperimentError(f"no raw data set {dataset!r}; choose from {', '.join(raw)}")
    return cls.load_raw(data_dir, progress=progress)
