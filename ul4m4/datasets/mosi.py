"""CMU-MOSI (Zadeh et al., 2016) as raw transcripts, waveforms and video frames.

The data are not redistributable; point ``data_dir`` at a copy laid out as the
raw release (``CMU_MOSI.zip``, folder ``Raw/``) plus three things the release
ships in other formats (labels and folds as CSD/Python files, video as MP4)::

    mosi/
    ├── labels.json          # {"<video>_<k>": sentiment in [-3, 3], ...}; one entry per segment
    ├── split.json           # {"train": [...], "valid": [...], "test": [...]}
    ├── Raw/
    │   ├── Transcript/Segmented/<video>.annotprocessed   # lines "<k>_DELIMITER_<text>"
    │   └── Audio/WAV_16000/Segmented/<video>_<k>.wav     # PCM WAV, mono or stereo
    └── Frames/<video>_<k>/*.jpg                          # frames extracted from the MP4

* A segment id is ``<video>_<k>``: the video id, an underscore and the segment
  number used in the transcript (video ids may themselves contain ``_``).
* ``labels.json`` holds the opinion-segment sentiment (``CMU_MOSI_Opinion_Labels``
  of the SDK), one number per segment; it defines which segments exist.
* ``split.json`` lists **video ids** (the SDK's standard folds
  ``standard_train_fold`` / ``standard_valid_fold`` / ``standard_test_fold``) or
  segment ids; a video id stands for all its labelled segments. ``valid`` and
  ``dev`` are reported as ``val``. Labelled segments in no split are left out and
  counted in the notes.
* ``Frames/<segment>/`` holds frames as ``.jpg``, ``.jpeg`` or ``.png`` files,
  ordered by name with numbers compared as numbers (``f2`` before ``f10``); e.g.
  ``ffmpeg -i Raw/Video/Segmented/<segment>.mp4 -vf fps=2 Frames/<segment>/%04d.jpg``.

Modalities
----------
``text``
    The segment's transcript line (``str``); ``None`` when the video's
    transcript file is absent, the segment has no line or the line is blank.
``audio``
    :class:`~ul4m4.datasets.Waveform` (float32 mono samples, sample rate),
    read with the standard-library ``wave`` module, channels averaged;
    ``None`` when the file is absent or holds no sample.
``video``
    A list of ``n_frames`` frame paths spread evenly over the segment's frames
    (all frames when there are fewer, or when ``n_frames=None``); ``None`` when
    the folder is absent or holds no readable frame.

A modality with no item at all (usually a folder in the wrong place) gives a
``UserWarning`` naming where its files were expected.

``y`` is the sentiment as float64, ``task="regression"``, ``output_range=(-3, 3)``;
``groups`` holds each segment's video id.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._raw import (
    RawMultimodalDataset,
    Waveform,
    check_folder,
    image_is_readable,
    progress_bar,
    read_json,
    read_split_file,
    read_wav,
    require_pil,
    select_splits,
    shown,
    warn_absent_modalities,
)

__all__ = ["MOSI_MODALITIES", "MOSI_RANGE", "load_mosi"]

MOSI_MODALITIES: tuple[str, ...] = ("text", "audio", "video")
MOSI_RANGE: tuple[float, float] = (-3.0, 3.0)

_NAME = "CMU-MOSI"
_DELIMITER = "_DELIMITER_"
_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_TRANSCRIPTS = Path("Raw") / "Transcript" / "Segmented"
_AUDIO = Path("Raw") / "Audio" / "WAV_16000" / "Segmented"
_FRAMES = Path("Frames")


def _video_of(segment: str) -> str:
    video, sep, number = segment.rpartition("_")
    if not sep or not video or not number.isdigit():
        raise ValueError(f"segment id {segment!r} is not of the form <video>_<number>")
    return video


def _read_labels(path: Path) -> dict[str, float]:
    raw = read_json(path, "a JSON object of segment id -> sentiment in [-3, 3]")
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a non-empty JSON object of segment id -> sentiment")
    labels: dict[str, float] = {}
    for segment, value in raw.items():
        try:
            _video_of(segment)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{path}: the label of {segment!r} is not a finite number: {value!r}")
        if not MOSI_RANGE[0] <= value <= MOSI_RANGE[1]:
            raise ValueError(f"{path}: the label of {segment!r} is {value}, outside [-3, 3]")
        labels[segment] = float(value)
    return labels


def _segment_number(segment: str) -> int:
    return int(segment.rpartition("_")[2])


def _expand_split(
    members: list[str], labels: dict[str, float], by_video: dict[str, list[str]], path: Path
) -> list[str]:
    unknown = [m for m in members if m not in labels and m not in by_video]
    if unknown:
        raise ValueError(
            f"{path}: {len(unknown)} ids are neither a labelled segment nor a video of "
            f"labels.json: {shown(unknown)}"
        )
    segments: list[str] = []
    for member in members:
        segments.extend([member] if member in labels else by_video[member])
    return segments


def _read_transcript(path: Path) -> dict[str, str]:
    """Segment number -> text of one ``.annotprocessed`` file."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from exc
    texts: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, text = line.partition(_DELIMITER)
        if not sep or not key.strip().isdigit():
            raise ValueError(
                f"{path}, line {number}: expected '<segment number>{_DELIMITER}<text>', "
                f"got {line[:60]!r}"
            )
        texts[str(int(key))] = text.strip()
    return texts


