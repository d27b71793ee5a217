"""Progress of a fit at scikit-learn-style verbosity levels, on the ``ul4m4`` logger.

Level 0 is silent, 1 logs the stages of a fit (model-selection fits, ensemble
members, the end of every k-means run) and the progress of each k-means run
(:class:`RunProgress`): where the stream is a terminal and tqdm is installed, a
bar over the run's iterations, opened before its seeding, with the k-means++
seeds drawn, then the labels that changed and the inertia, in its postfix;
elsewhere (a file, a pipe, a notebook) plain lines at a bounded rate: a first
one :data:`FIRST_LINE_SECONDS` into the seeding and into the iterations, then
one every :data:`PROGRESS_SECONDS`. Level 2 also logs every iteration (DEBUG
records). Stage lines are INFO records of the ``ul4m4`` logger whatever the
level (the estimator attaches a :class:`BarSafeHandler` while ``verbose >= 1``);
bars are drawn only at level 1.

:func:`terminal_bar` and :class:`LineProgress` serve other long loops (the
benchmark's runs) the same way: a bar on a terminal, plain lines elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "FIRST_LINE_SECONDS",
    "PROGRESS_SECONDS",
    "BarSafeHandler",
    "FitProgress",
    "LineProgress",
    "RunProgress",
    "is_terminal",
    "progress_bar",
    "terminal_bar",
]

logger = logging.getLogger("ul4m4")

#: Seconds between two progress lines off a terminal.
PROGRESS_SECONDS = 5.0
#: Seconds into a run after which its first progress line is written off a
#: terminal (so a long run shows its pace early; short runs write none).
FIRST_LINE_SECONDS = 1.0
#: Width and height assumed for a terminal that reports no size (a pseudo-terminal
#: opened without one, as ``script`` or a CI runner makes): tqdm draws nothing there
#: otherwise.
FALLBACK_SIZE = (80, 24)

#: A k-means bar: the iteration count, elapsed and remaining time, then the postfix
#: (labels changed, inertia); tqdm's rate is left out to leave room for it.
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"

#: ``callback(iteration, max_iter, inertia, shift, elapsed_seconds, changed=None)``,
#: one call per iteration; ``changed`` is the number of labels that changed (None
#: where unknown: the first iteration, mini-batch steps).
IterationCallback = Callable[..., None]


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _tqdm_class() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: plain lines then
        return None
    return tqdm


def _bar_size(stream: Any) -> dict[str, Any]:
    """tqdm's size arguments: the terminal's own (kept up to date), or the fallback."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError
        size = None
    if size is not None and size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    columns, lines = FALLBACK_SIZE
    # tqdm keeps a column free, as it does with a measured size.
    return {"ncols": columns - 1, "nrows": lines - 1}


def terminal_bar(total: int | None, desc: str, *, stream: Any = None, unit: str = "it",
                 **kwargs: Any) -> Any:
    """A tqdm bar on ``stream`` (default stderr) if it is a terminal and tqdm is installed.

    Parameters
    ----------
    total : int or None
        Steps of the bar.
    desc : str
        The bar's label.
    stream : text file, optional
        Where to draw (default ``sys.stderr``).
    unit : str, default="it"
        Unit of a step.
    **kwargs
        Further tqdm arguments (``leave``, ``initial``, ...).

    Returns
    -------
    tqdm.tqdm or None
        None off a terminal or without tqdm: the caller writes plain lines then
        (see :class:`LineProgress`).
    """
    stream = sys.stderr if stream is None else stream
    tqdm = _tqdm_class() if is_terminal(stream) else None
    if tqdm is None:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=stream,
                **{**_bar_size(stream), **kwargs})


def progress_bar(enabled: bool, total: int | None, desc: str, unit: str = "it", *,
                 initial: int = 0, stream: Any = None, **kwargs: Any) -> Any:
    """The progress display of a long step: a bar on a terminal, plain lines elsewhere.

    Parameters
    ----------
    enabled : bool
        False (or ``total`` of 0) gives None: the caller shows nothing.
    total : int or None
        Steps expected.
    desc : str
        The label.
    unit : str, default="it"
        Unit of a step.
    initial : int, default=0
        Steps already done (a resumed job).
    stream : text file, optional
        Default ``sys.stderr``.
    **kwargs
        Further tqdm arguments for the bar (``leave``, ...).

    Returns
    -------
    tqdm.tqdm, LineProgress or None
        Each has ``update``, ``set_postfix``, ``set_postfix_str`` and ``close``.
    """
    if not enabled or total == 0:
        return None
    bar = terminal_bar(total, desc, stream=stream, unit=unit, initial=initial, **kwargs)
    return bar if bar is not None else LineProgress(total, desc, stream=stream, initial=initial)


