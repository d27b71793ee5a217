"""``ul4m4 fit`` and ``ul4m4 impute``: fit a model on a folder of files, complete files.

``ul4m4 fit DATA --out model.ul4m4`` fits :class:`~ul4m4.imputer.UL4M4Imputer` on
the modality files of the folder DATA (layout in :mod:`ul4m4.datasets.files`) and
saves the model; ``ul4m4 impute model.ul4m4 DATA --out OUTDIR`` completes every file
of DATA into ``OUTDIR/<modality>.npy``. Both read the data memory-mapped (tables are
first copied, batch by batch, to temporary ``.npy`` files next to the output), so
memory stays bounded whatever the number of rows. Each prints a short summary on
stdout; progress goes to stderr. User errors raise :class:`FilesError`, which the
command line reports on one line with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._utils.files import atomic_write, check_replaceable_output, output_folder, scratch_folder
from ._utils.progress import terminal_bar
from ._utils.text import one_line
from .datasets.files import (
    ModalityFile,
    count_missing_rows,
    discover_modality_files,
    is_modality_name,
    join_modality_files,
    open_modality_files,
)
from .imputer import UL4M4Imputer
from .persistence import ModelFileError
from .settings import AUTO_K, resolve_settings

__all__ = [
    "DEFAULT_RANDOM_STATE",
    "IDS_FILE",
    "FilesError",
    "ModalityStats",
    "Progress",
    "add_fit_parser",
    "add_impute_parser",
    "fit_summary",
    "impute_summary",
    "imputer_params",
    "modality_stats",
    "parse_param",
    "run_fit",
    "run_impute",
    "user_errors",
]

#: The command line's seed when ``--param random_state=...`` is not given.
DEFAULT_RANDOM_STATE = 0
#: The output file of the sample ids (``--id``), beside the completed modalities.
IDS_FILE = "ids.npy"

_FIT_HELP = """\
Fit a UL4M4 imputer on the files of the folder DATA and save it to --out.

DATA holds one file per modality, all with the same number of rows (row i of every
file is sample i):
  <modality>.npy      (n, d) numbers, read memory-mapped
  <modality>.parquet  numeric columns (needs pandas and pyarrow)
  <modality>.csv      a header line naming the columns, then numbers (a first line
                      of numbers is read as the first sample)
A sample that lacks a modality has a row of NaN (.npy) or of empty cells (tables).
With --id COLUMN, every file is instead a table with an id column, holding only
the samples that have that modality, in any order: the files are joined on the
union of the ids (a sample that a file lacks is missing there).
labels.* and ids.* files, other files, sub-folders and hidden files are ignored.
Tables are copied batch by batch to a hidden scratch folder next to --out, deleted
at the end (or, after a kill, by the next run).
"""

_FIT_EPILOG = """\
--param sets any UL4M4Imputer parameter; values are read as JSON where possible,
else as text: n_clusters=16, n_clusters=auto, 'k_grid=[4,8,16]' (quoted for the
shell), completion=auto, dtype=float64, algorithm=minibatch, max_iter=50,
random_state=null (the default seed here is 0: the same command, the same model).

example:
  ul4m4 fit data/ --out model.ul4m4 --param n_clusters=auto completion=auto
  ul4m4 impute model.ul4m4 data/ --out filled/
