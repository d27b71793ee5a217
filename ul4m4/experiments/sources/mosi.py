"""CMU-MOSI in the deep experiment: text, audio and vision, embedded once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import DatasetPreset
from .raw import EncodedSource

__all__ = ["MosiSource"]


class MosiSource(EncodedSource):
    """CMU-MOSI (:func:`ul4m4.datasets.mosi.load_mosi`): sentiment regression, paper k 10."""

    preset = DatasetPreset(
        "mosi",
        "regression",
        10,
        (10, 20, 50, 100),
        configs=("100_20_20",),
        fusion_preset="mosi",
        encoders={"text": "minilm", "audio": "spectrum", "video": "efficientnet"},
    )
    # The reference MOSI script trains on the complete training split.
    paper_complete_train = True

    @classmethod
    def loader(cls) -> Callable[..., Any]:
        from ...datasets.mosi import load_mosi

        return load_mosi
