"""MM-IMDb in the deep experiment: poster and plot, embedded once by frozen encoders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import DatasetPreset
from .raw import EncodedSource

__all__ = ["MMIMDbSource"]


class MMIMDbSource(EncodedSource):
    """MM-IMDb (:func:`ul4m4.datasets.mmimdb.load_mmimdb`): multi-label genres, paper k 64."""

    preset = DatasetPreset(
        "mmimdb",
        "multilabel",
        64,
        (16, 32, 64, 128),
        configs=("complex_60_20_20",),
        fusion_preset="mmimdb",
        encoders={"text": "minilm", "image": "efficientnet"},
    )

    @classmethod
    def loader(cls) -> Callable[..., Any]:
        from ...datasets.mmimdb import load_mmimdb

        return load_mmimdb
