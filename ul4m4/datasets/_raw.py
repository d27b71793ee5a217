"""Raw (not yet encoded) multimodal data sets and the file readers the loaders share.

A :class:`RawMultimodalDataset` holds, per modality, one raw item per sample
(a text, an image path, a waveform, a signal array) or ``None`` where that
modality is missing for the sample. Encoding the items into embeddings happens
elsewhere; the loaders of MM-IMDb, CMU-MOSI and Sleep-EDF return this class.
"""

from __future__ import annotations

import json
import warnings
import wave
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np

from .._utils.progress import progress_bar as show_progress

__all__ = [
    "SPLIT_ALIASES",
    "RawMultimodalDataset",
    "Waveform",
    "read_json",
    "read_npy",
    "read_wav",
]

Task = Literal["multilabel", "regression", "multiclass"]
_TASKS = ("multilabel", "regression", "multiclass")

#: Split names found in public releases, mapped to the names used here.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
_SPLIT_ORDER = ("train", "val", "test")
_MAX_SHOWN = 5

_T = TypeVar("_T")


def shown(items: Sequence[Any]) -> str:
    """A short listing of ``items`` for error messages (the first few, then a count)."""
    head = ", ".join(repr(i) for i in list(items)[:_MAX_SHOWN])
    more = f", ... ({len(items)} in all)" if len(items) > _MAX_SHOWN else ""
    return f"[{head}{more}]"


class Waveform(NamedTuple):
    """A mono audio clip: float32 samples in [-1, 1] and their sampling rate in Hz."""

    samples: np.ndarray
    sample_rate: int


@dataclass
class RawMultimodalDataset:
    """Raw multimodal samples with labels, split indices and missing items marked ``None``.

    Parameters
    ----------
    name : str
        Data set name, used in messages and :meth:`summary`.
    modalities : dict of str to list
        One list per modality, each of length ``n``; item ``i`` is the raw input
        of sample ``i`` (text, image path, :class:`Waveform`, 1-D signal, list of
        frame paths) or ``None`` when the modality is missing for that sample.
    y : ndarray
        ``(n, C)`` 0/1 matrix (multilabel), ``(n,)`` float targets (regression)
        or ``(n,)`` integer classes ``0..C-1`` (multiclass).
    task : {"multilabel", "regression", "multiclass"}
    splits : dict of str to ndarray
        Row indices of each split (``"train"``, ``"val"``, ``"test"``; only the
        splits the data provide). Splits are disjoint.
    ids : list of str
        Sample identifiers as in the release (movie id, segment id, epoch id).
    label_names : tuple of str, optional
        Genre or class names (columns / classes of ``y``); None for regression.
    output_range : tuple of float, optional
        ``(low, high)`` of a regression target.
    groups : ndarray of str, optional
        The unit each sample belongs to (video, subject); samples of one group
        should stay in one split.
    notes : dict
        Loader-specific counts worth reporting (unreadable files, labels outside
        the vocabulary, ...); shown by :meth:`summary`.

    Examples
    --------
    >>> import numpy as np
    >>> ds = RawMultimodalDataset(
    ...     name="toy", modalities={"text": ["a", None, "c"], "image": [None, "b.png", "c.png"]},
    ...     y=np.array([0.5, -1.0, 2.0]), task="regression",
    ...     splits={"train": np.array([0, 1]), "test": np.array([2])},
    ...     ids=["s0", "s1", "s2"], output_range=(-3.0, 3.0))
    >>> ds.availability().tolist()
    [[True, False], [False, True], [True, True]]
    >>> ds.split("train").ids
    ['s0', 's1']
    """

    name: str
    modalities: dict[str, list[Any]]
    y: np.ndarray
    task: Task
    splits: dict[str, np.ndarray]
    ids: list[str]
    label_names: tuple[str, ...] | None = None
    output_range: tuple[float, float] | None = None
    groups: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.task not in _TASKS:
            raise ValueError(f"{self.name}: task must be one of {_TASKS}, got {self.task!r}")
        if not self.modalities:
            raise ValueError(f"{self.name}: no modality")
        for modality, items in self.modalities.items():
            if len(items) != n:
                raise ValueError(
                    f"{self.name}: modality {modality!r} has {len(items)} items for {n} ids"
                )
        if len(self.y) != n:
            raise ValueError(f"{self.name}: y has {len(self.y)} rows for {n} ids")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"{self.name}: groups has {len(self.groups)} entries for {n} ids")
        seen = np.zeros(n, dtype=bool)
        for split, rows in self.splits.items():
            rows = np.asarray(rows)
            if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
                raise ValueError(f"{self.name}: split {split!r} has row indices outside 0..{n - 1}")
            if seen[rows].any() or np.unique(rows).size != rows.size:
                raise ValueError(f"{self.name}: split {split!r} overlaps another split")
            seen[rows] = True

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return len(self.ids)

    @property
    def modality_names(self) -> tuple[str, ...]:
        """Modality names in column order of :meth:`availability`."""
        return tuple(self.modalities)

    def availability(self) -> np.ndarray:
        """``(n, M)`` boolean matrix: True where the modality's item is present."""
        return np.array(
            [[item is not None for item in items] for items in self.modalities.values()],
            dtype=bool,
        ).T.reshape(self.n_samples, len(self.modalities))

    def missing_counts(self) -> dict[str, int]:
        """Number of samples missing each modality."""
        missing = ~self.availability()
        return {m: int(missing[:, j].sum()) for j, m in enumerate(self.modalities)}

    def empty_rows(self) -> np.ndarray:
        """Indices of samples with no modality at all (an imputer cannot complete them)."""
        return np.flatnonzero(~self.availability().any(axis=1))

    def subset(self, rows: Sequence[int] | np.ndarray) -> RawMultimodalDataset:
        """The samples ``rows`` (in that order); split indices are remapped, notes kept."""
        rows = np.asarray(rows, dtype=np.intp)
        position = np.full(self.n_samples, -1, dtype=np.intp)
        position[rows] = np.arange(rows.size)
        splits = {}
        for split, members in self.splits.items():
            kept = position[np.asarray(members, dtype=np.intp)]
            splits[split] = np.sort(kept[kept >= 0])
        return RawMultimodalDataset(
            name=self.name,
            modalities={m: [items[i] for i in rows] for m, items in self.modalities.items()},
            y=self.y[rows],
            task=self.task,
            splits=splits,
            ids=[self.ids[i] for i in rows],
            label_names=self.label_names,
            output_range=self.output_range,
            groups=None if self.groups is None else self.groups[rows],
            notes=dict(self.notes),
        )

    def split(self, name: str) -> RawMultimodalDataset:
        """The samples of split ``name`` (``"train"``, ``"val"``/``"dev"``/``"valid"``, ``"test"``)."""
        canonical = canonical_split(name)
        if canonical not in self.splits:
            raise KeyError(f"{self.name} has no {name!r} split; it has {sorted(self.splits)}")
        return self.subset(self.splits[canonical])

    def summary(self) -> str:
        """A human-readable report: sizes, labels, missing items per modality, notes."""
        n = self.n_samples
        lines = [f"{self.name}: {n} samples, task {self.task}"]
        sizes = ", ".join(f"{s} {len(r)}" for s, r in self.splits.items())
        lines.append(f"  splits: {sizes or 'none'}")
        lines.append(f"  labels: {self._label_text()}")
        for modality, count in self.missing_counts().items():
            share = count / n if n else 0.0
            lines.append(f"  {modality}: {count} of {n} missing ({share:.1%})")
        empty = self.empty_rows()
        if empty.size:
            shown_ids = shown([self.ids[i] for i in empty])
            lines.append(f"  samples with no modality: {empty.size} {shown_ids}")
        for key, value in self.notes.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)

    def _label_text(self) -> str:
        if self.task == "regression":
            low, high = (float(self.y.min()), float(self.y.max())) if self.y.size else (0.0, 0.0)
            bounds = f", range {self.output_range}" if self.output_range else ""
            return f"observed [{low:.3g}, {high:.3g}]{bounds}"
        names = self.label_names or ()
        if self.task == "multiclass":
            counts = np.bincount(self.y.astype(np.intp), minlength=len(names))
        else:
            counts = self.y.sum(axis=0)
        return ", ".join(f"{name} {int(c)}" for name, c in zip(names, counts, strict=False))


