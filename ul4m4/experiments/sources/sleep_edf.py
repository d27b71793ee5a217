"""Sleep-EDF in the deep experiment: EEG channels, embedded per seed and mask.

The signal autoencoder is trained, so it is fitted on the *observed training* channels
only, after masking: the embeddings depend on the mask and are made in :meth:`embed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..._utils.text import first_line
from .base import DatasetPreset, EmbeddedData, ExperimentError, check_splits
from .raw import RawSource

__all__ = ["SleepEDFSource", "embed_signals"]


class SleepEDFSource(RawSource):
    """Sleep-EDF (:func:`ul4m4.datasets.sleep_edf.load_sleep_edf`): sleep stages, paper k 1."""

    preset = DatasetPreset(
        "sleep-edf",
        "multiclass",
        1,
        (1, 4, 16, 64),
        configs=("pm0.4_ps0.5",),
        fusion_preset="sleep_edf",
    )

    @classmethod
    def loader(cls) -> Callable[..., Any]:
        from ...datasets.sleep_edf import load_sleep_edf

        return load_sleep_edf

    def seed_data(self, seed: int) -> EmbeddedData | None:
        return None  # the encoder learns from the observed training channels of each mask

    def embed(
        self, seed: int, mask: np.ndarray, data: EmbeddedData | None
    ) -> tuple[EmbeddedData, float]:
        cfg = self.config
        data = embed_signals(
            self.raw,
            mask,
            self.splits,
            epochs=cfg.signal_epochs,
            random_state=seed,
            progress=cfg.progress,
        )
        return data, data.encode_s


def embed_signals(
    raw: Any,
    observed: np.ndarray,
    splits: Mapping[str, np.ndarray],
    *,
    epochs: int = 20,
    random_state: int = 0,
    progress: bool = True,
) -> EmbeddedData:
    """Sleep-EDF: train the signal autoencoder on the observed training channels, encode all.

    ``observed`` is the (n, channels) availability after masking, so the encoder never
    learns from a channel that the imputers and the fusion model are told is missing.
    """
    from ...encoders.signal import encode_signals

    start = time.perf_counter()
    names = list(raw.modalities)
    n = len(raw.y)
    length = _signal_length(raw, names)
    signals = {name: np.zeros((n, length), dtype=np.float32) for name in names}
    for c, name in enumerate(names):
        for i, item in enumerate(raw.modalities[name]):
            # Hidden channels are never copied, so the encoder cannot read them.
            if item is not None and observed[i, c]:
                signals[name][i] = np.asarray(item, dtype=np.float32)
    splits = check_splits(splits, n, "sleep-edf")
    try:
        codes = encode_signals(
            signals,
            {name: observed[:, c] for c, name in enumerate(names)},
            splits["train"],
            epochs=epochs,
            random_state=random_state,
            progress=progress,
        )
    except ValueError as exc:
        raise ExperimentError(f"sleep-edf encoder: {first_line(exc)}") from None
    X = {name: np.asarray(codes[name], dtype=np.float64) for name in names}
    for c, name in enumerate(names):
        X[name][~observed[:, c]] = np.nan
    return EmbeddedData(
        X=X,
        y=np.asarray(raw.y),
        task=str(raw.task),
        splits=splits,
        label_names=list(raw.label_names) if raw.label_names is not None else None,
        output_range=None,
        encode_s=time.perf_counter() - start,
    )


def _signal_length(raw: Any, names: Sequence[str]) -> int:
    for name in names:
        for item in raw.modalities[name]:
            if item is not None:
                return int(np.asarray(item).shape[-1])
    raise ExperimentError("sleep-edf: no channel has any signal")
