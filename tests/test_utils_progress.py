"""Fit progress: tqdm bars on a terminal (level 1), bounded plain lines otherwise."""

from __future__ import annotations

import io
import logging

import pytest

import ul4m4._utils.progress as progress
from ul4m4._utils.progress import FitProgress, LineProgress, terminal_bar


class _Terminal(io.StringIO):
    """A terminal that reports no size (no fileno), as a size-less pseudo-terminal."""

    def isatty(self) -> bool:
        return True


def _run(fit: FitProgress, n: int = 5, step: float = 0.1) -> None:
    with fit.iterations("member 1/1", total=300) as callback:
        for i in range(1, n + 1):
            callback(i, 300, 100.0 / i, 1.0 / i, step * i, changed=None if i == 1 else 10 - i)


def test_level_zero_gives_no_callback():
    with FitProgress(0).iterations("member 1/1") as callback:
        assert callback is None


def test_a_bar_on_a_terminal_without_a_size(caplog):
    """tqdm draws nothing on a terminal of size 0x0 unless given one: the bar must show."""
    pytest.importorskip("tqdm")
    stream = _Terminal()
    caplog.set_level(logging.INFO, logger="ul4m4")
    _run(FitProgress(1, stream=stream, interval=0.0))
    out = stream.getvalue()
    assert "\rmember 1/1:   0%|" in out and "/300 [" in out
    # The iteration, then the labels changed and the inertia in the postfix.
    assert "| 5/300 [" in out and ", 5 changed, inertia 20]" in out
    assert "| 1/300 [" in out and ", inertia 100]" in out
    assert out.endswith("\r")  # leave=False: the bar is cleared at the end of the run
    assert not caplog.records  # the bar replaces the lines


def test_the_bar_opens_before_the_first_iteration():
    """Seeding (k-means++: k passes) runs inside the context: the bar shows it."""
    pytest.importorskip("tqdm")
    stream = _Terminal()
    with FitProgress(1, stream=stream).iterations("selection: k=4, 1/2", total=300):
        assert "\rselection: k=4, 1/2:   0%|" in stream.getvalue()


def test_lines_without_tqdm_on_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress, "_tqdm_class", lambda: None)
    caplog.set_level(logging.INFO, logger="ul4m4")
    stream = _Terminal()
    _run(FitProgress(1, stream=stream, interval=0.25), n=6)
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    # The first line once elapsed >= min(FIRST_LINE_SECONDS, interval), then at
    # least `interval` seconds apart: iterations 3 and 6.
    assert lines == [
        "member 1/1: Lloyd iteration 3/300, 7 labels changed, inertia 33.3333, centre shift "
        "0.333, elapsed 0.3s",
        "member 1/1: Lloyd iteration 6/300, 4 labels changed, inertia 16.6667, centre shift "
        "0.167, elapsed 0.6s",
    ]


def test_off_a_terminal_lines_start_early_and_stay_bounded(caplog):
    """A long run: a first line one second in, then one per interval, never a ``\\r``."""
    caplog.set_level(logging.INFO, logger="ul4m4")
    stream = io.StringIO()
    # 300 iterations of 0.4 s each (reported elapsed time): 120 s.
    _run(FitProgress(1, stream=stream), n=300, step=0.4)
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("member 1/1: Lloyd iteration 3/300, 7 labels changed, ")
    assert lines[1].startswith("member 1/1: Lloyd iteration 16/300, ")  # 1.2 + 5 s
    # At most 1 + elapsed / PROGRESS_SECONDS lines.
    assert 20 <= len(lines) <= 1 + 120 / progress.PROGRESS_SECONDS
    assert not any("\r" in line for line in lines)


def test_no_bar_when_not_a_terminal_or_at_level_two(caplog):
    caplog.set_level(logging.INFO, logger="ul4m4")
    for fit in (FitProgress(1, stream=io.StringIO(), interval=0.0),
                FitProgress(2, stream=_Terminal(), interval=0.0)):
        caplog.clear()
        _run(fit, n=2)
        assert len(caplog.records) == 2
        assert fit.stream.getvalue() == ""


def test_terminal_bar_only_on_a_terminal():
    pytest.importorskip("tqdm")
    assert terminal_bar(3, "x", stream=io.StringIO()) is None
    stream = _Terminal()
    bar = terminal_bar(3, "runs", stream=stream)
    bar.close()
    assert "runs:   0%|" in stream.getvalue()


def test_line_progress_writes_plain_bounded_lines():
    stream = io.StringIO()
    bar = LineProgress(40, "benchmark", stream=stream, interval=3600.0)
    for i in range(40):
        bar.set_postfix_str(f"seed {i % 2}")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # The first step, then nothing within the interval, then the total at close.
    assert [line.split(",")[0] for line in lines] == [
        "benchmark: 1/40 (seed 0)", "benchmark: 40/40 (seed 1)"]


def test_seeding_shows_in_the_bar_and_in_bounded_lines(caplog):
    """k-means++ makes a pass per seed: a long seeding must not look like a hang."""
    pytest.importorskip("tqdm")
    stream = _Terminal()
    with FitProgress(1, stream=stream, interval=0.0).iterations("member 1/1",
                                                                total=300) as run:
        for i in range(2, 9):
            run.seeded(i, 8, 0.1 * i)
    assert "k-means++ seed 8/8]" in stream.getvalue()

    caplog.set_level(logging.INFO, logger="ul4m4")
    with FitProgress(1, stream=io.StringIO()).iterations("member 1/1") as run:
        for i in range(2, 65):  # 64 seeds, 0.5 s a pass: 32 s
            run.seeded(i, 64, 0.5 * (i - 1))
        run(1, 300, 10.0, 1.0, 0.4)  # the iterations' own clock starts again
        run(2, 300, 9.0, 0.5, 1.2, changed=3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["member 1/1: k-means++ seed 3/64, elapsed 1.0s",
                         "member 1/1: k-means++ seed 13/64, elapsed 6.0s"]
    assert len(lines) == 7 + 1  # seeds at 1, 6, ..., 31 s; the runs: 2 + 33 s / 5 s at most
    assert lines[-1].startswith("member 1/1: Lloyd iteration 2/300, 3 labels changed, ")


def test_progress_bar_is_plain_lines_off_a_terminal_and_a_bar_on_one():
    stream = io.StringIO()
    bar = progress.progress_bar(True, 10, "encode", "item", initial=4, stream=stream)
    assert isinstance(bar, LineProgress)
    bar.set_postfix(loss="0.5")
    bar.update(3)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines == [lines[0]] and lines[0].startswith("encode: 7/10 (loss=0.5), ")
    assert progress.progress_bar(False, 10, "encode", stream=stream) is None
    assert progress.progress_bar(True, 0, "encode", stream=stream) is None
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    bar = progress.progress_bar(True, 10, "encode", "item", stream=terminal)
    assert not isinstance(bar, LineProgress)
    bar.update(5)
    bar.close()
    assert "\rencode:" in terminal.getvalue()