def _texts(root: Path, segments: list[str]) -> tuple[list[str | None], list[str]]:
    cache: dict[str, dict[str, str] | None] = {}
    items: list[str | None] = []
    absent_files: list[str] = []
    for segment in segments:
        video = _video_of(segment)
        if video not in cache:
            path = root / _TRANSCRIPTS / f"{video}.annotprocessed"
            cache[video] = _read_transcript(path) if path.is_file() else None
            if cache[video] is None:
                absent_files.append(path.name)
        transcript = cache[video] or {}
        text = transcript.get(str(_segment_number(segment)))
        items.append(text or None)
    return items, absent_files


def _audio(
    root: Path, segments: list[str], progress: bool
) -> tuple[list[Waveform | None], list[str]]:
    items: list[Waveform | None] = []
    empty: list[str] = []
    for segment in progress_bar(segments, enabled=progress, desc="MOSI audio", total=len(segments)):
        path = root / _AUDIO / f"{segment}.wav"
        if not path.is_file():
            items.append(None)
            continue
        clip = read_wav(path)
        if clip.samples.size == 0:
            empty.append(segment)
            items.append(None)
        else:
            items.append(clip)
    return items, empty


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _spread(frames: list[Path], n_frames: int | None) -> list[Path]:
    if n_frames is None or len(frames) <= n_frames:
        return frames
    picks = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    return [frames[i] for i in picks]


def _frames(
    root: Path, segments: list[str], n_frames: int | None, verify: bool, progress: bool
) -> tuple[list[list[str] | None], int]:
    items: list[list[str] | None] = []
    unreadable = 0
    for segment in progress_bar(
        segments, enabled=progress, desc="MOSI frames", total=len(segments)
    ):
        folder = root / _FRAMES / segment
        files = (
            sorted(
                (
                    p
                    for p in folder.iterdir()
                    if p.suffix.lower() in _FRAME_SUFFIXES and p.is_file()
                ),
                key=lambda p: _natural_key(p.name),
            )
            if folder.is_dir()
            else []
        )
        if verify:
            readable = [p for p in files if image_is_readable(p)]
            unreadable += len(files) - len(readable)
            files = readable
        chosen = _spread(files, n_frames)
        items.append([str(p) for p in chosen] if chosen else None)
    return items, unreadable


