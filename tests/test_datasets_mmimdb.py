"""MM-IMDb loader on its synthetic fixture, its errors, and the shared raw data set class."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ul4m4.datasets._fixtures import (
    _GENRE_COLOURS,
    _GENRE_WORDS,
    FIXTURE_GENRES,
    write_mmimdb_fixture,
)
from ul4m4.datasets._raw import RawMultimodalDataset
from ul4m4.datasets.mmimdb import MMIMDB_GENRES_23, load_mmimdb

N = 40


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_mmimdb_fixture(tmp_path_factory.mktemp("mmimdb"), n=N, seed=3)


@pytest.fixture(scope="module")
def dataset(root) -> RawMultimodalDataset:
    return load_mmimdb(root)


@pytest.fixture()
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "mmimdb"))


def _records(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (root / "dataset").glob("*.json")}


def test_rows_splits_and_labels_follow_the_files(root, dataset):
    split = json.loads((root / "split.json").read_text())
    records = _records(root)
    assert dataset.ids == split["train"] + split["dev"] + split["test"]
    assert {s: len(r) for s, r in dataset.splits.items()} == {"train": 24, "val": 8, "test": 8}
    assert [dataset.ids[i] for i in dataset.splits["val"]] == split["dev"]
    vocabulary = sorted({g for i in split["train"] for g in records[i]["genres"]})
    assert dataset.label_names == tuple(vocabulary) == tuple(sorted(FIXTURE_GENRES))
    for row, movie_id in enumerate(dataset.ids):
        expected = [int(g in records[movie_id]["genres"]) for g in vocabulary]
        assert dataset.y[row].tolist() == expected
    assert dataset.task == "multilabel" and dataset.y.shape == (N, 4)


def test_text_is_the_longest_plot_and_none_without_one(root, dataset):
    records = _records(root)
    for movie_id, text in zip(dataset.ids, dataset.modalities["text"], strict=True):
        plots = records[movie_id]["plot"]
        if plots:
            longest = sorted(plots, key=len)[-1]
            assert text == longest
        else:
            assert text is None
    assert dataset.notes["plot missing"] == sum(not r["plot"] for r in records.values()) > 0


def test_plot_choices_first_and_join(root):
    records = _records(root)
    first = load_mmimdb(root, plot="first", verify_images=False)
    joined = load_mmimdb(root, plot="join", verify_images=False)
    row = next(i for i, m in enumerate(first.ids) if records[m]["plot"])
    plots = records[first.ids[row]]["plot"]
    assert first.modalities["text"][row] == plots[0]
    assert joined.modalities["text"][row] == plots[0] + "\n\n" + plots[1]


def test_absent_and_corrupt_posters_are_missing_and_reported(root, dataset):
    images = dict(zip(dataset.ids, dataset.modalities["image"], strict=True))
    absent = [m for m in dataset.ids if not (root / "dataset" / f"{m}.jpeg").exists()]
    corrupt = [
        m
        for m in dataset.ids
        if (root / "dataset" / f"{m}.jpeg").exists()
        and not (root / "dataset" / f"{m}.jpeg").read_bytes().startswith(b"\xff\xd8\xff\xe0\x00")
    ]
    assert absent and len(corrupt) == 1
    assert all(images[m] is None for m in absent + corrupt)
    present = [m for m in dataset.ids if m not in absent + corrupt]
    assert all(images[m] == str(root / "dataset" / f"{m}.jpeg") for m in present)
    assert dataset.notes["poster unreadable"].startswith(f"1 ['{corrupt[0]}']")
    assert dataset.notes["poster file absent"].startswith(f"{len(absent)} ")
    assert dataset.missing_counts()["image"] == len(absent) + 1
    # Without verification only existence counts: the corrupt file is then an item.
    unverified = load_mmimdb(root, verify_images=False)
    assert unverified.modalities["image"][unverified.ids.index(corrupt[0])] is not None
    assert dataset.empty_rows().size == 0


def test_genre_vocabularies(root, dataset):
    paper = load_mmimdb(root, genres="mmimdb23", verify_images=False)
    assert paper.label_names == MMIMDB_GENRES_23 and paper.y.shape == (N, 23)
    for genre in FIXTURE_GENRES:
        assert np.array_equal(
            paper.y[:, MMIMDB_GENRES_23.index(genre)],
            dataset.y[:, dataset.label_names.index(genre)],
        )
    assert dataset.notes["genre labels outside the vocabulary"] == {"News": 1}
    explicit = load_mmimdb(root, genres=["Horror", "Action"], verify_images=False)
    assert explicit.label_names == ("Horror", "Action")
    no_genre = int((explicit.y.sum(axis=1) == 0).sum())
    assert no_genre > 0 and explicit.notes["movies with no genre in the vocabulary"] == no_genre
    with pytest.raises(ValueError, match="genres must be"):
        load_mmimdb(root, genres="all")


def test_one_split_keeps_the_training_vocabulary(root, dataset):
    test = load_mmimdb(root, split="test")
    rows = dataset.splits["test"]
    assert test.ids == [dataset.ids[i] for i in rows]
    assert test.label_names == dataset.label_names
    assert np.array_equal(test.y, dataset.y[rows])
    assert list(test.splits) == ["test"] and test.splits["test"].tolist() == list(range(8))
    dev = load_mmimdb(root, split="dev")
    assert list(dev.splits) == ["val"]
    # The same as selecting it from the full data set.
    assert dataset.split("val").ids == dev.ids


def test_parent_folder_is_accepted(root, tmp_path):
    shutil.copytree(root, tmp_path / "mmimdb")
    assert load_mmimdb(tmp_path, verify_images=False).ids == load_mmimdb(root).ids


def test_fixture_is_deterministic_by_seed(tmp_path):
    def contents(folder: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    a = contents(write_mmimdb_fixture(tmp_path / "a", n=12, seed=5))
    b = contents(write_mmimdb_fixture(tmp_path / "b", n=12, seed=5))
    c = contents(write_mmimdb_fixture(tmp_path / "c", n=12, seed=6))
    assert a == b
    assert a != c


def test_labels_are_learnable_from_each_modality(root, dataset):
    """Plot words name the genres exactly; the poster colour is nearest its genres' mean."""
    from PIL import Image

    names = dataset.label_names
    combos = [c for k in (1, 2) for c in itertools.combinations(names, k)]
    centres = np.array([np.mean([_GENRE_COLOURS[g] for g in c], axis=0) for c in combos])
    hits = total = 0
    for row, (text, image) in enumerate(
        zip(dataset.modalities["text"], dataset.modalities["image"], strict=True)
    ):
        truth = {g for g, v in zip(names, dataset.y[row], strict=True) if v}
        if text is not None:
            assert {
                g for g in names if set(_GENRE_WORDS[g]) & set(text.strip(".").lower().split())
            } == truth
        if image is not None:
            colour = np.asarray(Image.open(image).convert("RGB"), dtype=float).mean(axis=(0, 1))
            nearest = combos[int(np.argmin(((centres - colour) ** 2).sum(axis=1)))]
            hits += set(nearest) == truth
            total += 1
    assert hits / total >= 0.9


