import os

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4._utils.files import (
    AtomicWriter,
    atomic_write,
    write_bytes_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path):
    return path.stat().st_mode & 0o777


def test_round_trip_and_replace(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_write(target) as f:
        f.write(b"one")
    assert target.read_bytes() == b"one"
    with atomic_write(target, "w") as f:
        f.write("två")
    assert target.read_text(encoding="utf-8") == "två"
    assert write_bytes_atomic(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    assert write_text_atomic(target, "three", fsync=False).read_text() == "three"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_mode_is_that_of_open(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "f.bin"
    write_bytes_atomic(target, b"x")
    assert _mode(target) == 0o666 & ~mask
    with open(tmp_path / "plain", "wb"):
        pass
    assert _mode(target) == _mode(tmp_path / "plain")


def test_failure_keeps_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target, "w") as f:
        f.write("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failed_replace_keeps_target_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_abort_is_idempotent_and_a_no_op_after_commit(tmp_path):
    writer = AtomicWriter(tmp_path / "a")
    writer.file.write(b"a")
    writer.commit()
    writer.abort()
    assert (tmp_path / "a").read_bytes() == b"a"
    writer = AtomicWriter(tmp_path / "b")
    writer.abort()
    writer.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_missing_folder_names_the_target(tmp_path):
    target = tmp_path / "no" / "such" / "model.ul4m4"
    with pytest.raises(FileNotFoundError) as info:
        write_bytes_atomic(target, b"x")
    assert info.value.filename == str(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        AtomicWriter(tmp_path / "f", "ab")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(50, 3)), "b": rng.normal(size=(50, 2))}
    X["b"][:10] = np.nan
    return UL4M4Imputer(3, random_state=0).fit(X), X


def test_saved_model_has_the_mode_of_open(tmp_path, umask, fitted):
    imp, _ = fitted
    path = tmp_path / "model.ul4m4"
    imp.save(path)
    assert _mode(path) == 0o644


def test_streamed_outputs_have_the_mode_of_open(tmp_path, umask, fitted):
    imp, X = fitted
    out = tmp_path / "out"
    imp.transform(X, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy"]
    assert [_mode(p) for p in sorted(out.iterdir())] == [0o644, 0o644]
