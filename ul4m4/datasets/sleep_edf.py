"""Sleep-EDF preprocessed 30-s epochs as raw per-channel signals with 5 sleep stages.

The recordings (PhysioNet Sleep-EDF) are not redistributed; ul4m4 reads epochs the
user has already cut and filtered, one ``.npy`` file per epoch, described by a
``metadata.json``::

    sleep_edf/
    ├── metadata.json
    ├── SC4001E0_0000.npy       # float array (n_channels_of_epoch, length)
    ├── SC4001E0_0001.npy
    └── ...

``metadata.json``::

    {
      "channels": ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental",
                   "Resp oro-nasal"],
      "stages": ["W", "N1", "N2", "N3", "REM"],        # optional, this is the default
      "sampling_rate": 100,                            # optional, reported only
      "epochs": [
        {"id": "SC4001E0_0000", "subject": "SC4001", "label": "W"},
        {"id": "SC4001E0_0001", "subject": "SC4001", "label": 2,
         "channels": ["EEG Fpz-Cz", "EOG horizontal"],  # optional: rows of this file
         "file": "SC4001/0001.npy"}                    # optional, default "<id>.npy"
      ],
      "splits": {"train": [...], "val": [...], "test": [...]}
    }

* Every channel is a modality (named as in ``"channels"``); an item is a 1-D
  float32 array of the epoch's ``length`` samples. All epochs must have the same
  length.
* A channel is missing for an epoch when the epoch's ``"channels"`` list omits
  it or its row is entirely NaN. A row that is partly NaN or holds infinities is
  an error (naming the file and channel), not a missing channel.
* ``"label"`` is a stage name from ``"stages"`` or its index (0-based); ``y``
  holds indices, ``label_names`` the stage names (W, N1, N2, N3, REM: N3 merges
  R&K stages 3 and 4).
* ``"splits"`` lists either **subject ids** (every epoch of those subjects, the
  usual subject-wise protocol) or epoch ids, ``val`` being optional (``dev`` and
  ``valid`` are read as ``val``). Without one, ``val_fraction`` moves whole
  training subjects to a seeded validation split. Epochs in no split are left
  out and counted in the notes.

Memory: all selected epochs are read, ``n × channels × length × 4`` bytes
(Sleep-EDF-20 at 100 Hz, 42k epochs × 5 channels: about 2.5 GB); load one split
at a time or a subset of channels to need less.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._raw import (
    SPLIT_ALIASES,
    RawMultimodalDataset,
    carve_validation,
    check_folder,
    ordered_splits,
    progress_bar,
    read_json,
    read_npy,
    select_splits,
    shown,
    warn_absent_modalities,
)

__all__ = ["SLEEP_STAGES", "load_sleep_edf"]

#: Default stage names, in label-index order (AASM 5-class).
SLEEP_STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
_NAME = "Sleep-EDF"


@dataclass(frozen=True)
class _Epoch:
    id: str
    subject: str
    label: int
    channels: tuple[str, ...]
    file: Path


def _string_list(value: Any, what: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: {what} must be a non-empty list of strings")
    if len(set(value)) != len(value):
        raise ValueError(f"{path}: {what} has repeated names: {value}")
    return tuple(value)


def _label_index(value: Any, stages: tuple[str, ...], epoch_id: str, path: Path) -> int:
    if isinstance(value, str) and value in stages:
        return stages.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(stages):
        return value
    raise ValueError(
        f"{path}: epoch {epoch_id!r} has label {value!r}; expected one of {list(stages)} "
        f"or an index 0..{len(stages) - 1}"
    )


def _parse_epochs(
    raw: Any, channels: tuple[str, ...], stages: tuple[str, ...], root: Path, path: Path
) -> list[_Epoch]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{path}: "epochs" must be a non-empty list of epoch records')
    epochs = []
    for number, record in enumerate(raw):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise ValueError(f'{path}: epoch record {number} must be an object with a string "id"')
        epoch_id = record["id"]
        if "label" not in record:
            raise ValueError(f'{path}: epoch {epoch_id!r} has no "label"')
        own = record.get("channels", list(channels))
        own = _string_list(own, f"the channels of epoch {epoch_id!r}", path)
        unknown = [c for c in own if c not in channels]
        if unknown:
            raise ValueError(f"{path}: epoch {epoch_id!r} lists unknown channels {unknown}")
        epochs.append(
            _Epoch(
                id=epoch_id,
                subject=str(record.get("subject", epoch_id)),
                label=_label_index(record["label"], stages, epoch_id, path),
                channels=own,
                file=root / str(record.get("file", f"{epoch_id}.npy")),
            )
        )
    ids = [e.id for e in epochs]
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"{path}: repeated epoch ids {shown(repeated)}")
    return epochs


def _split_rows(raw: Any, epochs: list[_Epoch], path: Path) -> dict[str, np.ndarray]:
    """Epoch rows of each split; members are all subject ids or all epoch ids."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f'{path}: "splits" must be an object of split name -> list of ids')
    splits: dict[str, list[str]] = {}
    for key, members in raw.items():
        if key not in SPLIT_ALIASES or not isinstance(members, list):
            raise ValueError(
                f"{path}: split {key!r} must be one of {sorted(SPLIT_ALIASES)} with a list of ids"
            )
        if SPLIT_ALIASES[key] in splits:
            raise ValueError(f"{path}: two keys name the {SPLIT_ALIASES[key]!r} split")
        splits[SPLIT_ALIASES[key]] = [str(m) for m in members]
    members = [m for ms in splits.values() for m in ms]
    subjects = np.array([e.subject for e in epochs])
    epoch_ids = np.array([e.id for e in epochs])
    known_subjects, known_epochs = set(subjects.tolist()), set(epoch_ids.tolist())
    by_subject = set(members) <= known_subjects
    if not by_subject and not set(members) <= known_epochs:
        unknown = sorted(set(members) - known_subjects - known_epochs)
        if unknown:
            raise ValueError(
                f"{path}: split ids that are neither a subject nor an epoch: {shown(unknown)}"
            )
        raise ValueError(f"{path}: the splits mix subject ids and epoch ids; use one kind")
    reference = subjects if by_subject else epoch_ids
    if len(set(members)) != len(members):
        raise ValueError(f"{path}: an id is listed in more than one split")
    return ordered_splits({s: np.flatnonzero(np.isin(reference, ms)) for s, ms in splits.items()})


