"""Helpers shared by the encoders: optional imports, progress, hashing, torch, transformers."""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "file_sha256",
    "quiet_transformers",
    "require",
    "torch_threads",
]


def require(module: str, what: str, owner: str, extra: str) -> Any:
    """Import an optional dependency, or fail with the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{owner} needs {what} (module {module!r} could not be imported: {exc}). "
            f"Install the extra: pip install 'ul4m4[{extra}]'"
        ) from exc


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def torch_threads(torch: Any, num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` torch CPU threads inside the block, then restore the setting."""
    if num_threads is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def check_positive(name: str, value: Any) -> int:
    """Return ``int(value)`` or raise a ValueError naming the parameter."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@contextmanager
def quiet_transformers(enabled: bool) -> Iterator[None]:
    """Silence transformers' own weight-loading bar when progress output is off."""
    logging = importlib.import_module("transformers.utils.logging")
    was_enabled = logging.is_progress_bar_enabled()
    if not enabled and was_enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if not enabled and was_enabled:
            logging.enable_progress_bar()
