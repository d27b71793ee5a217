"""iMML's MOFA imputer (optional; transductive).

MOFA (multi-omics factor analysis) fits latent factors to all the samples it is
given and reconstructs their missing blocks; it has no way to fill a sample it
was not fitted on. It is therefore *transductive*: :meth:`MOFABaseline.transform`
refits on the training samples together with the samples to fill (without any
label), which is how iMML uses it. Compare it with inductive methods knowing that
it sees the unlabelled test data.

Requires the optional package ``imml`` (``pip install imml``), which pulls in
cvxpy with several solvers, h5py, python-control and networkx (about 280 MB);
it is therefore not a dependency of ul4m4.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from ..validation import Multimodal
from .base import BaseImputer

__all__ = ["MOFABaseline", "import_mofa"]


def import_mofa() -> Any:
    """iMML's ``MOFAImputer`` class, or an ImportError that names the package to install."""
    try:
        from imml.impute import MOFAImputer
    except ImportError as exc:
        raise ImportError(
            "the 'mofa' method needs the optional package imml: pip install imml"
        ) from exc
    return MOFAImputer


class MOFABaseline(BaseImputer):
    """iMML ``MOFAImputer`` on the z-scored modalities, refitted per filled data set.

    Parameters
    ----------
    n_components : int, default=10
        Latent factors.
    max_iter : int, default=1000
        MOFA's training iterations (``train_options["iter"]``).
    random_state : int or None, default=None
        MOFA's seed.

    Notes
    -----
    Blocks are z-scored with the training statistics before MOFA sees them and
    de-normalised afterwards. Filling the training set itself fits on it alone;
    filling any other set fits on the training rows stacked on top of it.
    """

    name = "mofa"
    transductive = True

    def __init__(
        self, n_components: int = 10, *, max_iter: int = 1000, random_state: int | None = None
    ) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, data: Multimodal) -> None:
        import_mofa()  # fail at fit time, not in the middle of a benchmark
        self._train_z = self._blocks_with_nan(data)

    def _blocks_with_nan(self, data: Multimodal) -> list[np.ndarray]:
        blocks, mask = self._zscored(data)
        for m, block in enumerate(blocks):
            block[~mask[:, m]] = np.nan
        return blocks

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        new = self._blocks_with_nan(data)
        same = all(
            a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            for a, b in zip(new, self._train_z, strict=True)
        )
        stacked = (
            new if same else [np.vstack([t, b]) for t, b in zip(self._train_z, new, strict=True)]
        )
        offset = 0 if same else self._train_z[0].shape[0]
        imputer = import_mofa()(
            n_components=int(self.n_components),
            train_options={"iter": int(self.max_iter)},
            random_state=self.random_state,
        )
        # MOFA prints its training log to stdout, which the benchmark reserves for tables.
        with contextlib.redirect_stdout(io.StringIO()):
            filled = imputer.fit_transform(stacked)
        fills = {}
        for m, name in enumerate(data.names):
            z = np.asarray(filled[m], dtype=np.float64)[offset:]
            missing = ~data.mask[:, m]
            fills[name] = z[missing] * self.scale_[name] + self.mean_[name]
        return fills
