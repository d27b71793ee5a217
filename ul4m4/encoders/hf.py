"""Any Hugging Face checkpoint on disk as a frozen text, image or audio encoder.

:class:`HFEncoder` loads a folder written by ``save_pretrained`` (or a snapshot
of a hub repository) with ``local_files_only=True``, so it never downloads:

* text: CLIP checkpoints give the projected text embedding (``text_embeds``);
  other models (BERT, ...) the last hidden state averaged over real tokens
  (``pooling="mean"``, padding excluded) or the ``[CLS]`` state (``"cls"``);
* image: CLIP gives the projected image embedding (``"projection"``) or the
  pooled vision state (``"pooled"``); other vision models their pooler output;
* audio (WavLM, wav2vec 2.0, HuBERT): the last hidden state averaged over the
  frames of the real signal. Padding frames are excluded from attention and from
  the mean, so a clip's embedding does not depend on the clips it is batched with.

Install with ``pip install 'ul4m4[deep]'``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.progress import progress_bar
from ._common import check_positive, quiet_transformers, require, torch_threads
from .cache import content_key, join_key_parts
from .image import image_content_key, load_image

__all__ = ["HFEncoder"]

_OWNER = "HFEncoder"
_EXTRA = "deep"
_MODALITIES = ("text", "image", "audio")
_CLIP_TYPES = ("clip", "clip_text_model", "clip_vision_model")
_POOLINGS = {
    "text": ("auto", "mean", "cls", "projection"),
    "image": ("auto", "projection", "pooled", "mean"),
    "audio": ("auto", "mean"),
}


def _directory_sha256(path: Path) -> str:
    """Hash of every file directly in the checkpoint folder (names and bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class HFEncoder:
    """Frozen Hugging Face model from a local folder, as a batched embedding function.

    Parameters
    ----------
    path : str or path-like
        Checkpoint folder (``config.json``, weights, tokenizer / image
        processor / feature extractor files).
    modality : {"text", "image", "audio"}, default="text"
    pooling : str, default="auto"
        ``"auto"`` picks ``"projection"`` for CLIP and ``"mean"`` otherwise
        (text, audio) or the pooler output (image). Text also accepts
        ``"cls"`` (the first token's state, e.g. BERT ``[CLS]``), image
        ``"pooled"`` and ``"mean"``.
    batch_size : int, default=32
    device : str, default="cpu"
    progress : bool, default=True
        A tqdm bar when a call spans more than one batch.
    num_threads : int, optional
        Torch CPU threads while encoding (restored afterwards).
    max_length : int, optional
        Token truncation length for text (default: the tokenizer's limit).

    Attributes
    ----------
    dim : int
        Embedding width.
    cache_id : str
        Model type, modality, pooling and a hash of the checkpoint files.
    pooling : str
        The resolved pooling.
    sampling_rate : int or None
        Expected sampling rate of audio items.

    Notes
    -----
    Audio items are 1-D float arrays at ``sampling_rate`` (or ``(array,
    rate)`` pairs, checked against it); nothing is resampled. Models whose
    feature encoder normalises over time (``feat_extract_norm="group"``, e.g.
    wav2vec2-base, WavLM-Base) would see padding inside that normalisation, so
    for them a batch only groups clips of equal length.

    Examples
    --------
    >>> enc = HFEncoder("checkpoints/bert-base-uncased", "text", pooling="cls")  # doctest: +SKIP
    >>> enc(["a review", "another one"]).shape  # doctest: +SKIP
    (2, 768)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        modality: str = "text",
        *,
        pooling: str = "auto",
        batch_size: int = 32,
        device: str = "cpu",
        progress: bool = True,
        num_threads: int | None = None,
        max_length: int | None = None,
    ) -> None:
        if modality not in _MODALITIES:
            raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}")
        if pooling not in _POOLINGS[modality]:
            raise ValueError(
                f"pooling for {modality} must be one of {_POOLINGS[modality]}, got {pooling!r}"
            )
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a Hugging Face checkpoint folder (no config.json)"
            )
        self.modality = modality
        self.batch_size = check_positive("batch_size", batch_size)
        self.num_threads = (
            None if num_threads is None else check_positive("num_threads", num_threads)
        )
        self.max_length = None if max_length is None else check_positive("max_length", max_length)
        self.device = device
        self.progress = progress
        self._torch = require("torch", "PyTorch", _OWNER, _EXTRA)
        self._tf = require("transformers", "the transformers library", _OWNER, _EXTRA)
        config = self._tf.AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        self.model_type = str(config.model_type)
        self._clip = self.model_type in _CLIP_TYPES
        self.pooling = self._resolve_pooling(pooling)
        self.sampling_rate: int | None = None
        with quiet_transformers(progress):
            self._model, self._processor = getattr(self, f"_load_{modality}")()
        self._model = self._model.to(device).eval()
        self.dim = self._output_dim()
        self._files_sha256: str | None = None

    # ------------------------------------------------------------------ loading

    def _resolve_pooling(self, pooling: str) -> str:
        if pooling == "projection" and not self._clip:
            raise ValueError(
                f"pooling='projection' needs a CLIP checkpoint, {self.path} is {self.model_type}"
            )
        if pooling != "auto":
            return pooling
        if self._clip and self.modality != "audio":
            return "projection"
        return "pooled" if self.modality == "image" else "mean"

    def _from_pretrained(self, cls: Any, **kwargs: Any) -> Any:
        logging = self._tf.utils.logging
        verbosity = logging.get_verbosity()
        # A CLIP tower loaded from a full CLIP checkpoint makes transformers list every
        # weight of the other tower as unused; that report is expected, so keep it quiet.
        logging.set_verbosity_error()
        try:
            return cls.from_pretrained(str(self.path), local_files_only=True, **kwargs)
        finally:
            logging.set_verbosity(verbosity)

    def _clip_tower(self, part: str) -> Any:
        """One tower of a CLIP checkpoint, with the projection width of the full model."""
        tf = self._tf
        names = {
            "text": ("CLIPTextModel", "text_config"),
            "image": ("CLIPVisionModel", "vision_config"),
        }
        model_name, key = names[part]
        if self.pooling == "projection":
            model_name += "WithProjection"
        config = tf.AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        if self.model_type == "clip":
            tower = getattr(config, key)
            tower.projection_dim = config.projection_dim
            config = tower
        return self._from_pretrained(getattr(tf, model_name), config=config)

    def _load_text(self) -> tuple[Any, Any]:
        tf = self._tf
        tokenizer = self._from_pretrained(tf.AutoTokenizer)
        if self._clip:
            return self._clip_tower("text"), tokenizer
        return self._from_pretrained(tf.AutoModel), tokenizer

    def _load_image(self) -> tuple[Any, Any]:
        tf = self._tf
        processor = self._from_pretrained(tf.AutoImageProcessor)
        if self._clip:
            return self._clip_tower("image"), processor
        return self._from_pretrained(tf.AutoModel), processor

    def _load_audio(self) -> tuple[Any, Any]:
        tf = self._tf
        extractor = self._from_pretrained(tf.AutoFeatureExtractor)
        self.sampling_rate = int(extractor.sampling_rate)
        model = self._from_pretrained(tf.AutoModel)
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise ValueError(
                f"{self.path}: audio pooling needs a wav2vec2-style model (WavLM, wav2vec2, "
                f"HuBERT); got {type(model).__name__}"
            )
        return model, extractor

    def _output_dim(self) -> int:
        config = self._model.config
        if self.pooling == "projection":
            return int(config.projection_dim)
        return int(config.hidden_size)

    # ------------------------------------------------------------------ identity

    @property
    def cache_id(self) -> str:
        """Identifier of the embedding function, for keying caches."""
        if self._files_sha256 is None:
            self._files_sha256 = _directory_sha256(self.path)
        return (
            f"hf|{self.model_type}|{self.modality}|pooling={self.pooling}"
            f"|max_length={self.max_length}|files-sha256={self._files_sha256[:16]}"
        )

    def content_key(self, item: Any) -> bytes:
        """Cache key bytes of an item (text, image file/pixels, or waveform)."""
        if self.modality == "image":
            return image_content_key(item)
        if self.modality == "audio":
            wave, _ = self._waveform(item, 0)
            return join_key_parts([b"audio", str(self.sampling_rate).encode(), content_key(wave)])
        return content_key(item)

    # ------------------------------------------------------------------ encoding

    def __call__(self, items: Sequence[Any]) -> np.ndarray:
        return self.encode(items)

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        """Embed items of this encoder's modality.

        Parameters
        ----------
        items : sequence
            Texts; image paths or PIL images; or 1-D waveforms.

        Returns
        -------
        ndarray of shape (len(items), dim), dtype float32
        """
        if isinstance(items, (str, os.PathLike)):
            raise TypeError("encode expects a sequence of items, not a single one")
        items = list(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        batches = self._batches(items)
        bar = progress_bar(
            self.progress and len(batches) > 1,
            len(items),
            f"{self.model_type} {self.modality}",
            "item",
        )
        torch = self._torch
        try:
            with torch_threads(torch, self.num_threads), torch.inference_mode():
                for idx in batches:
                    out[idx] = getattr(self, f"_{self.modality}_batch")(
                        [items[i] for i in idx], idx
                    )
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _batches(self, items: list[Any]) -> list[list[int]]:
        order = list(range(len(items)))
        if self.modality == "audio":
            waves = [self._waveform(item, i)[0] for i, item in enumerate(items)]
            if getattr(self._model.config, "feat_extract_norm", "layer") == "group":
                return self._equal_length_batches(waves)
            # Similar lengths together: less padding, same results.
            order.sort(key=lambda i: -len(waves[i]))
        elif self.modality == "text" and all(isinstance(t, str) for t in items):
            order.sort(key=lambda i: -len(items[i]))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def _equal_length_batches(self, waves: list[np.ndarray]) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i, wave in enumerate(waves):
            groups.setdefault(len(wave), []).append(i)
        return [
            g[s : s + self.batch_size]
            for g in groups.values()
            for s in range(0, len(g), self.batch_size)
        ]

    def _to_device(self, batch: Any) -> dict[str, Any]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def _text_batch(self, texts: list[Any], idx: list[int]) -> np.ndarray:
        bad = [i for i, t in zip(idx, texts, strict=True) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"text items must be strings; rows {bad[:5]} are not")
        kwargs = {"max_length": self.max_length} if self.max_length else {}
        tokens = self._to_device(
            self._processor(texts, padding=True, truncation=True, return_tensors="pt", **kwargs)
        )
        output = self._model(**tokens)
        if self.pooling == "projection":
            pooled = output.text_embeds
        elif self.pooling == "cls":
            pooled = output.last_hidden_state[:, 0]
        else:
            pooled = self._masked_mean(output.last_hidden_state, tokens["attention_mask"])
        return pooled.float().cpu().numpy()

    def _image_batch(self, images: list[Any], idx: list[int]) -> np.ndarray:
        pixels = self._processor(images=[load_image(im) for im in images], return_tensors="pt")
        output = self._model(pixel_values=pixels["pixel_values"].to(self.device))
        if self.pooling == "projection":
            pooled = output.image_embeds
        elif self.pooling == "mean":
            pooled = output.last_hidden_state.mean(dim=1)
        else:
            pooled = output.pooler_output
        return pooled.float().cpu().numpy()

    def _waveform(self, item: Any, row: int) -> tuple[np.ndarray, int]:
        rate = self.sampling_rate
        if isinstance(item, tuple):
            if len(item) != 2 or int(item[1]) != rate:
                raise ValueError(
                    f"audio row {row}: expected (waveform, {rate}) but got sampling rate "
                    f"{item[1] if len(item) == 2 else '?'}; resample to {rate} Hz first"
                )
            item = item[0]
        wave = np.asarray(item, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
            raise ValueError(
                f"audio row {row}: expected a finite, non-empty 1-D waveform, got shape {wave.shape}"
            )
        return wave, int(rate or 0)

    def _audio_batch(self, clips: list[Any], idx: list[int]) -> np.ndarray:
        torch = self._torch
        waves = [self._waveform(c, i)[0] for c, i in zip(clips, idx, strict=True)]
        features = self._processor(
            waves,
            sampling_rate=self.sampling_rate,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        samples = features["attention_mask"]
        n_frames = self._model._get_feat_extract_output_lengths(samples.sum(-1)).to(torch.long)
        too_short = [i for i, f in zip(idx, n_frames.tolist(), strict=True) if f < 1]
        if too_short:
            raise ValueError(
                f"audio rows {too_short[:5]} are too short for {self.model_type}'s feature "
                "encoder (no output frame)"
            )
        values = features["input_values"].to(self.device)
        output = self._model(input_values=values, attention_mask=samples.to(self.device))
        hidden = output.last_hidden_state
        # Frames computed from real samples only; the padded tail is left out of the mean.
        frame_mask = torch.arange(hidden.shape[1])[None, :] < n_frames[:, None]
        return self._masked_mean(hidden, frame_mask.to(self.device)).float().cpu().numpy()

    def _masked_mean(self, hidden: Any, mask: Any) -> Any:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