def warn_absent_modalities(dataset: RawMultimodalDataset, hints: Mapping[str, str]) -> None:
    """Warn about a modality with no item at all: usually a layout error, not real data."""
    for modality, count in dataset.missing_counts().items():
        if dataset.n_samples and count == dataset.n_samples:
            where = f"; expected {hints[modality]}" if modality in hints else ""
            warnings.warn(
                f"{dataset.name}: every {modality!r} item is missing{where}",
                UserWarning,
                stacklevel=3,
            )


def canonical_split(name: str) -> str:
    """Map a release's split name (``dev``, ``valid``, ...) to train / val / test."""
    try:
        return SPLIT_ALIASES[name]
    except KeyError:
        raise ValueError(
            f"unknown split {name!r}; expected one of {sorted(SPLIT_ALIASES)}"
        ) from None


def ordered_splits(splits: Mapping[str, _T]) -> dict[str, _T]:
    """Splits in the order train, val, test."""
    return {s: splits[s] for s in _SPLIT_ORDER if s in splits}


def check_folder(data_dir: str | Path, dataset: str) -> Path:
    """The data folder as a Path; FileNotFoundError naming the data set if it is absent."""
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: data folder {folder} does not exist")
    return folder


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; errors name the file and what it should hold.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not valid UTF-8 JSON.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({what})")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON ({exc}); expected {what}") from exc


