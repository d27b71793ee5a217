"""The grammar of the ``ul4m4`` command: subcommands, options, value types and help texts.

:func:`build_parser` builds the :mod:`argparse` parser that :func:`ul4m4.cli.main` runs;
``fit`` and ``impute`` add their own subparsers (:mod:`ul4m4.files_cli`). A parse error
raises :class:`CLIError`, which the command line reports on one line with status 2.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable
from typing import Any, NoReturn

from . import __version__
from .baselines import available_methods
from .experiments.deep import DEEP_DATASETS, DEEP_METHODS
from .files_cli import add_fit_parser, add_impute_parser

__all__ = ["CLIError", "build_parser"]

_DATASET_HELP = """\
data sets:
  mfeat        UCI Multiple Features: 2000 handwritten digits, 6 modalities (shipped)
  movielens    MovieLens, when ul4m4.datasets.movielens is installed
  <folder>     a folder with one file per modality and the labels:
                 <modality>.npy   (n, d_m) float; an all-NaN row = modality missing
                 labels.npy       (n,) class labels, or (n, C) 0/1 multi-label matrix
                 modalities.txt   optional: modality names, one a line, in order
               (<modality>.parquet / labels.parquet also work with pandas + pyarrow;
               without modalities.txt the modalities are sorted by name)

