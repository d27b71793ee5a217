"""Sleep-EDF epoch loader on its synthetic fixture and its errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ul4m4.datasets._fixtures import _STAGE_FREQ, SLEEP_CHANNELS, write_sleep_edf_fixture
from ul4m4.datasets.sleep_edf import SLEEP_STAGES, load_sleep_edf


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_sleep_edf_fixture(tmp_path_factory.mktemp("sleep"), n_subjects=4, seed=1)


@pytest.fixture(scope="module")
def dataset(root):
    return load_sleep_edf(root)


@pytest.fixture()
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "sleep"))


def _meta(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_rows_splits_and_labels_follow_the_metadata(root, dataset):
    meta = _meta(root)
    epochs = meta["epochs"]
    order = [
        e
        for split in ("train", "val", "test")
        for e in epochs
        if e["subject"] in meta["splits"][split]
    ]
    assert dataset.ids == [e["id"] for e in order]
    assert {s: len(r) for s, r in dataset.splits.items()} == {"train": 20, "val": 10, "test": 10}
    stages = list(SLEEP_STAGES)
    expected = [
        e["label"] if isinstance(e["label"], int) else stages.index(e["label"]) for e in order
    ]
    assert dataset.y.tolist() == expected
    assert any(isinstance(e["label"], str) for e in epochs) and any(
        isinstance(e["label"], int) for e in epochs
    )
    assert dataset.label_names == SLEEP_STAGES and dataset.task == "multiclass"
    assert dataset.modality_names == SLEEP_CHANNELS
    assert dataset.groups.tolist() == [e["subject"] for e in order]
    assert dataset.notes["split by"] == "subject" and dataset.notes["samples per channel"] == 300


def test_signals_match_files_and_nan_or_absent_channels_are_missing(root, dataset):
    meta = {e["id"]: e for e in _meta(root)["epochs"]}
    absent_seen = nan_seen = 0
    for row, epoch_id in enumerate(dataset.ids):
        array = np.load(root / f"{epoch_id}.npy")
        names = meta[epoch_id].get("channels", list(SLEEP_CHANNELS))
        for channel in SLEEP_CHANNELS:
            item = dataset.modalities[channel][row]
            if channel not in names:
                absent_seen += 1
                assert item is None
            elif np.isnan(array[names.index(channel)]).all():
                nan_seen += 1
                assert item is None
            else:
                assert item.dtype == np.float32 and item.shape == (300,)
                np.testing.assert_array_equal(item, array[names.index(channel)])
    assert absent_seen > 0 and nan_seen > 0
    assert sum(dataset.missing_counts().values()) == absent_seen + nan_seen
    assert dataset.empty_rows().size == 0


def test_channel_subset_and_one_split(root, dataset):
    ds = load_sleep_edf(root, split="test", channels=["EOG horizontal", "EEG Fpz-Cz"])
    rows = dataset.splits["test"]
    assert ds.modality_names == ("EOG horizontal", "EEG Fpz-Cz")
    assert ds.ids == [dataset.ids[i] for i in rows] and list(ds.splits) == ["test"]
    for name in ds.modality_names:
        for mine, full in zip(
            ds.modalities[name], (dataset.modalities[name][i] for i in rows), strict=True
        ):
            assert (mine is None and full is None) or np.array_equal(mine, full)
    with pytest.raises(ValueError, match="must be distinct names of"):
        load_sleep_edf(root, channels=["EEG Cz"])


def test_val_fraction_moves_whole_training_subjects(tmp_path):
    folder = write_sleep_edf_fixture(
        tmp_path / "s", n_subjects=6, epochs_per_subject=3, seed=2, with_val=False
    )
    plain = load_sleep_edf(folder)
    assert list(plain.splits) == ["train", "test"]
    train_subjects = set(plain.groups[plain.splits["train"]])
    a = load_sleep_edf(folder, val_fraction=0.2, random_state=7)
    b = load_sleep_edf(folder, val_fraction=0.2, random_state=7)
    assert list(a.splits) == ["train", "val", "test"]
    assert {s: r.tolist() for s, r in a.splits.items()} == {
        s: r.tolist() for s, r in b.splits.items()
    }
    val_subjects = set(a.groups[a.splits["val"]])
    assert len(val_subjects) == 1 and val_subjects < train_subjects
    assert val_subjects.isdisjoint(a.groups[a.splits["train"]])
    assert len(a.splits["train"]) + len(a.splits["val"]) == len(plain.splits["train"])
    draws = {
        frozenset(load_sleep_edf(folder, val_fraction=0.2, random_state=s).groups[a.splits["val"]])
        for s in range(8)
    }
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        load_sleep_edf(folder, val_fraction=1.5)


def test_splits_by_epoch_ids(copy, dataset):
    meta = _meta(copy)
    ids = [e["id"] for e in meta["epochs"]]
    meta["splits"] = {"train": ids[5:], "test": ids[:5]}
    _write_meta(copy, meta)
    ds = load_sleep_edf(copy)
    assert ds.ids == ids[5:] + ids[:5] and ds.notes["split by"] == "epoch"
    meta["splits"] = {"train": ids[5:], "test": [meta["epochs"][0]["subject"]]}
    _write_meta(copy, meta)
    with pytest.raises(ValueError, match="mix subject ids and epoch ids"):
        load_sleep_edf(copy)


def test_fixture_is_deterministic_by_seed(tmp_path):
    def contents(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in folder.iterdir()}

    a = contents(
        write_sleep_edf_fixture(tmp_path / "a", n_subjects=3, epochs_per_subject=4, seed=9)
    )
    b = contents(
        write_sleep_edf_fixture(tmp_path / "b", n_subjects=3, epochs_per_subject=4, seed=9)
    )
    c = contents(
        write_sleep_edf_fixture(tmp_path / "c", n_subjects=3, epochs_per_subject=4, seed=10)
    )
    assert a == b
    assert a != c


def test_stage_is_learnable_from_the_eeg_spectrum(dataset):
    """The dominant frequency of EEG Fpz-Cz identifies the stage (0.33 Hz bins at 100 Hz)."""
    frequencies = np.fft.rfftfreq(300, d=1 / 100)
    hits = total = 0
    for signal, stage in zip(dataset.modalities["EEG Fpz-Cz"], dataset.y, strict=True):
        if signal is None:
            continue
        peak = frequencies[np.argmax(np.abs(np.fft.rfft(signal))[1:]) + 1]
        predicted = int(np.argmin(np.abs(_STAGE_FREQ[:, 0] - peak)))
        hits += predicted == stage
        total += 1
    assert hits / total >= 0.9


# --- errors -------------------------------------------------------------------------------


def test_missing_folder_metadata_and_epoch_file(tmp_path, copy):
    with pytest.raises(FileNotFoundError, match="Sleep-EDF: data folder"):
        load_sleep_edf(tmp_path / "nowhere")
    epoch = _meta(copy)["epochs"][0]["id"]
    (copy / f"{epoch}.npy").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{epoch}\.npy: missing"):
        load_sleep_edf(copy)
    (copy / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.json: missing"):
        load_sleep_edf(copy)


def test_malformed_metadata_names_the_file(copy):
    (copy / "metadata.json").write_text('{"channels": [')
    with pytest.raises(ValueError, match=r"metadata\.json: malformed JSON"):
        load_sleep_edf(copy)


def test_bad_labels_and_split_ids(copy):
    meta = _meta(copy)
    good = json.loads(json.dumps(meta))
    meta["epochs"][3]["label"] = "S4"
    _write_meta(copy, meta)
    with pytest.raises(ValueError, match=rf"epoch '{meta['epochs'][3]['id']}' has label 'S4'"):
        load_sleep_edf(copy)
    meta = json.loads(json.dumps(good))
    meta["epochs"][3]["label"] = 5
    _write_meta(copy, meta)
    with pytest.raises(ValueError, match="has label 5"):
        load_sleep_edf(copy)
    meta = json.loads(json.dumps(good))
    meta["splits"]["test"].append("SC4991")
    _write_meta(copy, meta)
    with pytest.raises(ValueError, match="neither a subject nor an epoch: \\['SC4991'\\]"):
        load_sleep_edf(copy)
    meta = json.loads(json.dumps(good))
    meta["splits"]["test"] += meta["splits"]["train"][:1]
    _write_meta(copy, meta)
    with pytest.raises(ValueError, match="more than one split"):
        load_sleep_edf(copy)


def test_truncated_and_misshapen_epochs_name_the_file(copy):
    epochs = _meta(copy)["epochs"]
    # The last complete epoch is read last (test subject), after the length is known.
    full = [e["id"] for e in epochs if "channels" not in e][-1]
    path = copy / f"{full}.npy"
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match=rf"{full}\.npy: not a readable \.npy array"):
        load_sleep_edf(copy)
    np.save(path, np.zeros((4, 300), dtype=np.float32))
    with pytest.raises(ValueError, match=rf"{full}\.npy: expected shape \(5, length\)"):
        load_sleep_edf(copy)
    np.save(path, np.zeros((5, 200), dtype=np.float32))
    with pytest.raises(
        ValueError, match=rf"{full}\.npy: 200 samples per channel, other epochs have 300"
    ):
        load_sleep_edf(copy)
    partial = np.zeros((5, 300), dtype=np.float32)
    partial[2, 10] = np.nan
    np.save(path, partial)
    with pytest.raises(ValueError, match=rf"{full}\.npy: channel 'EOG horizontal' is partly NaN"):
        load_sleep_edf(copy)


def test_progress_bar_can_be_switched_off(root, capsys):
    load_sleep_edf(root, progress=False)
    assert capsys.readouterr().err == ""
    load_sleep_edf(root, progress=True)
    assert "Sleep-EDF epochs" in capsys.readouterr().err
