"""Data sets shipped with ul4m4."""

from .mfeat import MFEAT_MODALITIES, load_mfeat

__all__ = ["MFEAT_MODALITIES", "load_mfeat"]