"""

_IMPUTE_HELP = """\
Complete every file of the folder DATA with a model written by `ul4m4 fit`: each
missing row is filled, observed rows are copied unchanged, and the result of
modality m is written to OUTDIR/m.npy (float), with OUTDIR/ids.npy (the sample
ids, with --id) and OUTDIR/ul4m4-output.json (what the folder holds). DATA must
hold one file for each of the model's modalities, in the layout of
`ul4m4 fit --help`. OUTDIR appears whole or not at all: it is written in a
hidden folder beside it and swapped in at the end, so it must be new, empty, or
an earlier output of `ul4m4 impute`.
"""


class FilesError(Exception):
    """A user error of ``ul4m4 fit`` / ``ul4m4 impute``: one line, exit status 2."""


@dataclass(frozen=True)
class ModalityStats:
    """What the summary says about one modality: rows, width and missing rows."""

    name: str
    file: str
    rows: int
    width: int
    missing: int


# ---------------------------------------------------------------- arguments
def parse_param(text: str) -> tuple[str, Any]:
    """Split ``NAME=VALUE``; the value is JSON where it parses, else the text itself.

    Parameters
    ----------
    text : str
        E.g. ``"n_clusters=16"``, ``"n_clusters=auto"``, ``"k_grid=[4,8]"``.

    Returns
    -------
    name : str
    value : object
        JSON lists become tuples; ``None``, ``True`` and ``False`` are also accepted.

    Raises
    ------
    FilesError
        If ``text`` has no ``=`` or no name.
    """
    name, eq, raw = text.partition("=")
    if not (eq and name.strip()):
        raise FilesError(f"--param expects NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = {"None": None, "True": True, "False": False}.get(raw, raw)
    return name.strip(), tuple(value) if isinstance(value, list) else value


def imputer_params(texts: Sequence[str], *, verbose: int) -> dict[str, Any]:
    """Constructor parameters from ``--param`` texts, checked against UL4M4Imputer's.

    Parameters
    ----------
    texts : sequence of str
        ``NAME=VALUE`` each (see :func:`parse_param`); a later name overrides an
        earlier one.
    verbose : int
        The estimator's ``verbose`` (0, 1, 2; a bool counts as 0 or 1).

    Returns
    -------
    dict of str to object
        ``random_state`` is :data:`DEFAULT_RANDOM_STATE` unless given.

    Raises
    ------
    FilesError
        For a malformed text or a name that is not a parameter (the message lists
        the valid ones).
    """
    pairs = dict(parse_param(text) for text in texts)
    defaults = UL4M4Imputer().get_params()
    unknown = sorted(set(pairs) - set(defaults))
    if unknown:
        raise FilesError(f"unknown --param {', '.join(unknown)}; valid names: "
                         f"{', '.join(sorted(defaults))}")
    params = {"random_state": DEFAULT_RANDOM_STATE, **pairs, "verbose": verbose}
    try:  # before any data is read
        resolve_settings({**defaults, **params})
    except (ValueError, TypeError) as exc:
        raise FilesError(f"--param: {one_line(exc)}") from None
    return params


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id", metavar="COLUMN", dest="id_column",
        help="join the files on this id column (tables only) instead of by row position",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="log the estimator's progress: -v its stages (selection fits, ensemble "
             "members, Lloyd progress every few seconds, rows written), -vv every iteration",
    )


def add_fit_parser(sub: Any) -> None:
    """Add the ``fit`` sub-command to the ``ul4m4`` parser's sub-parsers ``sub``."""
    fit = sub.add_parser(
        "fit", help="fit an imputer on a folder of modality files and save it",
        description=_FIT_HELP, epilog=_FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("data", metavar="DATA", help="folder of modality files")
    fit.add_argument("--out", required=True, metavar="MODEL", help="model file to write")
    fit.add_argument(
        "--param", nargs="+", action="extend", default=[],
        metavar="NAME=VALUE", help="UL4M4Imputer parameter(s), repeatable (see below)",
    )
    _add_common(fit)


def add_impute_parser(sub: Any) -> None:
    """Add the ``impute`` sub-command to the ``ul4m4`` parser's sub-parsers ``sub``."""
    imp = sub.add_parser(
        "impute", help="fill the missing rows of a folder of modality files with a model",
        description=_IMPUTE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("model", metavar="MODEL", help="model file written by `ul4m4 fit`")
    imp.add_argument("data", metavar="DATA", help="folder of modality files")
    imp.add_argument("--out", required=True, metavar="OUTDIR",
                     help="folder for the completed <modality>.npy files: new, empty, or an "
                          "earlier output, which is replaced whole")
    imp.add_argument("--std", action="store_true",
                     help="also write <modality>.std.npy: per row, the predicted root-mean-"
                          "square error per coordinate of the filled block in the model's "
                          "z-space (NaN where the modality was observed)")
    _add_common(imp)


# ----------------------------------------------------------------- progress
class Progress:
    """Progress on a stream: tqdm bars on a terminal, else a few plain lines.

    Parameters
    ----------
    enabled : bool
        False prints nothing.
    stream : text file, optional
        Default: ``sys.stderr``.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._bars: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._finished: set[str] = set()

    def note(self, message: str) -> None:
        """Print ``ul4m4: message`` when enabled."""
        if self.enabled:
            print(f"ul4m4: {message}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def stage(self, doing: str, done: str) -> Iterator[None]:
        """Announce a long step, then report its duration: ``done in 1.2 s``."""
        self.note(f"{doing} ...")
        start = time.perf_counter()
        yield
        self.note(f"{done} in {time.perf_counter() - start:.1f} s")

    def rows(self, label: str, done: int, total: int | None) -> None:
        """Rows of ``label`` read so far (a :data:`~ul4m4.datasets.files.ProgressCallback`)."""
        if not self.enabled or label in self._finished:
            return
        if label not in self._started:
            self._start(label, total)
        if self._bars[label] is not None:
            self._bars[label].total = total
            self._bars[label].update(done - self._bars[label].n)
        if total is not None and done >= total:
            self._finish(label, done)

    def _start(self, label: str, total: int | None) -> None:
        self._started[label] = time.perf_counter()
        self._bars[label] = terminal_bar(total, f"reading {label}", stream=self.stream,
                                         unit=" rows", unit_scale=True, leave=False)
        if self._bars[label] is None:
            self.note(f"reading {label} ...")

    def _finish(self, label: str, done: int) -> None:
        seconds = time.perf_counter() - self._started.pop(label)
        self._finished.add(label)
        if self._bars[label] is not None:
            self._bars[label].close()
        self.note(f"read {label}: {done:,} rows in {seconds:.1f} s")


# ----------------------------------------------------------------- commands
@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors that bad input raises into :class:`FilesError` (one line)."""
    try:
        yield
    except (ModelFileError, ValueError, TypeError, ImportError) as exc:
        raise FilesError(one_line(exc)) from None
    except OSError as exc:  # FileNotFoundError, PermissionError, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        raise FilesError(f"{where}{exc.strerror or one_line(exc)}") from None


def run_fit(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``ul4m4 fit``: fit on ``args.data``, save to ``args.out``, print the summary."""
    started = time.perf_counter()
    progress = Progress(not args.quiet)
    model_path = Path(args.out)
    with user_errors():
        imputer = UL4M4Imputer(**imputer_params(args.param, verbose=args.verbose))
        files = discover_modality_files(args.data)
        _check_model_path(model_path, Path(args.data), files)
        with scratch_folder(model_path.absolute().parent) as scratch:
            data, _ = _open(files, scratch, progress, args.id_column)
            stats = modality_stats(data)
            with progress.stage(_fit_doing(imputer, stats), "fitted"):
                _quietly_warned(imputer.fit, {m.name: m.array for m in data})
            del data  # close the memory maps before their scratch files go
        imputer.set_params(verbose=False)
        imputer.save(model_path)
    elapsed = time.perf_counter() - started
    print(fit_summary(imputer, stats, args.data, model_path, elapsed), file=out or sys.stdout)
    return 0


def run_impute(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``ul4m4 impute``: complete ``args.data`` into ``args.out``, print the summary."""
    started = time.perf_counter()
    progress = Progress(not args.quiet)
    out_dir = Path(args.out)
    with user_errors():
        imputer = UL4M4Imputer.load(args.model)
        files = _model_files(imputer, args.data)
        _check_out_dir(out_dir, Path(args.data), Path(args.model))
        with scratch_folder(out_dir.absolute().parent) as scratch, \
                output_folder(out_dir) as folder:
            data, ids = _open(files, scratch, progress, args.id_column)
            stats = modality_stats(data)
            imputer.set_params(verbose=args.verbose)
            with progress.stage(f"imputing {stats[0].rows:,} samples", "imputed"):
                _quietly_warned(imputer.transform, {m.name: m.array for m in data},
                                out_dir=folder.path, return_std=args.std)
            if ids is not None:
                with atomic_write(folder.path / IDS_FILE) as handle:
                    np.save(handle, ids, allow_pickle=False)
            del data  # close the memory maps before their scratch files go
    elapsed = time.perf_counter() - started
    print(impute_summary(imputer, stats, args, elapsed), file=out or sys.stdout)
    return 0


def _open(files: dict[str, Path], scratch: Path, progress: Progress,
          id_column: str | None) -> tuple[list[ModalityFile], np.ndarray | None]:
    """The modality files as memory maps (joined on ``id_column`` if given), and the ids."""
    if id_column is None:
        return _quietly_warned(open_modality_files, files, scratch, progress.rows), None
    return join_modality_files(files, id_column, scratch, progress.rows)


def modality_stats(data: Sequence[ModalityFile]) -> list[ModalityStats]:
    """Rows, width and all-NaN rows of each opened modality (one pass over each)."""
    return [
        ModalityStats(m.name, m.path.name, m.array.shape[0], m.array.shape[1],
                      count_missing_rows(m.array))
        for m in data
    ]


def _check_model_path(path: Path, data: Path, files: dict[str, Path]) -> None:
    """Refuse a model path that would replace an input or a file that is not a model."""
    if path.is_dir():
        raise FilesError(f"--out {str(path)!r} is a folder; give the model file's name")
    inputs = {p.resolve(): p for p in files.values()}
    if path.resolve() in inputs:
        raise FilesError(f"--out {str(path)!r} is the input file {inputs[path.resolve()]}: the "
                         "model would replace it; give another file name")
    if path.resolve().parent == data.resolve() and is_modality_name(path.name):
        raise FilesError(f"--out {str(path)!r} would be read as a modality the next time "
                         f"{data} is read; name the model *.ul4m4 or save it elsewhere")
    if path.exists() and not _is_model_file(path):
        raise FilesError(f"--out {str(path)!r} exists and is not a ul4m4 model; it would be "
                         "replaced: give another file name")


def _is_model_file(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.json" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _check_out_dir(out_dir: Path, data: Path, model: Path) -> None:
    """Refuse an output folder that would replace the inputs, the model or a user's files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FilesError(f"--out {str(out_dir)!r} is a file; give a folder")
    target = out_dir.resolve()
    if target == data.resolve():
        raise FilesError("--out is the DATA folder: the outputs would replace the inputs; "
                         "give another folder")
    for what, path in (("the model", model), ("DATA", data)):
        if target in path.resolve().parents:
            raise FilesError(f"--out {str(out_dir)!r} holds {what} ({path}): the outputs "
                             "replace the folder whole; give another folder")
    check_replaceable_output(out_dir)


def _model_files(imputer: UL4M4Imputer, data: str) -> dict[str, Path]:
    """The files of ``data`` in the model's modality order; they must match exactly."""
    files = discover_modality_files(data)
    fitted = list(imputer.modalities_)
    absent = [m for m in fitted if m not in files]
    extra = [m for m in files if m not in fitted]
    if absent or extra:
        parts = [f"no file for {absent}" if absent else "", f"unknown {extra}" if extra else ""]
        raise FilesError(
            f"{data}: the modalities do not match the model's {fitted} "
            f"({'; '.join(p for p in parts if p)})"
        )
    return {m: files[m] for m in fitted}


def _fit_doing(imputer: UL4M4Imputer, stats: Sequence[ModalityStats]) -> str:
    k = imputer.n_clusters
    what = f"choosing k among {list(imputer.k_grid)}" if k in AUTO_K else f"k = {k}"
    if imputer.completion == "auto":
        what = f"choosing a completion ensemble, k among {list(imputer.k_grid)}" \
            if k in AUTO_K else f"choosing a completion ensemble, k = {k}"
    return f"fitting on {stats[0].rows:,} samples x {len(stats)} modalities ({what})"


def _quietly_warned(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``action``; print each warning it raises as one ``ul4m4: warning:`` line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return action(*args, **kwargs)
        finally:  # the warnings before an error too
            for warning in caught:
                print(f"ul4m4: warning: {one_line(warning.message)}", file=sys.stderr)


# ------------------------------------------------------------------ summary
def fit_summary(imputer: UL4M4Imputer, stats: Sequence[ModalityStats], data: str,
                model_path: Path, seconds: float) -> str:
    """The text ``ul4m4 fit`` prints: data, k, iterations, choices, model file, time."""
    lines = [
        f"ul4m4 fit: {len(stats)} modalities x {stats[0].rows:,} samples from {data}",
        *_stats_table(stats, "missing"),
        _model_line(imputer),
        *_completion_lines(imputer),
        f"model: {model_path} ({model_path.stat().st_size / 1024:,.1f} KiB)",
        f"time: {seconds:.1f} s",
    ]
    return "\n".join(lines)


def impute_summary(imputer: UL4M4Imputer, stats: Sequence[ModalityStats],
                   args: argparse.Namespace, seconds: float) -> str:
    """The text ``ul4m4 impute`` prints: data, rows filled, model, output files, time."""
    filled = sum(s.missing for s in stats)
    lines = [
        f"ul4m4 impute: {len(stats)} modalities x {stats[0].rows:,} samples from {args.data}",
        *_stats_table(stats, "filled"),
        f"model: {args.model}",
        _model_line(imputer),
        *_completion_lines(imputer),
        f"wrote {filled:,} filled rows; {', '.join(_written(stats, args))} in {args.out}",
        f"time: {seconds:.1f} s",
    ]
    return "\n".join(lines)


def _written(stats: Sequence[ModalityStats], args: argparse.Namespace) -> list[str]:
    std = [s.name + ".std.npy" for s in stats] if args.std else []
    return [s.name + ".npy" for s in stats] + std + ([IDS_FILE] if args.id_column else [])


def _stats_table(stats: Sequence[ModalityStats], missing: str) -> list[str]:
    rows = [("modality", "file", "rows", "width", missing)] + [
        (s.name, s.file, f"{s.rows:,}", str(s.width), f"{100 * s.missing / s.rows:.1f} %")
        for s in stats
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return [
        "  " + "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _model_line(imputer: UL4M4Imputer) -> str:
    k = f"k = {imputer.n_clusters_}"
    selection = imputer.selection_
    if selection is not None and selection.is_ensemble:
        models = [f"k-means k={key.k}" if key.rank is None else
                  f"mixture k={key.k} r={key.rank}" for key in selection.models]
        k = f"models: {', '.join(models) or 'none (mean imputation)'}, chosen on " \
            f"{selection.n_rows:,} rows"
    elif imputer.n_clusters in AUTO_K:
        selection = imputer.selection_
        grid = list(selection.k_grid) if selection and selection.k_grid else list(imputer.k_grid)
        k += f" (chosen from k in {grid})"
    members = getattr(imputer, "n_ensemble_", 1)
    unit = "members" if selection is not None and selection.is_ensemble else "fits"
    ensemble = f", ensemble of {members} {unit}" if members > 1 else ""
    state = "converged" if imputer.converged_ else "not converged"
    unit = "steps" if imputer.algorithm == "minibatch" else "iterations"
    return f"{k}{ensemble}; {imputer.n_iter_} {unit}, {state}"


def _completion_lines(imputer: UL4M4Imputer) -> list[str]:
    if imputer.completion != "auto":
        return [f"completion: {imputer.completion}"]
    choices = ", ".join(
        f"{name} {_completion_text(imputer, name)}" for name in imputer.modalities_
    )
    return [f"completion (chosen): {choices}"]


def _completion_text(imputer: UL4M4Imputer, name: str) -> str:
    method = imputer.completion_[name]
    selection = imputer.selection_
    if selection is not None and selection.is_ensemble and method != "mean":
        return " + ".join(selection.members(name))
    details = []
    if method == "soft":
        details.append(f"T={imputer.temperature_[name]:g}")
    if method != "mean" and imputer.shrinkage_.get(name, 0.0):
        details.append(f"shrinkage {imputer.shrinkage_[name]:g}")
    return f"{method} ({', '.join(details)})" if details else method


