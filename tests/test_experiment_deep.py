"""``ul4m4 experiment``: encode → mask → impute → fusion → evaluate, on tiny fixtures.

The frozen encoders are replaced by a counting stand-in (hash of the item's content),
so nothing here loads model weights; the fusion model is the real one, trained for one
epoch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from ul4m4.cli import main  # noqa: E402
from ul4m4.datasets._fixtures import (  # noqa: E402
    write_mmimdb_fixture,
    write_mosi_fixture,
    write_sleep_edf_fixture,
)
from ul4m4.encoders.cache import content_key  # noqa: E402
from ul4m4.experiments import deep_encoders  # noqa: E402
from ul4m4.experiments.deep import (  # noqa: E402
    DeepConfig,
    ExperimentError,
    combine_masks,
    complete_splits,
    embed_dataset,
    impute_splits,
    load_movielens_data,
    random_splits,
    run_deep_experiment,
)
from ul4m4.experiments.deep_report import DEEP_RESULT_FILES, write_deep_outputs  # noqa: E402
from ul4m4.missingness import apply_mask  # noqa: E402

ALL_METHODS = ["ul4m4", "ul4m4-soft", "ul4m4-auto", "mean", "knn", "mask-aware", "modality-dropout"]


class CountingEncoder:
    """Deterministic stand-in for a frozen encoder that records every item it is given."""

    def __init__(self, dim: int = 6, name: str = "counting") -> None:
        self.dim = dim
        self.cache_id = f"{name}-v1"
        self.items: list = []

    def content_key(self, item) -> bytes:
        return content_key(item if not isinstance(item, tuple) else list(item))

    def __call__(self, items):
        self.items.extend(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for i, item in enumerate(items):
            assert item is not None, "the encoder was given a missing item"
            digest = hashlib.sha256(self.content_key(item)).digest()
            out[i] = np.frombuffer(digest[: self.dim], dtype=np.uint8) / 255.0
        return out


@pytest.fixture
def counting_encoders(monkeypatch):
    """Replace the default encoders by counting ones; returns the dict they are kept in."""
    made: dict[str, CountingEncoder] = {}

    def fake(dataset, modalities, overrides=None, *, progress=True):
        for name in modalities:
            made[name] = CountingEncoder(name=name)
        return {name: made[name] for name in modalities}

    monkeypatch.setattr(deep_encoders, "default_encoders", fake)
    return made


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raw")
    return {
        "mmimdb": write_mmimdb_fixture(root / "mmimdb", n=40, seed=0),
        "mosi": write_mosi_fixture(root / "mosi", n_videos=6, seed=0),
        "sleep-edf": write_sleep_edf_fixture(root / "sleep", n_subjects=4, seed=0, length=120),
    }


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_outputs(out: Path, expected_labels: list[str], metric: str) -> pd.DataFrame:
    for name in ("results.csv", "results.json", "summary.csv", "summary.md", "config.json"):
        assert (out / name).is_file(), name
    frame = pd.read_csv(out / "results.csv")
    assert sorted(frame["label"]) == sorted(expected_labels)
    assert frame[metric].notna().all(), frame[["label", metric]]
    for stage in ("encode_s", "mask_s", "impute_s", "train_s", "evaluate_s"):
        assert (frame[stage] >= 0).all(), stage
    imputers = frame[~frame["method"].isin(["mask-aware", "modality-dropout"])]
    assert (imputers["impute_s"] > 0).all()
    assert frame.loc[frame["method"] == "mask-aware", "impute_s"].eq(0).all()
    record = json.loads((out / "config.json").read_text())
    assert record["command"].startswith("ul4m4 experiment")
    assert set(record["stage_seconds_total"]) == {
        "encode_s",
        "mask_s",
        "impute_s",
        "train_s",
        "evaluate_s",
    }
    summary = (out / "summary.md").read_text()
    assert "Time per stage" in summary
    for label in expected_labels:
        assert f"| {label} |" in summary
    return frame


def test_experiment_mmimdb_clean(fixtures, tmp_path, capsys, counting_encoders):
    out = tmp_path / "out"
    args = ["experiment", "mmimdb", "--data-dir", str(fixtures["mmimdb"]), "--k", "2"]
    args += ["--epochs", "1", "--out", str(out), "--torch-threads", "1"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    code, stdout, err = _run([*args, "--no-progress"], capsys)
    assert code == 0, err
    labels = ["ul4m4 (k=2)", "ul4m4-soft (k=2)", "ul4m4-auto", "mean", "knn"]
    frame = _check_outputs(out, [*labels, "mask-aware", "modality-dropout"], "micro_f1")
    assert "micro-F1 @ complex_60_20_20" in stdout
    assert frame["setting"].eq("complex_60_20_20").all()
    assert frame["block_mse"].notna().sum() == 5  # imputers only
    # Encoded once: every present raw item exactly once, never a missing one.
    for name, encoder in counting_encoders.items():
        assert None not in encoder.items
        assert len(encoder.items) == len(set(map(str, encoder.items))), name


def test_experiment_mosi_paper_keeps_training_complete(
    fixtures, tmp_path, capsys, counting_encoders
):
    out = tmp_path / "out"
    code, _, err = _run(
        ["experiment", "mosi", "--data-dir", str(fixtures["mosi"]), "--protocol", "paper"]
        + ["--config", "100_20_20", "--k", "2", "--epochs", "1", "--out", str(out)]
        + ["--cache-dir", str(tmp_path / "cache")]
        + ["--torch-threads", "1"]
        + ["--methods", "ul4m4,mean,mask-aware", "--no-progress", "--quiet"],
        capsys,
    )
    assert code == 0, err
    frame = _check_outputs(out, ["ul4m4-onestep (k=2)", "mean", "mask-aware"], "mae")
    # The reference MOSI script trains on the complete training split: only the items the
    # data set itself lacks are missing there.
    from ul4m4.datasets.mosi import load_mosi

    raw = load_mosi(fixtures["mosi"])
    splits = complete_splits(raw.splits, raw.n_samples, groups=raw.groups)
    natural = 1.0 - raw.availability()[splits["train"]].mean()
    assert frame["missing_train"].to_numpy() == pytest.approx(natural)
    assert frame["missing_test"].gt(0).all()
    assert frame["pearson_r"].notna().all()
    # The regression test error and the imputation block-MSE are separate columns.
    assert frame["mse"].notna().all()
    assert frame["block_mse"].notna().tolist() == [True, True, False]


def test_experiment_sleep_edf(fixtures, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(
        ["experiment", "sleep-edf", "--data-dir", str(fixtures["sleep-edf"]), "--k", "1,2"]
        + ["--config", "pm0.4_ps0.5", "--epochs", "1", "--signal-epochs", "1"]
        + ["--methods", "ul4m4,modality-dropout", "--out", str(out), "--no-progress"]
        + ["--torch-threads", "1"],
        capsys,
    )
    assert code == 0, err
    frame = _check_outputs(out, ["ul4m4 (k=1)", "ul4m4 (k=2)", "modality-dropout"], "macro_f1")
    assert frame["accuracy"].between(0, 1).all()
    # The signal encoder is trained per setting on the masked data: encode time > 0.
    assert frame["encode_s"].gt(0).all()
    # A hidden channel is never encoded, so there is no truth to score imputations against.
    assert frame["block_mse"].isna().all()
    assert (out / "k_stability.png").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["experiment", "imdb"], "invalid choice: 'imdb'"),
        (["experiment", "mosi", "--data-dir", "/nonexistent/mosi"], "does not exist"),
        (["experiment", "mosi"], "needs a data folder"),
        (["experiment", "mosi", "--data-dir", "{fx}", "--config", "100_20"], "expected 3"),
        (["experiment", "mosi", "--data-dir", "{fx}", "--config", "bogus"], "bogus"),
        (["experiment", "mosi", "--data-dir", "{fx}", "--methods", "magic"], "unknown method"),
        (["experiment", "mosi", "--data-dir", "{fx}", "--k", "0"], "must be >= 1"),
        (["experiment", "mosi", "--data-dir", "{fx}", "--encoder", "audio"], "MODALITY=KIND"),
    ],
)
def test_experiment_bad_input_is_one_line(
    fixtures, tmp_path, capsys, counting_encoders, monkeypatch, args, needle
):
    monkeypatch.setenv("UL4M4_CACHE", str(tmp_path / "cache"))
    args = [a.replace("{fx}", str(fixtures["mosi"])) for a in args]
    code, _, err = _run([*args, "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert all(e.items == [] for e in counting_encoders.values())  # failed before encoding


# ----------------------------------------------------------------- train-only imputers
def _masked_data(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    X = {
        "a": rng.normal(size=(n, 4)),
        "b": rng.normal(size=(n, 3)) + 2,
        "c": rng.normal(size=(n, 2)),
    }
    mask = rng.random((n, 3)) < 0.6
    mask[~mask.any(axis=1), 0] = True
    splits = random_splits(n, 0.2, 0.3, seed=1)
    return X, mask, splits


@pytest.mark.parametrize("method", ["ul4m4", "ul4m4-soft", "mean", "knn"])
def test_val_and_test_rows_never_shape_the_imputer(method):
    X, mask, splits = _masked_data()
    Xm = apply_mask(X, mask)
    filled, imputer = impute_splits(method, Xm, splits, k=3, random_state=0)
    # Change every val/test value (and which of their modalities are missing).
    other = {name: a.copy() for name, a in Xm.items()}
    rng = np.random.default_rng(5)
    for rows in (splits["val"], splits["test"]):
        for name in other:
            other[name][rows] = rng.normal(size=(rows.size, other[name].shape[1])) * 50
        other["b"][rows[::2]] = np.nan
    filled2, imputer2 = impute_splits(method, other, splits, k=3, random_state=0)
    for name in X:
        np.testing.assert_array_equal(filled["train"][name], filled2["train"][name])
        np.testing.assert_array_equal(imputer.mean_[name], imputer2.mean_[name])
        np.testing.assert_array_equal(imputer.scale_[name], imputer2.scale_[name])
    probe = {name: a[splits["test"]] for name, a in Xm.items()}
    a, b = imputer.transform(probe), imputer2.transform(probe)
    for name in X:
        np.testing.assert_array_equal(a[name], b[name])
    if method.startswith("ul4m4"):
        np.testing.assert_array_equal(
            np.nan_to_num(imputer.imputer_.cluster_centers_["a"]),
            np.nan_to_num(imputer2.imputer_.cluster_centers_["a"]),
        )


def test_mean_imputation_uses_training_rows_only():
    X, mask, splits = _masked_data()
    Xm = apply_mask(X, mask)
    filled, _ = impute_splits("mean", Xm, splits)
    train = splits["train"]
    for j, name in enumerate(X):
        expected = X[name][train][mask[train, j]].mean(axis=0)  # literal: observed train rows
        test_rows = splits["test"]
        missing = ~mask[test_rows, j]
        np.testing.assert_allclose(
            filled["test"][name][missing], np.tile(expected, (missing.sum(), 1))
        )
        np.testing.assert_array_equal(filled["test"][name][~missing], X[name][test_rows][~missing])


# ----------------------------------------------------------------- pieces
def test_combine_masks_never_empties_a_sample():
    natural = np.array([[True, True, False], [False, True, True], [True, False, False]])
    simulated = np.array([[False, True, True], [True, False, False], [False, True, True]])
    mask, restored = combine_masks(natural, simulated)
    assert mask.tolist() == [[False, True, False], [False, True, True], [True, False, False]]
    assert restored == 2
    assert not (mask & ~natural).any()


def test_complete_splits_carves_whole_groups_from_train():
    groups = np.repeat(np.arange(10), 3)
    splits = complete_splits(
        {"train": np.arange(24), "test": np.arange(24, 30)}, 30, groups=groups, val_size=0.25
    )
    assert set(splits) == {"train", "val", "test"}
    assert set(groups[splits["val"]]).isdisjoint(groups[splits["train"]])
    assert len(set(groups[splits["val"]])) == 2  # ceil(0.25 * 8 training groups)
    assert np.array_equal(np.sort(np.concatenate([splits["train"], splits["val"]])), np.arange(24))


def test_embed_dataset_encodes_present_items_only(fixtures, tmp_path):
    from ul4m4.datasets.mmimdb import load_mmimdb

    raw = load_mmimdb(fixtures["mmimdb"], progress=False)
    encoders = {name: CountingEncoder(name=name) for name in raw.modalities}
    data = embed_dataset(raw, encoders=encoders, cache_dir=tmp_path, progress=False)
    for name, items in raw.modalities.items():
        present = [it for it in items if it is not None]
        assert encoders[name].items == present
        assert np.isnan(data.X[name]).all(axis=1).tolist() == [it is None for it in items]
    # A second pass reads the cache: the encoders see nothing, the embeddings are the same.
    again = {name: CountingEncoder(name=name) for name in raw.modalities}
    data2 = embed_dataset(raw, encoders=again, cache_dir=tmp_path, progress=False)
    assert all(e.items == [] for e in again.values())
    for name in raw.modalities:
        np.testing.assert_array_equal(data.X[name], data2.X[name])


def test_config_validation_messages(tmp_path):
    with pytest.raises(ExperimentError, match="either configurations or missing shares"):
        DeepConfig(dataset="movielens", configs=("70_70_70",), missing=(0.3,)).validate()
    with pytest.raises(ExperimentError, match="listed twice"):
        DeepConfig(
            dataset="movielens", protocol="paper", methods=("ul4m4", "ul4m4-onestep")
        ).validate()
    cfg = DeepConfig(dataset="movielens", protocol="paper")
    assert cfg.k_values() == [16] and ("ul4m4-onestep", 16) in cfg.runs()
    assert DeepConfig(dataset="sleep-edf", protocol="paper").k_values() == [1]


def test_each_data_set_is_one_registered_source(tmp_path):
    from ul4m4.experiments.benchmark import Setting
    from ul4m4.experiments.deep import DEEP_DATASETS, draw_availability
    from ul4m4.experiments.sources import SOURCES, RawSource, load_raw

    assert DEEP_DATASETS == ("mmimdb", "mosi", "sleep-edf", "movielens")
    assert all(cls.preset.name == name for name, cls in SOURCES.items())
    assert DeepConfig(dataset="mosi", protocol="paper").preset is SOURCES["mosi"].preset
    # The folder rule is the source's: MovieLens's is an optional cache, the others need one.
    with pytest.raises(ExperimentError, match="'mosi' needs a data folder"):
        DeepConfig(dataset="mosi").validate()
    with pytest.raises(ExperimentError, match="MovieLens cache folder .* does not exist"):
        DeepConfig(dataset="movielens", data_dir=tmp_path / "absent").validate()
    DeepConfig(dataset="movielens").validate()
    with pytest.raises(ExperimentError, match="no raw data set 'movielens'"):
        load_raw("movielens", tmp_path)
    assert not issubclass(SOURCES["movielens"], RawSource)
    # Only MOSI's paper protocol keeps the training rows complete.
    natural = np.ones((40, 3), dtype=bool)
    splits = {"train": np.arange(30), "val": np.arange(30, 35), "test": np.arange(35, 40)}
    setting = Setting("0.6", "independent", share=0.6)
    for dataset in ("mosi", "mmimdb"):
        for protocol in ("paper", "clean"):
            mask, _ = draw_availability(
                setting, ["a", "b", "c"], natural, splits, protocol, dataset, 0
            )
            complete_train = bool(mask[splits["train"]].all())
            assert complete_train == (dataset == "mosi" and protocol == "paper")


def test_encoder_kinds_come_from_the_preset_and_the_overrides(fixtures, tmp_path, monkeypatch):
    from ul4m4.experiments.sources import SOURCES

    built = {}

    def build(kind, modality, *, progress=True):
        built[modality] = kind
        return CountingEncoder(name=f"{modality}-{kind}")

    monkeypatch.setattr(deep_encoders, "build_encoder", build)
    cfg = DeepConfig(dataset="mosi", data_dir=fixtures["mosi"], cache_dir=tmp_path, progress=False)
    SOURCES["mosi"](cfg)
    assert built == {"text": "minilm", "audio": "spectrum", "video": "efficientnet"}
    assert built == dict(SOURCES["mosi"].preset.encoders)
    built.clear()
    cfg.encoders = {"audio": "hf:some/model"}
    SOURCES["mosi"](cfg)
    assert built == {"text": "minilm", "audio": "hf:some/model", "video": "efficientnet"}
    cfg.encoders = {"smell": "minilm"}
    with pytest.raises(ExperimentError, match="--encoder names unknown modality 'smell'"):
        SOURCES["mosi"](cfg)


# ----------------------------------------------------------------- MovieLens, offline
def _movielens_frame(n_movies: int = 60, n_users: int = 25, seed: int = 0) -> pd.DataFrame:
    from ul4m4.datasets.movielens import MOVIELENS_GENRES

    rng = np.random.default_rng(seed)
    rows = []
    for m in range(n_movies):
        genres = "|".join(rng.choice(MOVIELENS_GENRES[:6], size=1 + m % 2, replace=False))
        raters = rng.choice(n_users, size=2 + m % 4, replace=False)
        for u in raters:
            rows.append(
                (m + 1, f"Movie number {m}", 1950.0 + m, genres, int(u) + 1, 0.5 * (1 + m % 10))
            )
    return pd.DataFrame(rows, columns=["movieId", "title", "year", "genres", "userId", "rating"])


def test_movielens_pipeline_offline(tmp_path):
    frame = _movielens_frame()
    encoder = CountingEncoder(dim=8, name="title")
    kwargs = {"frame": frame, "encoder": encoder, "n_components": 4}
    cfg = DeepConfig(
        dataset="movielens",
        data_dir=tmp_path,
        missing=(0.3, 0.5),
        ks=(2,),
        methods=("ul4m4", "mask-aware"),
        fusion={"max_epochs": 1},
        torch_threads=1,
        progress=False,
    )
    result = run_deep_experiment(cfg, loader_kwargs=kwargs, argv=["test"])
    frame_out = result.frame()
    assert len(frame_out) == 2 * 2
    assert frame_out["micro_f1"].between(0, 1).all()
    assert frame_out["task"].eq("multilabel").all()
    assert result.dataset_info["modalities"] == {"title": 8, "ratings": 4, "meta": 3}
    files = write_deep_outputs(result, tmp_path / "out")
    assert {p.name for p in files} <= set(DEEP_RESULT_FILES)
    assert (tmp_path / "out" / "metric_vs_missing.png").is_file()
    # The rating SVD saw the training rows only: same features as fitting it on them directly.
    from ul4m4.datasets.movielens import load_movielens

    data = load_movielens_data(0, cache_dir=tmp_path, progress=False, **kwargs)
    X, _ = load_movielens(
        cache_dir=tmp_path, progress=False, train_idx=data.splits["train"], **kwargs
    )
    np.testing.assert_array_equal(X["ratings"], data.X["ratings"])
    expected = random_splits(60, 0.1, 0.2, seed=0)
    assert all(np.array_equal(data.splits[k], expected[k]) for k in ("train", "val", "test"))


def test_stage_totals_count_shared_stages_once():
    from ul4m4.experiments.deep_report import stage_totals

    rows = pd.DataFrame(
        {
            "seed": [0, 0, 0, 0, 1, 1],
            "setting": ["a", "a", "b", "b", "a", "a"],
            "encode_s": [2.0, 2.0, 2.0, 2.0, 3.0, 3.0],  # one encoding per seed
            "mask_s": [0.1, 0.1, 0.2, 0.2, 0.4, 0.4],  # one mask per seed and setting
            "impute_s": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            "train_s": [3.0] * 6,
            "evaluate_s": [0.5] * 6,
        }
    )
    totals = stage_totals(rows)
    assert totals["encode_s"] == pytest.approx(5.0)
    assert totals["mask_s"] == pytest.approx(0.7)
    assert totals["impute_s"] == pytest.approx(3.0)
    assert totals["train_s"] == pytest.approx(18.0)
    assert totals["evaluate_s"] == pytest.approx(3.0)