class LineProgress:
    """A progress bar's interface (``update``, ``set_postfix_str``, ``close``) that
    writes plain lines, for streams that are not terminals (no ``\\r``).

    A line ``"<desc>: <n>/<total> (<postfix>), <elapsed> s"`` is written after the
    first step, then at most one every ``interval`` seconds, and a last one at
    :meth:`close` if steps were made since the last line.

    Parameters
    ----------
    total : int
        Steps expected.
    desc : str
        Label of the lines.
    stream : text file, optional
        Default ``sys.stderr``.
    interval : float, optional
        Seconds between two lines (default :data:`PROGRESS_SECONDS`).
    """

    def __init__(self, total: int | None, desc: str, stream: Any = None,
                 interval: float | None = None, initial: int = 0) -> None:
        self.total, self.desc = total, desc
        self.stream = sys.stderr if stream is None else stream
        self.interval = PROGRESS_SECONDS if interval is None else float(interval)
        self.n, self.postfix = initial, ""
        self._start = time.perf_counter()
        self._last: float | None = None
        self._written = initial

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; write a line if the interval has passed."""
        self.n += n
        now = time.perf_counter()
        if self._last is None or now - self._last >= self.interval:
            self._write(now)

    def set_postfix_str(self, s: str) -> None:
        """Text shown after the count in the next line (the step under way)."""
        self.postfix = s

    def set_postfix(self, **values: Any) -> None:
        """``name=value`` pairs shown after the count in the next line (tqdm's form)."""
        self.postfix = ", ".join(f"{name}={value}" for name, value in values.items())

    def close(self) -> None:
        """Write the final count, unless the last line already shows it."""
        if self.n != self._written:
            self._write(time.perf_counter())

    def _write(self, now: float) -> None:
        self._last, self._written = now, self.n
        postfix = f" ({self.postfix})" if self.postfix else ""
        total = "?" if self.total is None else self.total
        print(f"{self.desc}: {self.n}/{total}{postfix}, {now - self._start:.1f} s",
              file=self.stream, flush=True)


class BarSafeHandler(logging.StreamHandler):
    """A stream handler that clears tqdm bars on its stream before a record and redraws
    them after, so log lines never land in the middle of a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = _tqdm_class() if is_terminal(self.stream) else None
        if tqdm is None:
            super().emit(record)
            return
        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)


class FitProgress:
    """Stage lines and per-run iteration progress of one fit.

    Parameters
    ----------
    level : int
        The estimator's ``verbose`` (0, 1, 2, ...; True counts as 1).
    stream : text file, optional
        Where bars are drawn (default ``sys.stderr``); a bar needs a terminal.
    interval : float, optional
        Seconds between two iteration lines (default :data:`PROGRESS_SECONDS`);
        a bar redraws at most every ``min(interval, 0.1)`` seconds.
    """

    def __init__(self, level: int, stream: Any = None, interval: float | None = None) -> None:
        self.level = int(level)
        self.stream = stream if stream is not None else sys.stderr
        self.interval = PROGRESS_SECONDS if interval is None else float(interval)
        self._bars = self.level == 1 and is_terminal(self.stream) and _tqdm_class() is not None

    def stage(self, message: str, *args: Any) -> None:
        """Log one stage line (INFO)."""
        logger.info(message, *args)

    @contextlib.contextmanager
    def iterations(self, label: str, unit: str = "Lloyd iteration", total: int | None = None
                   ) -> Iterator[RunProgress | None]:
        """The progress of one k-means run (None at level 0: no overhead).

        On a terminal the bar opens here, before the seeding, so that the
        k-means++ passes show too; ``total`` is its length until the first
        iteration says otherwise.
        """
        if self.level < 1:
            yield None
            return
        # A bar redraws at most every 0.1 s (tqdm's default), or every
        # `interval` if shorter.
        bar = terminal_bar(total, label, stream=self.stream, unit=" it", leave=False,
                           mininterval=min(0.1, self.interval),
                           bar_format=_BAR_FORMAT) if self._bars else None
        try:
            yield RunProgress(label, unit, bar, self.interval)
        finally:
            if bar is not None:
                bar.close()


class RunProgress:
    """One k-means run's progress: call it after every iteration (an
    :data:`IterationCallback`); :meth:`seeded` after every k-means++ seed.

    Off a terminal each phase (seeding, iterations) writes its first line once
    :data:`FIRST_LINE_SECONDS` of it have passed (or ``interval``, if shorter),
    then one every ``interval`` seconds: at most ``2 + elapsed / interval``
    lines per run, and none for a run shorter than a second.
    """

    def __init__(self, label: str, unit: str, bar: Any, interval: float) -> None:
        self.label, self.unit, self.bar, self.interval = label, unit, bar, interval
        first = min(FIRST_LINE_SECONDS, interval)
        self._next = {"seeding": first, "iterations": first}

    def _due(self, phase: str, elapsed: float) -> bool:
        if elapsed < self._next[phase]:
            return False
        self._next[phase] = elapsed + self.interval
        return True

    def seeded(self, n_seeds: int, k: int, elapsed: float) -> None:
        """``n_seeds`` of ``k`` k-means++ seeds chosen (each one costs a pass)."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"k-means++ seed {n_seeds}/{k}", refresh=False)
            self.bar.update(0)  # redraws if tqdm's interval has passed
        elif self._due("seeding", elapsed):
            logger.info("%s: k-means++ seed %d/%d, elapsed %.1fs", self.label, n_seeds, k,
                        elapsed)

    def __call__(self, iteration: int, total: int, inertia: float, shift: float,
                 elapsed: float, changed: int | None = None) -> None:
        if self.bar is not None:
            self.bar.total = total
            moved = "" if changed is None else f"{changed} changed, "
            self.bar.set_postfix_str(f"{moved}inertia {inertia:.6g}", refresh=False)
            self.bar.update(iteration - self.bar.n)
        elif self._due("iterations", elapsed):
            moved = "" if changed is None else f", {changed} labels changed"
            logger.info("%s: %s %d/%d%s, inertia %.6g, centre shift %.3g, elapsed %.1fs",
                        self.label, self.unit, iteration, total, moved, inertia, shift,
                        elapsed)

