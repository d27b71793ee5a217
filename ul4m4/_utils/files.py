"""Atomic writes: a reader sees the old file (or folder) or the complete new one, never part.

Every file ul4m4 writes (model files, streamed ``.npy`` outputs, caches, result
files) goes through :class:`AtomicWriter`: the data go to a hidden temporary file
``.<name>.<host>-<pid>-<random>.tmp`` in the target's folder (same file system, so the
final :func:`os.replace` is atomic), which replaces the target only when complete.
The temporary file is created with mode ``0o666`` filtered by the process umask,
so the result has the permissions a plain ``open(path, "w")`` would give it.
:class:`NpyWriter` writes a ``.npy`` file row block by row block through one.

A set of files that belong together (the completed modalities of one
``transform``) is an :class:`OutputFolder`: written in a hidden staging folder
beside the target, with a manifest written last, then swapped in whole.

Hidden names of work in progress carry the writer's host (a hash of its name) and
process id, so a later run on the same host can tell the leftovers of a killed
run (its process is gone) from the work of a live one, and :func:`remove_stale`
deletes only the former; another host's work, on a shared file system, is never
touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "MANIFEST",
    "NpyWriter",
    "TEMP_GLOB",
    "AtomicWriter",
    "OutputFolder",
    "atomic_write",
    "check_replaceable_output",
    "output_folder",
    "remove_stale",
    "scratch_folder",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: Glob pattern (relative to a folder) that matches the temporary files written there.
TEMP_GLOB = ".*.tmp"
#: The file an :class:`OutputFolder` writes last: what the folder holds, and that it is whole.
MANIFEST = "ul4m4-output.json"
_MANIFEST_FORMAT = "ul4m4-output"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
#: Hidden work in progress: ``.<name>.<host>-<pid>-<hex>.tmp`` files, and the scratch
#: (``.ul4m4-tmp-<host>-<pid>-<hex>``), staging and replaced (``.<name>.ul4m4-staging-...``,
#: ``.<name>.ul4m4-old-...``) folders.
_IN_PROGRESS = re.compile(
    r"^\.(?:.+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]+\.tmp"
    r"|(?:.+\.)?ul4m4-(?:tmp|staging|old)-(?P<owner_host>[0-9a-f]{8})-(?P<owner>\d+)-[0-9a-f]+)$"
)


def _hidden_name(stem: str, kind: str) -> str:
    return f".{stem}ul4m4-{kind}-{_owner()}-{secrets.token_hex(4)}"


def _host() -> str:
    """8 hex digits naming this host (a hash of its name)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    return f"{_host()}-{os.getpid()}"


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create a new temporary file next to ``target``; return its descriptor and path."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(target))
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{_owner()}-{secrets.token_hex(4)}.tmp"
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


class NpyWriter:
    """Write a C-order ``.npy`` file row block by row block, atomically (see :class:`AtomicWriter`)."""

    def __init__(self, target: Path, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.target, self.shape, self.dtype = target, shape, dtype
        self.out = AtomicWriter(target)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": shape}
        try:
            np.lib.format.write_array_header_2_0(self.out.file, header)
        except BaseException:
            self.out.abort()
            raise
        self.rows = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        self.out.file.write(memoryview(block).cast("B"))
        self.rows += block.shape[0]

    def commit(self) -> None:
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.target}: wrote {self.rows} rows of {self.shape[0]}")
        self.out.commit()

    def abort(self) -> None:
        self.out.abort()


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


