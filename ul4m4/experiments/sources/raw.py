"""Data sets read raw from a folder (:class:`ul4m4.datasets.RawMultimodalDataset`).

:class:`RawSource` loads the raw items once and derives the modality names, the
natural availability and the train/val/test splits from them; :class:`EncodedSource`
also embeds every observed item once with frozen encoders (cached).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._utils.text import first_line
from .base import (
    EmbeddedData,
    ExperimentError,
    Source,
    check_setting,
    check_splits,
    complete_splits,
    default_embedding_cache,
    natural_availability,
)

if TYPE_CHECKING:
    from ..deep import DeepConfig

__all__ = ["EncodedSource", "RawSource", "embed_dataset", "stack_vectors"]


class RawSource(Source):
    """A data set whose raw items are read from ``config.data_dir`` by :meth:`loader`."""

    @classmethod
    def loader(cls) -> Callable[..., Any]:
        """The function that reads the raw data set from a folder (imported lazily)."""
        raise NotImplementedError

    @classmethod
    def load_raw(cls, data_dir: str | Path, *, progress: bool = False) -> Any:
        """The raw data set (:class:`ul4m4.datasets.RawMultimodalDataset`) in ``data_dir``."""
        name = cls.preset.name
        try:
            loader = cls.loader()
        except (ImportError, AttributeError) as exc:
            raise ExperimentError(
                f"the {name} loader is not available ({first_line(exc)})"
            ) from None
        accepts_progress = "progress" in inspect.signature(loader).parameters
        try:
            return loader(data_dir, **({"progress": progress} if accepts_progress else {}))
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ExperimentError(
                f"cannot read {name} from {str(data_dir)!r}: {first_line(exc)}"
            ) from None

    def __init__(
        self,
        config: DeepConfig,
        encoders: Mapping[str, Any] | None = None,
        loader_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, encoders, loader_kwargs)
        assert config.data_dir is not None  # DeepConfig.validate checked it
        self.raw = self.load_raw(config.data_dir, progress=config.progress)
        self.names = list(self.raw.modalities)
        for setting in config.settings():  # before any encoding
            check_setting(setting, self.names)
        self.natural = natural_availability(self.raw)
        self.splits = complete_splits(
            self.raw.splits,
            len(self.raw.y),
            groups=self.raw.groups,
            val_size=config.val_size,
            source=config.dataset,
        )


class EncodedSource(RawSource):
    """A raw data set whose items frozen encoders embed once, for every seed and mask."""

    def __init__(
        self,
        config: DeepConfig,
        encoders: Mapping[str, Any] | None = None,
        loader_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, encoders, loader_kwargs)
        self.embedded = embed_dataset(
            self.raw,
            encoders=self._encoders(encoders),
            cache_dir=config.cache_dir or default_embedding_cache(),
            progress=config.progress,
            source=config.dataset,
            splits=self.splits,
        )

    def _encoders(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Encoders of the modalities whose items are not vectors already."""
        if given is not None:
            return dict(given)
        from .. import deep_encoders

        needed = [
            name
            for name, items in self.raw.modalities.items()
            if stack_vectors(list(items), name) is None
        ]
        # The preset's kinds of the modalities that need one, then the --encoder overrides.
        defaults = {name: kind for name, kind in self.preset.encoders.items() if name in needed}
        kinds = {**defaults, **self.config.encoders}
        try:
            return deep_encoders.default_encoders(
                self.config.dataset, needed, kinds, progress=self.config.progress
            )
        except (ValueError, ImportError, OSError) as exc:
            raise ExperimentError(first_line(exc)) from None


def stack_vectors(items: Sequence[Any], modality: str) -> np.ndarray | None:
    """Items that are already numeric vectors, stacked (None rows -> NaN); else None."""
    present = [it for it in items if it is not None]
    if not present:
        raise ExperimentError(f"modality {modality!r} has no observed item")
    first = present[0]
    if not (isinstance(first, np.ndarray) and first.ndim == 1 and first.dtype.kind in "fiu"):
        return None
    dim = first.shape[0]
    out = np.full((len(items), dim), np.nan)
    for i, item in enumerate(items):
        if item is None:
            continue
        vec = np.asarray(item, dtype=np.float64)
        if vec.shape != (dim,):
            raise ExperimentError(
                f"modality {modality!r}: row {i} has shape {vec.shape}, expected ({dim},)"
            )
        out[i] = vec
    return out


def embed_dataset(
    raw: Any,
    *,
    encoders: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    batch_size: int = 32,
    source: str = "dataset",
    splits: Mapping[str, np.ndarray] | None = None,
) -> EmbeddedData:
    """Encode every observed raw item of a data set once (cached); missing items stay NaN.

    Parameters
    ----------
    raw : RawMultimodalDataset
        ``modalities`` (name -> list of raw items, ``None`` where missing), ``y``,
        ``task``, ``splits``, ``label_names``, ``output_range``.
    encoders : dict of str to encoder, optional
        Encoder per modality (callable on a list, with ``cache_id`` and ``dim``).
        Modalities whose items are numeric vectors need none.
    cache_dir : str or Path, optional
        Embedding cache of :func:`ul4m4.encoders.encode_modality`.
    splits : dict, optional
        Train/val/test rows (default: ``raw.splits``, see :func:`complete_splits`).

    Returns
    -------
    EmbeddedData
    """
    from ...encoders.cache import encode_modality

    start = time.perf_counter()
    encoders = dict(encoders or {})
    X: dict[str, np.ndarray] = {}
    for name, items in raw.modalities.items():
        items = list(items)
        stacked = stack_vectors(items, name)
        if stacked is not None:
            X[name] = stacked
            continue
        if name not in encoders:
            raise ExperimentError(f"{source}: no encoder for modality {name!r}")
        X[name] = np.asarray(
            encode_modality(
                encoders[name],
                items,
                cache_dir=cache_dir,
                batch_size=batch_size,
                progress=progress,
            ),
            dtype=np.float64,
        )
    y = np.asarray(raw.y)
    return EmbeddedData(
        X=X,
        y=y,
        task=str(raw.task),
        splits=check_splits(raw.splits if splits is None else splits, y.shape[0], source),
        label_names=list(raw.label_names) if raw.label_names is not None else None,
        output_range=tuple(raw.output_range) if raw.output_range is not None else None,
        encode_s=time.perf_counter() - start,
    )
