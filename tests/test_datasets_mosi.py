"""CMU-MOSI loader on its synthetic fixture, the WAV reader, and the loader's errors."""

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from ul4m4.datasets._fixtures import _NEGATIVE, _POSITIVE, write_mosi_fixture
from ul4m4.datasets._raw import Waveform, read_wav
from ul4m4.datasets.mosi import load_mosi

TRANSCRIPTS = Path("Raw/Transcript/Segmented")
AUDIO = Path("Raw/Audio/WAV_16000/Segmented")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_mosi_fixture(tmp_path_factory.mktemp("mosi"), n_videos=6, seed=2)


@pytest.fixture(scope="module")
def dataset(root):
    return load_mosi(root)


@pytest.fixture()
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "mosi"))


def _write_pcm(path: Path, values: np.ndarray, width: int, channels: int = 1, rate: int = 8000):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(values.tobytes())


def test_rows_follow_the_video_folds_and_labels(root, dataset):
    split = json.loads((root / "split.json").read_text())
    labels = json.loads((root / "labels.json").read_text())
    expected_ids = [
        f"{video}_{k}"
        for fold in ("train", "valid", "test")
        for video in split[fold]
        for k in range(1, 6)
    ]
    assert dataset.ids == expected_ids
    assert {s: len(r) for s, r in dataset.splits.items()} == {"train": 20, "val": 5, "test": 5}
    assert dataset.y.tolist() == [labels[s] for s in expected_ids]
    assert dataset.groups.tolist() == [s.rsplit("_", 1)[0] for s in expected_ids]
    assert any(g.startswith("_") for g in dataset.groups)  # ids with "_" are parsed
    assert dataset.task == "regression" and dataset.output_range == (-3.0, 3.0)
    assert dataset.notes["labelled segments in no split"] == 0


def test_text_audio_and_frames_match_the_files(root, dataset):
    for segment, text, clip, frames in zip(dataset.ids, *dataset.modalities.values(), strict=True):
        video, k = segment.rsplit("_", 1)
        lines = (root / TRANSCRIPTS / f"{video}.annotprocessed").read_text().splitlines()
        line = lines[int(k) - 1].split("_DELIMITER_", 1)[1]
        assert text == (line or None)
        wav = root / AUDIO / f"{segment}.wav"
        if wav.exists():
            with wave.open(str(wav)) as handle:
                channels = handle.getnchannels()
                pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
            expected = pcm.reshape(-1, channels).mean(axis=1) / 32768.0
            assert clip.sample_rate == 16000
            np.testing.assert_allclose(clip.samples, expected, rtol=0, atol=1e-7)
        else:
            assert clip is None
        folder = root / "Frames" / segment
        if folder.exists():
            assert frames == [str(folder / f"{i:04d}.png") for i in (1, 2, 3)]
        else:
            assert frames is None
    missing = dataset.missing_counts()
    assert all(count > 0 for count in missing.values())
    assert dataset.empty_rows().size == 0


def test_stereo_clip_is_averaged(root):
    stereo = []
    for wav in sorted((root / AUDIO).glob("*.wav")):
        with wave.open(str(wav)) as handle:
            if handle.getnchannels() == 2:
                stereo.append(wav)
    assert len(stereo) == 1


def test_one_split_by_segment_ids_and_by_name(copy, dataset):
    split = json.loads((copy / "split.json").read_text())
    chosen = [s for s in dataset.ids if s.rsplit("_", 1)[0] in split["train"]][:3]
    split["train"] = chosen + split["train"][1:]
    (copy / "split.json").write_text(json.dumps(split))
    ds = load_mosi(copy, split="train", verify_images=False)
    assert ds.ids[:3] == chosen and list(ds.splits) == ["train"]
    valid = load_mosi(copy, split="valid", verify_images=False)
    assert list(valid.splits) == ["val"] and valid.ids == dataset.split("val").ids
    assert ds.notes["labelled segments in no split"] == 2


