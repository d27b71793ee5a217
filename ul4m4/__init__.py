"""ul4m4: label-free imputation of missing modality embeddings (UL4M4).

UL4M4 (Ismkhan & Bouchachia, 2026) z-scores each modality, clusters incomplete
training samples by k-means under a partial-modality distance, and completes any
sample's missing modalities by a greedy search over the training centres.
"""

from ._version import __version__
from .adapter import ModalityImputer
from .datasets import load_mfeat
from .imputer import UL4M4Imputer

__all__ = ["ModalityImputer", "UL4M4Imputer", "load_mfeat", "__version__"]