# --- errors -------------------------------------------------------------------------------


def test_missing_folder_and_split_file(tmp_path, copy):
    with pytest.raises(FileNotFoundError, match="data folder .* does not exist"):
        load_mmimdb(tmp_path / "nowhere")
    (copy / "split.json").unlink()
    with pytest.raises(FileNotFoundError, match="split.json: missing"):
        load_mmimdb(copy)


def test_malformed_json_names_the_file(copy):
    (copy / "split.json").write_text('{"train": [')
    with pytest.raises(ValueError, match=r"split\.json: malformed JSON"):
        load_mmimdb(copy)


def test_malformed_movie_record_names_the_file(copy):
    movie_id = json.loads((copy / "split.json").read_text())["train"][0]
    path = copy / "dataset" / f"{movie_id}.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{movie_id}\.json: malformed JSON"):
        load_mmimdb(copy, verify_images=False)
    path.write_text(json.dumps({"plot": ["x"]}))
    with pytest.raises(ValueError, match=rf"{movie_id}\.json: \"genres\" must be"):
        load_mmimdb(copy, verify_images=False)


def test_unknown_ids_and_bad_split_files(copy):
    split = json.loads((copy / "split.json").read_text())
    (copy / "split.json").write_text(json.dumps({**split, "test": split["test"] + ["9999999"]}))
    with pytest.raises(FileNotFoundError, match=r"1 listed ids have no <id>\.json.*'9999999'"):
        load_mmimdb(copy, verify_images=False)
    (copy / "split.json").write_text(json.dumps({**split, "holdout": []}))
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_mmimdb(copy, verify_images=False)
    (copy / "split.json").write_text(
        json.dumps({**split, "test": split["test"] + split["train"][:1]})
    )
    with pytest.raises(ValueError, match="is listed in 'train' and 'test'"):
        load_mmimdb(copy, verify_images=False)
    (copy / "split.json").write_text(json.dumps(split))
    with pytest.raises(ValueError, match="no \\['val'\\] split|unknown split"):
        load_mmimdb(copy, split="validation-set")