# ------------------------------------------------------- work in progress
def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; or no such pid value
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the hidden work in progress that killed runs left in ``folder``.

    Temporary files of :class:`AtomicWriter`, scratch folders of
    :func:`scratch_folder` and the staging folders of :class:`OutputFolder` name
    the host and the process that made them; this host's whose process is gone
    are removed, those of a running process (this one included) or of another
    host are left alone.

    Parameters
    ----------
    folder : str or path-like
        Where to look (not recursively). A folder that does not exist holds nothing.

    Returns
    -------
    list of Path
        What was removed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> name = f".model.ul4m4.{_host()}-999999999-0a1b2c3d.tmp"  # a process that is gone
    >>> _ = (folder / name).write_bytes(b"half")
    >>> [p.name for p in remove_stale(folder)] == [name]
    True
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _IN_PROGRESS.match(entry.name)
        if (match and (match.group("host") or match.group("owner_host")) == _host()
                and not _alive(int(match.group("pid") or match.group("owner")))):
            _remove(entry)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def scratch_folder(parent: str | os.PathLike[str]) -> Iterator[Path]:
    """A new hidden folder in ``parent`` (created if needed), deleted on exit, whatever happens.

    Its name carries this process's id, so if the process is killed,
    :func:`remove_stale` on ``parent`` removes it on the next run.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    path = parent / _hidden_name("", "tmp")
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------- output folders
#: Staging folders of the OutputFolders open in this process (a nested one joins them).
_OPEN_STAGING: set[Path] = set()


class OutputFolder:
    """A folder of files that replaces ``target`` whole on :meth:`commit`.

    The files are written into :attr:`path`, a hidden staging folder beside
    ``target``; :meth:`commit` writes the manifest :data:`MANIFEST` last (the
    names and sizes of the files), flushes everything to disk and swaps the
    staging folder with ``target`` in one atomic rename (``renameat2`` with
    ``RENAME_EXCHANGE`` on Linux; elsewhere two renames, between which
    ``target`` is briefly absent, never mixed). A reader therefore sees the old
    folder or the new one, and a killed run leaves only a hidden staging folder,
    which the next run removes (:func:`remove_stale`).

    Parameters
    ----------
    target : str or path-like
        The output folder. It may not exist yet, be empty, or hold an earlier
        output (a manifest and the files it lists); anything else raises
        ``ValueError``, so that no file of the user's is ever replaced.

    Attributes
    ----------
    target : Path
    path : Path
        The staging folder to write into.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = _output_path(target)
        check_replaceable_output(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.target.parent)
        self.path = self.target.parent / _hidden_name(f"{self.target.name}.", "staging")
        self.path.mkdir()
        _OPEN_STAGING.add(self.path)
        self.done = False

    def commit(self) -> None:
        """Write the manifest, flush, and swap the staging folder in for the target."""
        try:
            check_replaceable_output(self.target)  # it may have changed since we started
            names = sorted(p.name for p in self.path.iterdir())
            manifest = {"format": _MANIFEST_FORMAT, "version": 1,
                        "files": {n: (self.path / n).stat().st_size for n in names}}
            write_text_atomic(self.path / MANIFEST, json.dumps(manifest, indent=1))
            _fsync_folder(self.path)
            _swap_in(self.path, self.target)
            _fsync_folder(self.target.parent)
        except BaseException:
            self.abort()
            raise
        finally:
            _OPEN_STAGING.discard(self.path)
        self.done = True

    def abort(self) -> None:
        """Delete the staging folder; the target stays as it was. Idempotent."""
        if not self.done:
            self.done = True
            _OPEN_STAGING.discard(self.path)
            shutil.rmtree(self.path, ignore_errors=True)


class _JoinedFolder:
    """An output folder inside an enclosing :class:`OutputFolder`'s staging: writes go there."""

    def __init__(self, path: Path) -> None:
        self.target = self.path = path

    def commit(self) -> None:
        """The enclosing folder commits."""

    def abort(self) -> None:
        """The enclosing folder aborts."""


@contextlib.contextmanager
def output_folder(target: str | os.PathLike[str]) -> Iterator[OutputFolder | _JoinedFolder]:
    """Context manager over an :class:`OutputFolder`: commit on normal exit, abort on error.

    A ``target`` that is the staging folder of an output folder open in this
    process joins it: files are written there and appear when it commits.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "filled"
    >>> with output_folder(target) as folder:
    ...     _ = (folder.path / "a.txt").write_text("a")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt', 'ul4m4-output.json']
    """
    path = _output_path(target)
    folder = _JoinedFolder(path) if path in _OPEN_STAGING else OutputFolder(path)
    try:
        yield folder
    except BaseException:
        folder.abort()
        raise
    folder.commit()


def _output_path(target: str | os.PathLike[str]) -> Path:
    """The absolute output folder; a symbolic link stands for the folder it points to."""
    path = Path(target).expanduser().absolute()
    return path.resolve() if path.is_symlink() else path


def check_replaceable_output(target: Path) -> None:
    """Raise ``ValueError`` unless ``target`` is absent, empty or an earlier output folder."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ValueError(f"{target}: is a file; give a folder for the outputs")
    entries = {p.name for p in target.iterdir()}
    listed = _manifest_files(target) if MANIFEST in entries else set()
    foreign = sorted(entries - listed - {MANIFEST})
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"{target}: holds files that are not a ul4m4 output ({shown}); the outputs replace "
            "the folder whole, so give a new or empty folder"
        )


def _manifest_files(folder: Path) -> set[str]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"] if manifest.get("format") == _MANIFEST_FORMAT else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        files = None
    if not isinstance(files, dict):
        raise ValueError(f"{folder / MANIFEST}: is not a ul4m4 output manifest; give a new or "
                         "empty folder")
    return {str(name) for name in files}


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``; the folder that was there is deleted."""
    try:
        if not target.exists():
            os.rename(new, target)
            return
        os.chmod(new, stat.S_IMODE(target.stat().st_mode))
        if _exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)  # now the earlier output
            return
        old = target.parent / _hidden_name(f"{target.name}.", "old")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an old kernel, or a file system without the flag
    raise OSError(code, os.strerror(code), str(b))
