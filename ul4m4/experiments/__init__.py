"""Experiment tooling: the imputation benchmark, its data sets and its reports.

- :mod:`ul4m4.experiments.benchmark`: :class:`BenchmarkConfig` and :func:`run_benchmark`;
- :mod:`ul4m4.experiments.datasets`: registered data sets and the folder layout;
- :mod:`ul4m4.experiments.report`: summaries, Markdown tables, plots, :func:`write_outputs`.

The command line front end is ``ul4m4 benchmark`` (:mod:`ul4m4.cli`).
"""

from .benchmark import BenchmarkConfig, BenchmarkError, BenchmarkResult, run_benchmark
from .datasets import DATASETS, DatasetError, load_dataset, load_folder, register_dataset
from .report import main_table, summarise, summary_markdown, write_outputs

__all__ = [
    "DATASETS",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "DatasetError",
    "load_dataset",
    "load_folder",
    "main_table",
    "register_dataset",
    "run_benchmark",
    "summarise",
    "summary_markdown",
    "write_outputs",
]