def read_split_file(path: Path, what: str) -> dict[str, list[str]]:
    """Read ``{"train": [ids], "dev"|"val"|"valid": [ids], "test": [ids]}`` into canonical names."""
    raw = read_json(path, what)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a JSON object of split name -> list of ids")
    splits: dict[str, list[str]] = {}
    for key, members in raw.items():
        if key not in SPLIT_ALIASES:
            raise ValueError(
                f"{path}: unknown split {key!r}; expected keys among {sorted(SPLIT_ALIASES)}"
            )
        canonical = SPLIT_ALIASES[key]
        if canonical in splits:
            raise ValueError(f"{path}: two keys name the {canonical!r} split")
        if not isinstance(members, list):
            raise ValueError(f"{path}: split {key!r} must be a list of ids")
        splits[canonical] = [str(m) for m in members]
    seen: dict[str, str] = {}
    for split, members in splits.items():
        for member in members:
            if member in seen:
                raise ValueError(
                    f"{path}: id {member!r} is listed in {seen[member]!r} and {split!r}"
                )
            seen[member] = split
    return ordered_splits(splits)


def select_splits(
    splits: dict[str, list[str]], split: str | Sequence[str] | None, path: Path
) -> dict[str, list[str]]:
    """Keep the requested split(s); ``None`` keeps all."""
    if split is None:
        return splits
    wanted = [canonical_split(s) for s in ([split] if isinstance(split, str) else split)]
    absent = [s for s in wanted if s not in splits]
    if absent:
        raise ValueError(f"{path}: no {absent} split; it defines {sorted(splits)}")
    return {s: splits[s] for s in _SPLIT_ORDER if s in wanted}


def read_npy(path: Path) -> np.ndarray:
    """Read a numeric ``.npy`` array; a truncated or non-numeric file raises ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(
            f"{path}: not a readable .npy array (truncated or corrupt?): {exc}"
        ) from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path}: is an .npz archive, not a .npy array")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {array.dtype} is not numeric")
    return array


def _pcm_to_float(frames: bytes, width: int, path: Path) -> np.ndarray:
    if width == 1:
        # 8-bit WAV is unsigned with 128 as zero.
        return (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    if width == 4:
        return (np.frombuffer(frames, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    raise ValueError(f"{path}: {8 * width}-bit samples are not supported (PCM 8/16/24/32-bit)")


def read_wav(path: str | Path) -> Waveform:
    """Read a PCM ``.wav`` file as a mono float32 waveform (channels averaged).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Waveform
        ``samples`` of shape ``(n_frames,)`` in [-1, 1] and ``sample_rate``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a PCM WAV file, or holds fewer frames than its header
        announces (truncated); the message names the file.

    Examples
    --------
    >>> import tempfile, wave, pathlib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.wav"
    >>> with wave.open(str(p), "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    ...     w.writeframes(np.array([0, 16384, -32768], dtype="<i2").tobytes())
    >>> read_wav(p).samples.tolist(), read_wav(p).sample_rate
    ([0.0, 0.5, -1.0], 16000)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        with wave.open(str(path), "rb") as handle:
            channels = handle.getnchannels()
            width = handle.getsampwidth()
            rate = handle.getframerate()
            announced = handle.getnframes()
            frames = handle.readframes(announced)
    except (wave.Error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable PCM WAV file: {exc}") from exc
    got = len(frames) // (channels * width)
    if got < announced or len(frames) % (channels * width):
        raise ValueError(
            f"{path}: truncated WAV file, header announces {announced} frames, holds {got}"
        )
    samples = _pcm_to_float(frames, width, path).reshape(-1, channels)
    mono = samples[:, 0] if channels == 1 else samples.mean(axis=1, dtype=np.float32)
    return Waveform(np.ascontiguousarray(mono, dtype=np.float32), int(rate))


def image_is_readable(path: Path) -> bool:
    """True when ``path`` is a file PIL can identify and verify (header and structure)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def require_pil(dataset: str) -> None:
    """ImportError with a hint when image verification is asked for and PIL is absent."""
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{dataset}: verifying images needs pillow (pip install 'ul4m4[images]'); "
            "pass verify_images=False to check only that the files exist"
        ) from exc


def progress_bar(
    items: Iterable[_T], *, enabled: bool, desc: str, total: int | None = None
) -> Iterator[_T]:
    """Yield ``items``, showing the progress when ``enabled`` (see :func:`progress_bar`)."""
    bar = show_progress(enabled, total, desc, leave=False)
    if bar is None:
        yield from items
        return
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def carve_validation(
    train_rows: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    random_state: int | np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move whole groups (e.g. subjects) holding about ``fraction`` of ``train_rows`` to val.

    Returns ``(train_rows, val_rows)``, both sorted. At least one group goes to
    val and at least one stays in train.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    unique = np.unique(groups[train_rows])
    if unique.size < 2:
        raise ValueError(
            f"cannot carve a validation split: the training split has {unique.size} group(s)"
        )
    rng = np.random.default_rng(random_state)
    order = rng.permutation(unique)
    n_val = min(max(1, round(fraction * unique.size)), unique.size - 1)
    in_val = np.isin(groups[train_rows], order[:n_val])
    return np.sort(train_rows[~in_val]), np.sort(train_rows[in_val])