protocols:
  independent  each modality present with probability 1 - share; no sample is left
               without a modality (so the realised share, reported in every output,
               is a little below the nominal one at high shares)
  mnar         same rates, missing-not-at-random (depends on the embedding's value)
  --config     named configurations instead, e.g. 100_20_20, complex_60_20_20,
               pm0.4_ps0.5 (see ul4m4.missingness.parse_config)

outputs in --out: results.csv (one row per seed x setting x method x k), summary.csv,
summary.md (mean ± std tables), config.json (command, configuration, versions,
machine), metric_vs_missing.png, k_stability.png, and runs/ (one file per finished
run: a rerun with the same settings reuses them, so an interrupted benchmark resumes;
--fresh recomputes everything).

example:
  ul4m4 benchmark --dataset mfeat --missing 0.3,0.5,0.7 --k 4,16,64 \\
      --methods ul4m4,mean,knn,iterative,nearest --seeds 5 --out results/
"""


_BENCH_HELP = """\
Compare imputation methods under simulated missing modalities. For every seed the
data set is split into train and test (stratified by class), modalities are removed
from both, every method is fitted on the masked training set only and fills train
and test. Scores: block-MSE (z-space) and cosine similarity on the hidden test
blocks, and a logistic-regression head trained on the filled training set and
scored on the filled test set (accuracy and macro-F1; true micro-, samples- and
macro-F1 for multi-label targets). UL4M4 methods run once per k.

methods: zero, mean, knn (scikit-learn KNNImputer), iterative (IterativeImputer,
the slowest: ~20 s per run on mfeat), nearest (nearest training sample having the
modality), ul4m4 (greedy completion), ul4m4-soft (soft completion), ul4m4-auto (label-free
selection of k and of the completion per modality; runs once), ul4m4-onestep (reference
scripts' one-step clustering), mofa
(iMML MOFA, transductive; needs `pip install imml`).
"""


_EXPERIMENT_HELP = """\
End-to-end experiment on a multimodal data set: encode the raw items with frozen
encoders (cached), remove modalities (a named configuration or shares of missing
slots), impute with each method fitted on the training split only, train the
attention fusion model with the settings the paper's reference experiments use for
that data set (model width, attention heads and layers, optimiser, learning rate,
batch size, epochs; --epochs, --batch-size and --lr change them), choose its
checkpoint on validation and score it on test. Every result row records the seconds
spent in each stage (encode, mask, impute, train, evaluate).

methods: ul4m4 (greedy completion; the reference one-step clustering under
--protocol paper), ul4m4-soft, ul4m4-auto, mean, knn (imputers), mask-aware (the
fusion model ignores missing modalities, no imputation), modality-dropout
(mask-aware, and observed modalities dropped at random during training).

protocols:
  paper   the reference scripts' choices: one-step clustering, MOSI trains on its
          complete training split, k = 64 (MM-IMDb), 10 (MOSI), 1 (Sleep-EDF)
  clean   train is masked like val/test, k-means to a fixed point, k swept
"""

_EXPERIMENT_EPILOG = """\
data sets (--data-dir is the folder of the raw release; see ul4m4.datasets):
  mmimdb     plots (MiniLM) and posters (EfficientNet-Lite0); 23-27 genres,
             multi-label; default --config complex_60_20_20
  mosi       transcripts (MiniLM), audio (log-mel statistics), video frames
             (EfficientNet-Lite0, mean over frames); sentiment in [-3, 3];
             default --config 100_20_20
  sleep-edf  5 channels, one 1-D autoencoder each (trained on the observed training
             channels); 5 sleep stages; default --config pm0.4_ps0.5
  movielens  title (MiniLM), rating SVD, metadata; 19 genres, multi-label; built
             from the local cache (--data-dir: the cache folder, optional);
             default --missing 0.3,0.5,0.7

outputs in --out: results.csv/.json (one row per seed x setting x method x k),
summary.csv, summary.md, config.json, metric_vs_missing.png, k_stability.png.

example:
  ul4m4 experiment mosi --data-dir data/mosi --config 100_20_20 --k 10 --protocol paper
  ul4m4 experiment movielens --missing 0.3,0.5,0.7 --k 16 --seeds 1 --out results/ml
"""


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{self.prog}: error: {message} (see --help)")


def _floats(text: str) -> list[float]:
    values = _converted(text, float, "numbers")
    for v in values:
        if not 0.0 <= v < 1.0:
            raise argparse.ArgumentTypeError(f"share {v:g} is not in [0, 1)")
    return values


def _ints(text: str) -> list[int]:
    values = _converted(text, int, "integers")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    values = _items(text)
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _converted(text: str, convert: Callable[[str], Any], what: str) -> list:
    """The comma-separated items of ``text``, each through ``convert`` (``what`` names them)."""
    try:
        return [convert(t) for t in _items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def _param(text: str) -> tuple[str, str, Any]:
    method, sep, rest = text.partition(".")
    key, eq, raw = rest.partition("=")
    if not (sep and eq and method and key):
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return method, key, value


#: The comma-separated options shared by the commands: how each is parsed, and its metavar.
_LIST_OPTIONS: dict[str, tuple[Callable[[str], list], str]] = {
    "--missing": (_floats, "S,S,..."),
    "--config": (_names, "NAME,..."),
    "--k": (_ints, "K,K,..."),
    "--methods": (_names, "M,M,..."),
}


def _add_list(parser: argparse.ArgumentParser, flag: str, *, default: Any, help: str) -> None:
    """Add the comma-separated option ``flag`` (see :data:`_LIST_OPTIONS`) to ``parser``."""
    parse, metavar = _LIST_OPTIONS[flag]
    parser.add_argument(flag, type=parse, default=default, metavar=metavar, help=help)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ul4m4`` command."""
    parser = _Parser(
        prog="ul4m4",
        description="UL4M4: label-free imputation of missing modality embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"ul4m4 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_fit_parser(sub)
    add_impute_parser(sub)
    bench = sub.add_parser(
        "benchmark",
        help="compare imputation methods under simulated missing modalities",
        description=_BENCH_HELP,
        epilog=_DATASET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--dataset",
        default="mfeat",
        help="registered name or folder path (default: mfeat; see below)",
    )
    bench.add_argument(
        "--protocol",
        choices=("independent", "mnar"),
        default="independent",
        help="how --missing shares are drawn (default: independent)",
    )
    _add_list(
        bench,
        "--missing",
        default=[0.3, 0.5, 0.7],
        help="shares of missing modality slots, each in [0, 1) (default: 0.3,0.5,0.7)",
    )
    _add_list(
        bench,
        "--config",
        default=None,
        help="named missingness configurations; replaces --protocol/--missing",
    )
    _add_list(
        bench,
        "--k",
        default=[4, 16, 64],
        help="numbers of clusters for ul4m4 methods (default: 4,16,64)",
    )
    _add_list(
        bench,
        "--methods",
        default=["ul4m4", "mean", "knn", "iterative", "nearest"],
        help="methods to compare (default: ul4m4,mean,knn,iterative,nearest); "
        f"available: {', '.join(available_methods())}",
    )
    bench.add_argument(
        "--seeds", type=_positive_int, default=5, metavar="N", help="number of seeds (default: 5)"
    )
    bench.add_argument(
        "--first-seed",
        type=int,
        default=0,
        metavar="S",
        help="first seed; seeds are S .. S+N-1 (default: 0)",
    )
    bench.add_argument(
        "--test-size",
        type=_share,
        default=0.3,
        metavar="F",
        help="test share of each split (default: 0.3)",
    )
    bench.add_argument(
        "--mnar-strength",
        type=float,
        default=2.0,
        metavar="X",
        help="logit slope of the mnar protocol (default: 2.0)",
    )
    bench.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="method parameter, repeatable (e.g. knn.n_neighbors=10, iterative.max_iter=10)",
    )
    bench.add_argument(
        "--memory",
        choices=("tracemalloc", "rss", "none"),
        default="tracemalloc",
        help="how peak memory is measured (default: tracemalloc)",
    )
    bench.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="BLAS/OpenMP threads during the run; 0 = no limit (default: 1, "
        "every method timed on one core)",
    )
    bench.add_argument(
        "--out",
        default="results",
        metavar="DIR",
        help="output folder, created if needed (default: results)",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument(
        "--fresh",
        action="store_true",
        help="recompute every run; by default runs finished earlier with the same settings "
        "(stored one file each in DIR/runs/) are reused, so an interrupted benchmark resumes",
    )
    bench.add_argument(
        "--quiet", action="store_true", help="do not print the summary table to stdout"
    )
    _add_experiment_parser(sub)
    return parser


def _add_experiment_parser(sub: Any) -> None:
    exp = sub.add_parser(
        "experiment",
        help="end-to-end: encode, mask, impute, train the fusion model, evaluate",
        description=_EXPERIMENT_HELP,
        epilog=_EXPERIMENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = exp.add_argument
    add("dataset", choices=DEEP_DATASETS, help="data set")
    add("--data-dir", default=None, metavar="DIR", help="raw data folder")
    add("--protocol", choices=("paper", "clean"), default="clean", help="default: clean")
    _add_list(
        exp,
        "--config",
        default=None,
        help="missingness configurations (100_20_20, complex_60_20_20, pm0.4_ps0.5, ...); "
        "default: the data set's",
    )
    _add_list(
        exp,
        "--missing",
        default=None,
        help="shares of missing slots, drawn independently (instead of --config)",
    )
    _add_list(
        exp,
        "--k",
        default=None,
        help="numbers of clusters of the UL4M4 methods (default: the protocol's)",
    )
    _add_list(
        exp,
        "--methods",
        default=None,
        help=f"default: all but ul4m4-onestep; available: {', '.join(DEEP_METHODS)}",
    )
    add("--seeds", type=_positive_int, default=1, metavar="N", help="default: 1")
    add("--first-seed", type=int, default=0, metavar="S", help="default: 0")
    add(
        "--epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="fusion training epochs (default: the data set's)",
    )
    add(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="fusion batch size (default: the data set's)",
    )
    add("--lr", type=float, default=None, help="fusion learning rate (default: the data set's)")
    add("--device", default=None, help="torch device of the fusion model (default: cpu)")
    add(
        "--modality-dropout",
        type=float,
        default=0.3,
        metavar="P",
        help="drop probability of the modality-dropout method (default: 0.3)",
    )
    add(
        "--signal-epochs",
        type=_positive_int,
        default=20,
        metavar="N",
        help="epochs of the Sleep-EDF signal autoencoders (default: 20)",
    )
    add(
        "--encoder",
        action="append",
        default=[],
        metavar="MODALITY=KIND",
        help="encoder of a modality: minilm, efficientnet, spectrum or hf:PATH (repeatable)",
    )
    add(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="embedding cache (default: $UL4M4_CACHE/embeddings or ~/.cache/ul4m4/embeddings)",
    )
    add(
        "--blas-threads",
        type=int,
        default=0,
        metavar="N",
        help="BLAS/OpenMP threads; 0 = no limit (default: 0)",
    )
    add(
        "--torch-threads",
        type=int,
        default=0,
        metavar="N",
        help="PyTorch CPU threads; 0 = PyTorch's default (default: 0)",
    )
    add(
        "--out",
        default="results",
        metavar="DIR",
        help="output folder, created if needed (default: results)",
    )
    add("--no-progress", action="store_true", help="no progress bars")
    add("--quiet", action="store_true", help="do not print the tables to stdout")
