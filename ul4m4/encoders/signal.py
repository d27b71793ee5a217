"""1-D convolutional autoencoder that turns one signal channel into a fixed-width code.

For sensor data (EEG, EOG, EMG, ... epochs) there is no pretrained encoder; a
small autoencoder is trained per channel and its bottleneck is the channel's
embedding. It is trained **only on the observed channels of training samples**:
:meth:`SignalAutoencoder.fit` takes the observed mask and never reads the other
rows, and :func:`encode_signals` fits on ``train_rows`` only, so neither a
masked-out channel nor a test sample can leak into the encoder.

Install with ``pip install 'ul4m4[torch]'``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._utils.progress import progress_bar
from ._common import check_positive, require, torch_threads

__all__ = ["SignalAutoencoder", "encode_signals"]

_OWNER = "SignalAutoencoder"
_EXTRA = "torch"
#: Channels of the three convolution blocks, and their kernel widths.
_CHANNELS = (32, 64, 128)
_KERNELS = (7, 5, 3)
#: The last feature map is average-pooled to this many positions before the code layer,
#: so the code layer's size does not grow with the signal length.
_POOLED = 8
#: The network halves the length three times.
_MIN_LENGTH = 8


def _build_network(torch: Any, length: int, code_dim: int) -> Any:
    """The autoencoder: 3 conv blocks (32/64/128) -> code -> mirrored decoder."""
    nn = torch.nn
    reduced = length // 8

    def block(c_in: int, c_out: int, k: int) -> list[Any]:
        return [nn.Conv1d(c_in, c_out, k, padding=k // 2), nn.ReLU(), nn.MaxPool1d(2)]

    class Autoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = (1, *_CHANNELS)
            layers = []
            for c_in, c_out, k in zip(chans[:-1], chans[1:], _KERNELS, strict=True):
                layers += block(c_in, c_out, k)
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(_POOLED), nn.Flatten())
            self.to_code = nn.Linear(_CHANNELS[-1] * _POOLED, code_dim)
            self.from_code = nn.Sequential(nn.Linear(code_dim, _CHANNELS[-1] * _POOLED), nn.ReLU())
            up = []
            rev = (*_CHANNELS[::-1], 1)
            for i, (c_in, c_out, k) in enumerate(
                zip(rev[:-1], rev[1:], _KERNELS[::-1], strict=True)
            ):
                up += [nn.Upsample(scale_factor=2), nn.Conv1d(c_in, c_out, k, padding=k // 2)]
                if i < len(_KERNELS) - 1:
                    up.append(nn.ReLU())
            self.decoder = nn.Sequential(*up)

        def encode(self, x: Any) -> Any:
            return self.to_code(self.features(x))

        def forward(self, x: Any) -> Any:
            h = self.from_code(self.encode(x)).view(-1, _CHANNELS[-1], _POOLED)
            h = nn.functional.interpolate(h, size=reduced, mode="linear", align_corners=False)
            out = self.decoder(h)
            if out.shape[-1] != length:  # length not divisible by 8
                out = nn.functional.interpolate(
                    out, size=length, mode="linear", align_corners=False
                )
            return out

    return Autoencoder()


def _seed(random_state: int | None) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int or None, got {type(random_state).__name__}")
    return int(random_state)


class SignalAutoencoder:
    """Per-channel 1-D convolutional autoencoder; its code is the channel's embedding.

    Encoder: three blocks ``Conv1d -> ReLU -> MaxPool1d(2)`` with 32, 64 and
    128 channels (kernels 7, 5, 3), the 128-channel map average-pooled to 8
    positions, then a linear layer to ``code_dim``. The decoder mirrors it
    (linear, upsampling, convolutions) back to the input length and is trained
    with the mean squared error. Inputs are standardised with one mean and one
    standard deviation computed on the observed training signals.

    Parameters
    ----------
    code_dim : int, default=128
        Width of the code (the embedding).
    epochs : int, default=20
        Passes over the observed training signals.
    batch_size : int, default=64
    learning_rate : float, default=1e-3
        Adam step size.
    random_state : int, optional
        Seeds the weight initialisation and the batch order. With an int, two
        fits on the same data give bit-identical models on one CPU machine
        with the same ``num_threads`` (the global torch RNG is left untouched).
    progress : bool, default=True
        A tqdm bar over the epochs (with the current loss).
    num_threads : int, optional
        Torch CPU threads while fitting/encoding (restored afterwards).
    device : str, default="cpu"
    channel : str, optional
        Name used in error messages.

    Attributes
    ----------
    length_ : int
        Signal length seen in ``fit``.
    mean_, scale_ : float
        Standardisation constants (observed training signals).
    loss_history_ : list of float
        Mean training loss per epoch.
    n_train_ : int
        Signals used for training.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 64)).astype(np.float32)
    >>> observed = rng.random(40) < 0.7
    >>> ae = SignalAutoencoder(code_dim=16, epochs=2, random_state=0, progress=False)
    >>> Z = ae.fit(X, observed).encode(X, observed)  # doctest: +SKIP
    >>> Z.shape, bool(np.isnan(Z[~observed]).all())  # doctest: +SKIP
    ((40, 16), True)
    """

    def __init__(
        self,
        code_dim: int = 128,
        epochs: int = 20,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        random_state: int | None = 0,
        progress: bool = True,
        *,
        num_threads: int | None = None,
        device: str = "cpu",
        channel: str | None = None,
    ) -> None:
        self.code_dim = check_positive("code_dim", code_dim)
        self.epochs = check_positive("epochs", epochs)
        self.batch_size = check_positive("batch_size", batch_size)
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.random_state = random_state
        self.progress = progress
        self.num_threads = (
            None if num_threads is None else check_positive("num_threads", num_threads)
        )
        self.device = device
        self.channel = channel
        self._net: Any = None
        self._weights_sha256: str | None = None

    # ------------------------------------------------------------------ public API

    @property
    def dim(self) -> int:
        """Embedding width (``code_dim``)."""
        return self.code_dim

    @property
    def cache_id(self) -> str:
        """Identifies the fitted weights and preprocessing, for keying caches."""
        self._check_fitted()
        if self._weights_sha256 is None:
            digest = hashlib.sha256()
            for name, tensor in self._net.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digest.update(np.float64([self.mean_, self.scale_]).tobytes())
            self._weights_sha256 = digest.hexdigest()
        return (
            f"signal-autoencoder|conv{'-'.join(map(str, _CHANNELS))}|length={self.length_}"
            f"|code={self.code_dim}|weights-sha256={self._weights_sha256[:16]}"
        )

    def fit(self, signals: Any, observed: Any = None) -> SignalAutoencoder:
        """Train on the observed rows of ``signals`` only.

        Parameters
        ----------
        signals : array-like of shape (n, length)
            One signal per row. Rows that are not observed are never read
            (they may hold NaN or test data).
        observed : array-like of shape (n,), bool, optional
            Which rows are observed training signals. Default: all.

        Returns
        -------
        self
        """
        torch = self._torch()
        train = self._observed_rows(signals, observed, length=None)
        self.length_ = int(train.shape[1])
        if self.length_ < _MIN_LENGTH:
            raise ValueError(
                f"{self._name()}: signals have length {self.length_}; at least {_MIN_LENGTH} needed"
            )
        self.mean_ = float(train.mean(dtype=np.float64))
        std = float(train.std(dtype=np.float64))
        # A flat channel keeps scale 1 instead of dividing by zero.
        self.scale_ = std if std > 0 else 1.0
        self.n_train_ = int(train.shape[0])
        seed = _seed(self.random_state)
        with torch_threads(torch, self.num_threads):
            self._net = self._initial_network(torch, seed)
            self.loss_history_ = self._train(torch, self._standardise(train), seed)
            self._net.eval()
        self._weights_sha256 = None
        return self

    def encode(self, signals: Any, observed: Any = None) -> np.ndarray:
        """Codes of the observed rows; all-NaN rows elsewhere (never computed).

        Parameters
        ----------
        signals : array-like of shape (n, length)
        observed : array-like of shape (n,), bool, optional
            Default: all rows.

        Returns
        -------
        ndarray of shape (n, code_dim), dtype float32
        """
        self._check_fitted()
        signals_arr, mask = self._validate(signals, observed, self.length_)
        out = np.full((signals_arr.shape[0], self.code_dim), np.nan, dtype=np.float32)
        rows = np.flatnonzero(mask)
        if rows.size:
            out[rows] = self._encode_rows(signals_arr[rows])
        return out

    def __call__(self, signals: Sequence[Any]) -> np.ndarray:
        """Codes of a list of 1-D signals (the interface of :func:`encode_modality`)."""
        self._check_fitted()
        arrays = [np.asarray(s, dtype=np.float32) for s in signals]
        if not arrays:
            return np.empty((0, self.code_dim), dtype=np.float32)
        bad = [i for i, a in enumerate(arrays) if a.shape != (self.length_,)]
        if bad:
            raise ValueError(
                f"{self._name()}: items {bad[:5]} have shape {arrays[bad[0]].shape}, "
                f"expected ({self.length_},)"
            )
        return self.encode(np.stack(arrays))

    def reconstruct(self, signals: Any) -> np.ndarray:
        """Decoded signals ``(n, length)`` in the input units (for checking the fit)."""
        self._check_fitted()
        x, _ = self._validate(signals, None, self.length_)
        torch = self._torch()
        parts = []
        with torch_threads(torch, self.num_threads), torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                batch = self._tensor(torch, self._standardise(x[start : start + self.batch_size]))
                parts.append(self._net(batch)[:, 0].float().cpu().numpy())
        out = np.concatenate(parts) if parts else np.empty((0, self.length_), np.float32)
        return out * self.scale_ + self.mean_

    # ------------------------------------------------------------------ internals

    def _name(self) -> str:
        return f"channel {self.channel!r}" if self.channel is not None else "signal channel"

    def _torch(self) -> Any:
        return require("torch", "PyTorch", _OWNER, _EXTRA)

    def _check_fitted(self) -> None:
        if self._net is None:
            raise RuntimeError(f"{self._name()}: SignalAutoencoder is not fitted; call fit first")

    def _validate(
        self, signals: Any, observed: Any, length: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        arr = np.asarray(signals)
        if arr.ndim != 2 or (length is not None and arr.shape[1] != length):
            want = f"(n, {length})" if length is not None else "(n, length)"
            raise ValueError(f"{self._name()}: signals have shape {arr.shape}, expected {want}")
        if observed is None:
            mask = np.ones(arr.shape[0], dtype=bool)
        else:
            mask = np.asarray(observed)
            if mask.dtype != bool or mask.shape != (arr.shape[0],):
                raise ValueError(
                    f"{self._name()}: observed must be a boolean array of shape "
                    f"({arr.shape[0]},), got {mask.dtype} {mask.shape}"
                )
        # Only observed rows are converted and checked: the others are never read.
        rows = np.flatnonzero(mask)
        values = arr[rows].astype(np.float32, copy=False)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            bad = rows[~finite][:5].tolist()
            raise ValueError(f"{self._name()}: observed rows {bad} hold NaN or infinite values")
        full = np.zeros(arr.shape, dtype=np.float32) if arr.dtype != np.float32 else arr
        if full is not arr:
            full[rows] = values
        return full, mask

    def _observed_rows(self, signals: Any, observed: Any, length: int | None) -> np.ndarray:
        arr, mask = self._validate(signals, observed, length)
        if not mask.any():
            raise ValueError(f"{self._name()}: no observed training signal to fit on")
        return arr[mask]

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_).astype(np.float32)

    def _tensor(self, torch: Any, x: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(x))[:, None, :].to(self.device)

    def _initial_network(self, torch: Any, seed: int) -> Any:
        # fork_rng keeps the caller's global torch RNG untouched by our seeding.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build_network(torch, self.length_, self.code_dim).to(self.device)

    def _train(self, torch: Any, x: np.ndarray, seed: int) -> list[float]:
        net = self._net.train()
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        order_rng = np.random.default_rng(seed)
        history = []
        bar = progress_bar(
            self.progress, self.epochs, f"autoencoder {self.channel or ''}".strip(), "epoch"
        )
        try:
            for _ in range(self.epochs):
                history.append(self._epoch(torch, net, optimiser, x, order_rng.permutation(len(x))))
                if bar is not None:
                    bar.set_postfix(loss=f"{history[-1]:.4f}")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return history

    def _epoch(
        self, torch: Any, net: Any, optimiser: Any, x: np.ndarray, order: np.ndarray
    ) -> float:
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            batch = self._tensor(torch, x[order[start : start + self.batch_size]])
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(net(batch), batch)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.shape[0]
        return total / len(order)

    def _encode_rows(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch()
        parts = []
        with torch_threads(torch, self.num_threads), torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                batch = self._tensor(torch, self._standardise(x[start : start + self.batch_size]))
                parts.append(self._net.encode(batch).float().cpu().numpy())
        return np.concatenate(parts)


# --------------------------------------------------------------------------- many channels


def _channels(X: Any, channel_names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(X, Mapping):
        if channel_names is not None and list(channel_names) != list(X):
            raise ValueError("channel_names must match the keys of X when X is a mapping")
        return {str(k): v for k, v in X.items()}
    arr = np.asarray(X)
    if arr.ndim != 3:
        raise ValueError(f"signals must have shape (n, channels, length), got {arr.shape}")
    names = (
        list(channel_names)
        if channel_names is not None
        else [f"ch{c}" for c in range(arr.shape[1])]
    )
    if len(names) != arr.shape[1] or len(set(names)) != len(names):
        raise ValueError(f"need {arr.shape[1]} distinct channel names, got {names}")
    return {name: arr[:, c, :] for c, name in enumerate(names)}


def _observed_columns(observed: Any, names: list[str], n: int) -> dict[str, np.ndarray]:
    if isinstance(observed, Mapping):
        cols = {name: np.asarray(observed[name]) for name in names}
    else:
        mask = np.asarray(observed)
        if mask.shape != (n, len(names)):
            raise ValueError(f"observed must have shape ({n}, {len(names)}), got {mask.shape}")
        cols = {name: mask[:, c] for c, name in enumerate(names)}
    for name, col in cols.items():
        if col.dtype != bool or col.shape != (n,):
            raise ValueError(
                f"channel {name!r}: observed must be boolean of shape ({n},), got {col.dtype} {col.shape}"
            )
    return cols


def _train_mask(train_rows: Any, n: int) -> np.ndarray:
    rows = np.asarray(train_rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"a boolean train_rows must have shape ({n},), got {rows.shape}")
        return rows
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError("train_rows must be a boolean mask or a 1-D array of row indices")
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise ValueError(f"train_rows holds indices outside 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def encode_signals(
    X: Any,
    observed: Any,
    train_rows: Any,
    channel_names: Sequence[str] | None = None,
    *,
    code_dim: int = 128,
    epochs: int = 20,
    random_state: int | None = 0,
    progress: bool = True,
    return_models: bool = False,
    **autoencoder_params: Any,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, SignalAutoencoder]]:
    """Embed every signal channel with its own autoencoder, fitted on training rows only.

    For channel ``c`` an autoencoder is fitted on the rows that are in
    ``train_rows`` **and** observed for ``c``; it then encodes every row where
    ``c`` is observed (training and test). Rows where ``c`` is missing get
    all-NaN codes and are never read.

    Parameters
    ----------
    X : ndarray of shape (n, channels, length), or mapping name -> (n, length_c)
        The signals (a mapping allows a different length per channel).
    observed : ndarray of shape (n, channels) bool, or mapping name -> (n,) bool
    train_rows : (n,) bool mask or 1-D int indices
        The training samples.
    channel_names : sequence of str, optional
        Names for the channels of an array ``X`` (default ``ch0``, ``ch1``, ...).
    code_dim, epochs : int
        See :class:`SignalAutoencoder`.
    random_state : int, optional
        Channel ``c`` uses the ``c``-th seed spawned from it.
    progress : bool, default=True
    return_models : bool, default=False
        Also return the fitted autoencoders.
    **autoencoder_params
        Further :class:`SignalAutoencoder` parameters (``batch_size``, ...).

    Returns
    -------
    dict name -> ndarray of shape (n, code_dim), float32
        (and a dict name -> SignalAutoencoder with ``return_models=True``)

    Raises
    ------
    ValueError
        On a wrong shape, a non-finite observed value or a channel with no
        observed training row; the message names the channel.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2, 32))
    >>> observed = rng.random((30, 2)) < 0.8
    >>> emb = encode_signals(X, observed, np.arange(20), ["eeg", "eog"], code_dim=4,
    ...                      epochs=1, progress=False)  # doctest: +SKIP
    >>> sorted(emb), emb["eeg"].shape  # doctest: +SKIP
    (['eeg', 'eog'], (30, 4))
    """
    channels = _channels(X, channel_names)
    names = list(channels)
    n = _common_rows(channels)
    cols = _observed_columns(observed, names, n)
    train = _train_mask(train_rows, n)
    seeds = np.random.SeedSequence(_seed(random_state)).spawn(len(names))
    out, models = {}, {}
    for name, seed in zip(names, seeds, strict=True):
        model = SignalAutoencoder(
            code_dim=code_dim,
            epochs=epochs,
            random_state=int(seed.generate_state(1)[0]),
            progress=progress,
            channel=name,
            **autoencoder_params,
        )
        model.fit(channels[name], cols[name] & train)
        out[name] = model.encode(channels[name], cols[name])
        models[name] = model
    return (out, models) if return_models else out


def _common_rows(channels: Mapping[str, Any]) -> int:
    n = None
    for name, values in channels.items():
        shape = np.shape(values)
        if len(shape) != 2 or (n is not None and shape[0] != n):
            want = "(n, length)" if n is None else f"({n}, length)"
            raise ValueError(f"channel {name!r} has shape {shape}, expected {want}")
        n = shape[0]
    if n is None:
        raise ValueError("no signal channel given")
    return n