def test_frames_are_spread_and_ordered_naturally(copy):
    segment = load_mosi(copy, verify_images=False).ids[0]
    folder = copy / "Frames" / segment
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    source = next((copy / "Frames").glob("*/0001.png"))
    for i in range(1, 11):
        shutil.copy(source, folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "f11.jpg").write_bytes(b"broken")
    ds = load_mosi(copy, n_frames=4)
    # Natural order f1..f10 (f11 unreadable is skipped), evenly spread indices 0, 3, 6, 9.
    assert ds.modalities["video"][0] == [str(folder / f"f{i}.png") for i in (1, 4, 7, 10)]
    assert ds.notes["unreadable frames skipped"] == 1
    every = load_mosi(copy, n_frames=None, verify_images=False)
    assert len(every.modalities["video"][0]) == 11
    with pytest.raises(ValueError, match="n_frames"):
        load_mosi(copy, n_frames=0)


def test_empty_wav_and_absent_transcript_are_missing(copy):
    ids = load_mosi(copy, verify_images=False).ids
    _write_pcm(copy / AUDIO / f"{ids[0]}.wav", np.zeros(0, dtype="<i2"), 2)
    video = ids[-1].rsplit("_", 1)[0]
    (copy / TRANSCRIPTS / f"{video}.annotprocessed").unlink()
    ds = load_mosi(copy, verify_images=False)
    assert ds.modalities["audio"][0] is None
    assert ds.notes["empty WAV files"] == f"1 ['{ids[0]}']"
    assert all(
        t is None
        for s, t in zip(ds.ids, ds.modalities["text"], strict=True)
        if s.startswith(video + "_")
    )
    assert ds.notes["transcript files absent"] == f"1 ['{video}.annotprocessed']"


def test_fixture_is_deterministic_by_seed(tmp_path):
    def contents(folder: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    a = contents(write_mosi_fixture(tmp_path / "a", n_videos=3, segments_per_video=3, seed=4))
    b = contents(write_mosi_fixture(tmp_path / "b", n_videos=3, segments_per_video=3, seed=4))
    c = contents(write_mosi_fixture(tmp_path / "c", n_videos=3, segments_per_video=3, seed=5))
    assert a == b
    assert a != c


def test_sentiment_is_learnable_from_each_modality(dataset):
    from PIL import Image

    def correlation(values, rows):
        return np.corrcoef(np.asarray(values, dtype=float), dataset.y[rows])[0, 1]

    rows = [i for i, t in enumerate(dataset.modalities["text"]) if t is not None]
    polarity = [
        sum(w in _POSITIVE for w in t.split()) - sum(w in _NEGATIVE for w in t.split())
        for t in (dataset.modalities["text"][i] for i in rows)
    ]
    assert correlation(polarity, rows) > 0.8
    rows = [i for i, a in enumerate(dataset.modalities["audio"]) if a is not None]
    crossings = [
        np.count_nonzero(np.diff(np.sign(dataset.modalities["audio"][i].samples))) for i in rows
    ]
    assert correlation(crossings, rows) > 0.8  # pitch rises with the score
    rows = [i for i, v in enumerate(dataset.modalities["video"]) if v is not None]
    brightness = [np.asarray(Image.open(dataset.modalities["video"][i][0])).mean() for i in rows]
    assert correlation(brightness, rows) > 0.8


# --- WAV reader -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "raw", "expected"),
    [
        (1, np.array([0, 128, 255, 64], dtype=np.uint8), [-1.0, 0.0, 127 / 128, -0.5]),
        (2, np.array([0, 16384, -32768, 32767], dtype="<i2"), [0.0, 0.5, -1.0, 32767 / 32768]),
        (4, np.array([0, 2**30, -(2**31), -(2**29)], dtype="<i4"), [0.0, 0.5, -1.0, -0.25]),
    ],
)
def test_read_wav_scales_pcm_widths(tmp_path, width, raw, expected):
    _write_pcm(tmp_path / "a.wav", raw, width)
    clip = read_wav(tmp_path / "a.wav")
    assert isinstance(clip, Waveform) and clip.sample_rate == 8000
    assert clip.samples.dtype == np.float32
    np.testing.assert_allclose(clip.samples, expected, rtol=0, atol=1e-7)


