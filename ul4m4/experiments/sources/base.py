"""What every data set of the deep experiment shares: its preset, its embeddings and splits.

A data set is one :class:`Source` subclass (one module each in this package), listed once
in :data:`ul4m4.experiments.sources.SOURCES`. The subclass says where the data comes from
and when it is embedded; :mod:`ul4m4.experiments.deep` does the rest (masks, imputers,
fusion model) the same way for every data set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._utils.text import first_line
from ...missingness import mask_from_data, parse_config
from ..benchmark import Setting

if TYPE_CHECKING:
    from ..deep import DeepConfig

__all__ = [
    "SPLITS",
    "DatasetPreset",
    "EmbeddedData",
    "ExperimentError",
    "Source",
    "check_setting",
    "check_splits",
    "complete_splits",
    "default_embedding_cache",
    "natural_availability",
    "random_splits",
]

#: Split names of every data set, in this order.
SPLITS = ("train", "val", "test")


class ExperimentError(ValueError):
    """An invalid experiment configuration or data set; the message is one line for the CLI."""


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """The per-data-set settings of SPEC §5 (and MovieLens, which the paper does not use).

    Attributes
    ----------
    name : str
        Data set name on the command line.
    task : {"multilabel", "regression", "multiclass"}
        Prediction task.
    paper_k : int
        k of the reference scripts (``protocol="paper"``).
    clean_ks : tuple of int
        k swept by default under ``protocol="clean"``.
    configs : tuple of str
        Default missingness configurations (empty: use ``missing``).
    missing : tuple of float
        Default shares of missing slots when ``configs`` is empty.
    fusion_preset : str or None
        Name of :meth:`ul4m4.fusion.FusionConfig.preset` (model and optimiser of SPEC §5).
    fusion : dict
        :class:`ul4m4.fusion.FusionConfig` parameters applied on top of the preset.
    encoders : dict of str to str
        Default encoder kind of each raw modality
        (:func:`ul4m4.experiments.deep_encoders.build_encoder`); ``--encoder`` overrides it.
    """

    name: str
    task: str
    paper_k: int
    clean_ks: tuple[int, ...]
    configs: tuple[str, ...] = ()
    missing: tuple[float, ...] = ()
    fusion_preset: str | None = None
    fusion: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    encoders: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EmbeddedData:
    """A data set as embeddings: what the imputers and the fusion model see.

    Attributes
    ----------
    X : dict of str to ndarray of shape (n, d_m)
        Embeddings; an all-NaN row is a modality the data set itself lacks.
    y : ndarray
        Targets: (n, C) 0/1 for multi-label, (n,) for regression or classes.
    task : str
        ``"multilabel"``, ``"regression"`` or ``"multiclass"``.
    splits : dict of str to ndarray
        Row indices of ``"train"``, ``"val"`` and ``"test"``.
    label_names : list of str or None
    output_range : (float, float) or None
        Range of a regression target (MOSI: (-3, 3)).
    encode_s : float
        Seconds spent producing the embeddings (cache reads included).
    """

    X: dict[str, np.ndarray]
    y: np.ndarray
    task: str
    splits: dict[str, np.ndarray]
    label_names: list[str] | None = None
    output_range: tuple[float, float] | None = None
    encode_s: float = 0.0

    @property
    def n_samples(self) -> int:
        return int(self.y.shape[0])

    def natural_mask(self) -> np.ndarray:
        """(n, M) availability of the data before any simulated missingness."""
        return mask_from_data(self.X)


def check_splits(splits: Mapping[str, Any], n: int, source: str) -> dict[str, np.ndarray]:
    out = {}
    for name in SPLITS:
        if name not in splits:
            raise ExperimentError(f"dataset {source!r} has no {name!r} split")
        rows = np.asarray(splits[name], dtype=np.int64)
        if rows.size == 0:
            raise ExperimentError(f"dataset {source!r}: the {name!r} split is empty")
        if rows.min() < 0 or rows.max() >= n:
            raise ExperimentError(
                f"dataset {source!r}: the {name!r} split has rows outside 0..{n - 1}"
            )
        out[name] = np.sort(rows)
    together = np.concatenate(list(out.values()))
    if np.unique(together).size != together.size:
        raise ExperimentError(f"dataset {source!r}: the train/val/test splits overlap")
    return out


def complete_splits(
    splits: Mapping[str, Any],
    n: int,
    *,
    groups: Sequence[Any] | None = None,
    val_size: float = 0.1,
    source: str = "dataset",
) -> dict[str, np.ndarray]:
    """Train/val/test row indices; a missing val split is carved out of train.

    The carved validation rows are whole groups (e.g. all segments of a video) when
    ``groups`` is given, chosen with a fixed seed (0) so that every seed of an
    experiment shares them.

    Examples
    --------
    >>> s = complete_splits({"train": np.arange(8), "test": np.array([8, 9])}, 10,
    ...                     groups=[0, 0, 1, 1, 2, 2, 3, 3, 4, 4], val_size=0.25)
    >>> s["val"].tolist(), s["test"].tolist()
    ([4, 5], [8, 9])
    """
    splits = {name: np.asarray(rows, dtype=np.int64) for name, rows in splits.items()}
    if "val" not in splits and "train" in splits:
        train = np.sort(splits["train"])
        keys = np.asarray(groups, dtype=object)[train] if groups is not None else train
        unique = np.array(sorted(set(keys.tolist()), key=str), dtype=object)
        if unique.size < 2:
            raise ExperimentError(f"dataset {source!r}: too few training rows to carve a val split")
        n_val = min(unique.size - 1, max(1, math.ceil(val_size * unique.size)))
        chosen = set(np.random.RandomState(0).permutation(unique)[:n_val].tolist())
        is_val = np.array([key in chosen for key in keys.tolist()], dtype=bool)
        splits["train"], splits["val"] = train[~is_val], train[is_val]
    return check_splits(splits, n, source)


def random_splits(n: int, val_size: float, test_size: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded train/val/test row indices (sorted) for a data set without official splits.

    Examples
    --------
    >>> s = random_splits(10, 0.2, 0.3, seed=0)
    >>> [len(s[k]) for k in ("train", "val", "test")]
    [5, 2, 3]
    """
    order = np.random.RandomState(seed).permutation(n)
    n_test = math.ceil(test_size * n)
    n_val = math.ceil(val_size * n)
    return {
        "train": np.sort(order[n_test + n_val :]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "test": np.sort(order[:n_test]),
    }


def default_embedding_cache() -> Path:
    """``$UL4M4_CACHE/embeddings``, else ``$XDG_CACHE_HOME/ul4m4/embeddings`` or ``~/.cache/...``.

    Entries are keyed by the encoder's ``cache_id`` and the item's content, so data sets
    can share the folder.
    """
    from ...datasets.movielens import default_cache_dir

    return default_cache_dir().parent / "embeddings"


#: Loader of each paper data set: (module, function).


def natural_availability(raw: Any) -> np.ndarray:
    """(n, M) availability of a raw data set: False where an item is ``None``."""
    return np.column_stack(
        [[item is not None for item in items] for items in raw.modalities.values()]
    )


def check_setting(setting: Setting, names: Sequence[str]) -> None:
    """Check a named missingness configuration against the modality names."""
    if setting.config is None:
        return
    try:
        parse_config(setting.config, names)
    except ValueError as exc:
        raise ExperimentError(first_line(exc)) from None


class Source:
    """One data set of the deep experiment: its embeddings and availability per seed.

    A subclass sets :attr:`preset` and fills :attr:`names`, :attr:`natural` and
    :attr:`splits` (at construction, or in :meth:`seed_data` when they depend on the
    seed). By default the embeddings are fixed: :meth:`seed_data` returns the same
    data for every seed and :meth:`embed` counts their encode time in the first seed.

    Parameters
    ----------
    config : DeepConfig
        The experiment (data folder, shares, encoders, progress).
    encoders : dict of str to encoder, optional
        Encoder per modality instead of the defaults.
    loader_kwargs : dict, optional
        Extra arguments of the data set's loader.
    """

    #: The data set's settings (name, task, k, missingness, fusion model).
    preset: ClassVar[DatasetPreset]
    #: Under ``protocol="paper"``, keep the training split complete (a reference script's choice).
    paper_complete_train: ClassVar[bool] = False

    def __init__(
        self,
        config: DeepConfig,
        encoders: Mapping[str, Any] | None = None,
        loader_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.loader_kwargs = dict(loader_kwargs or {})
        self.names: list[str] = []
        self.natural = np.ones((0, 0), dtype=bool)
        self.splits: dict[str, np.ndarray] = {}
        self.embedded: EmbeddedData | None = None

    @classmethod
    def check_data_dir(cls, data_dir: str | Path | None) -> None:
        """Raise :class:`ExperimentError` unless ``data_dir`` is an existing folder."""
        if data_dir is None:
            raise ExperimentError(f"dataset {cls.preset.name!r} needs a data folder (--data-dir)")
        if not Path(data_dir).is_dir():
            raise ExperimentError(f"data folder {str(data_dir)!r} does not exist")

    def seed_data(self, seed: int) -> EmbeddedData | None:
        """Embeddings valid for every setting of a seed (None: they depend on the mask)."""
        return self.embedded

    def embed(
        self, seed: int, mask: np.ndarray, data: EmbeddedData | None
    ) -> tuple[EmbeddedData, float]:
        """The embeddings of one seed and mask, and the encode seconds its rows carry.

        Fixed embeddings are encoded once, so only the first seed's rows count the time.
        """
        if data is None:
            raise TypeError(f"{type(self).__name__}.seed_data returned no embeddings")
        return data, data.encode_s if seed == self.config.first_seed else 0.0
