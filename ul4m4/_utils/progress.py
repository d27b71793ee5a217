"""Progress of a fit at scikit-learn-style verbosity levels, on the ``ul4m4`` logger.

Level 0 is silent, 1 logs the stages of a fit (model-selection fits, ensemble
members, the end of every k-means run) and, for runs longer than a few seconds,
a Lloyd line every :data:`PROGRESS_SECONDS` (or a tqdm bar where stderr is a
terminal and tqdm is installed), 2 also logs every iteration (DEBUG records).
Stage lines are INFO records of the ``ul4m4`` logger whatever the level (the
estimator attaches a stderr handler while ``verbose >= 1``); bars are drawn only
at level 1.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PROGRESS_SECONDS", "FitProgress"]

logger = logging.getLogger("ul4m4")

#: Seconds between two Lloyd progress lines at verbosity 1.
PROGRESS_SECONDS = 5.0

#: ``callback(iteration, max_iter, inertia, shift, elapsed_seconds)``, one call per iteration.
IterationCallback = Callable[[int, int, float, float, float], None]


class FitProgress:
    """Stage lines and per-run iteration progress of one fit.

    Parameters
    ----------
    level : int
        The estimator's ``verbose`` (0, 1, 2, ...; True counts as 1).
    stream : text file, optional
        Where bars are drawn (default ``sys.stderr``); a bar needs a terminal.
    interval : float, optional
        Seconds between two iteration lines (default :data:`PROGRESS_SECONDS`).
    """

    def __init__(self, level: int, stream: Any = None, interval: float | None = None) -> None:
        self.level = int(level)
        self.stream = stream if stream is not None else sys.stderr
        self.interval = PROGRESS_SECONDS if interval is None else float(interval)
        tty = getattr(self.stream, "isatty", lambda: False)()
        self._tqdm = _tqdm_class() if self.level == 1 and tty else None

    def stage(self, message: str, *args: Any) -> None:
        """Log one stage line (INFO)."""
        logger.info(message, *args)

    @contextlib.contextmanager
    def iterations(self, label: str, unit: str = "Lloyd iteration"
                   ) -> Iterator[IterationCallback | None]:
        """A callback for one k-means run's iterations (None at level 0: no overhead)."""
        if self.level < 1:
            yield None
            return
        state = {"bar": None, "last": 0.0}

        def callback(iteration: int, total: int, inertia: float, shift: float,
                     elapsed: float) -> None:
            if self._tqdm is not None:
                bar = state["bar"]
                if bar is None:
                    bar = state["bar"] = self._tqdm(total=total, desc=label, unit=" it",
                                                    file=self.stream, leave=False)
                bar.update(iteration - bar.n)
                bar.set_postfix(inertia=f"{inertia:.6g}", shift=f"{shift:.3g}", refresh=False)
                return
            if elapsed - state["last"] >= self.interval:
                state["last"] = elapsed
                logger.info("%s: %s %d/%d, inertia %.6g, centre shift %.3g, elapsed %.1fs",
                            label, unit, iteration, total, inertia, shift, elapsed)

        try:
            yield callback
        finally:
            if state["bar"] is not None:
                state["bar"].close()


def _tqdm_class() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: log lines then
        return None
    return tqdm
