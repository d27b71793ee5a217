"""Which frozen encoder embeds which modality in the deep experiments.

:func:`default_encoders` picks one per modality of MM-IMDb and CMU-MOSI; the command line
overrides a choice with ``--encoder MODALITY=KIND`` where KIND is

- ``minilm``: :class:`ul4m4.encoders.MiniLMEncoder` (text, 384-d);
- ``efficientnet``: :class:`ul4m4.encoders.EfficientNetLite0Encoder` (an image, 1280-d;
  for a list of video frames, the mean of the frames' embeddings);
- ``spectrum``: :class:`LogSpectrumEncoder` (audio waveform, 128-d, no weights);
- ``hf:PATH``: :class:`ul4m4.encoders.HFEncoder` on a local Hugging Face model folder (for
  the paper's BERT / WavLM / CLIP encoders when their weights are at hand).

The paper's own encoders (CLIP ViT-B/32, BERT, WavLM-Large) need weights that are not
bundled; the defaults are the frozen encoders this package ships with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ENCODER_KINDS",
    "FrameMeanEncoder",
    "LogSpectrumEncoder",
    "build_encoder",
    "default_encoders",
    "parse_encoder_specs",
]

ENCODER_KINDS = ("minilm", "efficientnet", "spectrum", "hf:PATH")

class LogSpectrumEncoder:
    """Audio embedding without learned weights: log band energies over time, mean and std.

    The waveform is cut into 25 ms frames every 10 ms (Hann window), the power spectrum
    of each frame is summed into ``n_bands`` bands equally spaced on the mel scale up to
    Nyquist, and ``log(1e-10 + energy)`` is averaged and its standard deviation taken
    over the frames: ``2 * n_bands`` numbers per clip. Each clip is processed alone, so an
    embedding never depends on its batch-mates (unlike padded pooling, SPEC §3.6).

    Parameters
    ----------
    n_bands : int, default=64
        Mel bands; ``dim = 2 * n_bands``.

    Examples
    --------
    >>> from ul4m4.datasets import Waveform
    >>> clip = Waveform(np.sin(np.linspace(0, 600, 16000)).astype(np.float32), 16000)
    >>> LogSpectrumEncoder()([clip]).shape
    (1, 128)
    """

    def __init__(self, n_bands: int = 64) -> None:
        self.n_bands = int(n_bands)
        self.dim = 2 * self.n_bands

    @property
    def cache_id(self) -> str:
        return f"log-mel-spectrum-v1|bands={self.n_bands}|win25ms-hop10ms-hann|mean+std"

    def __call__(self, clips: Sequence[Any]) -> np.ndarray:
        return np.stack([self._one(clip) for clip in clips]).astype(np.float32)

    def _one(self, clip: Any) -> np.ndarray:
        samples = np.asarray(clip[0], dtype=np.float64).ravel()
        rate = int(clip[1])
        win, hop = max(2, int(0.025 * rate)), max(1, int(0.010 * rate))
        if samples.size < win:
            samples = np.pad(samples, (0, win - samples.size))
        n_frames = 1 + (samples.size - win) // hop
        idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
        power = np.abs(np.fft.rfft(samples[idx] * np.hanning(win), axis=1)) ** 2
        bands = power @ self._filterbank(win, rate)
        logs = np.log(1e-10 + bands)
        return np.concatenate([logs.mean(axis=0), logs.std(axis=0)])

    def _filterbank(self, win: int, rate: int) -> np.ndarray:
        freqs = np.fft.rfftfreq(win, 1.0 / rate)
        mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
        edges = np.linspace(0.0, mel[-1], self.n_bands + 2)
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rise = (mel[None, :] - lower) / (centre - lower)
        fall = (upper - mel[None, :]) / (upper - centre)
        return np.clip(np.minimum(rise, fall), 0.0, None).T


class FrameMeanEncoder:
    """Embed a list of frames with an image encoder and average them (one clip, one vector).

    Parameters
    ----------
    image_encoder : encoder
        Callable on a list of images, with ``dim`` and ``cache_id``.

    Examples
    --------
    >>> class Mean:
    ...     dim, cache_id = 1, "mean-v1"
    ...     def __call__(self, images):
    ...         return np.array([[np.mean(i)] for i in images])
    >>> FrameMeanEncoder(Mean())([[np.zeros(2), np.ones(2)]]).tolist()
    [[0.5]]
    """

    def __init__(self, image_encoder: Any) -> None:
        self.image_encoder = image_encoder
        self.dim = int(image_encoder.dim)

    @property
    def cache_id(self) -> str:
        return f"frame-mean|{self.image_encoder.cache_id}"

    def content_key(self, item: Sequence[Any]) -> bytes:
        inner = getattr(self.image_encoder, "content_key", None)
        if inner is None:
            from ..encoders.cache import content_key as inner
        digest = hashlib.sha256()
        for frame in item:
            digest.update(hashlib.sha256(inner(frame)).digest())
        return b"frames:" + digest.digest()

    def __call__(self, clips: Sequence[Sequence[Any]]) -> np.ndarray:
        frames = [frame for clip in clips for frame in clip]
        if any(len(clip) == 0 for clip in clips):
            raise ValueError("a video item has no frame")
        codes = np.asarray(self.image_encoder(frames), dtype=np.float64)
        bounds = np.cumsum([0] + [len(clip) for clip in clips])
        return np.stack(
            [codes[bounds[i] : bounds[i + 1]].mean(axis=0) for i in range(len(clips))]
        ).astype(np.float32)


def build_encoder(kind: str, modality: str, *, progress: bool = True) -> Any:
    """One encoder from its ``--encoder`` kind (see the module docstring)."""
    if kind == "minilm":
        from ..encoders.minilm import MiniLMEncoder

        return MiniLMEncoder(progress=progress)
    if kind == "efficientnet":
        from ..encoders.image import EfficientNetLite0Encoder

        image = EfficientNetLite0Encoder(progress=progress)
        return FrameMeanEncoder(image) if modality == "video" else image
    if kind == "spectrum":
        return LogSpectrumEncoder()
    if kind.startswith("hf:") and len(kind) > 3:
        from ..encoders import HFEncoder

        return HFEncoder(kind[3:], modality=modality)
    raise _unknown_kind(kind, modality)


def _is_known_kind(kind: str) -> bool:
    return kind in ("minilm", "efficientnet", "spectrum") or (
        kind.startswith("hf:") and len(kind) > 3
    )


def _unknown_kind(kind: str, modality: str) -> ValueError:
    return ValueError(
        f"unknown encoder {kind!r} for modality {modality!r}; use one of {', '.join(ENCODER_KINDS)}"
    )


def parse_encoder_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["audio=hf:/models/wavlm"]`` -> ``{"audio": "hf:/models/wavlm"}``.

    Raises
    ------
    ValueError
        If a spec is not ``MODALITY=KIND`` or names an unknown kind.

    Examples
    --------
    >>> parse_encoder_specs(["text=minilm", "audio=hf:/m"])
    {'text': 'minilm', 'audio': 'hf:/m'}
    """
    out: dict[str, str] = {}
    for spec in specs:
        modality, sep, kind = spec.partition("=")
        if not sep or not modality or not kind:
            raise ValueError(f"expected MODALITY=KIND for an encoder, got {spec!r}")
        # Checked here, not when building, so that a typo fails before any data is read.
        if not _is_known_kind(kind):
            raise _unknown_kind(kind, modality)
        out[modality] = kind
    return out


def default_encoders(
    dataset: str,
    modalities: Sequence[str],
    overrides: Mapping[str, str] | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """The encoder of each modality, built from its kind in ``overrides``.

    The deep experiment passes the data set's default kinds
    (:attr:`ul4m4.experiments.sources.DatasetPreset.encoders`) with the ``--encoder``
    overrides applied; ``dataset`` names the data set in the messages.

    Raises
    ------
    ValueError
        For a kind naming an unknown modality or kind, or a modality without a kind.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(modalities))
    if unknown:
        raise ValueError(
            f"--encoder names unknown modality {unknown[0]!r}; {dataset} has {list(modalities)}"
        )
    kinds = overrides
    out = {}
    for name in modalities:
        if name not in kinds:
            raise ValueError(
                f"no encoder for modality {name!r} of {dataset}; pass --encoder {name}=KIND"
            )
        out[name] = build_encoder(kinds[name], name, progress=progress)
    return out
