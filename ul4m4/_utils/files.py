"""Atomic file writes: a reader sees the old file or the complete new one, never part.

Every file ul4m4 writes (model files, streamed ``.npy`` outputs, caches, result
files) goes through :class:`AtomicWriter`: the data go to a hidden temporary file
``.<name>.<random>.tmp`` in the target's folder (same file system, so the final
:func:`os.replace` is atomic), which replaces the target only when complete. The
temporary file is created with mode ``0o666`` filtered by the process umask, so
the result has the permissions a plain ``open(path, "w")`` would give it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_GLOB",
    "AtomicWriter",
    "atomic_write",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: Glob pattern (relative to a folder) that matches the temporary files written there.
TEMP_GLOB = ".*.tmp"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create a new temporary file next to ``target``; return its descriptor and path."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            # 0o666: the kernel applies the umask, exactly as for open(path, "w").
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            # Name the user's target, not the temporary file, in the message.
            raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    raise FileExistsError(f"{target}: no free temporary file name in its folder")


class AtomicWriter:
    """A file that replaces ``path`` on :meth:`commit` and vanishes on :meth:`abort`.

    Parameters
    ----------
    path : str or os.PathLike
        The target. Its folder must exist (:class:`FileNotFoundError` naming
        ``path`` otherwise); an existing target is left untouched until commit.
    mode : {"wb", "w"}
        Binary, or text in ``encoding``.
    fsync : bool
        Flush the data to disk before the rename (durable against power loss).
    encoding : str
        Encoding of text mode.

    Attributes
    ----------
    path : Path
        The target.
    temp_path : Path
        The temporary file the data are written to.
    file : file object
        The open handle on ``temp_path``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> writer = AtomicWriter(folder / "x.bin")
    >>> _ = writer.file.write(b"abc")
    >>> writer.commit()
    >>> (folder / "x.bin").read_bytes()
    b'abc'
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True,
                 encoding: str = "utf-8") -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
        self.path = Path(path)
        self.fsync = fsync
        fd, self.temp_path = _create_temporary(self.path)
        try:
            self.file: IO[Any] = os.fdopen(fd, mode, encoding=None if mode == "wb" else encoding)
        except BaseException:
            os.close(fd)
            self.temp_path.unlink(missing_ok=True)
            raise
        self.done = False

    def commit(self) -> None:
        """Flush (and fsync), close, and move the temporary file onto the target."""
        try:
            self.file.flush()
            if self.fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self.done = True

    def abort(self) -> None:
        """Close and remove the temporary file; the target stays as it was. Idempotent."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
        self.temp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True,
                 encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Context manager yielding a handle whose content replaces ``path`` on normal exit.

    On an exception inside the block the temporary file is removed, an existing
    ``path`` keeps its content, and the exception propagates. Parameters are
    those of :class:`AtomicWriter`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("hello")
    >>> target.read_text()
    'hello'
    """
    writer = AtomicWriter(path, mode, fsync=fsync, encoding=encoding)
    try:
        yield writer.file
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *,
                       fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); return ``Path(path)``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> write_bytes_atomic(Path(tempfile.mkdtemp()) / "x.bin", b"abc").read_bytes()
    b'abc'
    """
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; return ``Path(path)``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> write_text_atomic(Path(tempfile.mkdtemp()) / "x.txt", "abc").read_text()
    'abc'
    """
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)
