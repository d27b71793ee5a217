"""Command line: ``ul4m4 benchmark ...`` (also ``python -m ul4m4 benchmark ...``).

Errors in the command line or the data set end the program with status 2 and a
single line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__

__all__ = ["build_parser", "main"]

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
machine), metric_vs_missing.png, k_stability.png.

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


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{self.prog}: error: {message} (see --help)")


def _floats(text: str) -> list[float]:
    try:
        values = [float(t) for t in _items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    for v in values:
        if not 0.0 <= v < 1.0:
            raise argparse.ArgumentTypeError(f"share {v:g} is not in [0, 1)")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in _items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ul4m4`` command."""
    from .baselines import available_methods

    parser = _Parser(
        prog="ul4m4",
        description="UL4M4: label-free imputation of missing modality embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"ul4m4 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
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
    bench.add_argument(
        "--missing",
        type=_floats,
        default=[0.3, 0.5, 0.7],
        metavar="S,S,...",
        help="shares of missing modality slots, each in [0, 1) (default: 0.3,0.5,0.7)",
    )
    bench.add_argument(
        "--config",
        type=_names,
        default=None,
        metavar="NAME,...",
        help="named missingness configurations; replaces --protocol/--missing",
    )
    bench.add_argument(
        "--k",
        type=_ints,
        default=[4, 16, 64],
        metavar="K,K,...",
        help="numbers of clusters for ul4m4 methods (default: 4,16,64)",
    )
    bench.add_argument(
        "--methods",
        type=_names,
        default=["ul4m4", "mean", "knn", "iterative", "nearest"],
        metavar="M,M,...",
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
        "--quiet", action="store_true", help="do not print the summary table to stdout"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~ul4m4.experiments.benchmark.BenchmarkConfig` from parsed arguments."""
    from .experiments.benchmark import BenchmarkConfig

    params: dict[str, dict[str, Any]] = {}
    for method, key, value in args.param:
        params.setdefault(method, {})[key] = value
    return BenchmarkConfig(
        dataset=args.dataset,
        protocol="config" if args.config else args.protocol,
        missing=tuple(args.missing),
        configs=tuple(args.config or ()),
        ks=tuple(args.k),
        methods=tuple(args.methods),
        seeds=args.seeds,
        first_seed=args.first_seed,
        test_size=args.test_size,
        mnar_strength=args.mnar_strength,
        method_params=params,
        memory=args.memory,
        blas_threads=args.blas_threads or None,
        progress=not args.no_progress,
    )


def _benchmark(args: argparse.Namespace, argv: list[str]) -> int:
    from .experiments.benchmark import run_benchmark
    from .experiments.report import main_table, realised_shares, summarise, write_outputs

    if importlib.util.find_spec("pandas") is None:
        raise CLIError(
            "ul4m4: error: the benchmark needs pandas (and matplotlib for plots, tqdm for "
            "progress): pip install 'ul4m4[experiments]'"
        )
    config = config_from_args(args)
    out = Path(args.out)
    try:
        # Fail now rather than after the whole run if the results cannot be written.
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(
            f"ul4m4: error: cannot create output folder {args.out!r}: {exc.strerror or exc}"
        ) from None
    start = time.perf_counter()
    result = run_benchmark(config, argv=argv)
    files = write_outputs(result, args.out)
    if not args.quiet:
        print(main_table(result, summarise(result)))
        print()
        print(f"Realised missing shares: {realised_shares(result)}")
    print(
        f"ul4m4 benchmark: {len(result.rows)} rows in {time.perf_counter() - start:.1f} s; "
        f"wrote {', '.join(p.name for p in files)} to {args.out}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ul4m4`` command; returns the exit status."""
    from .experiments.benchmark import BenchmarkError
    from .experiments.datasets import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "benchmark":
            return _benchmark(args, ["ul4m4", *argv])
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (BenchmarkError, DatasetError) as exc:
        print(f"ul4m4: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ul4m4: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`); results are already written.
        # Point stdout at devnull so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
