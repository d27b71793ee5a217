import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4._utils.files import (
    MANIFEST,
    AtomicWriter,
    NpyWriter,
    _host,
    atomic_write,
    output_folder,
    remove_stale,
    scratch_folder,
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
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy", MANIFEST]
    assert [_mode(p) for p in sorted(out.iterdir())] == [0o644, 0o644, 0o644]


# ------------------------------------------------------------ work in progress
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_names_carry_the_host_and_process_id(tmp_path):
    writer = AtomicWriter(tmp_path / "m.ul4m4")
    assert writer.temp_path.name.startswith(f".m.ul4m4.{_host()}-{os.getpid()}-")
    writer.abort()


def test_a_folder_target_is_named_not_the_temporary_file(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        write_bytes_atomic(tmp_path, b"x")
    assert str(tmp_path) in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_removes_only_dead_runs_leftovers(tmp_path):
    host, other = _host(), "0123abcd" if _host() != "0123abcd" else "fedc3210"
    dead, live = f"{host}-{_dead_pid()}", f"{host}-{os.getpid()}"
    names = [f".m.ul4m4.{dead}-0a1b2c3d.tmp", f".ul4m4-tmp-{dead}-ab12cd34",
             f".out.ul4m4-staging-{dead}-ab12cd34", f".out.ul4m4-old-{dead}-ab12cd34"]
    kept = [f".m.ul4m4.{live}-0a1b2c3d.tmp", f".ul4m4-tmp-{live}-ab12cd34", ".m.ul4m4.0a1b.tmp",
            f".ul4m4-tmp-{other}-{_dead_pid()}-ab12cd34",  # another host's, on a shared disk
            "a.npy", "ul4m4-tmp-1-ab"]
    for name in names + kept:
        if "ul4m4-" in name and not name.endswith(".tmp"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "big.npy").write_bytes(b"x" * 100)
        else:
            (tmp_path / name).write_bytes(b"x")
    removed = remove_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_scratch_folder_is_removed_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt), scratch_folder(tmp_path / "p") as scratch:
        (scratch / "x.npy").write_bytes(b"x")
        assert scratch.name.startswith(f".ul4m4-tmp-{_host()}-{os.getpid()}-")
        raise KeyboardInterrupt
    assert list((tmp_path / "p").iterdir()) == []


def _write_output(target, files):
    with output_folder(target) as folder:
        for name, text in files.items():
            (folder.path / name).write_text(text)
    return sorted(p.name for p in target.iterdir())


def test_output_folder_appears_whole_and_replaces_an_earlier_output(tmp_path):
    target = tmp_path / "out"
    assert _write_output(target, {"a.npy": "1", "b.npy": "2"}) == ["a.npy", "b.npy", MANIFEST]
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["files"] == {"a.npy": 1, "b.npy": 1}
    assert _write_output(target, {"a.npy": "3"}) == ["a.npy", MANIFEST]  # b.npy is gone
    assert (target / "a.npy").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old folder left


def test_output_folder_left_as_it_was_on_error(tmp_path):
    target = tmp_path / "out"
    _write_output(target, {"a.npy": "1", "b.npy": "2"})
    with pytest.raises(RuntimeError), output_folder(target) as folder:
        (folder.path / "a.npy").write_text("new")
        raise RuntimeError("killed half way")
    assert (target / "a.npy").read_text() == "1" and (target / "b.npy").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("content", [["notes.txt"], ["a.npy"], ["model.ul4m4", MANIFEST]])
def test_output_folder_never_replaces_a_users_files(tmp_path, content):
    target = tmp_path / "out"
    target.mkdir()
    for name in content:
        (target / name).write_text("{}" if name == MANIFEST else "mine")
    with pytest.raises(ValueError, match="not a ul4m4 output|not a ul4m4 output manifest"):
        _write_output(target, {"a.npy": "1"})
    assert sorted(p.name for p in target.iterdir()) == sorted(content)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_nested_output_folder_joins_the_enclosing_one(tmp_path):
    target = tmp_path / "out"
    with output_folder(target) as outer:
        with output_folder(outer.path) as inner:
            (inner.path / "a.npy").write_text("1")
        (outer.path / "ids.npy").write_text("2")
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["a.npy", "ids.npy", MANIFEST]


def test_a_symbolic_link_to_an_output_folder_is_followed(tmp_path):
    real = tmp_path / "real"
    _write_output(real, {"a.npy": "1"})
    link = tmp_path / "link"
    link.symlink_to(real)
    with output_folder(link) as folder:
        (folder.path / "a.npy").write_text("2")
    assert link.is_symlink() and (real / "a.npy").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_npy_writer_writes_blocks_as_one_npy_file_only_when_every_row_is_there(tmp_path):
    target = tmp_path / "a.npy"
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    writer = NpyWriter(target, (4, 3), np.dtype(np.float32))
    writer.write(rows[:3])
    assert not target.exists()  # nothing visible before the commit
    writer.write(rows[3:].astype(np.float64))  # converted to the file's dtype
    writer.commit()
    got = np.load(target)
    assert got.dtype == np.float32 and np.array_equal(got, rows)
    short = NpyWriter(tmp_path / "b.npy", (4, 3), np.dtype(np.float32))
    short.write(rows[:2])
    with pytest.raises(RuntimeError, match=r"b\.npy: wrote 2 rows of 4"):
        short.commit()
    short.abort()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.npy"]

