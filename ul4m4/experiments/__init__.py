"""Experiment tooling: the imputation benchmark, its data sets and its reports.

- :mod:`ul4m4.experiments.benchmark`: :class:`BenchmarkConfig` and :func:`run_benchmark`;
- :mod:`ul4m4.experiments.datasets`: registered data sets and the folder layout;
- :mod:`ul4m4.experiments.report`: summaries, Markdown tables, plots, :func:`write_outputs`;
- :mod:`ul4m4.experiments.deep`: the end-to-end deep experiments (encode, mask, impute,
  train the fusion model, evaluate): :class:`DeepConfig`, :func:`run_deep_experiment`,
  and :func:`ul4m4.experiments.deep_report.write_deep_outputs`.

The command line front ends are ``ul4m4 benchmark`` and ``ul4m4 experiment``
(:mod:`ul4m4.cli`).
"""

from .benchmark import BenchmarkConfig, BenchmarkError, BenchmarkResult, run_benchmark
from .datasets import DATASETS, DatasetError, load_dataset, load_folder, register_dataset
from .deep import DeepConfig, ExperimentError, run_deep_experiment
from .report import main_table, summarise, summary_markdown, write_outputs

__all__ = [
    "DATASETS",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "DatasetError",
    "DeepConfig",
    "ExperimentError",
    "load_dataset",
    "load_folder",
    "main_table",
    "register_dataset",
    "run_benchmark",
    "run_deep_experiment",
    "summarise",
    "summary_markdown",
    "write_outputs",
]
