"""Command line: ``ul4m4 fit``, ``impute``, ``benchmark`` and ``experiment`` (or ``python -m ul4m4``).

Errors in the command line or the data set end the program with status 2 and a
single line on stderr, without a traceback. The options and help texts are built in
:mod:`ul4m4.cli_parser`; this module turns parsed arguments into configurations and
runs the commands (``fit`` and ``impute`` run in :mod:`ul4m4.files_cli`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._utils.text import one_line
from .cli_parser import CLIError, build_parser
from .experiments.benchmark import BenchmarkConfig, BenchmarkError, run_benchmark
from .experiments.datasets import DatasetError
from .experiments.deep import DeepConfig, ExperimentError, run_deep_experiment
from .experiments.deep_encoders import parse_encoder_specs
from .experiments.deep_report import deep_main_table, stage_table, write_deep_outputs
from .experiments.report import main_table, realised_shares, summarise, write_outputs
from .files_cli import FilesError, run_fit, run_impute

__all__ = ["build_parser", "main"]


def config_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~ul4m4.experiments.benchmark.BenchmarkConfig` from parsed arguments."""
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


def _output_folder(path: str) -> Path:
    """Create the output folder ``path`` (and its parents) and return it."""
    out = Path(path)
    try:
        # Fail now rather than after the whole run if the results cannot be written.
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(
            f"ul4m4: error: cannot create output folder {path!r}: {exc.strerror or exc}"
        ) from None
    return out


def _benchmark(args: argparse.Namespace, argv: list[str]) -> int:
    if importlib.util.find_spec("pandas") is None:
        raise CLIError(
            "ul4m4: error: the benchmark needs pandas (and matplotlib for plots, tqdm for "
            "progress): pip install 'ul4m4[experiments]'"
        )
    config = config_from_args(args)
    out = _output_folder(args.out)
    start = time.perf_counter()
    runs_dir = out / "runs"
    if args.fresh:
        shutil.rmtree(runs_dir, ignore_errors=True)
    result = run_benchmark(config, argv=argv, resume_dir=runs_dir)
    files = write_outputs(result, args.out)
    if not args.quiet:
        print(main_table(result, summarise(result)))
        print()
        print(f"Realised missing shares: {realised_shares(result)}")
    print(
        f"ul4m4 benchmark: {len(result.rows)} rows ({result.reused} reused from {runs_dir}) "
        f"in {time.perf_counter() - start:.1f} s; "
        f"wrote {', '.join(p.name for p in files)} to {args.out}",
        file=sys.stderr,
    )
    return 0


def experiment_config_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~ul4m4.experiments.deep.DeepConfig` from parsed arguments."""

    fusion = {
        key: value
        for key, value in (
            ("max_epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("device", args.device),
        )
        if value is not None
    }
    try:
        encoders = parse_encoder_specs(args.encoder)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    extra = {} if args.methods is None else {"methods": tuple(args.methods)}
    return DeepConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        protocol=args.protocol,
        configs=tuple(args.config or ()),
        missing=tuple(args.missing or ()),
        ks=tuple(args.k) if args.k else None,
        seeds=args.seeds,
        first_seed=args.first_seed,
        fusion=fusion,
        encoders=encoders,
        modality_dropout=args.modality_dropout,
        signal_epochs=args.signal_epochs,
        cache_dir=args.cache_dir,
        blas_threads=args.blas_threads or None,
        torch_threads=args.torch_threads or None,
        progress=not args.no_progress,
        **extra,
    )


def _experiment(args: argparse.Namespace, argv: list[str]) -> int:
    if importlib.util.find_spec("pandas") is None or importlib.util.find_spec("torch") is None:
        raise CLIError(
            "ul4m4: error: the experiment needs pandas and PyTorch: "
            "pip install 'ul4m4[experiments,deep]'"
        )
    config = experiment_config_from_args(args)
    config.validate()
    out = _output_folder(args.out)
    start = time.perf_counter()
    result = run_deep_experiment(config, argv=argv)
    files = write_deep_outputs(result, out)
    if not args.quiet:
        summary = summarise(result)
        print(deep_main_table(result, summary))
        print()
        print(stage_table(result, summary))
        print()
        print(f"Realised missing shares: {realised_shares(result)}")
    print(
        f"ul4m4 experiment: {len(result.rows)} rows in {time.perf_counter() - start:.1f} s; "
        f"wrote {', '.join(p.name for p in files)} to {args.out}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ul4m4`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "benchmark":
            return _benchmark(args, ["ul4m4", *argv])
        if args.command == "experiment":
            return _experiment(args, ["ul4m4", *argv])
        if args.command == "fit":
            return run_fit(args)
        if args.command == "impute":
            return run_impute(args)
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (BenchmarkError, DatasetError, ExperimentError, FilesError) as exc:
        print(f"ul4m4: error: {one_line(exc)}", file=sys.stderr)
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



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