# --- the shared raw data set class --------------------------------------------------------


def _toy() -> RawMultimodalDataset:
    return RawMultimodalDataset(
        name="toy",
        modalities={"a": ["x", None, "z", None], "b": [None, None, 1, 2]},
        y=np.array([0, 1, 2, 1]),
        task="multiclass",
        splits={"train": np.array([0, 2]), "test": np.array([1, 3])},
        ids=["i0", "i1", "i2", "i3"],
        label_names=("p", "q", "r"),
        groups=np.array(["g0", "g0", "g1", "g1"], dtype=object),
    )


def test_raw_dataset_availability_subset_and_summary():
    ds = _toy()
    assert ds.availability().tolist() == [
        [True, False],
        [False, False],
        [True, True],
        [False, True],
    ]
    assert ds.missing_counts() == {"a": 2, "b": 2}
    assert ds.empty_rows().tolist() == [1]
    sub = ds.subset([3, 0, 1])
    assert sub.ids == ["i3", "i0", "i1"] and sub.y.tolist() == [1, 0, 1]
    assert sub.splits["train"].tolist() == [1] and sub.splits["test"].tolist() == [0, 2]
    assert sub.modalities["b"] == [2, None, None] and sub.groups.tolist() == ["g1", "g0", "g0"]
    text = ds.summary()
    assert "toy: 4 samples, task multiclass" in text
    assert "splits: train 2, test 2" in text and "labels: p 1, q 2, r 1" in text
    assert "b: 2 of 4 missing (50.0%)" in text and "samples with no modality: 1 ['i1']" in text
    with pytest.raises(KeyError, match="no 'val' split"):
        ds.split("val")


def test_raw_dataset_rejects_inconsistent_fields():
    fields = dict(
        name="toy",
        modalities={"a": ["x", "y"]},
        y=np.array([0, 1]),
        task="multiclass",
        splits={"train": np.array([0]), "test": np.array([1])},
        ids=["i0", "i1"],
    )
    RawMultimodalDataset(**fields)
    with pytest.raises(ValueError, match="modality 'a' has 1 items for 2 ids"):
        RawMultimodalDataset(**{**fields, "modalities": {"a": ["x"]}})
    with pytest.raises(ValueError, match="overlaps"):
        RawMultimodalDataset(
            **{**fields, "splits": {"train": np.array([0, 1]), "test": np.array([1])}}
        )
    with pytest.raises(ValueError, match="outside 0..1"):
        RawMultimodalDataset(**{**fields, "splits": {"train": np.array([2])}})
    with pytest.raises(ValueError, match="task must be"):
        RawMultimodalDataset(**{**fields, "task": "ranking"})


def test_doctests_of_the_raw_loaders():
    import doctest

    from ul4m4.datasets import _fixtures, _raw, mmimdb, mosi, sleep_edf

    for module in (_raw, _fixtures, mmimdb, mosi, sleep_edf):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__