def load_mosi(
    data_dir: str | os.PathLike[str],
    *,
    split: str | Sequence[str] | None = None,
    n_frames: int | None = 8,
    verify_images: bool = True,
    progress: bool = True,
) -> RawMultimodalDataset:
    """Load CMU-MOSI segments: transcript, waveform and frame paths, sentiment in [-3, 3].

    See the module documentation for the layout and the modalities.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``labels.json``, ``split.json``, ``Raw/`` and ``Frames/``.
    split : str or sequence of str, optional
        Load only these splits (``"train"``, ``"val"``/``"valid"``, ``"test"``);
        default all.
    n_frames : int or None, default=8
        Frames kept per segment, evenly spaced (the reference encodes 8);
        None keeps all.
    verify_images : bool, default=True
        Open every frame with pillow and skip unreadable ones (counted in the
        notes); with False only the files' existence is checked.
    progress : bool, default=True
        Show tqdm bars (when tqdm is installed).

    Returns
    -------
    RawMultimodalDataset
        Modalities ``text``, ``audio``, ``video``; ``task="regression"``,
        ``output_range=(-3.0, 3.0)``; ``groups`` the video ids.

    Raises
    ------
    FileNotFoundError
        If the folder, ``labels.json`` or ``split.json`` is absent.
    ValueError
        If a JSON file is malformed, a label is not a number in [-3, 3], a split
        lists an unknown id, a transcript line is malformed or a WAV file is
        truncated or not PCM; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from ul4m4.datasets._fixtures import write_mosi_fixture
    >>> root = write_mosi_fixture(tempfile.mkdtemp(), n_videos=4, seed=0)
    >>> ds = load_mosi(root)
    >>> ds.task, ds.modality_names, ds.output_range
    ('regression', ('text', 'audio', 'video'), (-3.0, 3.0))
    """
    if n_frames is not None and (isinstance(n_frames, bool) or int(n_frames) < 1):
        raise ValueError(f"n_frames must be a positive integer or None, got {n_frames!r}")
    root = check_folder(data_dir, _NAME)
    labels = _read_labels(root / "labels.json")
    split_path = root / "split.json"
    all_splits = read_split_file(
        split_path, 'the MOSI folds {"train": [...], "valid": ..., "test": ...}'
    )
    wanted = select_splits(all_splits, split, split_path)
    by_video: dict[str, list[str]] = {}
    for segment in sorted(labels, key=lambda s: (_video_of(s), _segment_number(s))):
        by_video.setdefault(_video_of(segment), []).append(segment)

    every = {s: _expand_split(m, labels, by_video, split_path) for s, m in all_splits.items()}
    assigned = [seg for members in every.values() for seg in members]
    if len(set(assigned)) != len(assigned):
        twice = sorted(seg for seg, count in Counter(assigned).items() if count > 1)
        raise ValueError(
            f"{split_path}: segments listed twice (as themselves and through their video): "
            f"{shown(twice)}"
        )
    expanded = {s: every[s] for s in wanted}
    segments = [seg for members in expanded.values() for seg in members]
    if verify_images:
        require_pil(_NAME)

    texts, absent_transcripts = _texts(root, segments)
    audio, empty_wavs = _audio(root, segments, progress)
    frames, unreadable_frames = _frames(root, segments, n_frames, verify_images, progress)

    bounds = np.cumsum([0] + [len(m) for m in expanded.values()])
    notes: dict[str, Any] = {
        "transcript files absent": (
            f"{len(absent_transcripts)} {shown(absent_transcripts)}" if absent_transcripts else 0
        ),
        "empty WAV files": f"{len(empty_wavs)} {shown(empty_wavs)}" if empty_wavs else 0,
        "unreadable frames skipped": unreadable_frames,
        "labelled segments in no split": len(set(labels) - set(assigned)),
    }
    dataset = RawMultimodalDataset(
        name=_NAME,
        modalities={"text": texts, "audio": audio, "video": frames},
        y=np.array([labels[s] for s in segments], dtype=np.float64),
        task="regression",
        splits={s: np.arange(bounds[k], bounds[k + 1]) for k, s in enumerate(expanded)},
        ids=segments,
        output_range=MOSI_RANGE,
        groups=np.array([_video_of(s) for s in segments], dtype=object),
        notes=notes,
    )
    warn_absent_modalities(
        dataset,
        {
            "text": f"<video>.annotprocessed files in {root / _TRANSCRIPTS}",
            "audio": f"<segment>.wav files in {root / _AUDIO}",
            "video": f"<segment>/ frame folders in {root / _FRAMES}",
        },
    )
    return dataset