def test_read_wav_24_bit_and_stereo(tmp_path):
    # 24-bit little-endian: 0x400000 = 0.5, 0xC00000 = -0.5, 0x800000 = -1.
    raw = np.array([0x00, 0x00, 0x40, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x80], dtype=np.uint8)
    _write_pcm(tmp_path / "a.wav", raw, 3)
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav").samples, [0.5, -0.5, -1.0])
    stereo = np.array([[16384, 0], [-32768, 16384]], dtype="<i2")
    _write_pcm(tmp_path / "s.wav", stereo, 2, channels=2)
    np.testing.assert_allclose(read_wav(tmp_path / "s.wav").samples, [0.25, -0.25])


def test_read_wav_errors_name_the_file(tmp_path):
    path = tmp_path / "cut.wav"
    _write_pcm(path, np.arange(100, dtype="<i2"), 2)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(
        ValueError, match=r"cut\.wav: truncated WAV file, header announces 100 frames, holds 75"
    ):
        read_wav(path)
    (tmp_path / "text.wav").write_text("hello, not audio")
    with pytest.raises(ValueError, match=r"text\.wav: not a readable PCM WAV"):
        read_wav(tmp_path / "text.wav")
    with pytest.raises(FileNotFoundError, match=r"none\.wav: missing"):
        read_wav(tmp_path / "none.wav")


# --- loader errors ----------------------------------------------------------------------------


def test_missing_folder_and_files(tmp_path, copy):
    with pytest.raises(FileNotFoundError, match="CMU-MOSI: data folder"):
        load_mosi(tmp_path / "nowhere")
    (copy / "split.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"split\.json: missing"):
        load_mosi(copy)
    (copy / "labels.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels\.json: missing"):
        load_mosi(copy)


def test_malformed_json_and_bad_labels(copy):
    labels = json.loads((copy / "labels.json").read_text())
    (copy / "labels.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"labels\.json: malformed JSON"):
        load_mosi(copy)
    segment = next(iter(labels))
    (copy / "labels.json").write_text(json.dumps({**labels, segment: 3.5}))
    with pytest.raises(ValueError, match=rf"label of '{segment}' is 3.5, outside \[-3, 3\]"):
        load_mosi(copy)
    (copy / "labels.json").write_text(json.dumps({**labels, segment: "high"}))
    with pytest.raises(ValueError, match="not a finite number"):
        load_mosi(copy)
    (copy / "labels.json").write_text(json.dumps({**labels, "novideo": 1.0}))
    with pytest.raises(ValueError, match="'novideo' is not of the form <video>_<number>"):
        load_mosi(copy)


def test_unknown_and_repeated_split_ids(copy):
    split = json.loads((copy / "split.json").read_text())
    (copy / "split.json").write_text(json.dumps({**split, "test": split["test"] + ["ghost"]}))
    with pytest.raises(ValueError, match=r"split\.json: 1 ids are neither .*'ghost'"):
        load_mosi(copy)
    first_segment = f"{split['train'][0]}_1"
    (copy / "split.json").write_text(json.dumps({**split, "test": split["test"] + [first_segment]}))
    with pytest.raises(ValueError, match=rf"segments listed twice.*'{first_segment}'"):
        load_mosi(copy)


def test_malformed_transcript_and_truncated_wav_name_the_file(copy):
    ids = load_mosi(copy, verify_images=False).ids
    video = ids[0].rsplit("_", 1)[0]
    transcript = copy / TRANSCRIPTS / f"{video}.annotprocessed"
    original = transcript.read_text()
    transcript.write_text(original + "seven: no delimiter here\n")
    with pytest.raises(ValueError, match=rf"{video}\.annotprocessed, line 6: expected"):
        load_mosi(copy, verify_images=False)
    transcript.write_text(original)
    wav = next((copy / AUDIO).glob("*.wav"))
    wav.write_bytes(wav.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{wav.name}: truncated WAV file"):
        load_mosi(copy, verify_images=False)


def test_a_modality_absent_everywhere_warns_with_the_expected_place(copy):
    shutil.rmtree(copy / "Frames")
    with pytest.warns(
        UserWarning,
        match=r"every 'video' item is missing; expected <segment>/ frame folders in .*Frames",
    ):
        ds = load_mosi(copy)
    assert ds.missing_counts()["video"] == ds.n_samples
