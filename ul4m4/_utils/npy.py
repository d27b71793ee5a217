"""The header of a ``.npy`` stream, read before any of its data is allocated."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NPY_VERSIONS", "read_npy_header"]

#: The ``.npy`` format versions NumPy writes (3.0: a UTF-8 header, for field names).
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))


def read_npy_header(stream: Any, max_header_size: int,
                    versions: tuple[tuple[int, int], ...] = NPY_VERSIONS
                    ) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read the magic string and the header of ``stream``; return (shape, fortran, dtype).

    The stream is left at the first byte of data. NumPy's own parser reads the
    header (a Python literal, never executed) up to ``max_header_size`` bytes.
    Raises ``ValueError`` (or the parser's ``SyntaxError``, ``OverflowError``, ...)
    for a damaged header or a version not in ``versions``.
    """
    version = np.lib.format.read_magic(stream)
    if version not in versions:
        raise ValueError(f".npy format version {version} (readable: {list(versions)})")
    # Versions 2.0 and 3.0 differ only in the header's encoding, the same for the
    # ASCII of every plain dtype.
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    return read(stream, max_header_size=max_header_size)
