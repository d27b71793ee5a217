"""What ``ul4m4 fit -v`` shows on a terminal and in a file."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_files import ROOT, _make_folder

pytest.importorskip("tqdm")


def _stderr_on_a_terminal(argv: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``argv`` with stderr on a new pseudo-terminal; return its status and stderr.

    A pseudo-terminal opened this way reports a size of 0x0, as under ``script``,
    ``docker exec -t`` or a CI runner: tqdm drew nothing there.
    """
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_fit_verbose_draws_a_bar_on_a_terminal(tmp_path: Path):
    data = _make_folder(tmp_path / "data")
    code, err = _stderr_on_a_terminal(
        [sys.executable, "-m", "ul4m4", "fit", str(data), "--out", str(tmp_path / "m.ul4m4"),
         "-v", "--param", "n_clusters=4"])
    assert code == 0, err
    assert "[ul4m4] member 1/1: k=4" in err
    # The k-means bar over max_iter=300 iterations, cleared at the end of the run.
    assert "\rmember 1/1:   0%|" in err and "| 0/300 [" in err
    assert "[ul4m4] member 1/1: fixed point after " in err
    # The bar of the table read first (text.csv), not the plain line of a non-terminal.
    assert "\rreading text.csv:" in err and "ul4m4: reading text.csv ..." not in err


def test_fit_verbose_into_a_file_writes_lines(tmp_path: Path):
    data = _make_folder(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "ul4m4", "fit", str(data), "--out", str(tmp_path / "m.ul4m4"),
         "-v", "--param", "n_clusters=4"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert "[ul4m4] member 1/1: k=4" in done.stderr.splitlines()
