"""Loader for the UCI "Multiple Features" (mfeat) handwritten-digit data set."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MFEAT_MODALITIES", "load_mfeat"]

MFEAT_MODALITIES: tuple[str, ...] = ("fou", "fac", "kar", "pix", "zer", "mor")

_DATA_FILE = "data/mfeat.npz"


@overload
def load_mfeat(*, as_frame: Literal[False] = ...) -> tuple[dict[str, np.ndarray], np.ndarray]: ...


@overload
def load_mfeat(*, as_frame: Literal[True]) -> tuple[dict[str, pd.DataFrame], pd.Series]: ...


@overload
def load_mfeat(*, as_frame: bool) -> tuple[dict[str, Any], Any]: ...


def load_mfeat(*, as_frame: bool = False) -> tuple[dict[str, Any], Any]:
    """Load the UCI "Multiple Features" (mfeat) handwritten-digit data set.

    2000 handwritten digits (``0``-``9``, 200 per digit) described by six feature
    sets ("modalities"), aligned row by row:

    =======  ====  ============================================
    name     dims  description
    =======  ====  ============================================
    ``fou``    76  Fourier coefficients of the character shapes
    ``fac``   216  profile correlations
    ``kar``    64  Karhunen-Loève coefficients
    ``pix``   240  pixel averages in 2 x 3 windows
    ``zer``    47  Zernike moments
    ``mor``     6  morphological features
    =======  ====  ============================================

    Rows follow the original UCI order: samples ``200*k`` to ``200*k + 199`` are
    digit ``k``. Shuffle before splitting if that order matters.

    Parameters
    ----------
    as_frame : bool, default=False
        If True, return one :class:`pandas.DataFrame` per modality (columns
        ``fou_0``, ``fou_1``, ...) and the labels as a :class:`pandas.Series`
        named ``"digit"``. Requires pandas.

    Returns
    -------
    X : dict of str to numpy.ndarray or pandas.DataFrame
        Feature sets keyed by name, in the order of :data:`MFEAT_MODALITIES`.
        Arrays are float64 with shape ``(2000, d_m)``.
    y : numpy.ndarray or pandas.Series
        Digit labels, int64, shape ``(2000,)``.

    Notes
    -----
    Every call reads the packaged file again, so the returned arrays are new
    objects that callers may modify freely.

    The data are distributed under CC BY 4.0; see ``data/MFEAT_LICENSE.md`` in
    this package. Please cite:

        Duin, R. (1998). Multiple Features [Dataset]. UCI Machine Learning
        Repository. https://doi.org/10.24432/C5HC70

    Examples
    --------
    >>> import numpy as np
    >>> from ul4m4.datasets import load_mfeat
    >>> X, y = load_mfeat()
    >>> list(X)
    ['fou', 'fac', 'kar', 'pix', 'zer', 'mor']
    >>> X["fou"].shape, X["mor"].shape, y.shape
    ((2000, 76), (2000, 6), (2000,))
    >>> [int(c) for c in np.bincount(y)]
    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]
    """
    arrays = _read_arrays()
    X = {name: arrays[name] for name in MFEAT_MODALITIES}
    y = arrays["y"]
    if not as_frame:
        return X, y

    try:
        import pandas as pd
    except ImportError as exc:  # pandas is an optional dependency of ul4m4
        raise ImportError(
            "load_mfeat(as_frame=True) requires pandas; install it with "
            "`pip install pandas` or call load_mfeat() for NumPy arrays."
        ) from exc
    frames = {
        name: pd.DataFrame(x, columns=[f"{name}_{j}" for j in range(x.shape[1])])
        for name, x in X.items()
    }
    return frames, pd.Series(y, name="digit")


def _read_arrays() -> dict[str, np.ndarray]:
    ref = resources.files("ul4m4.datasets").joinpath(_DATA_FILE)
    names = (*MFEAT_MODALITIES, "y")
    # as_file gives a real path even when the package is imported from a zip.
    with resources.as_file(ref) as path:
        try:
            with np.load(path, allow_pickle=False) as npz:
                # Reading each member in full makes zipfile check its CRC-32.
                arrays = {k: npz[k] for k in names if k in npz.files}
        except Exception as exc:
            # The packaged file is damaged (or not an .npz). numpy and zipfile then raise
            # many types (BadZipFile, zlib.error, EOFError, SyntaxError from a header, ...)
            # whose messages name neither the file nor the remedy.
            raise RuntimeError(
                f"{path} is corrupt ({type(exc).__name__}: {exc}); reinstall ul4m4 or rebuild "
                "the file with scripts/build_mfeat.py"
            ) from exc
        missing = [k for k in names if k not in arrays]
        if missing:
            raise RuntimeError(
                f"{path} is missing arrays {missing}; rebuild it with scripts/build_mfeat.py"
            )
    return arrays