def _read_epoch(
    epoch: _Epoch, wanted: tuple[str, ...], length: int | None
) -> tuple[dict[str, np.ndarray | None], int]:
    array = read_npy(epoch.file)
    if array.ndim != 2 or array.shape[0] != len(epoch.channels):
        raise ValueError(
            f"{epoch.file}: expected shape ({len(epoch.channels)}, length) for channels "
            f"{list(epoch.channels)}, got {array.shape}"
        )
    if length is not None and array.shape[1] != length:
        raise ValueError(
            f"{epoch.file}: {array.shape[1]} samples per channel, other epochs have {length}"
        )
    signals: dict[str, np.ndarray | None] = {}
    for name in wanted:
        if name not in epoch.channels:
            signals[name] = None
            continue
        row = np.asarray(array[epoch.channels.index(name)], dtype=np.float32)
        nan = np.isnan(row)
        if nan.all():
            signals[name] = None
        elif nan.any() or np.isinf(row).any():
            raise ValueError(
                f"{epoch.file}: channel {name!r} is partly NaN or infinite; a missing channel "
                "must be entirely NaN"
            )
        else:
            signals[name] = np.ascontiguousarray(row)
    return signals, int(array.shape[1])


def load_sleep_edf(
    data_dir: str | os.PathLike[str],
    *,
    split: str | Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    val_fraction: float | None = None,
    random_state: int | np.random.Generator | None = 0,
    progress: bool = True,
) -> RawMultimodalDataset:
    """Load preprocessed Sleep-EDF epochs: one 1-D signal per channel, 5-class stages.

    See the module documentation for the layout.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``metadata.json`` and the epoch files.
    split : str or sequence of str, optional
        Load only these splits; default all.
    channels : sequence of str, optional
        Channels to load (the modalities), in this order; default all of
        ``metadata["channels"]``.
    val_fraction : float, optional
        When the metadata has no ``val`` split, move about this fraction of the
        training subjects (whole subjects) to ``val``.
    random_state : int or Generator, default=0
        Seed of the subject draw for ``val_fraction``.
    progress : bool, default=True
        Show a tqdm bar while reading epochs (when tqdm is installed).

    Returns
    -------
    RawMultimodalDataset
        One modality per channel (float32 arrays of shape ``(length,)``),
        ``task="multiclass"``, ``label_names`` the stages, ``groups`` the subjects.

    Raises
    ------
    FileNotFoundError
        If the folder, ``metadata.json`` or an epoch file is absent.
    ValueError
        If ``metadata.json`` is malformed, a label or split id is unknown, or an
        epoch file is truncated, has the wrong shape or a partly-NaN channel; the
        message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from ul4m4.datasets._fixtures import write_sleep_edf_fixture
    >>> root = write_sleep_edf_fixture(tempfile.mkdtemp(), n_subjects=4, seed=0)
    >>> ds = load_sleep_edf(root)
    >>> ds.task, ds.label_names
    ('multiclass', ('W', 'N1', 'N2', 'N3', 'REM'))
    """
    root = check_folder(data_dir, _NAME)
    path = root / "metadata.json"
    meta = read_json(path, 'Sleep-EDF metadata with "channels", "epochs" and "splits"')
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    all_channels = _string_list(meta.get("channels"), '"channels"', path)
    stages = _string_list(meta.get("stages", list(SLEEP_STAGES)), '"stages"', path)
    wanted_channels = all_channels if channels is None else tuple(str(c) for c in channels)
    unknown = [c for c in wanted_channels if c not in all_channels]
    if unknown or not wanted_channels or len(set(wanted_channels)) != len(wanted_channels):
        raise ValueError(
            f"channels {list(wanted_channels)} must be distinct names of {list(all_channels)}"
        )
    epochs = _parse_epochs(meta.get("epochs"), all_channels, stages, root, path)
    groups = np.array([e.subject for e in epochs], dtype=object)
    splits = _split_rows(meta.get("splits"), epochs, path)
    if "val" not in splits and val_fraction is not None and "train" in splits:
        train, val = carve_validation(splits["train"], groups, val_fraction, random_state)
        splits = ordered_splits({**splits, "train": train, "val": val})
    in_no_split = len(epochs) - sum(len(r) for r in splits.values())
    chosen = select_splits(splits, split, path)  # type: ignore[arg-type]
    rows = np.concatenate(list(chosen.values())).astype(np.intp)

    signals: dict[str, list[np.ndarray | None]] = {c: [] for c in wanted_channels}
    length: int | None = None
    for row in progress_bar(rows, enabled=progress, desc="Sleep-EDF epochs", total=rows.size):
        read, length = _read_epoch(epochs[row], wanted_channels, length)
        for name, signal in read.items():
            signals[name].append(signal)

    bounds = np.cumsum([0] + [len(r) for r in chosen.values()])
    notes: dict[str, Any] = {
        "samples per channel": length,
        "sampling rate": meta.get("sampling_rate", "not given"),
        "epochs in no split": in_no_split,
        "split by": "subject" if _by_subject(meta.get("splits"), groups) else "epoch",
    }
    dataset = RawMultimodalDataset(
        name=_NAME,
        modalities=signals,
        y=np.array([epochs[r].label for r in rows], dtype=np.int64),
        task="multiclass",
        splits={s: np.arange(bounds[k], bounds[k + 1]) for k, s in enumerate(chosen)},
        ids=[epochs[r].id for r in rows],
        label_names=stages,
        groups=groups[rows],
        notes=notes,
    )
    warn_absent_modalities(dataset, {})
    return dataset


def _by_subject(raw_splits: dict[str, list[Any]], groups: np.ndarray) -> bool:
    members = {str(m) for ms in raw_splits.values() for m in ms}
    return members <= set(groups.tolist())
