"""Fit progress: tqdm bars on a terminal (level 1), log lines otherwise."""

from __future__ import annotations

import io
import logging

import pytest

import ul4m4._utils.progress as progress
from ul4m4._utils.progress import FitProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(fit: FitProgress, n: int = 5) -> None:
    with fit.iterations("member 1/1") as callback:
        for i in range(1, n + 1):
            callback(i, 300, 100.0 / i, 1.0 / i, 0.1 * i)


def test_level_zero_gives_no_callback():
    with FitProgress(0).iterations("member 1/1") as callback:
        assert callback is None


def test_a_bar_on_a_terminal(caplog):
    pytest.importorskip("tqdm")
    stream = _Terminal()
    caplog.set_level(logging.INFO, logger="ul4m4")
    _run(FitProgress(1, stream=stream, interval=0.0))
    assert "member 1/1:" in stream.getvalue() and "/300 [" in stream.getvalue()
    assert not caplog.records  # the bar replaces the lines


def test_log_lines_without_tqdm_or_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress, "_tqdm_class", lambda: None)
    caplog.set_level(logging.INFO, logger="ul4m4")
    stream = _Terminal()
    _run(FitProgress(1, stream=stream, interval=0.25), n=6)
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    # At least 0.25 s of (reported) elapsed time apart: iterations 3 and 6.
    assert lines == [
        "member 1/1: Lloyd iteration 3/300, inertia 33.3333, centre shift 0.333, elapsed 0.3s",
        "member 1/1: Lloyd iteration 6/300, inertia 16.6667, centre shift 0.167, elapsed 0.6s",
    ]


def test_no_bar_when_not_a_terminal_or_at_level_two(caplog):
    caplog.set_level(logging.INFO, logger="ul4m4")
    for fit in (FitProgress(1, stream=io.StringIO(), interval=0.0),
                FitProgress(2, stream=_Terminal(), interval=0.0)):
        caplog.clear()
        _run(fit, n=2)
        assert len(caplog.records) == 2
