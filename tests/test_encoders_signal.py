"""SignalAutoencoder / encode_signals: trained on observed training channels only."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from ul4m4.encoders import SignalAutoencoder, encode_modality, encode_signals  # noqa: E402

LENGTH = 64
FAST = {"code_dim": 8, "epochs": 3, "batch_size": 16, "progress": False, "num_threads": 1}


def _signals(n: int, seed: int = 0, length: int = LENGTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    freq = rng.uniform(1, 6, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return (3 * np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.normal(size=(n, length))).astype(
        np.float32
    )


def test_fit_never_reads_unobserved_rows():
    X = _signals(40)
    observed = np.random.default_rng(1).random(40) < 0.6
    poisoned = X.copy()
    poisoned[~observed] = np.nan  # would break training if read
    a = SignalAutoencoder(random_state=3, **FAST).fit(poisoned, observed)
    b = SignalAutoencoder(random_state=3, **FAST).fit(X[observed])
    assert a.n_train_ == observed.sum()
    assert a.cache_id == b.cache_id  # identical weights
    Za = a.encode(poisoned, observed)
    assert Za.shape == (40, 8) and np.isnan(Za[~observed]).all() and np.isfinite(Za[observed]).all()
    np.testing.assert_array_equal(Za[observed], b.encode(X[observed]))
    assert a.mean_ == pytest.approx(float(X[observed].mean(dtype=np.float64)))


def test_seeded_fits_are_bit_identical_and_seeds_matter():
    X = _signals(32)
    first = SignalAutoencoder(random_state=0, **FAST).fit(X)
    again = SignalAutoencoder(random_state=0, **FAST).fit(X)
    other = SignalAutoencoder(random_state=1, **FAST).fit(X)
    np.testing.assert_array_equal(first.encode(X), again.encode(X))
    assert first.loss_history_ == again.loss_history_
    assert first.cache_id == again.cache_id != other.cache_id


def test_training_reduces_the_reconstruction_error():
    X = _signals(64)
    ae = SignalAutoencoder(random_state=0, **{**FAST, "epochs": 15}).fit(X)
    assert ae.loss_history_[-1] < 0.6 * ae.loss_history_[0]
    # reconstruct returns input units: its error relative to the variance is the last loss
    mse = float(((ae.reconstruct(X) - X) ** 2).mean())
    assert mse < 0.7 * float(X.var())


def test_callable_on_a_list_of_signals_and_usable_with_the_cache(tmp_path):
    X = _signals(12)
    ae = SignalAutoencoder(random_state=0, **FAST).fit(X)
    items = [X[0], None, X[2]]
    out = encode_modality(ae, items, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(out[[0, 2]], ae.encode(X[[0, 2]]))
    assert np.isnan(out[1]).all() and ae.dim == 8
    with pytest.raises(ValueError, match=r"items \[1\] have shape \(5,\)"):
        ae([X[0], X[1][:5]])


def test_encode_signals_fits_each_channel_on_observed_training_rows_only():
    n = 30
    X = np.stack([_signals(n, 0), _signals(n, 1)], axis=1)  # (n, 2, LENGTH)
    rng = np.random.default_rng(2)
    observed = rng.random((n, 2)) < 0.75
    train = np.arange(20)
    emb, models = encode_signals(
        X, observed, train, ["eeg", "eog"], random_state=5, return_models=True, **FAST
    )
    assert sorted(emb) == ["eeg", "eog"]
    for c, name in enumerate(["eeg", "eog"]):
        assert emb[name].shape == (n, 8)
        assert np.isnan(emb[name][~observed[:, c]]).all()
        assert np.isfinite(emb[name][observed[:, c]]).all()
        in_train = np.zeros(n, bool)
        in_train[train] = True
        assert models[name].n_train_ == (observed[:, c] & in_train).sum()
    # Test rows and masked-out channels do not influence the models (no leak):
    X2 = X.copy()
    X2[20:] = 1e3 * rng.normal(size=X2[20:].shape)  # other test data
    X2[~observed] = np.nan  # masked-out channels are not even finite
    emb2 = encode_signals(X2, observed, train, ["eeg", "eog"], random_state=5, **FAST)
    for c, name in enumerate(["eeg", "eog"]):
        rows = observed[:, c] & (np.arange(n) < 20)
        np.testing.assert_array_equal(emb2[name][rows], emb[name][rows])


def test_encode_signals_with_a_mapping_and_per_channel_lengths():
    n = 10
    X = {"eeg": _signals(n, 0, 64), "resp": _signals(n, 1, 16)}
    observed = {"eeg": np.ones(n, bool), "resp": np.arange(n) % 2 == 0}
    emb = encode_signals(X, observed, np.ones(n, bool), **FAST)
    assert emb["eeg"].shape == emb["resp"].shape == (n, 8)
    assert np.isnan(emb["resp"][1::2]).all()


def test_shape_and_value_errors_name_the_channel():
    n = 10
    good = _signals(n)
    observed = {"eeg": np.ones(n, bool), "eog": np.ones(n, bool)}
    with pytest.raises(ValueError, match=r"channel 'eog' has shape \(9, 64\)"):
        encode_signals({"eeg": good, "eog": good[:9]}, observed, np.arange(n), **FAST)
    with pytest.raises(ValueError, match=r"channel 'eog' has shape \(10,\)"):
        encode_signals({"eeg": good, "eog": good[:, 0]}, observed, np.arange(n), **FAST)
    bad = good.copy()
    bad[4, 3] = np.inf
    with pytest.raises(ValueError, match=r"channel 'eog': observed rows \[4\] hold NaN"):
        encode_signals({"eeg": good, "eog": bad}, observed, np.arange(n), **FAST)
    none_observed = {"eeg": np.ones(n, bool), "eog": np.zeros(n, bool)}
    with pytest.raises(ValueError, match="channel 'eog': no observed training signal"):
        encode_signals({"eeg": good, "eog": good}, none_observed, np.arange(n), **FAST)
    with pytest.raises(ValueError, match=r"shape \(n, channels, length\)"):
        encode_signals(good, np.ones((n, 1), bool), np.arange(n), **FAST)
    ae = SignalAutoencoder(channel="emg", **FAST).fit(good)
    with pytest.raises(ValueError, match=r"channel 'emg': signals have shape \(10, 32\)"):
        ae.encode(good[:, :32])
    with pytest.raises(RuntimeError, match="not fitted"):
        SignalAutoencoder(**FAST).encode(good)
