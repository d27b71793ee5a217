"""Small synthetic copies of MM-IMDb, CMU-MOSI and Sleep-EDF in the loaders' layouts.

The real data sets cannot be shipped, so tests and examples run the loaders (and
the experiments built on them) end to end on these. Each writer takes a seed and
produces the same bytes for the same arguments. Labels are learnable from every
modality, so a model trained on the fixture scores better than chance:

* MM-IMDb: each genre has its own plot words and poster colour;
* CMU-MOSI: the sentiment sets the share of positive / negative words, the pitch
  and loudness of the clip and the brightness and tint of the frames;
* Sleep-EDF: each stage has its own frequency and amplitude on every channel.

Some modalities are missing on purpose (absent or unreadable files, blank text,
NaN channels), never all modalities of one sample.
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import numpy as np

__all__ = [
    "FIXTURE_GENRES",
    "write_mmimdb_fixture",
    "write_mosi_fixture",
    "write_sleep_edf_fixture",
]

#: Genres of the MM-IMDb fixture and, per genre, its plot words and poster colour.
FIXTURE_GENRES: tuple[str, ...] = ("Action", "Comedy", "Drama", "Horror")
_GENRE_WORDS = {
    "Action": ("explosion", "chase", "fight", "gunfire", "mission"),
    "Comedy": ("hilarious", "prank", "laugh", "clumsy", "wedding"),
    "Drama": ("grief", "family", "struggle", "tears", "illness"),
    "Horror": ("ghost", "blood", "haunted", "scream", "demon"),
}
_GENRE_COLOURS = {
    "Action": (210, 40, 30),
    "Comedy": (235, 215, 40),
    "Drama": (40, 70, 210),
    "Horror": (25, 110, 40),
}
_FILLER = ("a", "the", "story", "of", "people", "who", "find", "their", "way", "in", "town")
#: A genre outside the training vocabulary, given to one test movie.
_RARE_GENRE = "News"

_POSITIVE = ("great", "wonderful", "loved", "amazing", "enjoyed", "brilliant")
_NEGATIVE = ("terrible", "boring", "awful", "hated", "disappointing", "worst")
_NEUTRAL = ("the", "movie", "was", "and", "i", "think", "it", "really", "so")
_VIDEO_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

SLEEP_CHANNELS: tuple[str, ...] = (
    "EEG Fpz-Cz",
    "EEG Pz-Oz",
    "EOG horizontal",
    "EMG submental",
    "Resp oro-nasal",
)
_STAGE_NAMES = ("W", "N1", "N2", "N3", "REM")
# Frequency (Hz) and amplitude of each stage (rows W, N1, N2, N3, REM) per channel.
_STAGE_FREQ = np.array(
    [
        [10.0, 10.0, 1.0, 20.0, 0.30],
        [6.0, 6.5, 0.5, 15.0, 0.25],
        [13.0, 12.0, 0.3, 12.0, 0.22],
        [2.0, 1.5, 0.2, 10.0, 0.20],
        [5.0, 5.5, 2.0, 5.0, 0.35],
    ]
)
_STAGE_AMPLITUDE = np.array(
    [
        [1.0, 0.9, 1.5, 2.0, 1.0],
        [0.8, 0.7, 0.8, 1.2, 0.9],
        [1.2, 1.1, 0.5, 0.9, 0.8],
        [2.5, 2.2, 0.4, 0.7, 0.7],
        [0.7, 0.6, 2.5, 0.3, 1.1],
    ]
)


def _split_units(units: list[str], minimum: int) -> tuple[list[str], list[str], list[str]]:
    """``units`` cut in order into train, validation and test (60 / 20 / 20 %, each >= 1)."""
    n = len(units)
    if n < minimum:
        raise ValueError(f"need at least {minimum} units for train/val/test, got {n}")
    n_val = max(1, n // 5)
    n_train = n - 2 * n_val
    return units[:n_train], units[n_train : n_train + n_val], units[n_train + n_val :]


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def _save_image(path: Path, pixels: np.ndarray, fmt: str) -> None:
    from PIL import Image

    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format=fmt)


def _poster(colour: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    shade = np.linspace(0.8, 1.1, height)[:, None, None]
    noise = rng.normal(0.0, 12.0, (height, width, 3))
    return colour[None, None, :] * shade + noise


def _plot_text(genres: list[str], rng: np.random.Generator, n_words: int) -> str:
    words = [str(w) for w in rng.choice(_FILLER, size=n_words)]
    for genre in genres:
        words += [str(w) for w in rng.choice(_GENRE_WORDS[genre], size=3)]
    order = rng.permutation(len(words))
    return " ".join(words[i] for i in order).capitalize() + "."


def write_mmimdb_fixture(directory: str | os.PathLike[str], *, n: int = 40, seed: int = 0) -> Path:
    """Write a synthetic MM-IMDb (``split.json`` + ``dataset/<id>.json|.jpeg``).

    Movies get one or two genres of :data:`FIXTURE_GENRES`; the plot holds the
    genres' words and the poster their mean colour. About 15 % of the movies
    have no plot, 15 % no poster file, one (when ``n >= 10``) a corrupt poster,
    one test movie the genre ``"News"``, which is outside the training genres.
    60 / 20 / 20 % of the movies go to train / dev / test.

    Parameters
    ----------
    directory : str or path-like
        Created if needed; the data set is written directly into it.
    n : int, default=40
        Number of movies (at least 5).
    seed : int, default=0

    Returns
    -------
    Path
        ``directory``, to pass to :func:`ul4m4.datasets.load_mmimdb`.

    Examples
    --------
    >>> import tempfile, json
    >>> root = write_mmimdb_fixture(tempfile.mkdtemp(), n=10, seed=1)
    >>> sorted(json.loads((root / "split.json").read_text()))
    ['dev', 'test', 'train']
    """
    rng = np.random.default_rng(seed)
    root = Path(directory)
    movie_dir = root / "dataset"
    movie_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"{1000 + 7 * i:07d}" for i in range(n)]
    train, val, test = _split_units(ids, 5)
    missing = rng.random(n)
    no_plot = missing < 0.15
    no_poster = missing > 0.85
    corrupt = int(rng.integers(n)) if n >= 10 else -1
    while n >= 10 and no_poster[corrupt]:
        corrupt = (corrupt + 1) % n
    no_plot[corrupt] = False
    rare = n - len(test) + int(rng.integers(len(test)))  # one test movie
    for i, movie_id in enumerate(ids):
        k = int(rng.integers(1, 3))
        genres = sorted(str(g) for g in rng.choice(FIXTURE_GENRES, size=k, replace=False))
        colour = np.mean([_GENRE_COLOURS[g] for g in genres], axis=0)
        plots = [_plot_text(genres, rng, 4), _plot_text(genres, rng, 12)]
        record: dict[str, object] = {
            "title": f"Movie {movie_id}",
            "genres": genres + ([_RARE_GENRE] if i == rare else []),
            "plot": [] if no_plot[i] else plots,
        }
        _write_json(movie_dir / f"{movie_id}.json", record)
        poster = movie_dir / f"{movie_id}.jpeg"
        if i == corrupt:
            poster.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG body" + bytes(32))
        elif not no_poster[i]:
            _save_image(poster, _poster(colour, rng, (24, 16)), "JPEG")
    _write_json(root / "split.json", {"train": train, "dev": val, "test": test})
    return root


def _video_id(rng: np.random.Generator, number: int) -> str:
    body = "".join(str(c) for c in rng.choice(list(_VIDEO_ALPHABET), size=11))
    # Real MOSI ids may contain "_"; one fixture video does, to exercise the parsing.
    return f"_{body[1:]}" if number == 0 else body


def _sentence(score: float, rng: np.random.Generator) -> str:
    n_sentiment = round(abs(score) * 2) + 1
    bank = _POSITIVE if score >= 0 else _NEGATIVE
    words = [str(w) for w in rng.choice(bank, size=n_sentiment)]
    words += [str(w) for w in rng.choice(_NEUTRAL, size=5)]
    return " ".join(words[i] for i in rng.permutation(len(words)))


def _tone(score: float, rng: np.random.Generator, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    pitch = 220.0 * 2.0 ** (score / 3.0)
    loudness = 0.15 + 0.08 * (score + 3.0)
    signal = loudness * np.sin(2 * np.pi * pitch * t) + rng.normal(0.0, 0.01, t.size)
    return np.clip(signal, -1.0, 1.0)


def _write_wav(path: Path, signal: np.ndarray, rate: int, channels: int) -> None:
    pcm = np.round(signal * 32767).astype("<i2")
    if channels == 2:
        # The right channel is quieter, so a loader must average, not pick, channels.
        pcm = np.stack([pcm, pcm // 2], axis=1)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def _frame(score: float, rng: np.random.Generator) -> np.ndarray:
    brightness = 60.0 + 25.0 * (score + 3.0)
    tint = np.array([1.0 - 0.1 * score, 1.0 + 0.1 * score, 1.0])
    return brightness * tint[None, None, :] + rng.normal(0.0, 6.0, (8, 8, 3))


def write_mosi_fixture(
    directory: str | os.PathLike[str],
    *,
    n_videos: int = 6,
    segments_per_video: int = 5,
    seed: int = 0,
    sample_rate: int = 16000,
    clip_seconds: float = 0.1,
    frames_per_segment: int = 3,
) -> Path:
    """Write a synthetic CMU-MOSI in the layout read by :func:`ul4m4.datasets.load_mosi`.

    Sentiments are drawn in [-3, 3]; a segment's transcript mixes sentiment words
    (more of them for stronger scores), its clip is a tone whose pitch and
    loudness rise with the score, and its frames are brighter and greener for
    positive scores. About 15 % of the segments lack a transcript line, 15 % the
    WAV file and 15 % the frame folder (never all three); one clip is stereo.
    ``split.json`` lists video ids (60 / 20 / 20 % of the videos).

    Parameters
    ----------
    directory : str or path-like
        Created if needed.
    n_videos : int, default=6
        At least 3.
    segments_per_video : int, default=5
    seed : int, default=0
    sample_rate : int, default=16000
    clip_seconds : float, default=0.1
    frames_per_segment : int, default=3

    Returns
    -------
    Path
        ``directory``.

    Examples
    --------
    >>> import tempfile, json
    >>> root = write_mosi_fixture(tempfile.mkdtemp(), n_videos=3, seed=1)
    >>> len(json.loads((root / "labels.json").read_text()))
    15
    """
    rng = np.random.default_rng(seed)
    root = Path(directory)
    transcripts = root / "Raw" / "Transcript" / "Segmented"
    audio = root / "Raw" / "Audio" / "WAV_16000" / "Segmented"
    for folder in (transcripts, audio, root / "Frames"):
        folder.mkdir(parents=True, exist_ok=True)
    videos = [_video_id(rng, v) for v in range(n_videos)]
    train, val, test = _split_units(videos, 3)
    labels: dict[str, float] = {}
    stereo_done = False
    for video in videos:
        lines = []
        for k in range(1, segments_per_video + 1):
            segment = f"{video}_{k}"
            score = float(np.clip(np.round(rng.normal(0.0, 1.4), 1), -3.0, 3.0))
            labels[segment] = score
            drop = rng.random(3) < 0.15
            if drop.all():
                drop[int(rng.integers(3))] = False
            lines.append(f"{k}_DELIMITER_{'' if drop[0] else _sentence(score, rng)}")
            if not drop[1]:
                channels = 1 if stereo_done else 2
                stereo_done = True
                _write_wav(
                    audio / f"{segment}.wav",
                    _tone(score, rng, sample_rate, clip_seconds),
                    sample_rate,
                    channels,
                )
            if not drop[2]:
                frame_dir = root / "Frames" / segment
                frame_dir.mkdir(exist_ok=True)
                for f in range(1, frames_per_segment + 1):
                    _save_image(frame_dir / f"{f:04d}.png", _frame(score, rng), "PNG")
        (transcripts / f"{video}.annotprocessed").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
    _write_json(root / "labels.json", labels)
    _write_json(root / "split.json", {"train": train, "valid": val, "test": test})
    return root


def _epoch_signals(stage: int, rng: np.random.Generator, length: int, rate: float) -> np.ndarray:
    t = np.arange(length) / rate
    phase = rng.uniform(0.0, 2 * np.pi, (len(SLEEP_CHANNELS), 1))
    waves = _STAGE_AMPLITUDE[stage][:, None] * np.sin(
        2 * np.pi * _STAGE_FREQ[stage][:, None] * t[None, :] + phase
    )
    return (waves + rng.normal(0.0, 0.3, waves.shape)).astype(np.float32)


def write_sleep_edf_fixture(
    directory: str | os.PathLike[str],
    *,
    n_subjects: int = 4,
    epochs_per_subject: int = 10,
    seed: int = 0,
    length: int = 300,
    sampling_rate: int = 100,
    with_val: bool = True,
) -> Path:
    """Write synthetic Sleep-EDF epochs (``metadata.json`` + ``<id>.npy``).

    Five channels named as in Sleep-EDF; each stage has its own frequency and
    amplitude per channel, plus noise. About 10 % of the channel rows are
    all-NaN (missing) and about 10 % of the epochs are stored without their
    EMG channel (listed in the epoch's ``"channels"``); every epoch keeps at
    least one channel. Splits are by subject: 60 / 20 / 20 % (with
    ``with_val=False`` the validation subjects go to train).

    Parameters
    ----------
    directory : str or path-like
        Created if needed.
    n_subjects : int, default=4
        At least 3.
    epochs_per_subject : int, default=10
    seed : int, default=0
    length : int, default=300
        Samples per channel and epoch.
    sampling_rate : int, default=100
    with_val : bool, default=True

    Returns
    -------
    Path
        ``directory``.

    Examples
    --------
    >>> import tempfile, json
    >>> root = write_sleep_edf_fixture(tempfile.mkdtemp(), n_subjects=3, seed=1)
    >>> len(json.loads((root / "metadata.json").read_text())["epochs"])
    30
    """
    rng = np.random.default_rng(seed)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    subjects = [f"SC4{s:02d}1" for s in range(n_subjects)]
    train, val, test = _split_units(subjects, 3)
    records = []
    for subject in subjects:
        for e in range(epochs_per_subject):
            epoch_id = f"{subject}E0_{e:04d}"
            stage = int(rng.integers(len(_STAGE_FREQ)))
            signals = _epoch_signals(stage, rng, length, sampling_rate)
            nan_rows = rng.random(len(SLEEP_CHANNELS)) < 0.10
            if nan_rows.all():
                nan_rows[0] = False
            signals[nan_rows] = np.nan
            # Labels are written both ways the loader accepts: index and stage name.
            label: object = _STAGE_NAMES[stage] if e % 2 else stage
            record: dict[str, object] = {"id": epoch_id, "subject": subject, "label": label}
            if rng.random() < 0.10 and not nan_rows[[0, 1, 2, 4]].all():
                keep = [
                    c for c in range(len(SLEEP_CHANNELS)) if SLEEP_CHANNELS[c] != "EMG submental"
                ]
                signals = signals[keep]
                record["channels"] = [SLEEP_CHANNELS[c] for c in keep]
            np.save(root / f"{epoch_id}.npy", signals)
            records.append(record)
    # with_val=False: the validation subjects train too.
    splits = {"train": train + ([] if with_val else val), "test": test}
    if with_val:
        splits["val"] = val
    metadata = {
        "channels": list(SLEEP_CHANNELS),
        "stages": list(_STAGE_NAMES),
        "sampling_rate": sampling_rate,
        "epochs": records,
        "splits": splits,
    }
    _write_json(root / "metadata.json", metadata)
    return root
